"""The chatbot's answer rule, hand-off and operator takeover, on a real intent model and the base encoder."""

import pytest

from core.billing import services as billing
from core.billing.models import Meter, UsageEvent
from core.errors import Conflict, InvalidInput, NotFound
from core.registry import services as registry
from core.registry.services.common import active_version
from core.tenancy.models import Role
from customer_service import services
from customer_service.models import (
    AnswerSource,
    ArticleChunk,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from tests.customer_service.conftest import PARKING, banking_rows

PIN_ANSWER = "You can change your PIN at any of our ATMs: insert your card and choose 'Change PIN'."
HOURS = (
    "Our branches are open Monday to Friday from 9am to 5pm, and on Saturday mornings from 9am to noon. "
    "They are closed on Sundays and public holidays."
)


def _prediction_lines(organisation) -> int:
    return UsageEvent.objects.for_org(organisation).filter(meter=Meter.PREDICTIONS).count()


def _start(organisation):
    bot = services.bot_settings_for(organisation=organisation)
    conversation, token, greeting = services.conversation_start(bot=bot, origin="https://shop.example.com")
    return bot, conversation, token, greeting


@pytest.mark.django_db
def test_template_article_and_handoff_in_one_conversation(bot_org, make_member, make_org):
    organisation, _owner, version_id = bot_org
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    hours = services.article_save(organisation=organisation, title="Opening hours", body=HOURS)
    services.article_save(organisation=organisation, title="Parking", body=PARKING)
    bot, conversation, token, greeting = _start(organisation)
    assert greeting.source == AnswerSource.GREETING and greeting.text == bot.greeting

    # 1. a confident, templated intent -> the template
    question = next(t for t, label in banking_rows("test_slice.csv") if label == "change_pin")
    visitor, reply = services.visitor_message(conversation=conversation, text=question)
    assert reply.source == AnswerSource.TEMPLATE and reply.text == PIN_ANSWER
    assert reply.intent == "change_pin" and reply.confidence >= bot.intent_threshold
    assert reply.model_version_id == version_id
    visitor.refresh_from_db()
    assert visitor.intent == "change_pin"  # the visitor's message carries the prediction (for corrections)
    assert _prediction_lines(organisation) == 1

    # 2. no template covers it, the knowledge base does -> the closest article passage
    _visitor, reply = services.visitor_message(
        conversation=conversation, text="What time do your branches open on Saturday?"
    )
    assert reply.source == AnswerSource.ARTICLE and reply.article_id == hours.pk
    assert "Saturday mornings" in reply.text and "Opening hours" in reply.text
    assert _prediction_lines(organisation) == 2

    # 3. asks for a person -> hand-off (an operator has the inbox open); the bot then stays quiet
    first, second = make_member(organisation, Role.OPERATOR), make_member(organisation, Role.OPERATOR)
    services.operator_presence_mark(organisation_id=organisation.pk, user_id=first.pk, channel="inbox-tab")
    _visitor, reply = services.visitor_message(conversation=conversation, text="Can I talk to a human please")
    services.operator_presence_clear(organisation_id=organisation.pk, user_id=first.pk, channel="inbox-tab")
    conversation.refresh_from_db()
    assert reply.source == AnswerSource.HANDOFF and reply.sender == Sender.SYSTEM
    assert reply.text == bot.handoff_message and not conversation.email_requested
    assert (
        conversation.status == ConversationStatus.WAITING
        and "asked for a person" in conversation.handoff_reason
    )
    assert services.visitor_message(conversation=conversation, text="hello?")[0].sender == Sender.VISITOR
    assert len(services.visitor_message(conversation=conversation, text="anyone?")) == 1

    # operators: one takes over, a second is refused, the first replies and hands back
    services.conversation_take_over(organisation=organisation, conversation_id=conversation.pk, user=first)
    with pytest.raises(Conflict, match="is handling"):
        services.conversation_take_over(
            organisation=organisation, conversation_id=conversation.pk, user=second
        )
    with pytest.raises(Conflict, match="Take the conversation over"):
        services.operator_message(
            organisation=organisation, conversation_id=conversation.pk, user=second, text="hi"
        )
    with pytest.raises(Conflict, match="is handling"):  # only the operator who has it hands back or closes
        services.conversation_hand_back(
            organisation=organisation, conversation_id=conversation.pk, user=second
        )
    with pytest.raises(Conflict, match="is handling"):
        services.conversation_close_by_operator(
            organisation=organisation, conversation_id=conversation.pk, user=second
        )
    answer = services.operator_message(
        organisation=organisation, conversation_id=conversation.pk, user=first, text="Hi, I'm here to help."
    )
    assert answer.sender == Sender.OPERATOR and answer.author == first
    services.conversation_hand_back(organisation=organisation, conversation_id=conversation.pk, user=first)
    _visitor, reply = services.visitor_message(conversation=conversation, text=question)
    assert reply.source == AnswerSource.TEMPLATE

    # closing: later messages are refused and nothing is stored
    services.conversation_close(conversation=conversation, by="the visitor")
    before = Message.objects.for_org(organisation).count()
    with pytest.raises(Conflict, match="closed"):
        services.visitor_message(conversation=conversation, text="one more thing")
    assert Message.objects.for_org(organisation).count() == before
    assert services.conversation_rate(conversation=conversation, rating=5).rating == 5

    # the widget resumes with its token only
    assert (
        services.conversation_resume(bot=bot, public_id=str(conversation.public_id), token=token)
        == conversation
    )
    with pytest.raises(NotFound):
        services.conversation_resume(bot=bot, public_id=str(conversation.public_id), token="guess")
    other, _other_owner = make_org()
    other_bot = services.bot_settings_for(organisation=other)  # the right token, another tenant's widget
    with pytest.raises(NotFound):
        services.conversation_resume(bot=other_bot, public_id=str(conversation.public_id), token=token)


@pytest.mark.django_db
def test_unsure_or_uncovered_questions_go_to_a_person(bot_org):
    organisation, _owner, _version = bot_org
    services.bot_settings_update(organisation=organisation, intent_threshold=1.0, uncertain_mode="handoff")
    _bot, conversation, _token, _greeting = _start(organisation)
    question = next(t for t, label in banking_rows("test_slice.csv") if label == "change_pin")
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    _visitor, reply = services.visitor_message(conversation=conversation, text=question)
    conversation.refresh_from_db()
    assert reply.source == AnswerSource.HANDOFF and reply.text.startswith("Nobody from our team is online")
    assert conversation.status == ConversationStatus.WAITING and conversation.email_requested
    assert "Not sure: 'change_pin'" in conversation.handoff_reason


@pytest.mark.django_db
def test_the_model_scores_an_off_topic_question_out_of_scope_and_the_rule_reads_the_top_probability(bot_org):
    """The intent model's ``in_scope`` ranks a question about nothing it knows below one like its training
    questions; the bot's rule compares the top probability (``answering``'s docstring says why)."""
    organisation, _owner, _version = bot_org
    bot = services.bot_settings_update(organisation=organisation, uncertain_mode="handoff")
    known = next(t for t, label in banking_rows("train_slice.csv") if label == "change_pin")
    off_topic = "What is the boiling point of tungsten in kelvin?"
    version = active_version(organisation, "customer_service", "intent")
    scored_known, scored_off = registry.predictor_for(version=version).predict([known, off_topic])
    assert scored_off.in_scope is not None and scored_known.in_scope is not None
    assert scored_off.in_scope < scored_known.in_scope
    decided = services.decide(organisation=organisation, bot=bot, text=off_topic)
    assert decided.confidence == pytest.approx(scored_off.probabilities[scored_off.label])


@pytest.mark.django_db
def test_over_quota_the_bot_hands_off_and_keeps_the_message(bot_org):
    from core.billing.models import UsageCounter
    from core.billing.services import period_bounds

    organisation, _owner, _version = bot_org
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    _bot, conversation, _token, _greeting = _start(organisation)
    limit = billing.subscription_for(organisation=organisation).plan.limit_for(Meter.PREDICTIONS)
    billing.usage_record(organisation=organisation, meter=Meter.PREDICTIONS, quantity=limit, enforce=False)
    lines = _prediction_lines(organisation)
    visitor, reply = services.visitor_message(conversation=conversation, text="How do I change my PIN?")
    assert (
        Message.objects.for_org(organisation).filter(pk=visitor.pk, text="How do I change my PIN?").exists()
    )
    assert reply.source == AnswerSource.HANDOFF
    conversation.refresh_from_db()
    assert conversation.handoff_reason == "The plan's prediction quota is used up."
    assert _prediction_lines(organisation) == lines
    counter = UsageCounter.objects.for_org(organisation).get(
        meter=Meter.PREDICTIONS, period=period_bounds()[2]
    )
    assert counter.used == limit


@pytest.mark.django_db
def test_without_an_intent_model_the_knowledge_base_still_answers(make_org):
    organisation, _owner = make_org()
    article = services.article_save(organisation=organisation, title="Parking", body=PARKING)
    _bot, conversation, _token, _greeting = _start(organisation)
    _visitor, reply = services.visitor_message(conversation=conversation, text="Is there parking for my car?")
    assert reply.source == AnswerSource.ARTICLE and reply.article_id == article.pk and reply.intent == ""
    _visitor, reply = services.visitor_message(conversation=conversation, text="My parcel never arrived")
    assert reply.source == AnswerSource.HANDOFF
    conversation.refresh_from_db()
    assert conversation.handoff_reason == "No intent model is active and no article matches."


@pytest.mark.django_db
def test_vectors_from_another_model_are_rebuilt_before_search(make_org):
    organisation, _owner = make_org()
    article = services.article_save(organisation=organisation, title="Opening hours", body=HOURS)
    current = ArticleChunk.objects.for_org(organisation).get(article=article).embedder
    assert current.startswith("base:")
    ArticleChunk.objects.for_org(organisation).update(embedder="version:999", vector=b"\0" * 1536)
    hits = services.kb_search(organisation=organisation, query="When are you open on Saturday?")
    assert hits and hits[0].article_id == article.pk and hits[0].score > 0.5
    assert set(ArticleChunk.objects.for_org(organisation).values_list("embedder", flat=True)) == {current}


def test_articles_are_cut_into_passages():
    long_paragraph = " ".join(f"Sentence number {i} is here." for i in range(60))  # 300 words
    chunks = services.chunk_text(f"Title\n\nShort one.\n\n{long_paragraph}", words=120)
    assert chunks[0] == "Title\n\nShort one."
    assert all(len(c.split()) <= 120 for c in chunks) and len(chunks) == 4
    assert " ".join(" ".join(chunks[1:]).split()) == long_paragraph


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda org: services.template_save(organisation=org, intent="x", body="  "), "answer must be"),
        (lambda org: services.template_save(organisation=org, intent="", body="Hi"), "intent must be"),
        (lambda org: services.article_save(organisation=org, title="", body="b"), "title must be"),
        (lambda org: services.article_save(organisation=org, title="t", body="x" * 100_001), "body must be"),
        (lambda org: services.bot_settings_update(organisation=org, intent_threshold=1.5), "between 0 and 1"),
        (
            lambda org: services.bot_settings_update(organisation=org, retrieval_threshold="high"),
            "between 0 and 1",
        ),
        (lambda org: services.bot_settings_update(organisation=org, greeting=""), "greeting must be"),
        (
            lambda org: services.bot_settings_update(organisation=org, allowed_origins=["shop.com"]),
            "not an origin",
        ),
        (
            lambda org: services.bot_settings_update(
                organisation=org, allowed_origins=["https://a.com/page"]
            ),
            "not an origin",
        ),
    ],
)
def test_bad_settings_and_content_are_refused(make_org, call, message):
    organisation, _owner = make_org()
    before = services.bot_settings_for(organisation=organisation)
    with pytest.raises(InvalidInput, match=message):
        call(organisation)
    after = services.bot_settings_for(organisation=organisation)
    assert (after.intent_threshold, after.greeting, after.allowed_origins) == (
        before.intent_threshold,
        before.greeting,
        before.allowed_origins,
    )


