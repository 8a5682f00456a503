from django import forms

from customer_service.models import UncertainMode, WidgetPosition


class SettingsForm(forms.Form):
    bot_name = forms.CharField(max_length=60)
    greeting = forms.CharField(max_length=500)
    handoff_message = forms.CharField(max_length=500, label="Hand-off message")
    intent_threshold = forms.FloatField(
        min_value=0, max_value=1, help_text="Answer from a template at or above."
    )
    retrieval_threshold = forms.FloatField(
        min_value=0, max_value=1, help_text="Answer from an article at or above this similarity."
    )
    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sites that may embed the widget, one per line (https://shop.example.com); empty: any.",
    )
    grounded_answers = forms.BooleanField(
        required=False,
        label="Grounded answers",
        help_text="Write answers from the matching article passages only, with links to them; when they do "
        "not answer the question, say so and offer a person. Slower (a few seconds per answer).",
    )


class TemplateForm(forms.Form):
    intent = forms.CharField(max_length=100)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Answer", max_length=4000)


class ArticleForm(forms.Form):
    title = forms.CharField(max_length=200)
    url = forms.URLField(required=False, label="Link (optional)", assume_scheme="https")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=100_000)


class ConversingForm(forms.Form):
    uncertain_mode = forms.ChoiceField(
        choices=UncertainMode.choices,
        label="When the bot is not sure",
        widget=forms.RadioSelect,
        help_text="Below an intent's threshold, and no article fits.",
    )
    suggestion_floor = forms.FloatField(
        min_value=0,
        max_value=1,
        label="Suggest guesses from",
        help_text="Offer an intent as a suggestion when the model gives it at least this probability.",
    )
    rephrase_message = forms.CharField(max_length=500, label="Asking to rephrase")
    out_of_scope_check = forms.BooleanField(
        required=False,
        label="Hand on questions unlike the training examples",
        help_text="The threshold then compares the model's confidence capped by how much the question looks"
        " like the questions it was trained on. Best with a fine-tuned model trained on varied wordings;"
        " the table above then shows this rule's figures.",
    )


class ThresholdPickForm(forms.Form):
    threshold = forms.FloatField(min_value=0, max_value=1)


class OfficeHoursForm(forms.Form):
    """On/off, the time zone, and per weekday a start and an end (both empty: closed that day)."""

    office_hours_enabled = forms.BooleanField(
        required=False, label="Office hours on", help_text="Off: the team counts as available at any time."
    )
    timezone = forms.CharField(max_length=64, help_text="A time zone name, e.g. Europe/Berlin.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for day in range(7):
            for end in ("start", "end"):
                self.fields[f"{end}_{day}"] = forms.TimeField(
                    required=False, widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
                )

    def clean(self):
        data = super().clean()
        hours = {}
        for day in range(7):
            start, end = data.get(f"start_{day}"), data.get(f"end_{day}")
            if (start is None) != (end is None):
                self.add_error(f"start_{day}", "Give both a start and an end, or neither (closed).")
            elif start is not None and end is not None:
                hours[str(day)] = [start.strftime("%H:%M"), end.strftime("%H:%M")]
        data["office_hours"] = hours
        return data


class AnalyticsRangeForm(forms.Form):
    """The analytics page's date range (``from``/``to`` in the query string; both optional). The rules (a
    real date, from not after to, at most 366 days) are the service's: ``services.analytics``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, label in (("from", "From"), ("to", "To")):
            self.fields[name] = forms.CharField(
                required=False, max_length=40, label=label, widget=forms.DateInput(attrs={"type": "date"})
            )


class BrandingForm(forms.Form):
    """The widget's look. The colour and the avatar are checked by the service (``services.branding``):
    its refusals are shown on the field."""

    colour = forms.CharField(
        max_length=7,
        label="Colour",
        widget=forms.TextInput(attrs={"type": "color"}),
        help_text="The launcher, the header and the visitor's messages.",
    )
    bot_name = forms.CharField(max_length=60, label="Bot name")
    avatar = forms.FileField(
        required=False,
        label="Avatar",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
        help_text="A PNG, JPEG or WebP image, at most 1 MB and 2048x2048 pixels (shown at 128 pixels).",
    )
    remove_avatar = forms.BooleanField(required=False, label="Remove the avatar")
    position = forms.ChoiceField(choices=WidgetPosition.choices, label="Position")
    welcome_text = forms.CharField(
        max_length=200,
        required=False,
        label="Welcome text",
        help_text="Shown above the conversation when the chat opens.",
    )

    def __init__(self, *args, **kwargs):
        # its own element ids: the set-up page also shows the settings form, which has a bot_name too
        kwargs.setdefault("auto_id", "branding_%s")
        super().__init__(*args, **kwargs)
