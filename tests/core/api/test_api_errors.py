"""Whatever a client sends under /api/, the answer is a 4xx in the API's JSON error shape, never a 500 or
an HTML page, and nothing runs or is counted for it."""

import pytest
from django.core.cache import cache

from core.billing import deferred, flusher
from core.billing.models import Meter, UsageEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def caller(make_org, make_key, key_client):
    org, _ = make_org()
    _, secret = make_key(org, scopes=["read", "predict", "train", "admin"])
    return org, key_client(secret)


def _error(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/usage/events/?meter=%00",
        "/api/jobs/?status=%00",
        "/api/jobs/?kind=ml.%00train",
        "/api/models/?app=%00&task=intent",
        "/api/models/?task=in%00tent",
        "/api/datasets/?page=%00",
        "/api/customer-service/conversations/?status=%00",
        "/api/members/?%00=1",
    ],
)
def test_a_nul_in_any_query_parameter_is_a_400(caller, path):
    org, client = caller
    error = _error(client.get(path), 400)
    assert error["code"] == "invalid" and "NUL" in error["message"]
    assert not UsageEvent.objects.for_org(org).filter(meter=Meter.API_CALLS).exists()


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/jobs/?status=done", "status"), ("/api/usage/events/?meter=tokens", "meter")],
)
def test_filters_are_checked_against_their_choices(caller, path, field):
    _, client = caller
    error = _error(client.get(path), 400)
    assert error["details"] == {"field": field} and "must be one of" in error["message"]


def test_known_filter_values_and_empty_filters_still_work(caller):
    _, client = caller
    assert client.get("/api/jobs/?status=queued").json()["count"] == 0
    assert client.get("/api/jobs/?status=").status_code == 200
    assert client.get("/api/usage/events/?meter=predictions").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/nothing-here/"),
        ("post", "/api/nothing-here/"),
        ("get", "/api/models/not-a-number/"),
        ("get", "/api/customer-service/nothing/"),
        ("delete", "/api/"),
        ("get", "/api"),
    ],
)
def test_unknown_api_paths_answer_a_json_404(caller, method, path):
    _, client = caller
    error = _error(getattr(client, method)(path), 404)
    assert error["code"] == "not_found"


def test_unknown_paths_answer_json_to_anonymous_callers_too(api):
    assert _error(api.get("/api/nothing-here/"), 404)["code"] == "not_found"


def test_a_wrong_method_answers_a_json_405(caller):
    _, client = caller
    response = client.delete("/api/usage/")
    error = _error(response, 405)
    assert error["code"] == "method_not_allowed" and "GET" in response["Allow"]


def test_a_host_the_server_does_not_answer_for_gets_a_json_400(caller, settings):
    org, client = caller
    settings.ALLOWED_HOSTS = ["api.trellis.example"]
    error = _error(client.get("/api/usage/", HTTP_HOST="evil.example"), 400)
    assert error["code"] == "bad_request" and "Host" in error["message"]
    ok = client.get("/api/usage/", HTTP_HOST="api.trellis.example")
    assert ok.status_code == 200, ok.content
    if deferred.enabled():  # with Redis the API-call line goes through the ledger stream
        flusher.ledger_drain()
    assert UsageEvent.objects.for_org(org).filter(meter=Meter.API_CALLS).count() == 1  # the refused one: none


def test_pages_outside_the_api_keep_their_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_the_schema_documents_every_list_filter(caller):
    """The filters the list views read are in the schema (schemathesis sends only what is documented)."""
    _, client = caller
    paths = client.get("/api/schema/?format=json").json()["paths"]

    def names(path):
        return {p["name"] for p in paths[path]["get"].get("parameters", [])}

    assert {"status", "kind"} <= names("/api/jobs/")
    assert "meter" in names("/api/usage/events/")
    assert {"app", "task"} <= names("/api/models/")


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/keys/", '{"items":' + _nested(100_000) + "}"),  # past the recursion limit: RecursionError
        ("/api/models/train/", '{"config":{"attributes":' + '{"a":' * 5_000 + "1" + "}" * 5_001 + "}"),
        ("/api/keys/", '{"name":"k","scopes":' + _nested(65, '"read"') + "}"),  # parses, but over the limit
    ],
)
def test_a_json_body_nested_too_deep_is_a_400(caller, path, body):
    org, client = caller
    error = _error(client.post(path, data=body, content_type="application/json"), 400)
    assert error["code"] == "parse_error" and "nested more than 64 levels" in error["message"]


def test_a_json_body_within_the_depth_limit_reaches_the_view(caller):
    _, client = caller
    body = '{"name":"k","scopes":' + _nested(60, '"read"') + "}"
    error = _error(client.post("/api/keys/", data=body, content_type="application/json"), 400)
    assert error["code"] == "invalid"  # the serializer's answer, not the parser's


@pytest.mark.parametrize(
    "path",
    [
        "/customer-service/widget/ab%00cd/config.json",
        "/invitations/tok%00en/",
        "/api/recommender/items/a%00/",
    ],
)
def test_a_nul_in_a_path_is_not_found_before_any_view_looks_it_up(caller, client, path):
    """A NUL in a path reached the views' lookups (PostgreSQL cannot compare text with one: a 500 where no
    view checked): no page or object is named with one."""
    response = (caller[1] if path.startswith("/api/") else client).get(path)
    assert response.status_code == 404
    if path.startswith("/api/"):
        assert response.json()["error"]["code"] == "not_found"