@pytest.mark.django_db
def test_messages_widget_keys_and_origins(make_org):
    organisation, _owner = make_org()
    bot = services.bot_settings_update(
        organisation=organisation, allowed_origins=["https://shop.example.com", "HTTP://localhost:8000/"]
    )
    assert bot.allowed_origins == ["http://localhost:8000", "https://shop.example.com"]
    assert services.bot_for_widget(widget_key=bot.widget_key, origin="https://shop.example.com") == bot
    with pytest.raises(InvalidInput, match="may not use"):
        services.bot_for_widget(widget_key=bot.widget_key, origin="https://evil.example.net")
    with pytest.raises(InvalidInput, match="may not use"):
        services.bot_for_widget(widget_key=bot.widget_key, origin=None)
    # Trellis's own try-it page: the page's host is the host serving the socket
    assert services.bot_for_widget(
        widget_key=bot.widget_key, origin="http://trellis.local:8000", host="trellis.local:8000"
    )
    with pytest.raises(InvalidInput, match="may not use"):
        services.bot_for_widget(
            widget_key=bot.widget_key, origin="https://evil.example.net", host="trellis.local"
        )
    with pytest.raises(NotFound, match="Unknown widget key"):
        services.bot_for_widget(widget_key="wk_nope", origin="https://shop.example.com")
    old_key = bot.widget_key
    rotated = services.widget_key_rotate(organisation=organisation)
    assert rotated.widget_key != old_key
    with pytest.raises(NotFound):
        services.bot_for_widget(widget_key=old_key, origin="https://shop.example.com")

    _bot, conversation, _token, _greeting = _start(organisation)
    before = Message.objects.for_org(organisation).count()
    for text, message in [("   ", "empty"), (None, "empty"), ("x" * 2001, "too long")]:
        with pytest.raises(InvalidInput, match=message):
            services.visitor_message(conversation=conversation, text=text)
    assert Message.objects.for_org(organisation).count() == before
    with pytest.raises(InvalidInput, match="1 to 5"):
        services.conversation_rate(conversation=conversation, rating=6)


