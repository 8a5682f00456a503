"""Grounded answers (``grounded_answers``) and the hybrid knowledge-base search. The generations are real
(the packaged SmolLM2, loaded once per process) and short."""

import pytest
from django.test import override_settings

from core.errors import InvalidInput
from customer_service import services
from customer_service.demo import ANSWERS, ARTICLES
from customer_service.models import AnswerSource, ConversationStatus, Sender
from customer_service.services.grounded import NOT_FOUND

GIFT_URL = "https://shop.example.com/help/gift-cards"


CANCEL_URL = "https://shop.example.com/help/cancel"


def _knowledge_base(organisation):
    for title, body in ARTICLES:
        url = GIFT_URL if title == "Gift cards" else ""
        services.article_save(organisation=organisation, title=title, body=body, url=url)
    services.article_save(
        organisation=organisation, title="Cancel order", body=ANSWERS["cancel_order"], url=CANCEL_URL
    )


def _chat(organisation, **bot_fields):
    services.bot_settings_update(organisation=organisation, **bot_fields)
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot, origin="https://shop.example.com")
    return conversation


@pytest.mark.django_db
def test_hybrid_search_finds_exact_words_and_stays_in_its_tenant(make_org):
    organisation, _owner = make_org()
    other, _ = make_org()
    _knowledge_base(organisation)
    services.article_save(organisation=other, title="Bicycles", body="We sell bicycles and e-bikes in store.")
    for mode in ("hybrid", "dense", "lexical"):
        hits = services.kb_search(
            organisation=organisation, query="How long are gift cards valid?", mode=mode
        )
        assert hits[0].title == "Gift cards", mode
        assert all(hit.title != "Bicycles" for hit in hits)
        assert -1.0 <= hits[0].score <= 1.0  # the cosine, what retrieval_threshold is compared with
    assert services.kb_search(organisation=organisation, query="bicycles e-bikes", mode="lexical") == []
    assert services.kb_search(organisation=other, query="gift cards", mode="hybrid")[0].title == "Bicycles"
    with pytest.raises(InvalidInput, match="search mode"):
        services.kb_search(organisation=organisation, query="gift", mode="fuzzy")


@pytest.mark.django_db
def test_the_search_follows_an_article_edited_unpublished_and_deleted(make_org):
    """The BM25 index and the vectors are kept per process on the passages' fingerprint: each change to an
    article is searched as it is now, by words and by meaning."""
    organisation, _owner = make_org()
    _knowledge_base(organisation)

    def titles(query: str, mode: str) -> list[str]:
        return [hit.title for hit in services.kb_search(organisation=organisation, query=query, mode=mode)]

    body = "Zephyrine couriers deliver parcels to the islands every Tuesday."
    article = services.article_save(organisation=organisation, title="Island delivery", body=body)
    assert titles("zephyrine", "lexical") == ["Island delivery"]  # read once: the index is now cached
    assert titles("zephyrine", "hybrid")[0] == "Island delivery"
    services.article_save(
        organisation=organisation,
        title="Island delivery",
        body="Quokkaline boats bring parcels to the islands on Fridays.",
        article_id=article.pk,
    )
    assert titles("zephyrine", "lexical") == []
    assert titles("quokkaline", "lexical") == ["Island delivery"]
    hits = services.kb_search(organisation=organisation, query="quokkaline boats", mode="hybrid")
    assert hits[0].title == "Island delivery" and "Fridays" in hits[0].passage
    services.article_save(
        organisation=organisation,
        title="Island delivery",
        body="Quokkaline boats bring parcels to the islands on Fridays.",
        published=False,
        article_id=article.pk,
    )
    assert titles("quokkaline", "lexical") == []
    assert "Island delivery" not in titles("quokkaline boats to the islands", "hybrid")
    services.article_save(
        organisation=organisation, title="Island delivery", body=body, article_id=article.pk
    )
    assert titles("zephyrine", "lexical") == ["Island delivery"]
    services.article_delete(organisation=organisation, article_id=article.pk)
    assert titles("zephyrine", "lexical") == []
    assert "Island delivery" not in titles("zephyrine couriers", "hybrid")


