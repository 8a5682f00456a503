"""The bot's settings and its public widget: thresholds and texts, the allowed origins, the widget key,
and the per-visitor throttle on that key (which is public, so it bounds what one client can cost a tenant)."""

import math
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlsplit

from core.errors import InvalidInput, NotFound, RateLimited
from core.generations import prefetched
from core.ratelimit import RateLimit, rate_limit_hit
from customer_service.models import BotSettings, UncertainMode
from customer_service.services.state import bot_settings_cached, bot_settings_token_keys


def bot_settings_for(*, organisation) -> BotSettings:
    bot = BotSettings.objects.for_org(organisation).first()
    if bot is None:
        bot, _ = BotSettings.all_tenants.get_or_create(organisation=organisation)
    return bot


def _origin(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidInput(
            f"'{value}' is not an origin: give scheme and host, e.g. https://shop.example.com.",
            details={"field": "allowed_origins"},
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def _share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise InvalidInput(f"{name} must be a number between 0 and 1.", details={"field": name})
    return float(value)


def intent_thresholds_check(thresholds: Any) -> dict[str, float]:
    """Per-intent thresholds ``{intent: 0..1}`` (an intent not listed uses ``intent_threshold``)."""
    if not isinstance(thresholds, dict):
        raise InvalidInput(
            "intent_thresholds must map intents to numbers between 0 and 1.",
            details={"field": "intent_thresholds"},
        )
    checked = {}
    for intent, value in thresholds.items():
        name = str(intent).strip()
        if not name or len(name) > 100:
            raise InvalidInput(
                "An intent must be 1 to 100 characters.", details={"field": "intent_thresholds"}
            )
        try:
            checked[name] = _share(f"The threshold of '{name}'", value)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, details={"field": "intent_thresholds"}) from None
    return dict(sorted(checked.items()))


def intent_threshold_for(*, bot: BotSettings, intent: str) -> float:
    """The confidence at or above which the bot answers ``intent``: its own threshold, else the global one."""
    return float(bot.intent_thresholds.get(intent, bot.intent_threshold))


def bot_settings_update(*, organisation, **fields: Any) -> BotSettings:
    from customer_service.services.availability import office_hours_check, timezone_check

    bot = bot_settings_for(organisation=organisation)
    for name in ("intent_threshold", "retrieval_threshold", "suggestion_floor"):
        if name in fields:
            setattr(bot, name, _share(name, fields[name]))
    if "intent_thresholds" in fields:
        bot.intent_thresholds = intent_thresholds_check(fields["intent_thresholds"])
    if "uncertain_mode" in fields:
        if fields["uncertain_mode"] not in UncertainMode.values:
            raise InvalidInput(
                f"uncertain_mode must be one of {', '.join(UncertainMode.values)}.",
                details={"field": "uncertain_mode"},
            )
        bot.uncertain_mode = fields["uncertain_mode"]
    if "timezone" in fields:
        bot.timezone = timezone_check(fields["timezone"])
    if "office_hours" in fields:
        bot.office_hours = office_hours_check(fields["office_hours"])
    if "office_hours_enabled" in fields:
        bot.office_hours_enabled = bool(fields["office_hours_enabled"])
    if "grounded_answers" in fields:
        bot.grounded_answers = bool(fields["grounded_answers"])
    if "out_of_scope_check" in fields:
        bot.out_of_scope_check = bool(fields["out_of_scope_check"])
    if bot.office_hours_enabled and not bot.office_hours:
        raise InvalidInput(
            "Give the hours of at least one weekday, or turn office hours off.",
            details={"field": "office_hours"},
        )
    for name, limit in (
        ("greeting", 500),
        ("handoff_message", 500),
        ("bot_name", 60),
        ("rephrase_message", 500),
    ):
        if name in fields:
            value = str(fields[name]).strip()
            if not value or len(value) > limit:
                raise InvalidInput(f"{name} must be 1 to {limit} characters.", details={"field": name})
            setattr(bot, name, value)
    if "allowed_origins" in fields:
        origins = fields["allowed_origins"]
        if not isinstance(origins, list):
            raise InvalidInput(
                "allowed_origins must be a list of origins.", details={"field": "allowed_origins"}
            )
        bot.allowed_origins = sorted({_origin(str(o)) for o in origins})
    bot.save()
    return bot


def widget_key_rotate(*, organisation) -> BotSettings:
    from customer_service.models import new_widget_key

    bot = bot_settings_for(organisation=organisation)
    bot.widget_key = new_widget_key()
    bot.save(update_fields=["widget_key", "updated_at"])
    return bot


def bot_for_widget(
    *, widget_key: str, origin: str | None, host: str | None = None, known: BotSettings | None = None
) -> BotSettings:
    """The bot a widget key names, if the page's origin may use it: one of ``allowed_origins`` (any site
    when the list is empty), or Trellis itself (the origin's host is the host serving the socket: the
    try-it page). ``known``: the bot this key named before (a socket checks it again for every frame): its
    organisation's settings as they are now are read from the per-process cache (``state``), and the key
    must still be theirs (a rotated key is unknown)."""
    if known is not None:
        bot = bot_settings_cached(organisation=known.organisation)
        bot = bot if bot is not None and bot.widget_key == widget_key else None
    else:
        bot = BotSettings.all_tenants.select_related("organisation").filter(widget_key=widget_key).first()
    if bot is None:
        raise NotFound("Unknown widget key.")
    if bot.allowed_origins:
        try:
            page = _origin(origin) if origin else None
        except InvalidInput:
            page = None
        same_site = page is not None and host is not None and urlsplit(page).netloc == host.lower()
        if page not in bot.allowed_origins and not same_site:
            raise InvalidInput("This site may not use this chat widget.", details={"origin": origin})
    return bot


# Per visitor address and widget key, in any 60 s: the widget key is public, so these bound what one
# client can cost a tenant (conversations stored, predictions metered). The limits are settings.
WIDGET_LIMITS = {"start": "CS_WIDGET_STARTS_PER_MINUTE", "message": "CS_WIDGET_MESSAGES_PER_MINUTE"}


def widget_throttle(*, widget_key: str, client: str, kind: str, now: float | None = None) -> None:
    """Count one ``kind`` action of a widget visitor; RateLimited past the allowance of the last minute."""
    _throttled(_widget_hit(widget_key=widget_key, client=client, kind=kind, now=now), kind)


def widget_admit(
    *,
    widget_key: str,
    origin: str | None,
    host: str | None,
    known: BotSettings | None,
    client: str,
    kind: str,
) -> BotSettings:
    """A widget socket's frame admitted: the bot for the key and origin (``bot_for_widget``, which raises a
    refusal) and one ``kind`` action of the visitor counted (``widget_throttle``: RateLimited past the
    minute's allowance). Where the socket knows its bot and the settings are cached behind Redis tokens, the
    tokens come with the count, in one Redis call (a refused key's frame is counted too: its socket
    closes)."""
    keys = bot_settings_token_keys(organisation=known.organisation) if known is not None else []
    hit = _widget_hit(widget_key=widget_key, client=client, kind=kind, read=keys)
    given = dict(zip(keys, hit.read, strict=True)) if keys and hit.read is not None else None
    with prefetched(given) if given else nullcontext():
        bot = bot_for_widget(widget_key=widget_key, origin=origin, host=host, known=known)
    _throttled(hit, kind)
    return bot


def _widget_hit(*, widget_key: str, client: str, kind: str, now: float | None = None, read=()) -> RateLimit:
    from django.conf import settings

    return rate_limit_hit(
        key=f"cs-widget:{kind}:{widget_key}:{client}",
        limit=getattr(settings, WIDGET_LIMITS[kind]),
        window=60,
        now=now,
        read=read,
    )


def _throttled(hit: RateLimit, kind: str) -> None:
    if not hit.allowed:
        what = "new conversations" if kind == "start" else "messages"
        raise RateLimited(
            f"Too many {what} from you just now. Please wait {math.ceil(hit.retry_after)} s.",
            details={"retry_after": math.ceil(hit.retry_after)},
        )
