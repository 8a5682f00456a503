"""What the monitor's topic and sentiment models read of a text: each web link as the word "link".

A shortened link (``https://t.co/G9Zdi1boy5``) is a random string that the encoder's tokeniser cuts into a
dozen pieces, a third of a tweet's tokens; as one word the models keep the hint that a text carries a link
and read a third fewer tokens (``finance_monitor.services.classification``'s docstring has the figures).
Plain Python, no Django: the benchmarks train and score on the same form.
"""

import re

LINK = re.compile(r"https?://\S+")
LINK_WORD = "link"


def model_text(text: str) -> str:
    """``text`` as the models read it: each web link (to the next white space) replaced by the word "link",
    runs of white space as one space."""
    return " ".join(LINK.sub(f" {LINK_WORD} ", text).split())
