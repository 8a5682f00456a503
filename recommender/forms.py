"""The recommender pages' forms: they check what a page is asked (an experiment, a file of items or events, a
training's method) and hand plain values to the services (which check again: the API's rules)."""

from django import forms

from core.registry.models import VersionStatus

# the display name of each ranking method a version can be made with (the API's ``config.method``)
METHOD_LABELS = {
    "ease": "EASE",
    "popularity": "Popularity",
    "itemknn": "Item-kNN",
    "hybrid": "Hybrid ranker",
}


def method_label(method: str) -> str:
    """The display name of a ranking method (a method this list does not know: its own name)."""
    return METHOD_LABELS.get(method, method or "a trained model")


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=120)
    version_a = forms.TypedChoiceField(coerce=int, label="Version A")
    version_b = forms.TypedChoiceField(coerce=int, label="Version B")
    share_b = forms.FloatField(min_value=0.01, max_value=0.99, initial=0.5, label="Share of users on B")
    window_hours = forms.IntegerField(min_value=1, max_value=720, initial=24, label="Feedback window (hours)")

    def __init__(self, *args, versions: list, **kwargs) -> None:
        """``versions``: the servable ones, newest first. A, the control, starts on the active version (the
        newest when none is active); B on the newest other one, the challenger."""
        super().__init__(*args, **kwargs)
        choices = [(v.pk, f"v{v.version} {method_label(v.method)} ({v.status})") for v in versions]
        self.fields["version_a"].choices = choices
        self.fields["version_b"].choices = choices
        control = next(
            (v for v in versions if v.status == VersionStatus.ACTIVE), versions[0] if versions else None
        )
        challenger = next((v for v in versions if v is not control), None)
        self.fields["version_a"].initial = control.pk if control else None
        self.fields["version_b"].initial = challenger.pk if challenger else None


class UploadForm(forms.Form):
    """A CSV or JSONL file of items or of events (``services.catalogue`` / ``services.events``: the API's)."""

    file = forms.FileField(
        label="CSV or JSONL file", widget=forms.ClearableFileInput(attrs={"accept": ".csv,.jsonl,.ndjson"})
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not (upload.name or "").lower().endswith((".csv", ".jsonl", ".ndjson")):
            raise forms.ValidationError("Upload a .csv or .jsonl file.")
        return upload


class TrainForm(forms.Form):
    """A training job with the API's default settings of the chosen method (``POST /api/recommender/train``
    with ``{"config": {"method": ...}}``)."""

    method = forms.ChoiceField(
        choices=[
            ("ease", f"{METHOD_LABELS['ease']} (the API's default)"),
            ("popularity", f"{METHOD_LABELS['popularity']} (seconds)"),
            ("hybrid", f"{METHOD_LABELS['hybrid']} (EASE, co-visitation, text; slower)"),
        ],
        initial="ease",
    )
