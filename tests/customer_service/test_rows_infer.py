"""Batch inference over a product's own rows (core.registry.rows): the chatbot's unclassified messages."""

import pytest

from core.billing.models import UsageEvent
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.registry import rows as rows_infer
from customer_service import services
from customer_service.models import Message, Sender


def _visitor_messages(organisation, texts):
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot, origin="https://shop.example.com")
    return [
        Message.all_tenants.create(
            organisation=organisation, conversation=conversation, sender=Sender.VISITOR, text=text
        )
        for text in texts
    ]


@pytest.mark.django_db
def test_unclassified_messages_get_intents_in_chunks_and_are_charged_once(bot_org, make_org, monkeypatch):
    organisation, owner, version_id = bot_org
    other, _ = make_org()
    texts = ["my card still has not arrived", "how do I change my PIN", "the atm kept my card"] * 3
    messages = _visitor_messages(organisation, texts)
    theirs = _visitor_messages(other, ["my card still has not arrived"])
    monkeypatch.setattr(rows_infer, "CHUNK", 4)  # 9 rows: three chunks, three progress reports
    job = services.messages_classify_start(organisation=organisation, created_by=owner)
    assert job.queue == "infer" and job.params["rows"] == 9 and job.params["model_version"] == version_id
    late = _visitor_messages(organisation, ["where is my card"])  # after the start: not in this job
    seen = []
    jobs.job_execute(job_id=job.pk, on_progress=lambda j: seen.append(round(j.progress, 2)))
    job = TrainingJob.objects.for_org(organisation).get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"rows": 9, "model_version": version_id, "source": "customer_service.messages"}
    assert [p for p in seen if p > 0][:3] == [0.44, 0.89, 1.0]
    stored = {m.pk: m for m in Message.objects.for_org(organisation)}
    assert stored[messages[0].pk].intent == "card_arrival" and stored[messages[0].pk].confidence > 0.3
    assert all(stored[m.pk].intent and stored[m.pk].model_version_id == version_id for m in messages)
    assert stored[late[0].pk].intent == ""
    assert Message.objects.for_org(other).get(pk=theirs[0].pk).intent == ""  # another tenant's rows untouched
    charged = UsageEvent.objects.for_org(organisation).filter(meter="predictions")
    assert sum(e.quantity for e in charged) == 9


@pytest.mark.django_db
def test_nothing_to_infer_is_refused_and_a_failed_job_gives_back_what_it_did_not_do(bot_org):
    organisation, owner, _version_id = bot_org
    with pytest.raises(InvalidInput, match="no rows"):
        services.messages_classify_start(organisation=organisation)
    _visitor_messages(organisation, ["a", "b", "c", "d"])
    job = services.messages_classify_start(organisation=organisation)
    TrainingJob.all_tenants.filter(pk=job.pk).update(progress=0.5)  # two of four written, then it failed
    job.refresh_from_db()
    rows_infer.rows_infer_release(job)
    rows_infer.rows_infer_release(job)  # idempotent
    charged = UsageEvent.objects.for_org(organisation).filter(meter="predictions")
    assert sum(e.quantity for e in charged) == 2
    with pytest.raises(InvalidInput, match="Unknown row source"):
        rows_infer.rows_infer_start(organisation=organisation, source="nope.rows")