@pytest.mark.django_db
def test_setting_off_answers_with_the_article_as_before(make_org):
    organisation, _owner = make_org()
    _knowledge_base(organisation)
    conversation = _chat(organisation)
    assert not services.bot_settings_for(organisation=organisation).grounded_answers
    _visitor, reply = services.visitor_message(
        conversation=conversation, text="How long is a gift card valid?"
    )
    assert reply.source == AnswerSource.ARTICLE and reply.text.startswith("Gift cards")
    payload = services.message_payload(reply)
    assert payload["article_link"] == {"title": "Gift cards", "url": GIFT_URL}
    assert payload["article_links"] == [payload["article_link"]]


@pytest.mark.django_db
def test_grounded_answer_cites_its_passages_as_links(make_org):
    organisation, _owner = make_org()
    _knowledge_base(organisation)
    conversation = _chat(organisation, grounded_answers=True)
    question = "How do I cancel an order that has not shipped?"
    _visitor, reply = services.visitor_message(conversation=conversation, text=question)
    assert reply.source == AnswerSource.GROUNDED, reply.text
    assert "Your orders > Cancel" in reply.text and not reply.text.startswith("Cancel order")
    assert reply.citations == [{"article": reply.article_id, "title": "Cancel order", "url": CANCEL_URL}]
    payload = services.message_payload(reply)
    assert payload["article_links"] == [{"title": "Cancel order", "url": CANCEL_URL}]
    assert payload["article_link"] == payload["article_links"][0]


@pytest.mark.django_db
def test_grounded_declines_and_offers_a_person_when_the_passages_do_not_answer(make_org):
    organisation, _owner = make_org()
    _knowledge_base(organisation)
    conversation = _chat(organisation, grounded_answers=True, retrieval_threshold=0.0)  # always generates
    _visitor, said, handoff = services.visitor_message(
        conversation=conversation, text="Do you sell bicycles?"
    )
    assert said.sender == Sender.BOT and said.text == NOT_FOUND
    assert handoff.source == AnswerSource.HANDOFF
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.WAITING
    assert conversation.handoff_reason.startswith("Not in the articles")


@pytest.mark.django_db
def test_a_missing_generator_falls_back_to_the_article(make_org, tmp_path):
    organisation, _owner = make_org()
    _knowledge_base(organisation)
    with override_settings(CS_GROUNDED_MODEL=str(tmp_path / "missing.gguf")):
        decision = services.decide(
            organisation=organisation,
            bot=services.bot_settings_update(organisation=organisation, grounded_answers=True),
            text="How long is a gift card valid?",
        )
    assert decision.source == AnswerSource.ARTICLE and decision.text.startswith("Gift cards")


@pytest.mark.django_db
def test_the_setting_through_the_api_is_the_callers_tenants(make_org, user_client):
    organisation, owner = make_org()
    other, _ = make_org()
    client = user_client(owner)
    response = client.patch("/api/customer-service/settings/", {"grounded_answers": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["grounded_answers"] is True
    assert services.bot_settings_for(organisation=organisation).grounded_answers
    assert not services.bot_settings_for(organisation=other).grounded_answers
    bad = client.patch("/api/customer-service/settings/", {"grounded_answers": "maybe"}, format="json")
    assert bad.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_a_starting_process_loads_the_generator_only_when_a_tenant_answers_with_it(make_org, settings):
    from celery.signals import worker_process_init

    from core.ml.generator import generators_forget
    from core.registry.services import warmup
    from customer_service.services.grounded import generator_loaded

    settings.ML_WARMUP, settings.ML_WARMUP_INTERVAL_S = True, 0
    organisation, _owner = make_org()
    services.bot_settings_update(organisation=organisation, grounded_answers=False)
    generators_forget()  # as a new process: nothing loaded
    try:
        warmup.warmup_at_start(with_products=False)  # a worker: what web processes serve is not loaded
        assert warmup.warmups_wait(timeout=120)
        assert not generator_loaded()
        warmup.warmup_stop(timeout=60)

        warmup.warmup_at_start()
        assert warmup.warmups_wait(timeout=120)
        assert not generator_loaded()  # no tenant answers with it: its memory is not spent
        warmup.warmup_stop(timeout=60)

        services.bot_settings_update(organisation=organisation, grounded_answers=True)
        worker_process_init.send(sender=None)  # what Celery sends in each process that runs tasks
        assert warmup.warmup_started()
        assert warmup.warmups_wait(timeout=120)
        assert not generator_loaded()
        warmup.warmup_stop(timeout=60)
        warmup.warmup_at_start()
        assert warmup.warmups_wait(timeout=120)
        assert generator_loaded()  # loaded before the first visitor's question
    finally:
        warmup.warmup_stop(timeout=60)
