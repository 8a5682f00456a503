from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "core.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from core.billing.meters import register_stock_counter
        from core.billing.models import Meter, Plan, PlanLimit, Subscription
        from core.tenancy.models import Invitation, Membership
        from core.tenancy.services import api_key_cache_clear

        def forget_cached_keys(**_kwargs) -> None:
            # a cached key carries its organisation's subscription and plan limits: a change to them is seen
            # by this process's next request (other processes within the cache's TTL)
            api_key_cache_clear()

        for model in (Subscription, Plan, PlanLimit):
            uid = f"api-keys-forget-{model.__name__}"
            post_save.connect(forget_cached_keys, sender=model, weak=False, dispatch_uid=uid)
            post_delete.connect(forget_cached_keys, sender=model, weak=False, dispatch_uid=f"{uid}-deleted")

        def seats(organisation) -> int:
            members = Membership.objects.for_org(organisation).count()
            pending = Invitation.objects.for_org(organisation).filter(
                accepted_at__isnull=True, revoked_at__isnull=True
            )
            return members + pending.count()

        register_stock_counter(Meter.SEATS, "members and pending invitations", seats)