@pytest.mark.django_db
def test_one_tenant_cannot_operate_another_tenants_conversation(make_org, make_member):
    organisation, _owner = make_org()
    other, other_owner = make_org()
    _bot, conversation, _token, _greeting = _start(organisation)
    for call in (
        lambda: services.conversation_take_over(
            organisation=other, conversation_id=conversation.pk, user=other_owner
        ),
        lambda: services.operator_message(
            organisation=other, conversation_id=conversation.pk, user=other_owner, text="hi"
        ),
        lambda: services.conversation_hand_back(
            organisation=other, conversation_id=conversation.pk, user=other_owner
        ),
    ):
        with pytest.raises(NotFound):
            call()
    other_bot = services.bot_settings_for(organisation=other)
    with pytest.raises(NotFound):
        services.conversation_resume(bot=other_bot, public_id=str(conversation.public_id), token="x")
    assert Conversation.objects.for_org(organisation).get().status == ConversationStatus.BOT


@pytest.mark.django_db
def test_operator_corrections_become_a_training_set(bot_org):
    organisation, _owner, _version = bot_org
    _bot, conversation, _token, _greeting = _start(organisation)
    visitor, _reply = services.visitor_message(conversation=conversation, text="my card has not come yet")
    services.message_correct_intent(organisation=organisation, message_id=visitor.pk, intent="card_arrival")
    with pytest.raises(InvalidInput, match="not an intent of the active model"):
        services.message_correct_intent(organisation=organisation, message_id=visitor.pk, intent="weather")
    bot_message = Message.objects.for_org(organisation).filter(sender=Sender.BOT).first()
    with pytest.raises(NotFound):
        services.message_correct_intent(
            organisation=organisation, message_id=bot_message.pk, intent="card_arrival"
        )
    assert services.corrections_csv(organisation=organisation).decode().splitlines() == [
        "text,label",
        "my card has not come yet,card_arrival",
    ]


