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
    assert follow.params["config"] == {"method": "lora", "time_budget_s": 900}
    assert client.login(username=email, password=password)
    # Running it again changes nothing and prints the same credentials.
    again = StringIO()
    call_command("seed_demo", stdout=again, stderr=StringIO())
    assert f"{email} / {password}" in again.getvalue()
    assert ModelVersion.objects.for_org(org).count() == 1
