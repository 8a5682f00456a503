from django.contrib import admin

from core.billing.models import MeterDefinition, Plan, PlanLimit, Subscription, UsageEvent


class PlanLimitInline(admin.TabularInline):
    model = PlanLimit
    extra = 0


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "price_cents", "requests_per_minute")
    inlines = [PlanLimitInline]


@admin.register(MeterDefinition)
class MeterDefinitionAdmin(admin.ModelAdmin):
    list_display = ("code", "kind", "unit", "label")


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
