"""The recommender pages' forms: they check what a page is asked and hand plain values to the services."""

from django import forms


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=120)
    version_a = forms.TypedChoiceField(coerce=int, label="Version A")
    version_b = forms.TypedChoiceField(coerce=int, label="Version B")
    share_b = forms.FloatField(min_value=0.01, max_value=0.99, initial=0.5, label="Share of users on B")
    window_hours = forms.IntegerField(min_value=1, max_value=720, initial=24, label="Feedback window (hours)")

    def __init__(self, *args, versions: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choices = [(v.pk, f"v{v.version} {v.method} ({v.status})") for v in versions]
        self.fields["version_a"].choices = choices
        self.fields["version_b"].choices = choices
