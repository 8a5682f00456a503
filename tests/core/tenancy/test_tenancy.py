from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, QuotaExceeded, TenantScopeError
from core.tenancy import services as tenancy
from core.tenancy.models import ApiKey, Invitation, Membership, Role, User

pytestmark = pytest.mark.django_db


def test_sign_up_creates_org_owner_and_trial(make_org):
    org, user = make_org("Acme")
    membership = Membership.objects.for_org(org).get(user=user)
    assert membership.role == Role.OWNER
    assert org.slug == "acme"
    from core.billing.services import subscription_for

    sub = subscription_for(organisation=org)
    assert sub.plan.code == "trial" and sub.status == "trialing"
    assert timedelta(days=13) < sub.trial_ends_at - timezone.now() <= timedelta(days=14)


def test_sign_up_rejects_duplicate_email_and_weak_password(make_org):
    _, user = make_org()
    with pytest.raises(Conflict):
        tenancy.organisation_sign_up(
            organisation_name="X", email=user.email.upper(), password="a-long-pass-123"
        )
    with pytest.raises(InvalidInput, match="too short|too common"):
        tenancy.organisation_sign_up(organisation_name="X", email="new@example.com", password="abc")
    assert not User.objects.filter(email="new@example.com").exists()


def test_tenant_manager_fails_closed(make_org):
    with pytest.raises(TenantScopeError):
        list(Membership.objects.all())
    with pytest.raises(TenantScopeError):
        Membership.objects.for_org(None)


def test_invitation_flow_and_roles(make_org):
    org, owner = make_org()
    invitation, token = tenancy.invitation_create(
        organisation=org, actor=owner, actor_role=Role.OWNER, email="Op@Example.com", role=Role.OPERATOR
    )
    tenancy.invitation_send(invitation=invitation, token=token, accept_url=f"http://x/invitations/{token}/")
    assert token in mail.outbox[-1].body
    membership, user = tenancy.invitation_accept_new_user(token=token, password="another-good-pass-42")
    assert membership.role == Role.OPERATOR and user.email == "op@example.com"
    with pytest.raises(NotFound):
        tenancy.invitation_accept_new_user(token=token, password="another-good-pass-42")


def test_expired_and_revoked_invitations_are_refused(make_org):
    org, owner = make_org()
    inv, token = tenancy.invitation_create(
        organisation=org, actor=owner, actor_role=Role.OWNER, email="a@example.com", role=Role.VIEWER
    )
    Invitation.objects.for_org(org).filter(pk=inv.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="expired"):
        tenancy.invitation_by_token(token=token)
    inv2, token2 = tenancy.invitation_create(
        organisation=org, actor=owner, actor_role=Role.OWNER, email="b@example.com", role=Role.VIEWER
    )
    tenancy.invitation_revoke(organisation=org, invitation_id=inv2.pk)
    with pytest.raises(NotFound):
        tenancy.invitation_by_token(token=token2)


def test_admin_cannot_create_or_demote_owner_and_last_owner_stays(make_org, make_member):
    org, owner = make_org()
    admin = make_member(org, Role.ADMIN)
    with pytest.raises(Forbidden):
        tenancy.invitation_create(
            organisation=org, actor=admin, actor_role=Role.ADMIN, email="z@x.com", role=Role.OWNER
        )
    owner_m = Membership.objects.for_org(org).get(user=owner)
    with pytest.raises(Forbidden):
        tenancy.membership_change_role(
            organisation=org, actor_role=Role.ADMIN, membership_id=owner_m.pk, role=Role.VIEWER
        )
    with pytest.raises(Conflict, match="at least one owner"):
        tenancy.membership_change_role(
            organisation=org, actor_role=Role.OWNER, membership_id=owner_m.pk, role=Role.ADMIN
        )
    with pytest.raises(InvalidInput, match="Unknown role"):
        tenancy.membership_change_role(
            organisation=org, actor_role=Role.OWNER, membership_id=owner_m.pk, role="god"
        )
    owner_m.refresh_from_db()
    assert owner_m.role == Role.OWNER


def test_seat_limit_counts_pending_invitations(make_org):
    org, owner = make_org()  # trial: 3 seats
    for n in range(2):
        tenancy.invitation_create(
            organisation=org, actor=owner, actor_role=Role.OWNER, email=f"s{n}@example.com", role=Role.VIEWER
        )
    with pytest.raises(QuotaExceeded) as exc:
        tenancy.invitation_create(
            organisation=org, actor=owner, actor_role=Role.OWNER, email="s9@example.com", role=Role.VIEWER
        )
    assert exc.value.meter == "seats" and exc.value.limit == 3
    assert Invitation.objects.for_org(org).count() == 2


def test_api_key_secret_shown_once_hashed_and_revocable(make_org):
    org, owner = make_org()
    key, secret = tenancy.api_key_create(
        organisation=org, created_by=owner, name="ci", scopes=["read", "predict"]
    )
    stored = ApiKey.objects.for_org(org).get(pk=key.pk)
    assert secret.startswith(stored.prefix + "_")
    assert secret not in (stored.secret_hash, stored.prefix) and len(stored.secret_hash) == 64
    assert tenancy.api_key_authenticate(secret=secret).pk == key.pk
    stored.refresh_from_db()
    assert stored.last_used_at is not None
    tenancy.api_key_revoke(organisation=org, key_id=key.pk)
    with pytest.raises(InvalidInput, match="revoked"):
        tenancy.api_key_authenticate(secret=secret)


def test_api_key_validation(make_org):
    org, owner = make_org()
    with pytest.raises(InvalidInput, match="scopes"):
        tenancy.api_key_create(organisation=org, created_by=owner, name="x", scopes=["root"])
    with pytest.raises(InvalidInput, match="future"):
        tenancy.api_key_create(
            organisation=org, created_by=owner, name="x", scopes=["read"], expires_at=timezone.now()
        )
    key, secret = tenancy.api_key_create(
        organisation=org,
        created_by=owner,
        name="x",
        scopes=["read"],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    ApiKey.objects.for_org(org).filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="expired"):
        tenancy.api_key_authenticate(secret=secret)