@pytest.mark.django_db
def test_an_answer_that_comes_after_a_takeover_is_dropped_and_not_charged(bot_org, make_member):
    organisation, _owner, _version = bot_org
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    _bot, conversation, _token, _greeting = _start(organisation)
    message, bot_has_it = services.visitor_message_store(
        conversation=conversation, text="How do I change my PIN?"
    )
    assert bot_has_it
    operator = make_member(organisation, Role.OPERATOR)
    services.conversation_take_over(organisation=organisation, conversation_id=conversation.pk, user=operator)
    assert services.bot_answer(conversation=conversation, message=message) == []  # the bot finished too late
    assert _prediction_lines(organisation) == 0
    assert not Message.objects.for_org(organisation).filter(source=AnswerSource.TEMPLATE).exists()


@pytest.mark.django_db
def test_a_failing_model_hands_off_without_charging(bot_org, monkeypatch):
    organisation, _owner, _version = bot_org
    _bot, conversation, _token, _greeting = _start(organisation)

    def broken(**kwargs):
        raise RuntimeError("weights missing")

    monkeypatch.setattr(services.answering, "decide", broken)  # bot_answer's own module
    visitor, reply = services.visitor_message(conversation=conversation, text="How do I change my PIN?")
    conversation.refresh_from_db()
    assert reply.source == AnswerSource.HANDOFF and conversation.status == ConversationStatus.WAITING
    assert conversation.handoff_reason == "The bot failed to answer."
    assert Message.objects.for_org(organisation).filter(pk=visitor.pk).exists()
    assert _prediction_lines(organisation) == 0


