"""The support chatbot's writes and rules: settings, templates, knowledge base, conversations, answers.

How the bot answers a visitor's message (``bot_answer``):
1. an explicit request for a person, or a confident intent in ``HANDOFF_INTENTS`` -> hand-off;
2. the organisation's active intent model (``customer_service``/``intent``): a confident prediction
   (>= ``intent_threshold``) of an intent with an active answer template -> that template;
3. otherwise the knowledge base: the closest article passage by cosine (>= ``retrieval_threshold``);
4. otherwise hand-off to an operator (the conversation waits in the live inbox).
Each answered visitor message is one metered prediction; over the quota, the bot hands off instead of
answering, and the visitor's message is kept either way.
"""

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from core import vectors
from core.billing import services as billing
from core.billing.models import Meter
from core.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, RateLimited
from core.ml import uploads
from core.ratelimit import rate_limit_hit
from core.realtime import broadcast, org_group
from core.registry import feedback
from core.registry import rows as rows_infer
from core.registry import services as registry
from core.registry.services.common import active_version
from customer_service.models import (
    AnswerSource,
    AnswerTemplate,
    Article,
    ArticleChunk,
    BotSettings,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)

log = logging.getLogger(__name__)

APP = "customer_service"
INTENT_TASK = "intent"
RETRIEVAL_TASK = "retrieval"
MAX_MESSAGE_CHARS = 2000
MAX_TEMPLATE_CHARS = 4000
MAX_ARTICLE_CHARS = 100_000
CHUNK_WORDS = 120
HUMAN_REQUEST = re.compile(
    r"\b(?:human|real person|live (?:agent|person)|representative"
    r"|(?:talk|speak|chat) (?:to|with) (?:a |an )?(?:person|human|agent|operator|someone|somebody))\b",
    re.IGNORECASE,
)
HANDOFF_INTENTS = ("contact_human_agent",)


# --- settings ---------------------------------------------------------------------------------------


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


def bot_settings_update(*, organisation, **fields: Any) -> BotSettings:
    bot = bot_settings_for(organisation=organisation)
    for name in ("intent_threshold", "retrieval_threshold"):
        if name in fields:
            value = fields[name]
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise InvalidInput(f"{name} must be a number between 0 and 1.", details={"field": name})
            setattr(bot, name, float(value))
    for name, limit in (("greeting", 500), ("handoff_message", 500), ("bot_name", 60)):
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


def bot_for_widget(*, widget_key: str, origin: str | None, host: str | None = None) -> BotSettings:
    """The bot a widget key names, if the page's origin may use it: one of ``allowed_origins`` (any site
    when the list is empty), or Trellis itself (the origin's host is the host serving the socket: the
    try-it page)."""
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
    from django.conf import settings

    hit = rate_limit_hit(
        key=f"cs-widget:{kind}:{widget_key}:{client}",
        limit=getattr(settings, WIDGET_LIMITS[kind]),
        window=60,
        now=now,
    )
    if not hit.allowed:
        what = "new conversations" if kind == "start" else "messages"
        raise RateLimited(
            f"Too many {what} from you just now. Please wait {math.ceil(hit.retry_after)} s.",
            details={"retry_after": math.ceil(hit.retry_after)},
        )


# --- answer templates -------------------------------------------------------------------------------


def _intent_name(intent: str) -> str:
    intent = (intent or "").strip()
    if not intent or len(intent) > 100:
        raise InvalidInput("The intent must be 1 to 100 characters.", details={"field": "intent"})
    return intent


def template_save(*, organisation, intent: str, body: str, active: bool = True) -> AnswerTemplate:
    """Create or replace the answer for an intent."""
    intent = _intent_name(intent)
    body = (body or "").strip()
    if not body or len(body) > MAX_TEMPLATE_CHARS:
        raise InvalidInput(
            f"The answer must be 1 to {MAX_TEMPLATE_CHARS} characters.", details={"field": "body"}
        )
    template, _ = AnswerTemplate.all_tenants.update_or_create(
        organisation=organisation, intent=intent, defaults={"body": body, "active": bool(active)}
    )
    return template


