"""``{% branding_form_for bot as branding_form %}``: the widget's branding form filled from the bot's
settings, for the set-up page's branding section (it posts to the branding page, which owns the form)."""

from django import template

from customer_service.forms import BrandingForm

register = template.Library()


@register.simple_tag
def branding_form_for(bot) -> BrandingForm:
    from customer_service.views import branding_initial

    return BrandingForm(initial=branding_initial(bot))
