"""The finance monitor pages' forms: they validate what a page is asked (filters, chart choices, an
analyst's correction) and hand plain values to the selectors and services."""

from django import forms

from finance_monitor.models import Sentiment
from finance_monitor.services.dashboard import SPANS, ChartTarget


class ChartForm(forms.Form):
    series = forms.ChoiceField(required=False)
    granularity = forms.ChoiceField(choices=[("hour", "Hour"), ("day", "Day")], required=False)
    span = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)

    def __init__(self, *args, targets: list[ChartTarget], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.targets = {t.value: t for t in targets}
        self.fields["series"].choices = [(t.value, t.label) for t in targets]
        spans = sorted({s for values in SPANS.values() for s in values})
        self.fields["span"].choices = [(s, str(s)) for s in spans]

    def clean(self):
        data = super().clean()
        granularity = data.get("granularity") or "hour"
        span = data.get("span") or SPANS[granularity][0]
        if span not in SPANS[granularity]:
            allowed = ", ".join(str(s) for s in SPANS[granularity])
            self.add_error("span", f"With {granularity} buckets the span is one of: {allowed}.")
        data.update(granularity=granularity, span=span, target=self.targets.get(data.get("series") or "all"))
        return data


class DocumentFilterForm(forms.Form):
    """The drill-down's filters (the same as the API's document list) and the page."""

    q = forms.CharField(required=False, max_length=200, label="Text")
    topic = forms.ChoiceField(required=False)
    sentiment = forms.ChoiceField(required=False, choices=[("", "any")] + list(Sentiment.choices))
    source = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    entity = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Watch-list")
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    alert = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    copies = forms.ChoiceField(
        required=False,
        label="Copies",
        choices=[("hide", "hide"), ("show", "show"), ("only", "only copies")],
    )
    copy_of = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, topics: list[str], sources: list, entities: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topic"].choices = [("", "any")] + [(t, t) for t in topics]
        self.fields["source"].choices = [("", "any")] + [(s.pk, s.name) for s in sources]
        self.fields["entity"].choices = [("", "any")] + [(e.pk, e.name) for e in entities]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            self.add_error("until", "The end of the time range must come after its start.")
        return data

    def selector_filters(self) -> dict:
        """The keyword arguments of ``selectors.document_list`` (call after ``is_valid``)."""
        data = self.cleaned_data
        return {
            "q": data.get("q") or "",
            "topic": data.get("topic") or "",
            "sentiment": data.get("sentiment") or "",
            "source_id": data.get("source"),
            "entity_id": data.get("entity"),
            "since": data.get("since"),
            "until": data.get("until"),
            "alert_id": data.get("alert"),
            "copies": data.get("copies") or "hide",
            "copy_of": data.get("copy_of"),
        }


class CorrectionForm(forms.Form):
    topic = forms.ChoiceField(required=False)
    sentiment = forms.ChoiceField(required=False, choices=[("", "unchanged")] + list(Sentiment.choices))
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, topics: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topic"].choices = [("", "unchanged")] + [(t, t) for t in topics]

    def clean(self):
        data = super().clean()
        if not data.get("topic") and not data.get("sentiment"):
            raise forms.ValidationError("Choose a topic, a sentiment or both.")
        return data