def template_delete(*, organisation, template_id: int) -> None:
    deleted, _ = AnswerTemplate.objects.for_org(organisation).filter(pk=template_id).delete()
    if not deleted:
        raise NotFound("No such answer template.")


# --- knowledge base ---------------------------------------------------------------------------------


def chunk_text(text: str, *, words: int = CHUNK_WORDS) -> list[str]:
    """Passages of about ``words`` words: whole paragraphs where they fit, long ones split on sentences."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph.split()) <= words:
            pieces.append(paragraph)
            continue
        current: list[str] = []
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            if current and len(" ".join(current + [sentence]).split()) > words:
                pieces.append(" ".join(current))
                current = []
            current.append(sentence)
        if current:
            pieces.append(" ".join(current))
    chunks: list[str] = []
    for piece in pieces:  # merge short neighbours so a passage carries enough context
        if chunks and len((chunks[-1] + " " + piece).split()) <= words:
            chunks[-1] = chunks[-1] + "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def _kb_rows(organisation):
    return ArticleChunk.objects.for_org(organisation).filter(article__published=True)


def _kb_rebuild(organisation, model: str) -> int:
    return kb_reindex(organisation=organisation)


# The knowledge base's passages as a vector source: their vectors and model live on ArticleChunk rows.
KB_VECTORS = vectors.VectorSource(
    name="customer_service.kb",
    app=APP,
    task=RETRIEVAL_TASK,
    rows=_kb_rows,
    rebuild=_kb_rebuild,
)


def _index_articles(organisation, articles: list[Article]) -> None:
    """(Re)build the passages of ``articles`` with one embedding pass over all of them."""
    ArticleChunk.all_tenants.filter(article__in=articles).delete()
    chunks = [
        ArticleChunk(organisation=organisation, article=article, position=i, text=passage)
        for article in articles
        for i, passage in enumerate(chunk_text(f"{article.title}\n\n{article.body}"))
    ]
    embedded = vectors.texts_embed(
        organisation=organisation, app=APP, task=RETRIEVAL_TASK, texts=[chunk.text for chunk in chunks]
    )
    vectors.vectors_fill(source=KB_VECTORS, objects=chunks, embedded=embedded)
    ArticleChunk.all_tenants.bulk_create(chunks)


def article_save(
    *,
    organisation,
    title: str,
    body: str,
    url: str = "",
    published: bool = True,
    article_id: int | None = None,
) -> Article:
    """Create or update an article and (re)index its passages, all or nothing."""
    title, body = (title or "").strip(), (body or "").strip()
    if not title or len(title) > 200:
        raise InvalidInput("The title must be 1 to 200 characters.", details={"field": "title"})
    if not body or len(body) > MAX_ARTICLE_CHARS:
        raise InvalidInput(
            f"The body must be 1 to {MAX_ARTICLE_CHARS} characters.", details={"field": "body"}
        )
    if article_id is None:
        billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=1)
    with transaction.atomic():
        if article_id is None:
            article = Article.all_tenants.create(
                organisation=organisation, title=title, body=body, url=url, published=published
            )
        else:
            article = Article.objects.for_org(organisation).select_for_update().filter(pk=article_id).first()
            if article is None:
                raise NotFound("No such article.")
            article.title, article.body, article.url, article.published = title, body, url, published
            article.save()
        _index_articles(organisation, [article])
    return article


def article_delete(*, organisation, article_id: int) -> None:
    deleted, _ = Article.objects.for_org(organisation).filter(pk=article_id).delete()
    if not deleted:
        raise NotFound("No such article.")


def kb_reindex(*, organisation) -> int:
    """Re-embed every article whose passages were made by another model; returns how many."""
    reference = vectors.current_model(organisation=organisation, app=APP, task=RETRIEVAL_TASK)
    stale = (
        Article.objects.for_org(organisation)
        .filter(chunks__isnull=False)
        .exclude(chunks__embedder=reference)
        .distinct()
    )
    count = 0
    for article_id in list(stale.values_list("pk", flat=True)):
        # One article at a time, locked: concurrent searches do not both rebuild it.
        with transaction.atomic():
            article = Article.all_tenants.select_for_update().get(pk=article_id)
            if ArticleChunk.all_tenants.filter(article=article).exclude(embedder=reference).exists():
                _index_articles(organisation, [article])
                count += 1
    return count


@dataclass(frozen=True)
class Hit:
    article_id: int
    title: str
    url: str
    passage: str
    score: float


def kb_search(*, organisation, query: str, k: int = 3) -> list[Hit]:
    """The ``k`` published passages closest to ``query`` (cosine), best first, one per article.

    Passages are ranked by the platform's vector index (``core.vectors``), which first re-embeds the
    articles made by an older model; a few more passages than ``k`` are asked for, since several may
    come from one article."""
    wanted, query_or_vector = k * 4, query
    while True:
        found, embedded = vectors.vector_search(
            source=KB_VECTORS, organisation=organisation, query=query_or_vector, k=wanted
        )
        if embedded is None:
            return []
        hits = _one_per_article(organisation, found, k)
        if len(hits) == k or len(found) < wanted:
            return hits
        wanted, query_or_vector = wanted * 4, embedded


def _one_per_article(organisation, found: list, k: int) -> list[Hit]:
    passages = {
        pk: rest
        for pk, *rest in ArticleChunk.objects.for_org(organisation)
        .filter(pk__in=[hit.key for hit in found])
        .values_list("pk", "article_id", "text", "article__title", "article__url")
    }
    hits: list[Hit] = []
    seen: set[int] = set()
    for hit in found:
        if hit.key not in passages:  # deleted since the index was read
            continue
        article_id, text, title, url = passages[hit.key]
        if article_id in seen:
            continue
        seen.add(article_id)
        hits.append(Hit(article_id, title, url, text, hit.score))
        if len(hits) == k:
            break
    return hits


# --- conversations ----------------------------------------------------------------------------------


def _csv_bytes(header: tuple[str, str], rows) -> bytes:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def public_name(user) -> str:
    """How visitors see an operator: the first name, never the e-mail address."""
    return (user.first_name or "").strip() or "Our support team"


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "conversation": str(message.conversation.public_id),
        "sender": message.sender,
        "author": public_name(message.author) if message.author else "",
        "text": message.text,
        "source": message.source,
        "intent": message.intent,
        "confidence": message.confidence,
        "article": message.article_id,
        "created_at": message.created_at.isoformat(),
    }


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "public_id": str(conversation.public_id),
        "status": conversation.status,
        "assigned_to": conversation.assigned_to.email if conversation.assigned_to else None,
        "handoff_reason": conversation.handoff_reason,
        "rating": conversation.rating,
        "last_message_at": conversation.last_message_at.isoformat() if conversation.last_message_at else None,
    }


def conversation_group(conversation: Conversation) -> str:
    return f"cs-conversation-{conversation.public_id}"


def _announce(conversation: Conversation, message: Message | None = None) -> None:
    """Push to the operators' inbox and to the visitor's widget (after commit; the rows are the truth)."""
    inbox = org_group(conversation.organisation_id, "inbox")
    broadcast(group=inbox, event_type="cs.conversation", payload=conversation_payload(conversation))
    if message is not None:
        payload = message_payload(message)
        broadcast(group=inbox, event_type="cs.message", payload=payload)
        broadcast(group=conversation_group(conversation), event_type="cs.message", payload=payload)
    broadcast(
        group=conversation_group(conversation),
        event_type="cs.status",
        payload={"status": conversation.status},
    )


def _add_message(conversation: Conversation, **fields: Any) -> Message:
    message = Message.all_tenants.create(
        organisation_id=conversation.organisation_id, conversation=conversation, **fields
    )
    conversation.last_message_at = message.created_at
    conversation.save(update_fields=["last_message_at", "updated_at"])
    return message


def conversation_start(*, bot: BotSettings, origin: str = "") -> tuple[Conversation, str, Message]:
    """A new chat for the widget: returns it, the visitor's resume token (shown once) and the greeting."""
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        conversation = Conversation.all_tenants.create(
            organisation=bot.organisation, token_hash=_hash(token), origin=(origin or "")[:200]
        )
        greeting = _add_message(
            conversation, sender=Sender.BOT, text=bot.greeting, source=AnswerSource.GREETING
        )
    return conversation, token, greeting


