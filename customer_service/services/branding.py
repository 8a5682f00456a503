"""The widget's branding per organisation (colour, bot name, avatar, position, welcome text) and what the
public ``widget/<key>/config.json`` and ``widget/<key>/avatar`` give a widget: these fields and nothing else
of the tenant.

The avatar is an upload from the tenant's staff but is served to every visitor of the tenant's site, so it
is checked with Pillow (a real PNG, JPEG or WebP, within a size and a dimensions cap, decoded in full) and
re-encoded as a small PNG: what is served is pixels Pillow wrote, never the uploaded bytes. SVG, HTML and
files that carry markup beside an image (polyglots) are refused with a reason, not cleaned.
"""

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import InvalidInput, NotFound
from customer_service.models import BotSettings, WidgetPosition
from customer_service.services.bot import bot_settings_for

AVATAR_MAX_BYTES = 1_048_576  # the upload
AVATAR_MAX_SIDE = 2048  # pixels, either side of the upload
AVATAR_SIDE = 128  # pixels, the longer side of what is stored and served
AVATAR_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_WELCOME_CHARS = 200
MAX_BOT_NAME_CHARS = 60
_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
# Markup that has no business in an image file: the signature of SVG, HTML and image/HTML polyglots.
_MARKUP = re.compile(rb"<\s*(?:svg|html|script|body|iframe|object|embed|!doctype|\?xml)|javascript:", re.I)


def colour_check(value: Any) -> str:
    """``#rrggbb`` (or ``#rgb``), returned as lower-case ``#rrggbb``."""
    text = str(value or "").strip()
    if not _COLOUR.match(text):
        raise InvalidInput(
            f"'{text[:20]}' is not a colour: give it as #rrggbb, e.g. #3056d3.", details={"field": "colour"}
        )
    if len(text) == 4:
        text = "#" + "".join(c * 2 for c in text[1:])
    return text.lower()


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(message, details={"field": "avatar"})


def avatar_check(data: bytes) -> bytes:
    """The avatar re-encoded as a PNG of at most ``AVATAR_SIDE`` pixels a side; InvalidInput with the reason
    for anything that is not a PNG, JPEG or WebP image within the caps."""
    if not data:
        raise _refuse("The avatar file is empty.")
    if len(data) > AVATAR_MAX_BYTES:
        raise _refuse(f"The avatar is too large: at most {AVATAR_MAX_BYTES // 1024} KB.")
    if _MARKUP.search(data):
        raise _refuse("The avatar contains markup (SVG, HTML or script): upload a PNG, JPEG or WebP image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=AVATAR_FORMATS)
            if max(image.size) > AVATAR_MAX_SIDE:
                raise _refuse(
                    f"The avatar is {image.size[0]}x{image.size[1]} pixels: at most "
                    f"{AVATAR_MAX_SIDE}x{AVATAR_MAX_SIDE}."
                )
            image.load()  # decoded in full: a truncated or corrupt file fails here
    except InvalidInput:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse("The avatar is not a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError):
        raise _refuse("The avatar image is damaged or incomplete.") from None
    upright = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    small = upright.convert("RGBA" if has_alpha else "RGB")
    small.thumbnail((AVATAR_SIDE, AVATAR_SIDE))
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)  # no metadata carried over: a new file
    return out.getvalue()


def _text(name: str, value: Any, limit: int, *, required: bool) -> str:
    text = str(value or "").strip()
    if (required and not text) or len(text) > limit:
        low = 1 if required else 0
        raise InvalidInput(f"{name} must be {low} to {limit} characters.", details={"field": name})
    return text


def branding_update(
    *,
    organisation,
    colour: Any,
    bot_name: Any,
    position: Any,
    welcome_text: Any = "",
    avatar: bytes | None = None,
    remove_avatar: bool = False,
) -> BotSettings:
    """Save the widget's branding; ``avatar`` (an uploaded file's bytes) replaces the avatar, checked and
    re-encoded (``avatar_check``); ``remove_avatar`` drops it. Nothing is saved if any part is refused."""
    colour = colour_check(colour)
    bot_name = _text("bot_name", bot_name, MAX_BOT_NAME_CHARS, required=True)
    welcome_text = _text("welcome_text", welcome_text, MAX_WELCOME_CHARS, required=False)
    if position not in WidgetPosition.values:
        raise InvalidInput(
            f"position must be one of {', '.join(WidgetPosition.values)}.", details={"field": "position"}
        )
    image = avatar_check(avatar) if avatar is not None else None
    with transaction.atomic():
        bot = bot_settings_for(organisation=organisation)
        bot.brand_colour, bot.bot_name, bot.widget_position, bot.welcome_text = (
            colour,
            bot_name,
            position,
            welcome_text,
        )
        if image is not None:
            bot.avatar, bot.avatar_type = image, "image/png"
            bot.avatar_digest = hashlib.sha256(image).hexdigest()[:16]
        elif remove_avatar:
            bot.avatar, bot.avatar_type, bot.avatar_digest = b"", "", ""
        bot.save()
    return bot


@dataclass(frozen=True)
class WidgetConfig:
    bot_name: str
    colour: str
    position: str
    welcome_text: str
    avatar_digest: str  # empty: no avatar


def widget_config(*, widget_key: str) -> WidgetConfig:
    """The public branding a widget key names (NotFound for an unknown key)."""
    bot = (
        BotSettings.all_tenants.filter(widget_key=widget_key)
        .only("bot_name", "brand_colour", "widget_position", "welcome_text", "avatar_digest")
        .first()
    )
    if bot is None:
        raise NotFound("Unknown widget key.")
    return WidgetConfig(
        bot.bot_name, bot.brand_colour, bot.widget_position, bot.welcome_text, bot.avatar_digest
    )


def widget_avatar(*, widget_key: str) -> tuple[bytes, str, str]:
    """The avatar's bytes, type and digest for a widget key (NotFound: unknown key, or no avatar)."""
    bot = (
        BotSettings.all_tenants.filter(widget_key=widget_key)
        .only("avatar", "avatar_type", "avatar_digest")
        .first()
    )
    if bot is None or not bot.avatar_digest:
        raise NotFound("No avatar for this widget key.")
    return bytes(bot.avatar), bot.avatar_type, bot.avatar_digest
