from django import forms


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


class TemplateForm(forms.Form):
    intent = forms.CharField(max_length=100)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Answer", max_length=4000)


class ArticleForm(forms.Form):
    title = forms.CharField(max_length=200)
    url = forms.URLField(required=False, label="Link (optional)", assume_scheme="https")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=100_000)