def conversation_resume(*, bot: BotSettings, public_id: str, token: str) -> Conversation:
    conversation = (
        Conversation.objects.for_org(bot.organisation).filter(public_id=public_id).first()
        if _is_uuid(public_id)
        else None
    )
    if conversation is None or not secrets.compare_digest(conversation.token_hash, _hash(token or "")):
        raise NotFound("No such conversation.")
    return conversation


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _clean_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("The message is empty.", details={"field": "text"})
    text = text.strip()
    if "\x00" in text:  # PostgreSQL cannot store it: refused here, or the socket dies on the insert
        raise InvalidInput("The message may not contain NUL characters.", details={"field": "text"})
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is too long (at most {MAX_MESSAGE_CHARS} characters).", details={"field": "text"}
        )
    return text


def visitor_message_store(*, conversation: Conversation, text: Any) -> tuple[Message, bool]:
    """Store the visitor's message; returns it and whether the bot should answer (the bot has the chat)."""
    text = _clean_text(text)
    with transaction.atomic():
        conversation = Conversation.all_tenants.select_for_update().get(pk=conversation.pk)
        if conversation.status == ConversationStatus.CLOSED:
            raise Conflict("This conversation is closed. Start a new one.")
        message = _add_message(conversation, sender=Sender.VISITOR, text=text)
        _announce(conversation, message)
    return message, conversation.status == ConversationStatus.BOT


