from django.contrib import admin

from core.billing.models import Plan, Subscription, UsageEvent


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "price_cents", "predictions_per_month", "requests_per_minute")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("organisation", "plan", "status", "trial_ends_at")


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    list_display = ("organisation", "meter", "quantity", "api_key", "created_at")
    list_filter = ("meter",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
