from django import forms

from core.tenancy.models import Role
from core.tenancy.roles import scope_choices


class SignUpForm(forms.Form):
    organisation_name = forms.CharField(max_length=120, label="Organisation")
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)


class AcceptInvitationForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80)
    scopes = forms.MultipleChoiceField(
        choices=scope_choices,  # a callable: the products are registered by the time a form is built
        widget=forms.CheckboxSelectMultiple,
        initial=["read"],
    )
    expires_at = forms.DateTimeField(required=False, help_text="Optional, e.g. 2027-01-31 00:00")


class PlanForm(forms.Form):
    plan = forms.CharField(max_length=32)
