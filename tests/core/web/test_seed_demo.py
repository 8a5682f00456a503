import re
from io import StringIO

import pytest
from django.core.management import call_command

from core.jobs.models import TrainingJob
from core.registry.models import ModelVersion
from core.tenancy.models import Organisation


@pytest.mark.django_db
def test_seed_demo_on_an_empty_database_gives_a_working_intent_model(make_org, client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    email, password = re.search(r"as (\S+) / (\S+)", out.getvalue()).groups()
    org = Organisation.objects.get(name="Demo Retail")
    active = ModelVersion.objects.for_org(org).get(app="customer_service", task="intent", status="active")
    assert active.metrics["accuracy"] >= 0.95 and len(active.labels) == 27
    follow = TrainingJob.objects.for_org(org).get(status="queued")
    # the shop: the Online Retail slice and an active EASE model that recommends at once
    assert "2383 items and 21611 purchases from Online Retail" in out.getvalue()
    shop = ModelVersion.objects.for_org(org).get(app="recommender", status="active")
    assert shop.method == "ease" and shop.metrics["ndcg@10"] > 0.03
    from recommender.services.serving import Filters, recommendations_for_user

    top = recommendations_for_user(organisation=org, user="17841", k=5, filters=Filters())
    assert top["model_version"] == shop.pk and len(top["items"]) == 5
    assert follow.params["config"] == {"method": "lora", "time_budget_s": 900}
    # the monitor: a watch-list, a surge rule and a replay that the worker's beat pushes (nothing heavy here)
    assert "timed replay of twitter financial news" in out.getvalue()
    from finance_monitor.models import AlertRule, Entity, Replay

    assert Replay.objects.for_org(org).get().started_at is None
    assert Entity.objects.for_org(org).count() == 5 and AlertRule.objects.for_org(org).count() == 1
    assert client.login(username=email, password=password)
    # what the set-up spent is on the house: the visitor has the whole trial left to try
    from core.billing import services as billing
    from core.billing.meters import stock_count

    trial = billing.plan_get(code="trial")
    plan = billing.subscription_for(organisation=Organisation.objects.get(pk=org.pk)).plan
    assert plan.code == f"setup-{org.pk}" and not plan.is_public
    spent_jobs = billing.period_used(organisation=org, meter="training_jobs")
    assert spent_jobs == 3  # the intent model, its queued follow-up and the recommender
    assert plan.limit_for("training_jobs") - spent_jobs == trial.limit_for("training_jobs")
    records = stock_count(organisation=org, meter="stored_records")
    assert records > 1_000 and plan.limit_for("stored_records") - records == trial.limit_for("stored_records")
    assert client.get("/usage/").status_code == 200
    # the chatbot answers at once: the demo's templates through its intent model, and its articles
    from customer_service import services as chatbot
    from customer_service.models import AnswerTemplate, Article

    # 25 of the 27 intents: complaints and requests for a person go to an operator
    assert AnswerTemplate.objects.for_org(org).count() == 25 and Article.objects.for_org(org).count() == 3
    bot = chatbot.bot_settings_for(organisation=org)
    conversation, _token, _greeting = chatbot.conversation_start(bot=bot)
    _mine, reply = chatbot.visitor_message(
        conversation=conversation, text="where is my package, I want to track it"
    )
    assert (reply.source, reply.intent) == ("template", "track_order")
    _mine, reply = chatbot.visitor_message(conversation=conversation, text="Are your stores open on Sunday?")
    assert reply.source == "article" and "Sunday from 11am" in reply.text
    # Running it again changes nothing and prints the same credentials.
    again = StringIO()
    call_command("seed_demo", stdout=again, stderr=StringIO())
    assert f"{email} / {password}" in again.getvalue()
    assert ModelVersion.objects.for_org(org).filter(app="customer_service").count() == 1
    assert AnswerTemplate.objects.for_org(org).count() == 25
    assert ModelVersion.objects.for_org(org).filter(app="recommender").count() == 1
    assert Replay.objects.for_org(org).count() == 1
    assert billing.subscription_for(organisation=Organisation.objects.get(pk=org.pk)).plan == plan