def test_visitors_see_operators_by_first_name_only():
    class Person:
        first_name, email = "", "sam@example.com"

    assert services.public_name(Person()) == "Our support team"
    Person.first_name = "Sam"
    assert services.public_name(Person()) == "Sam"


@pytest.mark.django_db
def test_idle_bot_conversations_are_closed_and_waiting_ones_kept(make_org):
    from datetime import timedelta

    from django.utils import timezone

    organisation, _owner = make_org()
    _bot, idle, _t, _g = _start(organisation)
    _bot, waiting, _t, _g = _start(organisation)
    _bot, recent, _t, _g = _start(organisation)
    services.visitor_message(conversation=waiting, text="I want to talk to a human")
    long_ago = timezone.now() - timedelta(hours=30)
    Conversation.objects.for_org(organisation).filter(pk__in=[idle.pk, waiting.pk]).update(
        last_message_at=long_ago
    )
    assert services.conversations_close_idle(older_than_hours=24) == 1
    statuses = dict(Conversation.objects.for_org(organisation).values_list("pk", "status"))
    assert statuses == {
        idle.pk: ConversationStatus.CLOSED,
        waiting.pk: ConversationStatus.WAITING,
        recent.pk: ConversationStatus.BOT,
    }
    assert services.conversations_close_idle(older_than_hours=24) == 0


@pytest.mark.django_db
def test_a_suggestion_chosen_in_a_conversation_deleted_meanwhile_is_not_found(make_org):
    """The widget's socket holds its conversation; once the row is gone (its organisation's deletion), a
    choice is a clear NotFound for the socket to answer with, not the ORM's DoesNotExist."""
    organisation, _owner = make_org()
    _bot, conversation, _t, greeting = _start(organisation)
    Conversation.objects.for_org(organisation).filter(pk=conversation.pk).delete()
    with pytest.raises(NotFound, match="No such conversation"):
        services.suggestion_choose(conversation=conversation, message_id=greeting.pk, option=0)


@pytest.mark.django_db
def test_the_idle_sweep_skips_a_conversation_deleted_after_it_was_listed(make_org, monkeypatch):
    """The sweep lists the idle conversations, then closes each under its lock: one deleted in between (its
    organisation's deletion) is skipped, and the others are still closed (it failed the whole sweep)."""
    from datetime import timedelta

    from django.utils import timezone

    from core import statements

    organisation, _owner = make_org()
    _bot, gone, _t, _g = _start(organisation)
    _bot, idle, _t, _g = _start(organisation)
    Conversation.objects.for_org(organisation).update(last_message_at=timezone.now() - timedelta(hours=30))
    row_get = statements.row_get

    def deleted_first(model, *, lock=False, **equal):
        if model is Conversation and equal.get("pk") == gone.pk:
            Conversation.objects.for_org(organisation).filter(pk=gone.pk).delete()
        return row_get(model, lock=lock, **equal)

    monkeypatch.setattr(statements, "row_get", deleted_first)
    assert services.conversations_close_idle(older_than_hours=24) == 1
    assert not Conversation.objects.for_org(organisation).filter(pk=gone.pk).exists()
    assert Conversation.objects.for_org(organisation).get(pk=idle.pk).status == ConversationStatus.CLOSED


