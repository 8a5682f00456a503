from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "core.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from core.billing.meters import register_stock_counter
        from core.billing.models import Meter
        from core.tenancy.models import Invitation, Membership

        def seats(organisation) -> int:
            members = Membership.objects.for_org(organisation).count()
            pending = Invitation.objects.for_org(organisation).filter(
                accepted_at__isnull=True, revoked_at__isnull=True
            )
            return members + pending.count()

        register_stock_counter(Meter.SEATS, "members and pending invitations", seats)
