"""Tenant-scoped reads for tenancy."""

from django.db.models import QuerySet

from core.tenancy.models import ApiKey, Invitation, Membership, Organisation, User


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.all_tenants.filter(user=user, organisation__deleted_at__isnull=True)
        .select_related("organisation")
        .order_by("created_at")
    )


def membership_for(*, organisation: Organisation, user: User) -> Membership | None:
    return Membership.objects.for_org(organisation).filter(user=user).first()


def member_list(*, organisation: Organisation) -> QuerySet[Membership]:
    return Membership.objects.for_org(organisation).select_related("user").order_by("created_at")


def member_get(*, organisation: Organisation, membership_id: int) -> Membership | None:
    return member_list(organisation=organisation).filter(pk=membership_id).first()


def invitation_list_pending(*, organisation: Organisation) -> QuerySet[Invitation]:
    return Invitation.objects.for_org(organisation).filter(accepted_at__isnull=True, revoked_at__isnull=True)


def api_key_list(*, organisation: Organisation) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_org(organisation).order_by("-created_at")


def api_key_get(*, organisation: Organisation, key_id: int) -> ApiKey | None:
    return api_key_list(organisation=organisation).filter(pk=key_id).first()
