"""What every chat message reads besides its conversation, cached per process behind ``core.generations``'
tokens: the bot's settings (the widget's socket checks its key and origin on every frame), the active intent
version and the active answer templates (the bot's rule). Each was one SQL statement per message, compiled by
the ORM (about a tenth of a message's CPU between them); with Redis a warm message reads one token set
instead, and every change is served from the next message after it commits: any write to ``BotSettings``
or ``AnswerTemplate`` bumps the scope (``changed``, connected to their saves and deletes in
``CustomerServiceConfig.ready``), and the registry bumps its own for model versions. Without Redis, or inside
a transaction, every read goes to the database, as before.

The cached rows are shared by the threads of a process: callers read them and never change them."""

from dataclasses import dataclass

from core.generations import GenerationCache, bump_for_row, in_redis
from core.registry.models import ModelVersion
from core.registry.services.common import active_version
from customer_service.models import AnswerTemplate, BotSettings
from customer_service.services.common import APP, INTENT_TASK

SCOPE = "customer-service"


@dataclass(frozen=True)
class AnsweringState:
    version: ModelVersion | None  # the active intent version
    templates: dict[str, str]  # the active answer templates' bodies by intent


_answering: GenerationCache[AnsweringState] = GenerationCache(SCOPE, "registry")
_bots: GenerationCache[BotSettings | None] = GenerationCache(SCOPE)


def answering_state_cache() -> GenerationCache[AnsweringState]:
    """The cache ``answering_state`` reads (its tokens may be read ahead: ``metered_streamed(prefetch=)``)."""
    return _answering


def answering_state(*, organisation) -> AnsweringState:
    def load() -> AnsweringState:
        templates = AnswerTemplate.objects.for_org(organisation).filter(active=True)
        return AnsweringState(
            version=active_version(organisation, APP, INTENT_TASK),
            templates=dict(templates.values_list("intent", "body")),
        )

    return _answering.get(organisation, load)


def bot_settings_cached(*, organisation) -> BotSettings | None:
    """The organisation's bot settings with their organisation (None: it has none)."""

    def load() -> BotSettings | None:
        rows = BotSettings.all_tenants.select_related("organisation")
        return rows.filter(organisation=organisation).first()

    return _bots.get(organisation, load)


def bot_settings_token_keys(*, organisation) -> list[str]:
    """The Redis keys of the tokens ``bot_settings_cached`` reads (none without Redis: they are rows), for a
    call that reads them ahead (``core.generations.prefetched``)."""
    return _bots.token_keys(organisation) if in_redis() else []


def changed(sender, instance, **kwargs) -> None:
    """A signal receiver: ``instance`` (bot settings or a template) was saved or deleted."""
    bump_for_row(instance, scope=SCOPE)
