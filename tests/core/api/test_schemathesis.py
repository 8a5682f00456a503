"""The OpenAPI schema describes the API as it is: schemathesis sends generated requests (valid and invalid)
to every operation of the real app, authenticated with an API key of an organisation that has data, and
every answer must be no server error, with a documented status code, content type and body.

Bounded and deterministic (a fixed number of cases per operation, derandomised) so it stays a test, not a
search. Operations left out, and why, are in ``EXCLUDED``.
"""

import os
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.billing.models import Plan, Subscription, SubscriptionStatus, plan_limits_write
from core.jobs import services as jobs
from core.registry.models import Dataset, ModelVersion
from core.tenancy import services as tenancy
from core.tenancy.models import Invitation, Membership, Role
from customer_service import services as cs
from customer_service.models import AnswerTemplate, Article
from finance_monitor.models import Alert, Document
from finance_monitor.services import alerts as fm_alerts
from finance_monitor.services import documents as fm_documents
from finance_monitor.services import entities as fm_entities
from recommender.models import Experiment
from recommender.services import catalogue as reco_catalogue
from recommender.services import events as reco_events
from tests.core.registry.trained import train_intent_model

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Cases per operation: (mode, realistic, how many). Realistic cases use the organisation's own ids in the
# path and the first page of lists; the others are free to try any id or page (mostly 404s).
CASES = [
    (GenerationMode.POSITIVE, True, 5),
    (GenerationMode.POSITIVE, False, 3),
    (GenerationMode.NEGATIVE, True, 2),
    (GenerationMode.NEGATIVE, False, 2),
]
# A longer search on demand: SCHEMATHESIS_SCALE=20 runs twenty times the cases (not in the test command).
SCALE = int(os.environ.get("SCHEMATHESIS_SCALE", "1"))
EXCLUDED = {
    # They start training: a job per case, each fine-tuning a model (tests/core/registry/test_registry.py and
    # tests/customer_service cover them on a real worker).
    "POST /api/models/train/": "starts training",
    "POST /api/customer-service/retrain": "starts training",
    "POST /api/finance-monitor/models/retrain": "starts training",
    "POST /api/finance-monitor/models/defaults": "starts training the default models",
    "POST /api/customer-service/qa/import": "from 50 pairs it starts fine-tuning the retrieval model",
    # Would revoke the key the run authenticates with.
    "DELETE /api/keys/{key_id}/": "revokes the calling key",
}
# Reads no API key can make (people only: no key scope grants their permission); a key's 403 is the answer.
PEOPLE_ONLY = {
    "GET /api/organisation/audit-log/": "owners in the browser (org.privacy has no key scope)",
    "GET /api/organisation/exports/": "owners in the browser (org.privacy has no key scope)",
    "GET /api/organisation/exports/{export_id}/download/": "owners in the browser (as above)",
}


