"""Quota refusals say what the plan allows in the meter's own terms: monthly meters name their month,
stock meters (seats, models, stored records) the plan's total, and a request larger than what is left
says how much it adds and how much remains."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Plan, UsageEvent
from core.errors import QuotaExceeded
from core.registry.models import Dataset

pytestmark = pytest.mark.django_db


def _csv(n: int, start: int = 0) -> bytes:
    rows = [
        f"message number {i} about {'cards' if i % 2 else 'transfers'},{'a' if i % 2 else 'b'}"
        for i in range(start, start + n)
    ]
    return ("text,label\n" + "\n".join(rows) + "\n").encode()


def test_seat_refusal_names_the_plans_seats_not_a_month(make_org, user_client):
    org, owner = make_org()  # trial: 3 seats, the owner holds one
    client = user_client(owner)
    for n in range(2):
        assert (
            client.post(
                "/api/invitations/", {"email": f"s{n}@example.com", "role": "viewer"}, format="json"
            ).status_code
            == 201
        )
    refused = client.post("/api/invitations/", {"email": "s9@example.com", "role": "viewer"}, format="json")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["message"] == "All 3 seats on your plan are in use."
    assert "month" not in error["message"] and error["details"]["period"] is None
    assert error["details"]["meter"] == "seats" and error["details"]["limit"] == 3


def test_stored_records_refusal_says_what_the_upload_adds_and_what_remains(make_org, user_client):
    org, owner = make_org()
    Plan.objects.filter(code="trial").update(max_stored_records=10)
    client = user_client(owner)

    def upload(data: bytes, name: str):
        return client.post(
            "/api/datasets/",
            {"name": name, "task": "classification", "file": SimpleUploadedFile("d.csv", data)},
            format="multipart",
        )

    assert upload(_csv(4), "first").status_code == 201
    refused = upload(_csv(8, start=100), "second")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["message"] == (
        "This request adds 8 stored records, but only 6 of the 10 stored records on your plan remain."
    )
    assert "used up" not in error["message"]
    assert error["details"] == {
        "meter": "stored_records",
        "limit": 10,
        "used": 4,
        "period": None,
        "requested": 8.0,
        "remaining": 6.0,
    }
    assert Dataset.objects.for_org(org).count() == 1


def test_monthly_refusals_name_the_month_and_what_remains(make_org):
    org, _ = make_org()
    limit = Plan.objects.get(code="trial").predictions_per_month
    month = timezone.now().strftime("%Y-%m")
    billing.usage_record(organisation=org, meter="predictions", quantity=limit - 5)
    with pytest.raises(QuotaExceeded) as partial:
        billing.quota_check(organisation=org, meter="predictions", quantity=8)
    assert partial.value.message == (
        f"This request adds 8 predictions, but only 5 of your plan's {limit} predictions per month "
        f"remain for {month}."
    )
    billing.usage_record(organisation=org, meter="predictions", quantity=5)
    before = UsageEvent.objects.for_org(org).count()
    with pytest.raises(QuotaExceeded) as used_up:
        billing.usage_record(organisation=org, meter="predictions", quantity=1)
    assert used_up.value.message == f"Your plan's {limit} predictions per month are used up for {month}."
    assert used_up.value.details["period"] == month and used_up.value.details["remaining"] == 0
    assert UsageEvent.objects.for_org(org).count() == before


def test_stock_refusal_for_models(make_org):
    refusal = billing.quota_refusal(meter="models", limit=2, used=2, period="2026-12", quantity=1)
    assert refusal.message == "All 2 models on your plan are in use." and refusal.details["period"] is None


def test_a_ledger_lines_metadata_reads_in_words_on_the_usage_page(client, make_org):
    from core.billing import services as billing
    from core.billing.selectors import usage_detail

    assert usage_detail({"method": "GET", "path": "/api/organisation/", "status": 200}) == (
        "GET /api/organisation/ → 200"
    )
    assert usage_detail({"source": 2, "documents": [1, 120]}) == "source 2 · documents 1–120"
    assert usage_detail({"documents": [7, 7], "topic": 4}) == "documents 7 · topic 4"
    assert usage_detail({"job": 3, "refund": True, "app": "customer_service"}) == (
        "job 3 · refund · app customer service"
    )
    assert usage_detail({}) == usage_detail(None) == ""
    org, owner = make_org()
    billing.usage_record(
        organisation=org, meter="predictions", quantity=2, metadata={"model_version": 9, "nested": {"x": 1}}
    )
    client.force_login(owner)
    page = client.get("/usage/").content.decode()
    assert "model version 9" in page and "{" not in page.split('id="usage-events"')[1].split("</table>")[0]
