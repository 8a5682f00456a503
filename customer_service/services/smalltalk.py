"""Small talk: a greeting, thanks or a goodbye on its own gets a short, polite answer from the bot instead of
the intent model's guess (a visitor's first "hello" used to go to a person: the demo's model put it at 0.22 on
``contact_human_agent``). Only a short message (at most ``MAX_WORDS`` words) made of such words alone counts:
"hi, my card is blocked" or "thanks, but where is my refund?" are questions and go to the model as before.
Pure functions, no database: ``decide`` (``answering``) asks ``small_talk`` first. Uncharged: no model ran.
"""

import re
from dataclasses import dataclass

MAX_WORDS = 8
WORD = re.compile(r"[a-z]+")

# The word that makes a message a greeting, thanks or goodbye (thanks first: "hi, thanks!" thanks).
KEYS: tuple[tuple[str, frozenset[str]], ...] = (
    ("thanks", frozenset({"thanks", "thank", "thx", "thanx", "ty", "cheers"})),
    ("goodbye", frozenset({"bye", "goodbye", "byebye", "cya", "farewell"})),
    (
        "greeting",
        frozenset({"hi", "hello", "hey", "hiya", "howdy", "greetings", "morning", "afternoon", "evening"}),
    ),
)
# Words that may stand beside those and change nothing ("hello there", "thanks a lot for your help").
FILLER = frozenset(
    {
        "a", "again", "all", "and", "bot", "everyone", "for", "good", "great", "help", "lot", "many",
        "much", "nice", "oh", "ok", "okay", "so", "the", "there", "very", "you", "your", "see", "ya",
        "later", "have", "day", "cool", "perfect", "super", "awesome", "folks", "team",
    }
)  # fmt: skip

THANKS_REPLY = "You're welcome! Is there anything else I can help you with?"
GOODBYE_REPLY = "Goodbye, and thank you for getting in touch!"


@dataclass(frozen=True)
class SmallTalk:
    kind: str  # "greeting", "thanks" or "goodbye"
    text: str  # what the bot says


def small_talk_kind(text: str) -> str | None:
    """``greeting``, ``thanks`` or ``goodbye`` when ``text`` is only that, else None."""
    words = WORD.findall(text.lower())
    if not words or len(words) > MAX_WORDS:
        return None
    if any(not _known(word) for word in words):
        return None
    if words[:2] in (["see", "you"], ["see", "ya"]):
        return "goodbye"
    for kind, keys in KEYS:
        if any(word in keys for word in words):
            return kind
    return None


def small_talk(text: str, *, greeting: str) -> SmallTalk | None:
    """The bot's answer to a greeting (``greeting``: the tenant's own), thanks or goodbye; None otherwise."""
    kind = small_talk_kind(text)
    if kind is None:
        return None
    reply = {"greeting": greeting, "thanks": THANKS_REPLY, "goodbye": GOODBYE_REPLY}[kind]
    return SmallTalk(kind=kind, text=reply)


def _known(word: str) -> bool:
    return word in FILLER or any(word in keys for _kind, keys in KEYS)