@pytest.fixture
def org_with_data(make_org, make_member, tmp_path):
    """An organisation on a plan with room for the run, a trained intent model, a dataset, answers, an
    article, members, an invitation, a finished usage export and organisation export; and an API key with
    every scope."""
    cache.clear()
    org, owner = make_org()
    plan = Plan.objects.create(
        code="schemathesis",
        name="Schemathesis",
        is_public=False,
        predictions_per_month=1_000_000,
        training_jobs_per_month=1_000,
        gpu_minutes_per_month=1_000,
        api_calls_per_month=1_000_000,
        max_models=1_000,
        max_seats=1_000,
        max_stored_records=1_000_000,
        requests_per_minute=1_000_000,
    )
    # products' meters default by plan code: a plan of its own states them
    product_meters = (
        "documents_ingested",
        "documents_classified",
        "recommendations_served",
        "catalogue_items",
        "stored_events",
    )
    plan_limits_write(plan.pk, dict.fromkeys(product_meters, 1_000_000))
    Subscription.objects.filter(organisation=org).update(plan=plan, status=SubscriptionStatus.ACTIVE)
    train_intent_model(org, tmp_path)
    cs.template_save(organisation=org, intent="card_arrival", body="Cards arrive within 5 working days.")
    cs.article_save(
        organisation=org, title="Parking", body="Every branch has free parking behind the building."
    )
    make_member(org, Role.OPERATOR)
    tenancy.invitation_create(
        organisation=org, actor=owner, actor_role=Role.OWNER, email="new@example.com", role=Role.VIEWER
    )
    export = jobs.job_create(organisation=org, kind="usage.export")
    jobs.job_execute(job_id=export.pk)
    archive = jobs.job_create(organisation=org, kind="organisation.export", created_by=owner)
    jobs.job_execute(job_id=archive.pk)
    conversation, _, greeting = cs.conversation_start(bot=cs.bot_settings_for(organisation=org))
    saved_reply = cs.saved_reply_save(organisation=org, title="Refund", body="Your refund is on its way.")
    key, secret = tenancy.api_key_create(
        organisation=org, created_by=owner, name="fuzz", scopes=["read", "predict", "train", "admin"]
    )
    fm_documents.documents_ingest(
        organisation=org,
        items=[fm_documents.DocumentIn(text="Shares of Acme Corp rose 4% on earnings.", client_id="f1")],
    )
    document = Document.objects.for_org(org).get()
    entity = fm_entities.entity_save(organisation=org, kind="company", name="Acme Corp", ticker="ACME")
    # an alert rule (its webhook: a closed local port, so a test webhook fails at once) and one alert of it
    rule = fm_alerts.alert_rule_save(organisation=org, name="Acme", webhook_url="http://127.0.0.1:9/hook")
    alert = Alert.all_tenants.create(
        organisation=org,
        rule=rule,
        kind="share",
        dimension="all",
        granularity="hour",
        bucket_start=document.occurred_at.replace(minute=0, second=0, microsecond=0),
        fired_at=document.occurred_at,
        volume=40,
        negative=30,
        observed=0.75,
        baseline=0.3,
        baseline_volume=1000,
        p_value=1e-9,
    )
    # a catalogue item and behaviour (served by live popularity: no recommender model is trained here)
    reco_catalogue.items_upsert(
        organisation=org,
        rows=[{"id": "85123A", "title": "WHITE HANGING HEART T-LIGHT HOLDER", "price": "2.55"}],
    )
    reco_events.events_ingest(
        organisation=org,
        rows=[
            {
                "id": "536365-1",
                "user": "17850",
                "item": "85123A",
                "type": "purchase",
                "occurred_at": document.occurred_at.isoformat(),
            }
        ],
    )
    # a stopped recommender experiment between two archived versions (no artifact: nothing can serve them, and
    # neither a new experiment nor a start can use them), so its detail and results answer
    archived = [
        ModelVersion.all_tenants.create(
            organisation=org,
            app="recommender",
            task="ranking",
            version=n,
            kind="recommender",
            status="archived",
        )
        for n in (1, 2)
    ]
    experiment = Experiment.all_tenants.create(
        organisation=org, name="fuzz", version_a=archived[0], version_b=archived[1], status="stopped"
    )
    ids = {
        "item_id": "85123A",
        "experiment_id": experiment.pk,
        "document_id": document.pk,
        "source_id": document.source_id,  # the API source: polling it is refused, nothing is fetched
        "entity_id": entity.pk,
        "rule_id": rule.pk,
        "alert_id": alert.pk,
        "version_id": ModelVersion.objects.for_org(org).get(kind="classifier").pk,
        "dataset_id": Dataset.objects.for_org(org).get().pk,
        "job_id": export.pk,
        "export_id": archive.pk,
        "template_id": AnswerTemplate.objects.for_org(org).get().pk,
        "article_id": Article.objects.for_org(org).get().pk,
        "member_id": Membership.objects.for_org(org).get(role=Role.OPERATOR).pk,
        "invitation_id": Invitation.objects.for_org(org).get().pk,
        "conversation_id": conversation.pk,
        "message_id": greeting.pk,
        "reply_id": saved_reply.pk,
        "key_id": key.pk,
    }
    return org, secret, ids


@pytest.fixture
def wsgi_app():
    """The real WSGI app, in this thread, inside the test's transaction: like Django's test client, keep
    the request signals from closing the test's database connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _run(operation, mode, examples: int, headers: dict, statuses: list, **fixed) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @hypothesis_settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses.append((operation.label, response.status_code))

    check()


def test_every_operation_answers_as_its_schema_says(org_with_data, wsgi_app):
    _, secret, ids = org_with_data
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    headers = {"Authorization": f"Bearer {secret}"}
    failures, ran, statuses = [], [], []
    # Deletions last: the realistic cases of every other operation still find the organisation's rows.
    operations = sorted(
        (r.ok() for r in schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE"
    )
    for operation in operations:
        if operation.label in EXCLUDED:
            continue
        ran.append(operation.label)
        names = [p.name for p in operation.path_parameters]
        pages = any(p.name == "page" for p in operation.query)
        for mode, realistic, examples in CASES:
            fixed = {}
            if realistic and names:
                fixed["path_parameters"] = {name: ids[name] for name in names}
            if realistic and pages:
                fixed["query"] = {"page": 1}
            try:
                _run(operation, mode, examples, headers, statuses, **fixed)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - report every operation's failure
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert len(ran) >= 45, ran
    assert not failures, "\n\n".join(failures)
    assert len(statuses) >= 300 * SCALE, len(statuses)
    answered = {label for label, status in statuses if 200 <= status < 300}
    unanswered = sorted(
        label for label in ran if label.startswith("GET") and label not in answered | set(PEOPLE_ONLY)
    )
    print(len(ran), len(statuses), sorted(Counter(s for _, s in statuses).items()), unanswered)
    assert not unanswered, f"no successful case for {unanswered}"