@pytest.mark.django_db
def test_corrections_retrain_the_intent_model(bot_org):
    from core.jobs import services as jobs
    from core.jobs.models import JobStatus, TrainingJob
    from core.registry.models import Dataset

    organisation, _owner, version_id = bot_org
    with pytest.raises(Conflict, match="No operator corrections yet"):
        services.retrain_with_corrections(organisation=organisation)
    _bot, conversation, _token, _greeting = _start(organisation)
    visitor, _reply = services.visitor_message(
        conversation=conversation, text="the atm kept my card, what now"
    )
    services.message_correct_intent(organisation=organisation, message_id=visitor.pk, intent="atm_support")
    job = services.retrain_with_corrections(organisation=organisation)
    jobs.job_execute(job_id=job.pk)
    job = TrainingJob.objects.for_org(organisation).get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    newest = Dataset.objects.for_org(organisation).order_by("-version").first()
    assert newest.version == 2 and newest.source_filename == "with-corrections.csv"
    rows = [row for split in registry.dataset_rows(dataset=newest).values() for row in split]
    assert ("the atm kept my card, what now", "atm_support") in rows
    assert len(rows) == newest.row_count and newest.row_count >= 150  # the original rows are all there
    assert job.result["model_version"] != version_id


def _bitext_pairs(n: int) -> list[tuple[str, str]]:
    """Historical questions and answers: the shipped Bitext set (CDLA-Sharing-1.0), one pair per question."""
    import csv
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "data" / "bitext_customer_support"
    pairs: dict[str, str] = {}
    with (source / "Bitext_Sample_Customer_Support_Training_Dataset.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            pairs.setdefault(row["instruction"].strip(), row["response"].strip())
            if len(pairs) == n:
                break
    return list(pairs.items())


@pytest.mark.django_db
def test_historical_qa_becomes_the_knowledge_base_and_trains_its_retrieval_model(make_org):
    import csv
    import io

    from core.jobs import services as jobs
    from core.jobs.models import JobStatus, TrainingJob
    from core.registry.models import ModelVersion

    organisation, _owner = make_org()
    pairs = _bitext_pairs(60)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["question", "answer"])
    writer.writerows(pairs)
    writer.writerow(["", "an answer without its question"])
    result = services.qa_import(organisation=organisation, data=out.getvalue().encode())
    assert result["articles"] == 60 and [r["line"] for r in result["rejected"]] == [62]
    question, answer = pairs[7]
    hits = services.kb_search(organisation=organisation, query=question, k=1)
    assert hits[0].title == question and hits[0].score > 0.8

    jobs.job_execute(job_id=result["job"])
    job = TrainingJob.objects.for_org(organisation).get(pk=result["job"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    version = ModelVersion.objects.for_org(organisation).get(app="customer_service", task="retrieval")
    assert version.status == "active" and version.manifest["task"] == "embedding"
    hits = services.kb_search(
        organisation=organisation, query=question, k=1
    )  # re-embedded with the new model
    assert hits[0].title == question
    assert set(ArticleChunk.objects.for_org(organisation).values_list("embedder", flat=True)) == {
        f"version:{version.pk}"
    }

    small = services.qa_import(organisation=organisation, data=b"question,answer\nWhere is it?,Here.\n")
    assert small == {"articles": 1, "rejected": [], "job": None}  # too few pairs to train on
    with pytest.raises(InvalidInput, match="header must be exactly question,answer"):
        services.qa_import(organisation=organisation, data=b"q,a\nx,y\n")
