"""The model page's "try it" box: one text through a version, answered in words (its most likely labels
with percentages), metered as one prediction like any other. Kinds that do not label a text say so."""

from dataclasses import dataclass, field

from core.errors import InvalidInput
from core.registry.kinds import kind_of
from core.registry.services.serving import model_predict, servable_version

MAX_TRY_CHARS = 2000
TOP_LABELS = 3
# What a model that does not label texts does, in words, by its kind's operation.
NOT_A_CLASSIFIER = {
    "embed": (
        "This model turns texts into vectors to find the ones closest in meaning (the knowledge-base search "
        "uses it): it has no labels to try a text against."
    ),
    "recommend": "This model recommends items from what people did; it does not read a text.",
}


@dataclass(frozen=True)
class Guess:
    label: str
    percent: float


@dataclass(frozen=True)
class TryResult:
    text: str
    guesses: list[Guess] = field(default_factory=list)
    sentence: str = ""


def label_words(label: str) -> str:
    return label.replace("_", " ")


def _sentence(guesses: list[Guess]) -> str:
    first, rest = guesses[0], guesses[1:]
    text = f"Most likely “{label_words(first.label)}” ({first.percent:.0f}%)"
    if rest:
        others = [f"“{label_words(g.label)}” ({g.percent:.0f}%)" for g in rest]
        text += ", then " + (" and ".join(others) if len(others) < 3 else ", ".join(others))
    return text + "."


def model_can_try(*, version) -> str:
    """ "" when the version labels texts, else why the box cannot try it (in words)."""
    operation = kind_of(version).operation
    if operation == "predict":
        return ""
    return NOT_A_CLASSIFIER.get(operation, f"This model cannot label a text: {kind_of(version).misuse}")


def model_try(*, organisation, version_id: int, text: str) -> TryResult:
    """Predict one text with the organisation's version ``version_id``; raises NotFound for another
    organisation's, Conflict for one that cannot serve, InvalidInput for a bad text or a kind that does not
    label texts."""
    text = (text or "").strip()
    version = servable_version(organisation=organisation, version_id=version_id)
    why_not = model_can_try(version=version)
    if why_not:
        raise InvalidInput(why_not, details={"field": "text"})
    if not text:
        raise InvalidInput("Type a text to try.", details={"field": "text"})
    if len(text) > MAX_TRY_CHARS:
        raise InvalidInput(f"Try at most {MAX_TRY_CHARS:,} characters.", details={"field": "text"})
    answer = model_predict(organisation=organisation, version_id=version.pk, texts=[text])
    probabilities = answer["predictions"][0]["probabilities"]
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])[:TOP_LABELS]
    guesses = [Guess(label, 100 * p) for label, p in ranked]
    return TryResult(text=text, guesses=guesses, sentence=_sentence(guesses))