def visitor_message(*, conversation: Conversation, text: Any) -> list[Message]:
    """Store the visitor's message; the bot answers it while the conversation is the bot's."""
    message, bot_has_it = visitor_message_store(conversation=conversation, text=text)
    if not bot_has_it:
        return [message]  # a person has it (or is about to): the bot stays quiet
    return [message, *bot_answer(conversation=conversation, message=message)]


def visitor_message_answer(*, conversation: Conversation, message: Message) -> list[Message]:
    """The bot's answer to a visitor message stored earlier (``visitor_message_store``), worked out apart
    from accepting it; nothing if a person has the conversation by now (an operator took over, or the
    answer to an earlier message handed off, or it was closed): the message waits for them in the inbox."""
    status = Conversation.all_tenants.filter(pk=conversation.pk).values_list("status", flat=True).first()
    if status != ConversationStatus.BOT:
        return []
    return bot_answer(conversation=conversation, message=message)


@dataclass(frozen=True)
class Decision:
    source: str
    text: str
    reason: str = ""
    intent: str = ""
    confidence: float | None = None
    article_id: int | None = None
    model_version_id: int | None = None


def decide(*, organisation, bot: BotSettings, text: str) -> Decision:
    """What the bot would answer to ``text`` (no writes, not metered): the rule in the module docstring."""
    if HUMAN_REQUEST.search(text):
        return Decision(AnswerSource.HANDOFF, bot.handoff_message, reason="The visitor asked for a person.")
    intent, confidence, version_id = "", None, None
    version = active_version(organisation, APP, INTENT_TASK)
    if version is not None and version.labels:
        prediction = registry.predictor_for(version=version).predict([text])[0]
        intent, confidence, version_id = (
            prediction.label,
            float(prediction.probabilities[prediction.label]),
            version.pk,
        )
        if intent in HANDOFF_INTENTS and confidence >= bot.intent_threshold:
            return Decision(
                AnswerSource.HANDOFF,
                bot.handoff_message,
                "The visitor asked for a person.",
                intent,
                confidence,
                model_version_id=version_id,
            )
        template = AnswerTemplate.objects.for_org(organisation).filter(intent=intent, active=True).first()
        if template is not None and confidence >= bot.intent_threshold:
            return Decision(AnswerSource.TEMPLATE, template.body, "", intent, confidence, None, version_id)
    hits = kb_search(organisation=organisation, query=text, k=1)
    if hits and hits[0].score >= bot.retrieval_threshold:
        hit = hits[0]
        answer = f"{hit.passage}\n\n(From: {hit.title}{' - ' + hit.url if hit.url else ''})"
        return Decision(AnswerSource.ARTICLE, answer, "", intent, confidence, hit.article_id, version_id)
    if version is None:
        reason = "No intent model is active and no article matches."
    elif confidence is not None and confidence < bot.intent_threshold:
        reason = f"Not sure: '{intent}' at {confidence:.2f} (threshold {bot.intent_threshold:.2f})."
    else:
        reason = f"No answer template for '{intent}' and no article matches."
    return Decision(AnswerSource.HANDOFF, bot.handoff_message, reason, intent, confidence, None, version_id)


