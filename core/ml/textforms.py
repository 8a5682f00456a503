"""Text forms: what a model reads of a text, named, so that the form travels with the model version.

A product may have its models read texts in a form of their own (the finance monitor's: each web link as the
word "link"). The form is named in the training config (``TrainConfig.text_form``), so it is stored in the
version's manifest with its other hyper-parameters; training applies it to every row, and the trained model
and the loaded predictor apply it to every text they are asked about. Every path to a version (the product's
own, the platform's predict endpoint, batch jobs, the model page's try-it box, the int8 and promotion gates)
therefore reads a text as that version was trained to, and a version trained before its product adopted a
form keeps reading texts as given ("", the default).

A form is registered once per process under its name (``ModelTask.text_form`` in the product contract does
it when the product registers; plain Python code such as a benchmark may call :func:`register_text_form`).
A form must be idempotent (``apply(apply(t)) == apply(t)``): a text already in the form is left as it is.
Plain Python, no torch, no Django.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.ml.errors import MLError

AS_GIVEN = ""


@dataclass(frozen=True)
class TextForm:
    name: str  # stored in the version's manifest: keep it stable once models are trained with it
    apply: Callable[[str], str]
    description: str = ""


_FORMS: dict[str, TextForm] = {}


def register_text_form(form: TextForm) -> None:
    """Register ``form`` under its name (the same form again is a no-op; another under a taken name fails)."""
    if not form.name or not form.name.replace("-", "").isalnum():
        raise MLError(f"A text form's name is letters, digits and dashes, not {form.name!r}.")
    current = _FORMS.get(form.name)
    if current is not None and current.apply is not form.apply:
        raise MLError(f"Text form '{form.name}' is registered twice.")
    _FORMS[form.name] = form


def manifest_form(manifest: dict | None) -> str:
    """The name of the form a version's manifest records ("": none, as every version trained before forms
    were recorded)."""
    return str(((manifest or {}).get("hyperparameters") or {}).get("text_form") or AS_GIVEN)


def known(name: str) -> bool:
    return name == AS_GIVEN or name in _FORMS


def text_form(name: str) -> Callable[[str], str] | None:
    """The function of the form named ``name`` (None for texts as given); ``MLError`` for an unknown name: a
    model trained with a form that no installed product provides cannot read texts as it was trained to."""
    if name == AS_GIVEN:
        return None
    form = _FORMS.get(name)
    if form is None:
        raise MLError(
            f"This model reads texts in the form '{name}', which nothing installed provides "
            f"(known: {', '.join(sorted(_FORMS)) or 'none'})."
        )
    return form.apply


def described(name: str) -> str:
    """The form in words, for the model page ("" for texts as given; the name for a form without words)."""
    if name == AS_GIVEN:
        return ""
    form = _FORMS.get(name)
    return (form.description or form.name) if form else name


def in_form(apply: Callable[[str], str] | None, texts: Sequence[str]) -> list[str]:
    """``texts`` in the form ``apply`` (as given when None)."""
    return list(texts) if apply is None else [apply(text) for text in texts]
