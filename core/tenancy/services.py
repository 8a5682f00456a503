"""Writes for tenancy: sign-up, members, invitations and API keys.

Every function takes the organisation explicitly, validates, and owns its transaction. Role
checks about *who may call* live at the edge; rules about *what may happen* (last owner, seat
limits, expiry) live here.
"""

import hashlib
import secrets
import threading
import time
from datetime import datetime, timedelta

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from core.billing import services as billing
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, TrellisError
from core.privacy.audit import Action, audit_record
from core.tenancy.models import ApiKey, Invitation, Membership, Organisation, Role, User
from core.tenancy.roles import SCOPES, role_outranks

INVITATION_TTL = timedelta(days=7)
KEY_PREFIX = "trl_"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "org"
    slug, n = base, 1
    while Organisation.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organisation_sign_up(*, organisation_name: str, email: str, password: str) -> tuple[Organisation, User]:
    """Create an organisation, its owner and a trial subscription."""
    email = email.strip().lower()
    organisation_name = organisation_name.strip()
    if not organisation_name:
        raise InvalidInput("An organisation name is required.", details={"field": "organisation_name"})
    if User.objects.filter(email=email).exists():
        raise Conflict("An account with this e-mail already exists.", details={"field": "email"})
    user = User(username=email, email=email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), details={"field": "password"})
    user.set_password(password)
    user.save()
    organisation = Organisation.objects.create(name=organisation_name, slug=_unique_slug(organisation_name))
    Membership.all_tenants.create(organisation=organisation, user=user, role=Role.OWNER)
    billing.subscription_start_trial(organisation=organisation)
    return organisation, user


def _owner_count(organisation: Organisation) -> int:
    return Membership.objects.for_org(organisation).filter(role=Role.OWNER).count()


@transaction.atomic
def membership_change_role(
    *, organisation: Organisation, actor_role: str, membership_id: int, role: str, actor: object = None
) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role '{role}'. Choose one of: {', '.join(Role.values)}.")
    membership = Membership.objects.for_org(organisation).select_for_update().filter(pk=membership_id).first()
    if membership is None:
        raise NotFound("No such member.")
    if not role_outranks(actor_role, membership.role) or not role_outranks(actor_role, role):
        raise Forbidden("Only an owner can grant or change the owner role.")
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(organisation) == 1:
        raise Conflict("An organisation must keep at least one owner.")
    previous, membership.role = membership.role, role
    membership.save(update_fields=["role", "updated_at"])
    if previous != role:
        audit_record(
            organisation=organisation,
            action=Action.MEMBER_ROLE_CHANGE,
            actor=actor,
            target=f"member:{membership.pk}",
            details={"from": previous, "to": role},
        )
    return membership


@transaction.atomic
def membership_remove(
    *, organisation: Organisation, actor_role: str, membership_id: int, actor: object = None
) -> None:
    membership = Membership.objects.for_org(organisation).select_for_update().filter(pk=membership_id).first()
    if membership is None:
        raise NotFound("No such member.")
    if not role_outranks(actor_role, membership.role):
        raise Forbidden("Only an owner can remove an owner.")
    if membership.role == Role.OWNER and _owner_count(organisation) == 1:
        raise Conflict("An organisation must keep at least one owner.")
    membership.delete()
    audit_record(
        organisation=organisation,
        action=Action.MEMBER_REMOVE,
        actor=actor,
        target=f"member:{membership_id}",
        details={"role": membership.role},
    )


@transaction.atomic
def invitation_create(
    *, organisation: Organisation, actor: User, actor_role: str, email: str, role: str
) -> tuple[Invitation, str]:
    """Invite someone by e-mail. Returns the invitation and its one-time token (for the link)."""
    email = email.strip().lower()
    if role not in Role.values:
        raise InvalidInput(f"Unknown role '{role}'. Choose one of: {', '.join(Role.values)}.")
    if not role_outranks(actor_role, role):
        raise Forbidden("Only an owner can invite another owner.")
    if Membership.objects.for_org(organisation).filter(user__email=email).exists():
        raise Conflict(f"{email} is already a member.")
    billing.seats_check(organisation=organisation, adding=1)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.all_tenants.create(
        organisation=organisation,
        email=email,
        role=role,
        token_hash=_hash(token),
        invited_by=actor,
        expires_at=timezone.now() + INVITATION_TTL,
    )
    return invitation, token


def invitation_send(*, invitation: Invitation, token: str, accept_url: str) -> None:
    from django.core.mail import send_mail

    send_mail(
        subject=f"You are invited to {invitation.organisation.name} on Trellis",
        message=f"You have been invited as {invitation.role}. Accept within 7 days: {accept_url}",
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_by_token(*, token: str) -> Invitation:
    invitation = Invitation.all_tenants.select_related("organisation").filter(token_hash=_hash(token)).first()
    if invitation is None or invitation.revoked_at or invitation.accepted_at:
        raise NotFound("This invitation is not valid (unknown, used or revoked).")
    if invitation.expires_at <= timezone.now():
        raise InvalidInput("This invitation has expired; ask for a new one.")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    invitation = invitation_by_token(token=token)
    if user.email.lower() != invitation.email:
        raise Forbidden(f"This invitation is for {invitation.email}; sign in with that address.")
    organisation = invitation.organisation
    if Membership.objects.for_org(organisation).filter(user=user).exists():
        raise Conflict("You are already a member of this organisation.")
    billing.seats_check(organisation=organisation, adding=1, pending_invitation=True)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at", "updated_at"])
    return Membership.all_tenants.create(organisation=organisation, user=user, role=invitation.role)


@transaction.atomic
def invitation_accept_new_user(*, token: str, password: str) -> tuple[Membership, User]:
    invitation = invitation_by_token(token=token)
    if User.objects.filter(email=invitation.email).exists():
        raise Conflict("An account with this e-mail exists: sign in to accept.")
    user = User(username=invitation.email, email=invitation.email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), details={"field": "password"})
    user.set_password(password)
    user.save()
    return invitation_accept(token=token, user=user), user