def bot_answer(*, conversation: Conversation, message: Message) -> list[Message]:
    """Answer one visitor message (metered as one prediction) or hand the conversation to a person."""
    organisation = conversation.organisation
    bot = bot_settings_for(organisation=organisation)

    def answer() -> billing.Charge[list[Message]]:  # only an answer the bot worked out and gave is charged
        try:
            decision = decide(organisation=organisation, bot=bot, text=message.text)
        except Exception:  # noqa: BLE001 - a broken model must not leave the visitor unanswered
            log.exception("the bot could not answer message %s", message.pk)
            failed = Decision(AnswerSource.HANDOFF, bot.handoff_message, "The bot failed to answer.")
            return billing.Charge(_bot_reply(conversation, message, failed), quantity=0)
        replies = _bot_reply(conversation, message, decision)
        metadata = {"conversation": conversation.pk, "source": decision.source}
        return billing.Charge(replies, quantity=1 if replies else 0, metadata=metadata)

    try:
        return billing.metered(
            answer, organisation=organisation, meter=Meter.PREDICTIONS, metadata={"app": APP}
        )
    except QuotaExceeded:
        used_up = Decision(
            AnswerSource.HANDOFF, bot.handoff_message, "The plan's prediction quota is used up."
        )
        return _bot_reply(conversation, message, used_up)


def _bot_reply(conversation: Conversation, message: Message, decision: Decision) -> list[Message]:
    """Give the bot's decision, unless an operator took the conversation over while the bot thought."""
    with transaction.atomic():
        conversation = Conversation.all_tenants.select_for_update().get(pk=conversation.pk)
        if decision.intent:
            Message.all_tenants.filter(pk=message.pk).update(
                intent=decision.intent, confidence=decision.confidence
            )
        if conversation.status != ConversationStatus.BOT:  # an operator took over while the bot thought
            return []
        reply = _add_message(
            conversation,
            sender=Sender.BOT if decision.source != AnswerSource.HANDOFF else Sender.SYSTEM,
            text=decision.text,
            source=decision.source,
            intent=decision.intent,
            confidence=decision.confidence,
            article_id=decision.article_id,
            model_version_id=decision.model_version_id,
        )
        if decision.source == AnswerSource.HANDOFF:
            conversation.status = ConversationStatus.WAITING
            conversation.handoff_reason = decision.reason[:200]
            conversation.save(update_fields=["status", "handoff_reason", "updated_at"])
        _announce(conversation, reply)
    return [reply]


def _check_assignee(conversation: Conversation, user) -> None:
    if conversation.status == ConversationStatus.OPERATOR and conversation.assigned_to_id not in (
        None,
        user.pk,
    ):
        raise Conflict(f"{conversation.assigned_to.email} is handling this conversation.")


def _operated(organisation, conversation_id: int, *, open_only: bool = True) -> Conversation:
    """The organisation's conversation, locked; Conflict if it is closed (unless ``open_only`` is off)."""
    conversation = (
        Conversation.objects.for_org(organisation).select_for_update().filter(pk=conversation_id).first()
    )
    if conversation is None:
        raise NotFound("No such conversation.")
    if open_only and conversation.status == ConversationStatus.CLOSED:
        raise Conflict("This conversation is closed.")
    return conversation


