"""CSV cells that a spreadsheet opens as text: the one formula guard for every CSV the platform writes.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some spreadsheets skip
before reading a formula) is run as a formula by Excel, LibreOffice and Sheets. Files that echo tenant data
(often written by the public: reviews, tickets, tweets) prefix such a cell with ``'``, which the spreadsheet
shows as text.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """``value`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return "'" + value if value[:1] in FORMULA_STARTS else value
