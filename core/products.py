"""The product contract: what a vertical declares once, in its own app, to plug into the platform.

Each product (an app in ``INSTALLED_APPS``, the one list of products) builds one frozen ``Product`` and
calls ``register_product(...)`` from its ``AppConfig.ready``. Core reads this registry and names no product:

- ``core.urls`` mounts the product's pages under ``/<url_prefix>/`` and its API under ``/api/<url_prefix>/``;
- ``core.routing`` adds its websocket routes (``websocket_urlpatterns`` for members, same-origin with the
  session; ``public_websocket_urlpatterns`` for embeddable widgets: any origin, no session);
- the navigation (``templates/base.html``) and the dashboard show its ``nav`` entries and ``cards``;
- ``core.tenancy.roles`` and ``core.api.permissions`` merge the role permissions it adds (with the API-key
  scope that grants each to a machine) and what each role may do in it (the members page);
- its ``beat`` entries join Celery beat's schedule, its ``job_kinds`` the job registry (``core.jobs``);
- ``seed_demo`` runs its ``demo_seeder``; the model registry accepts models for it (``app`` = its name)
  and reads the ``model_tasks`` it trains (defaults of the train and predict commands, the datasets page).

- its ``onboarding`` (organisation -> ``OnboardingStep``s, each done or not from the database, with where to
  do it) puts the first step not done on the dashboard as the organisation's next step;
- its ``meters`` (``MeterSpec``: code, flow or stock, unit, label, default limit on each plan, and the counter
  of a stock meter) join the billing registry (``core.billing.meters``): the usage page and API list them,
  ``quota_check``/``metered`` enforce them, and ``migrate`` mirrors them into the meter table.

``owned_models`` names the product's tables (``"<app_label>.<Model>"``, parents before children): the
organisation's export writes their rows, an import re-creates them with ids remapped, and deleting the
organisation removes them (``core.privacy``), so a product added later is covered without a core edit.
Foreign keys are remapped by the import itself; a product that keeps a row's id anywhere else (a text
column) declares ``import_remap``, called in the import's transaction with the new organisation and, per
table, old id -> new id.

Registration happens once per process, while Django starts; ``products()`` lists them in ``INSTALLED_APPS``
order, which is the order of the navigation and the dashboard.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from core.billing.meters import MeterSpec, register_meter
from core.celery import app as celery_app
from core.jobs.handlers import JobKind, register_job_kind
from core.ml.textforms import AS_GIVEN, TextForm, register_text_form
from core.registry.kinds import kind_names
from core.tenancy.permissions import PERMISSIONS

# Paths core serves itself: a product's prefix may not shadow them.
RESERVED_PREFIXES = frozenset({"api", "admin", "accounts", "ws", "static", "media"})


@dataclass(frozen=True)
class NavEntry:
    """A link in the top navigation, shown to members whose role has ``permission`` (None: every member)."""

    label: str
    url_name: str  # reversed with no arguments: "<namespace>:<name>"
    permission: str | None = None


@dataclass(frozen=True)
class DashboardCard:
    """A card on the organisation's dashboard linking into the product."""

    title: str
    description: str
    url_name: str
    permission: str | None = None


@dataclass(frozen=True)
class ProductPermission:
    """A role permission the product adds beside core's (``core.tenancy.permissions.PERMISSIONS``)."""

    name: str  # "<area>.<verb>", distinct from core's and other products'
    roles: frozenset[str]  # core.tenancy.models.Role values
    scope: str | None  # the API-key scope that grants it to a machine (None: people only)


@dataclass(frozen=True)
class BeatEntry:
    """A periodic task, merged into Celery beat's schedule under ``name``."""

    name: str
    task: str  # the registered Celery task name
    schedule: float  # seconds
    queue: str = "default"  # one of core.jobs.queues.Queue

    def as_celery(self) -> dict[str, Any]:
        return {"task": self.task, "schedule": self.schedule, "options": {"queue": self.queue}}


# A model kind's name (core.registry.kinds): core registers "classifier" and "embedding"; a product may
# register its own kind before it registers itself. Checked against the kind registry at registration.
ModelKindName = str


@dataclass(frozen=True)
class ModelTask:
    """A model the product trains per organisation: ``ModelVersion(app=<product>, task=name)``."""

    name: str  # a task slug (core.registry.paths.TASK_PATTERN)
    kind: ModelKindName
    description: str = ""
    examples: str = "examples"  # what one training row is, in the job page's sentences ("questions")
    # where a person compares and sets this model's confidence thresholds, in words ("the set-up page"): the
    # model page sends them there when its confidence figures are rough; "" where the product has no such page
    threshold_page: str = ""
    # on_activate(organisation=, version=): called once the transaction that made a version of this task the
    # active one has committed (promotion, forced or automatic, and rollback): what the product rebuilds with
    # the new model (stored vectors of another model, for one); errors are logged, the activation stands
    on_activate: Callable[..., None] | None = None
    # what this task's models read of a text (``core.ml.textforms``): registered with the product; a version
    # trained from now on records its name and reads every text in it, wherever it is asked (None: as given)
    text_form: TextForm | None = None