def conversation_take_over(*, organisation, conversation_id: int, user) -> Conversation:
    """An operator takes the conversation: the bot stops answering. Refused if another operator has it."""
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        _check_assignee(conversation, user)
        conversation.status, conversation.assigned_to = ConversationStatus.OPERATOR, user
        conversation.save(update_fields=["status", "assigned_to", "updated_at"])
        name = public_name(user)
        message = _add_message(conversation, sender=Sender.SYSTEM, text=f"{name} joined the conversation.")
        _announce(conversation, message)
    return conversation


def operator_message(*, organisation, conversation_id: int, user, text: Any) -> Message:
    text = _clean_text(text)
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        if conversation.status != ConversationStatus.OPERATOR or conversation.assigned_to_id != user.pk:
            raise Conflict("Take the conversation over before replying.")
        message = _add_message(
            conversation, sender=Sender.OPERATOR, author=user, text=text, source=AnswerSource.OPERATOR
        )
        _announce(conversation, message)
    return message


def conversation_hand_back(*, organisation, conversation_id: int, user) -> Conversation:
    """Give the conversation back to the bot."""
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        _check_assignee(conversation, user)
        conversation.status, conversation.assigned_to, conversation.handoff_reason = (
            ConversationStatus.BOT,
            None,
            "",
        )
        conversation.save(update_fields=["status", "assigned_to", "handoff_reason", "updated_at"])
        message = _add_message(conversation, sender=Sender.SYSTEM, text="The assistant is back with you.")
        _announce(conversation, message)
    return conversation


def _close_locked(conversation: Conversation, by: str) -> None:
    conversation.status, conversation.closed_at = ConversationStatus.CLOSED, timezone.now()
    conversation.save(update_fields=["status", "closed_at", "updated_at"])
    message = _add_message(conversation, sender=Sender.SYSTEM, text=f"The conversation was closed by {by}.")
    _announce(conversation, message)


def conversation_close(*, conversation: Conversation, by: str) -> Conversation:
    with transaction.atomic():
        conversation = Conversation.all_tenants.select_for_update().get(pk=conversation.pk)
        if conversation.status != ConversationStatus.CLOSED:
            _close_locked(conversation, by)
    return conversation


def conversation_close_by_operator(*, organisation, conversation_id: int, user) -> Conversation:
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id, open_only=False)
        _check_assignee(conversation, user)
        if conversation.status != ConversationStatus.CLOSED:
            _close_locked(conversation, public_name(user))
    return conversation


def conversations_close_idle(*, older_than_hours: float) -> int:
    """Close conversations left with the bot and idle that long (waiting ones stay for a person)."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    idle = Conversation.all_tenants.filter(status=ConversationStatus.BOT, last_message_at__lt=cutoff)
    count = 0
    for pk in list(idle.values_list("pk", flat=True)):
        with transaction.atomic():  # re-checked under the lock: the visitor may have just written
            conversation = Conversation.all_tenants.select_for_update().get(pk=pk)
            if conversation.status == ConversationStatus.BOT and conversation.last_message_at < cutoff:
                _close_locked(conversation, "the assistant after a quiet while")
                count += 1
    return count


def conversation_rate(*, conversation: Conversation, rating: Any) -> Conversation:
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput("The rating must be a whole number from 1 to 5.", details={"field": "rating"})
    Conversation.all_tenants.filter(pk=conversation.pk).update(rating=rating, updated_at=timezone.now())
    conversation.rating = rating
    return conversation


def message_correct_intent(*, organisation, message_id: int, intent: str) -> Message:
    """An operator's correction of the intent of a visitor message: kept as training data."""
    intent = _intent_name(intent)
    message = Message.objects.for_org(organisation).filter(pk=message_id, sender=Sender.VISITOR).first()
    if message is None:
        raise NotFound("No such visitor message.")
    version = active_version(organisation, APP, INTENT_TASK)
    if version is not None and version.labels and intent not in version.labels:
        raise InvalidInput(f"'{intent}' is not an intent of the active model.", details={"field": "intent"})
    message.corrected_intent = intent
    message.save(update_fields=["corrected_intent", "updated_at"])
    return message


