"""Who the visitor is and where: what the widget tells about them, checked before it is stored.

The widget sends the page the visitor is on (``page``: its address, when the chat starts and again each
time it resumes on another page) and a visitor id it keeps in the browser across chats (``visitor``), so
operators see the page and the visitor's earlier conversations. The id is stored hashed: it identifies a
browser, and the table never needs it in clear. Neither is a credential: a visitor who forges them only
mislabels their own chat.
"""

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

from core.errors import InvalidInput

MAX_PAGE_CHARS = 500
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def page_check(page: Any) -> str:
    """The page's address (http or https, at most 500 characters); "" when the widget sent none."""
    if page is None or page == "":
        return ""
    problem = f"page must be the http(s) address of the visitor's page, at most {MAX_PAGE_CHARS} characters."
    if not isinstance(page, str) or len(page) > MAX_PAGE_CHARS or any(ord(c) < 32 for c in page):
        raise InvalidInput(problem, details={"field": "page"})
    try:
        parts = urlsplit(page)
    except ValueError:
        raise InvalidInput(problem, details={"field": "page"}) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(problem, details={"field": "page"})
    return page


def visitor_hash(visitor: Any) -> str:
    """sha256 of the widget's visitor id (16 to 64 letters, digits, - or _); "" when the widget sent none."""
    if visitor is None or visitor == "":
        return ""
    if not isinstance(visitor, str) or not _VISITOR_ID.match(visitor):
        raise InvalidInput(
            "visitor must be the widget's visitor id: 16 to 64 letters, digits, - or _.",
            details={"field": "visitor"},
        )
    return hashlib.sha256(visitor.encode()).hexdigest()
