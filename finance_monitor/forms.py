"""The finance monitor pages' forms: they validate what a page is asked (filters, chart choices, an
analyst's correction, a file of documents, a watch-list entry, a feed, an alert rule) and hand plain values
to the selectors and services (which check again: the API's rules)."""

from django import forms

from finance_monitor.models import AlertTarget, EntityKind, Granularity, Sentiment
from finance_monitor.services.alerts import MAX_RECIPIENTS
from finance_monitor.services.dashboard import SPANS, ChartTarget
from finance_monitor.services.feeds import MIN_POLL_INTERVAL_S
from finance_monitor.services.uploads import MAX_UPLOAD_BYTES


class ChartForm(forms.Form):
    series = forms.ChoiceField(required=False)
    granularity = forms.ChoiceField(choices=[("hour", "Hour"), ("day", "Day")], required=False)
    span = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)

    def __init__(self, data=None, *args, targets: list[ChartTarget], **kwargs) -> None:
        if data is not None and not (data.get("granularity") and data.get("span")):
            # what the chart draws without a choice, shown as chosen (a select shows its first option else)
            data = data.copy()
            granularity = data.get("granularity") or "hour"
            data["granularity"] = granularity
            data["span"] = data.get("span") or str(SPANS.get(granularity, SPANS["hour"])[0])
        super().__init__(data, *args, **kwargs)
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


class UploadForm(forms.Form):
    """A CSV or JSONL file of documents (``services.uploads``: the API's upload)."""

    file = forms.FileField(
        label="CSV or JSONL file",
        help_text="Columns or keys: text (required), title, url, author, language, published_at, id.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.jsonl,.ndjson"}),
    )
    source = forms.CharField(
        max_length=120, required=False, label="Source name", help_text="Default: Uploads."
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
        if not (upload.name or "").lower().endswith((".csv", ".jsonl", ".ndjson")):
            raise forms.ValidationError("Upload a .csv or .jsonl file.")
        return upload


class EntityForm(forms.Form):
    """A watch-list entry (``services.entities.entity_save``: the API's)."""

    kind = forms.ChoiceField(choices=EntityKind.choices, initial=EntityKind.COMPANY)
    name = forms.CharField(max_length=200)
    ticker = forms.CharField(
        max_length=13, required=False, help_text="For example AAPL (a ticker needs one)."
    )
    aliases = forms.CharField(
        max_length=2000, required=False, help_text="Other names it goes by, separated by commas (at most 50)."
    )

    def clean_aliases(self):
        aliases = [a.strip() for a in self.cleaned_data["aliases"].split(",") if a.strip()]
        if len(aliases) > 50:
            raise forms.ValidationError(f"At most 50 aliases ({len(aliases)} given).")
        if any(len(a) > 200 for a in aliases):
            raise forms.ValidationError("An alias has at most 200 characters.")
        return aliases


class FeedForm(forms.Form):
    """An RSS/Atom feed to poll (``services.feeds.feed_create``: the API's, with its address checks)."""

    name = forms.CharField(max_length=120)
    feed_url = forms.URLField(max_length=2000, label="Feed address", assume_scheme="https")
    poll_interval_s = forms.IntegerField(
        min_value=MIN_POLL_INTERVAL_S, max_value=7 * 86400, initial=900, label="Poll every (seconds)"
    )


class AlertRuleForm(forms.Form):
    """A new alert rule (``services.alerts.alert_rule_save``: the API's, which checks the target, the
    webhook's address and the recipients again). The limits are the API's (``RuleIn``)."""

    name = forms.CharField(max_length=120)
    target = forms.ChoiceField(choices=AlertTarget.choices, initial=AlertTarget.ALL, label="Watch")
    topic = forms.CharField(max_length=100, required=False, help_text="For a topic rule.")
    entity = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        label="Watch-list entry",
        help_text="For a watch-list rule.",
    )
    granularity = forms.ChoiceField(choices=Granularity.choices, initial=Granularity.HOUR, label="Buckets")
    baseline_buckets = forms.IntegerField(
        min_value=6,
        max_value=2000,
        initial=168,
        label="Baseline (buckets)",
        help_text="The past it compares with.",
    )
    min_volume = forms.IntegerField(
        min_value=1, max_value=1_000_000, initial=30, label="Minimum documents in a bucket"
    )
    significance = forms.FloatField(
        min_value=1e-12,
        max_value=0.2,
        initial=0.002,
        help_text="The chance that one evaluation of a flat stream fires.",
    )
    test_share = forms.BooleanField(required=False, initial=True, label="Test the negative share")
    test_volume = forms.BooleanField(required=False, initial=False, label="Test the volume")
    cooldown_s = forms.IntegerField(
        min_value=0, max_value=30 * 86400, initial=6 * 3600, label="Quiet time after an alert (seconds)"
    )
    email_recipients = forms.CharField(
        max_length=6000,
        required=False,
        label="E-mail recipients",
        help_text=f"Separated by commas (at most {MAX_RECIPIENTS}).",
    )
    webhook_url = forms.URLField(
        max_length=2000, required=False, assume_scheme="https", label="Webhook address"
    )

    def __init__(self, *args, entities: list, topics: list[str] | tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["entity"].choices = [("", "none")] + [(e.pk, e.name) for e in entities]
        if topics:  # the topic model's topics to pick from (a rule on another topic could never fire)
            choices = [("", "none")] + [(t, t) for t in topics]
            self.fields["topic"] = forms.ChoiceField(
                choices=choices, required=False, help_text="For a topic rule."
            )

    def clean_email_recipients(self):
        recipients = [r.strip() for r in self.cleaned_data["email_recipients"].split(",") if r.strip()]
        if len(recipients) > MAX_RECIPIENTS:
            raise forms.ValidationError(
                f"At most {MAX_RECIPIENTS} e-mail recipients ({len(recipients)} given)."
            )
        for address in recipients:
            try:
                forms.EmailField().clean(address)
            except forms.ValidationError as exc:
                raise forms.ValidationError(f"Not an e-mail address: {address!r}.") from exc
        return recipients

    def service_fields(self) -> dict:
        """The keyword arguments of ``alerts.alert_rule_save`` (call after ``is_valid``)."""
        fields = dict(self.cleaned_data)
        fields["entity_id"] = fields.pop("entity")
        return fields