def corrections_csv(*, organisation) -> bytes:
    """Operator-corrected visitor messages as a ``text,label`` dataset, ready to upload for training."""
    corrected = Message.objects.for_org(organisation).exclude(corrected_intent="")
    return _csv_bytes(("text", "label"), corrected.values_list("text", "corrected_intent"))


def _unclassified_messages(organisation):
    return Message.objects.for_org(organisation).filter(sender=Sender.VISITOR, intent="")


def _store_intents(organisation, messages, predictions, version) -> None:
    for message, prediction in zip(messages, predictions, strict=True):
        message.intent = prediction.label
        message.confidence = prediction.probabilities[prediction.label]
        message.model_version_id = version.pk
    Message.all_tenants.bulk_update(messages, ["intent", "confidence", "model_version"])


# Visitor messages the bot answered without an intent (from the knowledge base, or before any intent model):
# the platform's batch inference over rows gives them one, for the inbox's corrections and for reports.
UNCLASSIFIED_MESSAGES = rows_infer.RowSource(
    name="customer_service.messages",
    app=APP,
    task=INTENT_TASK,
    rows=_unclassified_messages,
    text=lambda message: message.text,
    sink=_store_intents,
)


def messages_classify_start(*, organisation, created_by=None):
    """Queue the active intent model over every visitor message that has no intent yet (an ``infer`` job,
    one metered prediction per message)."""
    return rows_infer.rows_infer_start(
        organisation=organisation, source=UNCLASSIFIED_MESSAGES.name, created_by=created_by
    )


def answer_preview(*, organisation, text: Any, api_key=None, idempotency_key: str | None = None) -> Decision:
    """What the bot would answer, without a conversation (the API's ``answer``): metered like an answer."""
    text = _clean_text(text)
    bot = bot_settings_for(organisation=organisation)

    def answer() -> billing.Charge[Decision]:
        decision = decide(organisation=organisation, bot=bot, text=text)
        return billing.Charge(decision, metadata={"source": decision.source})

    return billing.metered(
        answer,
        organisation=organisation,
        meter=Meter.PREDICTIONS,
        api_key=api_key,
        idempotency_key=idempotency_key,
        metadata={"app": APP},
    )


def retrain_with_corrections(*, organisation, created_by=None):
    """Feed operators' corrections back through the platform's retrain-from-feedback service: a new version
    of the active intent model's dataset with the corrected visitor messages (a correction wins over the same
    text's old label) and a training job on it, promoted only if it beats the active model."""
    version = active_version(organisation, APP, INTENT_TASK)
    corrected = Message.objects.for_org(organisation).exclude(corrected_intent="")
    if version is not None and version.dataset_id is not None and not corrected.exists():
        raise Conflict(
            "No operator corrections yet: correct the intent of visitor messages in the inbox first."
        )
    return feedback.model_retrain_from_feedback(
        organisation=organisation,
        app=APP,
        task=INTENT_TASK,
        feedback=corrected.order_by("updated_at").values_list("text", "corrected_intent"),
        source="with-corrections.csv",
        config=None,  # the fast model (seconds); a fine-tune can follow from the models page
        created_by=created_by,
    )


MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_QA_ROWS = 5000
MIN_QA_PAIRS_TO_TRAIN = 50


