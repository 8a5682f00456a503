"""Users, organisations (with their trial subscription and an owner), memberships and API keys."""

import factory

from core.billing import services as billing
from core.tenancy import services as tenancy
from core.tenancy.models import ApiKey, Membership, Organisation, Role, User
from tests.conftest import PASSWORD, _ensure_plans
from tests.factories import TenantFactory


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@factory.example.com")
    username = factory.SelfAttribute("email")
    first_name = ""
    password = factory.django.Password(PASSWORD)


class OrganisationFactory(factory.django.DjangoModelFactory):
    """An organisation as sign-up leaves it: a trial subscription and one owner (``owner_of`` finds them)."""

    class Meta:
        model = Organisation
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Factory Org {n}")
    slug = factory.Sequence(lambda n: f"factory-org-{n}")
    owner = factory.RelatedFactory(
        "tests.factories.tenancy.MembershipFactory", factory_related_name="organisation", role=Role.OWNER
    )

    @factory.post_generation
    def subscription(obj, create, extracted, **kwargs):
        if create:
            _ensure_plans()  # a transactional test truncated the seeded plans
            billing.subscription_start_trial(organisation=obj)


class MembershipFactory(TenantFactory):
    class Meta:
        model = Membership

    organisation = factory.SubFactory(OrganisationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.VIEWER


def owner_of(organisation: Organisation) -> User:
    return Membership.all_tenants.select_related("user").get(organisation=organisation, role=Role.OWNER).user


def organisation_with_owner(**fields) -> tuple[Organisation, User]:
    """``(organisation, owner)``, like the ``make_org`` fixture."""
    organisation = OrganisationFactory(**fields)
    return organisation, owner_of(organisation)


class ApiKeyFactory(TenantFactory):
    """A key made by ``api_key_create`` (hashed, audited); the secret, shown once, is on ``key.secret``."""

    class Meta:
        model = ApiKey

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"factory key {n}")
    scopes = ("read",)
    created_by = None

    @classmethod
    def _create(cls, model_class, *args, scopes, **kwargs):
        key, secret = tenancy.api_key_create(scopes=list(scopes), **kwargs)
        key.secret = secret
        return key
