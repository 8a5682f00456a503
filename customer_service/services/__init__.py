"""The support chatbot's writes and rules. Callers import from here; the topic modules are:

- ``bot``: the bot's settings and its public widget (allowed origins, key, per-visitor throttle);
- ``knowledge``: answer templates and the knowledge base (articles, passages, vector search);
- ``conversations``: a conversation's life (start, resume, visitor messages stored, operators' actions);
- ``answering``: how the bot answers a visitor's message (the rule, metering, the uncertain band);
- ``suggestions``: the bot's best guesses as buttons, and the visitor's choice (a labelled example);
- ``handoff``: handing off, and what the visitor is told (asked for an e-mail address when nobody can
  answer now);
- ``availability``: office hours and operators' presence (who has the inbox open);
- ``corrections``: operators' intent corrections, retraining from them, classifying past messages;
- ``imports``: CSV imports of answer templates and historical questions and answers;
- ``inbox``: operators' internal notes, saved replies, assignment, and marking conversations seen;
- ``visitors``: what the widget tells about the visitor (their page, a visitor id across chats), checked;
- ``branding``: the widget's look per organisation (colour, name, avatar, position, welcome text), public;
- ``widget``: typing signals between visitor, bot and operators, and e-mail transcripts on request;
- ``common``: the app and model task names they share.
"""

from customer_service.services.answering import (
    HANDOFF_INTENTS,
    HUMAN_REQUEST,
    Decision,
    answer_preview,
    bot_answer,
    decide,
    visitor_message,
    visitor_message_answer,
)
from customer_service.services.availability import (
    WEEKDAYS,
    handoff_availability,
    office_hours_check,
    office_hours_rows,
    operator_presence_clear,
    operator_presence_mark,
    operators_online,
    within_office_hours,
)
from customer_service.services.bot import (
    WIDGET_LIMITS,
    bot_for_widget,
    bot_settings_for,
    bot_settings_update,
    intent_threshold_for,
    intent_thresholds_check,
    widget_admit,
    widget_key_rotate,
    widget_throttle,
)
from customer_service.services.common import APP, INTENT_TASK, RETRIEVAL_TASK
from customer_service.services.conversations import (
    MAX_MESSAGE_CHARS,
    client_id_check,
    conversation_close,
    conversation_close_by_operator,
    conversation_group,
    conversation_hand_back,
    conversation_payload,
    conversation_rate,
    conversation_resume,
    conversation_start,
    conversation_take_over,
    conversations_close_idle,
    email_wanted,
    message_payload,
    operator_message,
    public_name,
    visitor_message_store,
)
from customer_service.services.corrections import (
    UNCLASSIFIED_MESSAGES,
    corrections_csv,
    message_correct_intent,
    message_label_by_visitor,
    messages_classify_start,
    retrain_with_corrections,
)
from customer_service.services.handoff import email_from_text
from customer_service.services.imports import (
    MAX_QA_ROWS,
    MAX_UPLOAD_BYTES,
    MIN_QA_PAIRS_TO_TRAIN,
    qa_import,
    templates_import,
)
from customer_service.services.inbox import (
    MAX_NOTE_CHARS,
    MAX_SAVED_REPLIES,
    MAX_SAVED_REPLY_TITLE,
    conversation_assign,
    conversation_mark_seen,
    note_add,
    note_payload,
    saved_reply_delete,
    saved_reply_save,
)
from customer_service.services.knowledge import (
    CHUNK_WORDS,
    KB_VECTORS,
    MAX_ARTICLE_CHARS,
    MAX_TEMPLATE_CHARS,
    Hit,
    article_delete,
    article_save,
    chunk_text,
    kb_reindex,
    kb_search,
    template_delete,
    template_save,
)
from customer_service.services.suggestions import intent_label, suggestion_choose
from customer_service.services.visitors import MAX_PAGE_CHARS, page_check, visitor_hash
from customer_service.services.widget import (
    TRANSCRIPT_EVERY_S,
    operator_typing,
    transcript_request,
    transcript_send,
    visitor_typing,
)

__all__ = [
    "TRANSCRIPT_EVERY_S",
    "client_id_check",
    "operator_typing",
    "transcript_request",
    "transcript_send",
    "visitor_typing",
    "MAX_SAVED_REPLY_TITLE",
    "visitor_hash",
    "page_check",
    "MAX_PAGE_CHARS",
    "saved_reply_save",
    "saved_reply_delete",
    "note_payload",
    "note_add",
    "conversation_mark_seen",
    "conversation_assign",
    "MAX_SAVED_REPLIES",
    "MAX_NOTE_CHARS",
    "APP",
    "CHUNK_WORDS",
    "Decision",
    "HANDOFF_INTENTS",
    "HUMAN_REQUEST",
    "Hit",
    "INTENT_TASK",
    "KB_VECTORS",
    "MAX_ARTICLE_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_QA_ROWS",
    "MAX_TEMPLATE_CHARS",
    "MAX_UPLOAD_BYTES",
    "MIN_QA_PAIRS_TO_TRAIN",
    "RETRIEVAL_TASK",
    "UNCLASSIFIED_MESSAGES",
    "WEEKDAYS",
    "WIDGET_LIMITS",
    "answer_preview",
    "article_delete",
    "article_save",
    "bot_answer",
    "bot_for_widget",
    "bot_settings_for",
    "bot_settings_update",
    "chunk_text",
    "conversation_close",
    "conversation_close_by_operator",
    "conversation_group",
    "conversation_hand_back",
    "conversation_payload",
    "conversation_rate",
    "conversation_resume",
    "conversation_start",
    "conversation_take_over",
    "conversations_close_idle",
    "corrections_csv",
    "decide",
    "email_from_text",
    "email_wanted",
    "handoff_availability",
    "intent_label",
    "intent_threshold_for",
    "intent_thresholds_check",
    "kb_reindex",
    "kb_search",
    "message_correct_intent",
    "message_label_by_visitor",
    "message_payload",
    "messages_classify_start",
    "office_hours_check",
    "office_hours_rows",
    "operator_message",
    "operator_presence_clear",
    "operator_presence_mark",
    "operators_online",
    "public_name",
    "qa_import",
    "retrain_with_corrections",
    "suggestion_choose",
    "template_delete",
    "template_save",
    "templates_import",
    "visitor_message",
    "visitor_message_answer",
    "visitor_message_store",
    "widget_key_rotate",
    "widget_admit",
    "widget_throttle",
    "within_office_hours",
]