def _read_pairs_csv(
    data: bytes, *, columns: tuple[str, str], limits: tuple[int, int]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Rows of a two-column CSV with a header, read by the platform's upload reader (``core.ml.uploads``):
    ``{first: second}`` for the usable ones (the first column unique), and the rejected ones with their line
    and reason. Refuses an unusable file as a whole."""
    if not data:
        raise InvalidInput("The file is empty.", details={"field": "file"})
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput("The file is larger than 5 MB.", details={"field": "file"})
    try:
        upload = uploads.read_upload(data, fmt="csv", limits=uploads.ReadLimits(max_bytes=MAX_UPLOAD_BYTES))
    except uploads.UploadError as exc:
        message = {
            "encoding": f"The file is not UTF-8 (byte {exc.byte} cannot be read).",
            "utf16": "The file is UTF-16 encoded, not UTF-8; save it as UTF-8.",
        }.get(exc.code, exc.message[:1].upper() + exc.message[1:] + ".")
        raise InvalidInput(message, details={"field": "file"}) from exc
    if sorted(upload.columns) != sorted(columns):
        found = ",".join(upload.columns) or "nothing"
        raise InvalidInput(
            f"The header must be exactly {','.join(columns)} (found: {found}).",
            details={"field": "file"},
        )
    key, value = columns
    accepted: dict[str, str] = {}
    rejected: list[dict[str, Any]] = [
        {"line": r.line, "reason": r.detail[:1].upper() + r.detail[1:] + "."} for r in upload.rejected
    ]
    for line, record in enumerate(upload.records, start=2):  # a line is a record: the header is 1
        row = record.values
        if record.extra:
            rejected.append({"line": line, "reason": "More fields than the header."})
            continue
        first, second = (row.get(key) or "").strip(), (row.get(value) or "").strip()
        if not first or len(first) > limits[0]:
            reason = f"The {key} must be 1 to {limits[0]} characters."
        elif not second or len(second) > limits[1]:
            reason = f"The {value} must be 1 to {limits[1]} characters."
        elif first in accepted:
            reason = f"'{first[:60]}' was already given on an earlier line."
        else:
            accepted[first] = second
            continue
        rejected.append({"line": line, "reason": reason})
    rejected.sort(key=lambda r: r["line"])
    if not accepted:
        raise InvalidInput("No usable rows in the file.", details={"rejected": rejected[:50]})
    return accepted, rejected


def templates_import(*, organisation, data: bytes) -> dict[str, Any]:
    """Create or replace answer templates from a CSV with ``intent`` and ``answer`` columns (a header row).

    Rows with an empty or over-long intent or answer, or an intent already given earlier in the file, are
    rejected with their line and reason; the others are saved together, or none if the file is unusable.
    """
    accepted, rejected = _read_pairs_csv(data, columns=("intent", "answer"), limits=(100, MAX_TEMPLATE_CHARS))
    with transaction.atomic():
        for intent, body in accepted.items():
            template_save(organisation=organisation, intent=intent, body=body)
    return {"saved": len(accepted), "rejected": rejected}


def qa_import(*, organisation, data: bytes, train: bool = True, created_by=None) -> dict[str, Any]:
    """Historical questions and answers (a CSV with ``question`` and ``answer`` columns) into the bot.

    Each pair becomes a knowledge-base article (the question as its title, so similar new questions find it).
    With ``train`` and at least 50 pairs, the pairs also become a ``pairs`` dataset and a job fine-tunes the
    retrieval model (``customer_service``/``retrieval``) on them; once promoted, the knowledge base is
    re-embedded with it on the next search. All articles are saved, or none.
    """
    accepted, rejected = _read_pairs_csv(
        data, columns=("question", "answer"), limits=(200, MAX_ARTICLE_CHARS)
    )
    if len(accepted) > MAX_QA_ROWS:
        raise InvalidInput(f"At most {MAX_QA_ROWS} pairs per file; split it.", details={"field": "file"})
    billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=len(accepted))
    with transaction.atomic():
        articles = Article.all_tenants.bulk_create(
            Article(organisation=organisation, title=question, body=answer)
            for question, answer in accepted.items()
        )
        _index_articles(organisation, articles)
    job = None
    if train and len(accepted) >= MIN_QA_PAIRS_TO_TRAIN:
        dataset = registry.dataset_from_rows(
            organisation=organisation,
            name="historical-qa",
            task="pairs",
            rows=list(accepted.items()),
            source="historical-qa.csv",
        )
        job = registry.model_train_start(
            organisation=organisation,
            dataset_id=dataset.pk,
            app=APP,
            task=RETRIEVAL_TASK,
            created_by=created_by,
        )
    return {"articles": len(accepted), "rejected": rejected, "job": job.pk if job is not None else None}