def invitation_revoke(*, organisation: Organisation, invitation_id: int) -> None:
    updated = (
        Invitation.objects.for_org(organisation)
        .filter(pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True)
        .update(revoked_at=timezone.now())
    )
    if not updated:
        raise NotFound("No such pending invitation.")


def api_key_create(
    *,
    organisation: Organisation,
    created_by: User | None,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key. The full secret is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A key needs a name.", details={"field": "name"})
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            f"Unknown or missing scopes {unknown}; choose from {', '.join(SCOPES)}.",
            details={"field": "scopes"},
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", details={"field": "expires_at"})
    for _ in range(5):
        prefix = KEY_PREFIX + secrets.token_hex(4)
        secret = f"{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.all_tenants.create(
                    organisation=organisation,
                    name=name,
                    prefix=prefix,
                    secret_hash=_hash(secret),
                    scopes=sorted(set(scopes)),
                    created_by=created_by,
                    expires_at=expires_at,
                )
                audit_record(
                    organisation=organisation,
                    action=Action.API_KEY_CREATE,
                    actor=created_by,
                    target=f"api_key:{key.pk}",
                    details={"name": name, "prefix": prefix, "scopes": key.scopes},
                )
            return key, secret
        except IntegrityError:
            continue
    raise Conflict("Could not allocate a unique key prefix; try again.")


@transaction.atomic
def api_key_revoke(*, organisation: Organisation, key_id: int, actor: object = None) -> ApiKey:
    key = ApiKey.objects.for_org(organisation).filter(pk=key_id).first()
    if key is None:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at", "updated_at"])
        api_key_cache_clear()
        audit_record(
            organisation=organisation,
            action=Action.API_KEY_REVOKE,
            actor=actor,
            target=f"api_key:{key.pk}",
            details={"name": key.name, "prefix": key.prefix},
        )
    return key


# The hot path resolves keys from a per-process cache: secret hash -> the key, its organisation (and the
# subscription remembered on it). Another process sees a revocation, expiry or plan change within the TTL;
# this process drops the cache when it revokes a key. When an entry expires, one thread refreshes it while
# the others go on with the entry they had for the few milliseconds the refresh takes: under load, every
# serving thread used to find the entry expired at the same moment and read the key, the subscription and
# the plan's limits from the database at once.
KEY_CACHE_TTL_S = 1.0
_key_cache: dict[str, tuple[float, ApiKey]] = {}
_key_cache_lock = threading.Lock()
_key_refreshing: set[str] = set()


def api_key_authenticate_cached(*, secret: str) -> ApiKey:
    """``api_key_authenticate`` through the per-process cache (at most one lookup per key per TTL).

    The refreshing thread also reads the organisation's subscription and its plan's limits (remembered on
    the cached organisation) before the entry is published, so that serving threads read nothing.
    """
    digest, now = _hash(secret), time.monotonic()
    hit = _key_cache.get(digest)
    if hit is not None and hit[0] > now:
        expires_at = hit[1].expires_at
        if expires_at is None or expires_at > timezone.now():
            return hit[1]
        with _key_cache_lock:  # expired while cached: the lookup below says so
            _key_cache.pop(digest, None)
        hit = None
    with _key_cache_lock:
        if hit is not None and digest in _key_refreshing:
            return hit[1]  # being refreshed by another thread
        _key_refreshing.add(digest)
    try:
        try:
            key = api_key_authenticate(secret=secret)
        except TrellisError:
            with _key_cache_lock:
                _key_cache.pop(digest, None)
            raise
        billing.subscription_for(organisation=key.organisation).plan.limits()
        with _key_cache_lock:
            if len(_key_cache) > 10_000:
                _key_cache.clear()
            _key_cache[digest] = (time.monotonic() + KEY_CACHE_TTL_S, key)
        return key
    finally:
        with _key_cache_lock:
            _key_refreshing.discard(digest)


def api_key_is_cached(*, secret: str) -> bool:
    hit = _key_cache.get(_hash(secret))
    return hit is not None and hit[0] > time.monotonic()


def api_key_cache_clear() -> None:
    with _key_cache_lock:
        _key_cache.clear()


def api_key_authenticate(*, secret: str) -> ApiKey:
    """Resolve a presented secret to a live key, or raise Forbidden-style errors with the reason."""
    key = ApiKey.all_tenants.select_related("organisation").filter(secret_hash=_hash(secret)).first()
    if key is None:
        raise InvalidInput("Invalid API key.")
    if key.revoked_at is not None:
        raise InvalidInput("This API key has been revoked.")
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise InvalidInput("This API key has expired.")
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 30:
        ApiKey.all_tenants.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
