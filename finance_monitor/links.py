"""What the monitor's topic and sentiment models read of a text: each web link as the word "link".

A shortened link (``https://t.co/G9Zdi1boy5``) is a random string that the encoder's tokeniser cuts into a
dozen pieces, a third of a tweet's tokens; as one word the models keep the hint that a text carries a link
and read a third fewer tokens (``finance_monitor.services.classification``'s docstring has the figures).
It is the monitor's text form (``LINKS_AS_WORD``, ``core.ml.textforms``): its topic and sentiment model tasks
declare it, so a version trained since records it and reads every text in it wherever it is asked (the
monitor's classification, the platform's predict endpoint and batch jobs, the model page's try-it box);
versions trained before read texts as given, as they were trained to. Plain Python, no Django: the
benchmarks train and score on the same form.
"""

import re

from core.ml.textforms import TextForm

LINK = re.compile(r"https?://\S+")
LINK_WORD = "link"


def model_text(text: str) -> str:
    """``text`` as the models read it: each web link (to the next white space) replaced by the word "link",
    runs of white space as one space."""
    return " ".join(LINK.sub(f" {LINK_WORD} ", text).split())


LINKS_AS_WORD = TextForm("links-as-word", model_text, 'each web link as the word "link"')