class DemoLog(Protocol):
    """Where a demo seeder reports progress (the ``seed_demo`` command's output)."""

    def info(self, line: str) -> None: ...

    def error(self, line: str) -> None: ...


@dataclass(frozen=True)
class StepLink:
    """Where a new customer does an onboarding step: a link, or a button that POSTs ``fields``."""

    label: str
    url: str
    post: bool = False
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OnboardingStep:
    """One step of a product's checklist to a working set-up, done or not as its data says."""

    key: str
    title: str
    done: bool
    detail: str = ""
    links: tuple[StepLink, ...] = ()


@dataclass(frozen=True)
class FastCall:
    """One ordinary API-key call of a fast route: who calls, the query string and the path's groups."""

    organisation: Any
    api_key: Any
    params: Mapping[str, str]  # each query parameter's last value, as ``request.query_params.get`` reads it
    args: tuple[str | None, ...] = ()  # the groups of the route's pattern


@dataclass(frozen=True)
class FastRoute:
    """A hot GET endpoint of the product's API served below Django for an ordinary API-key call
    (``core.api.fast_routes``); the product's DRF view serves every other call, with the same ``answer``."""

    pattern: str  # a regular expression of the path after /api/<prefix>/, groups for its parts
    permission: str  # the permission the DRF view requires for GET (granted to a key by its scope)
    answer: Callable[[FastCall], dict[str, Any]]  # the JSON answer; raises TrellisError to refuse
    # the product meter an answer charges one of (``core.billing.streamed.metered_streamed``), reserved with
    # the call's admission and settled with its ledger line; None: the answer meters itself, if at all
    meter: str | None = None
    # ready(organisation) -> whether its calls are answered at once (what they read is loaded in this
    # process); a call it says no to (the first after a start: a cache to build, seconds) is served the same
    # way on a thread of its own (``core.api.fast_asgi``'s cold pool), so it does not hold the calls behind it
    ready: Callable[[Any], bool] | None = None


# onboarding(organisation=...) -> the product's checklist, in order (its page shows it; the dashboard its next
# step).
Onboarding = Callable[..., Sequence[OnboardingStep]]

# organisation, log -> one line saying what it added ("" if nothing); idempotent.
DemoSeeder = Callable[[Any, DemoLog], str]


@dataclass(frozen=True)
class Product:
    name: str  # the app label, also the ``app`` of its models and jobs
    display_name: str
    url_prefix: str  # pages at /<prefix>/, API at /api/<prefix>/
    urls: str | None = None  # page urlconf module; its ``app_name`` is the namespace nav entries name
    api_urls: str | None = None  # API urlconf module, mounted under /api/<prefix>/
    websocket_routes: str | None = None  # module with websocket_urlpatterns / public_websocket_urlpatterns
    nav: tuple[NavEntry, ...] = ()
    cards: tuple[DashboardCard, ...] = ()
    permissions: tuple[ProductPermission, ...] = ()
    # What each role may do in the product, one phrase per role (the members page lists it after core's).
    role_duties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # What an API key with each scope may do in the product, one phrase per scope (the API keys page lists it
    # after core's; a scope its permissions use without a phrase is described by their names).
    scope_duties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    beat: tuple[BeatEntry, ...] = ()
    job_kinds: tuple[JobKind, ...] = ()
    model_tasks: tuple[ModelTask, ...] = ()
    demo_seeder: DemoSeeder | None = None
    # Its tables, "<app_label>.<Model>", parents first: exported, imported and deleted with the organisation.
    owned_models: tuple[str, ...] = ()
    # import_remap(organisation=, ids={"<app_label>.<Model>": {old id: new id}}): ids outside foreign keys.
    import_remap: Callable[..., None] | None = None
    meters: tuple[MeterSpec, ...] = ()  # its meters and their default limits per plan code
    onboarding: Onboarding | None = None  # its checklist for a new organisation (the dashboard's next step)
    # warmup(): loads what its serving needs beyond the active model versions (which core warms itself), in
    # a web process's warm-up thread at start-up (core.registry.services.warmup); errors are logged.
    warmup: Callable[[], None] | None = None
    # version_in_use(organisation=, version=): a sentence saying what of this product still serves a model
    # version, or None; the registry refuses to archive a version that a product says is in use (409).
    version_in_use: Callable[..., str | None] | None = None
    # hot GET endpoints served below Django for an ordinary API-key call (core.api.fast_routes)
    fast_routes: tuple[FastRoute, ...] = ()


_PRODUCTS: dict[str, Product] = {}


def register_product(product: Product) -> None:
    """Called once from the product's ``AppConfig.ready``. Refuses a second, different declaration."""
    _check(product)
    if _PRODUCTS.get(product.name) == product:
        return
    for meter in product.meters:  # first: a clashing meter leaves the product unregistered
        register_meter(meter, owner=product.name)
    for task in product.model_tasks:  # so does a text form whose name another form took
        if task.text_form is not None:
            register_text_form(task.text_form)
    _PRODUCTS[product.name] = product
    for kind in product.job_kinds:
        register_job_kind(
            kind.name,
            queue=kind.queue,
            handler=kind.handler,
            metered=kind.metered,
            release=kind.release,
            describe=kind.describe,
        )
    if product.beat:
        _add_beat_entries(product.beat)


def _check(product: Product) -> None:
    if product.name not in {config.label for config in apps.get_app_configs()}:
        raise ImproperlyConfigured(f"Product '{product.name}' is not an installed app label.")
    unknown = sorted({t.kind for t in product.model_tasks} - set(kind_names()))
    if unknown:
        raise ImproperlyConfigured(
            f"Product '{product.name}' declares model tasks of unknown kind {unknown}; "
            f"registered kinds: {', '.join(kind_names())}."
        )
    formed = sorted(t.name for t in product.model_tasks if t.text_form is not None and t.kind != "classifier")
    if formed:  # the classifier kind trains and serves in a text form; the others read texts as given
        raise ImproperlyConfigured(
            f"Product '{product.name}' declares a text form on {formed}: only classifier tasks read one."
        )
    previous = _PRODUCTS.get(product.name)
    if previous is not None and previous != product:
        raise ImproperlyConfigured(f"Product '{product.name}' is declared twice.")
    if product.url_prefix in RESERVED_PREFIXES or "/" in product.url_prefix.strip("/"):
        raise ImproperlyConfigured(
            f"Product '{product.name}': URL prefix '{product.url_prefix}' is not allowed."
        )
    clash = {p.name for p in product.permissions} & set(PERMISSIONS)
    if clash:
        raise ImproperlyConfigured(f"Product '{product.name}' redefines core's permission {sorted(clash)}.")
    for other in _PRODUCTS.values():
        if other.name == product.name:
            continue
        if other.url_prefix == product.url_prefix:
            raise ImproperlyConfigured(f"Products '{other.name}' and '{product.name}' share a URL prefix.")
        taken = {p.name for p in other.permissions} & {p.name for p in product.permissions}
        if taken:
            raise ImproperlyConfigured(
                f"Permission {sorted(taken)} declared by '{other.name}' and '{product.name}'."
            )


def _add_beat_entries(entries: tuple[BeatEntry, ...]) -> None:
    """Beat reads ``app.conf.beat_schedule`` when its scheduler starts, after Django (and so every product)
    is set up: products' entries are laid over the settings' ``CELERY_BEAT_SCHEDULE`` (core's own)."""
    celery_app.conf.beat_schedule = {
        **celery_app.conf.beat_schedule,
        **{entry.name: entry.as_celery() for entry in entries},
    }


def products() -> list[Product]:
    """The registered products, in ``INSTALLED_APPS`` order."""
    apps.check_apps_ready()
    order = [config.label for config in apps.get_app_configs()]
    return sorted(_PRODUCTS.values(), key=lambda p: order.index(p.name) if p.name in order else len(order))


def product(name: str) -> Product | None:
    return _PRODUCTS.get(name)


def product_permissions() -> dict[str, ProductPermission]:
    return {perm.name: perm for p in products() for perm in p.permissions}


def model_task(app: str, task: str) -> ModelTask | None:
    """The declared model task ``task`` of product ``app`` (None: not declared)."""
    spec = _PRODUCTS.get(app)
    return next((t for t in spec.model_tasks if t.name == task), None) if spec else None


def text_form_name(app: str, task: str) -> str:
    """The name of the text form the product's models of ``task`` are trained to read ("": as given)."""
    declared = model_task(app, task)
    return declared.text_form.name if declared and declared.text_form else AS_GIVEN


def products_training(task: str) -> list[Product]:
    """The products that declare the model task ``task``."""
    return [p for p in products() if any(t.name == task for t in p.model_tasks)]


def model_tasks(kind: str | None = None) -> list[str]:
    """The model tasks the products declare (of one kind), each once, in product order."""
    names = (t.name for p in products() for t in p.model_tasks if kind is None or t.kind == kind)
    return list(dict.fromkeys(names))
