"""The live jobs feed over a real websocket: members get their organisation's job events only."""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from core.asgi import application
from core.jobs import services as jobs
from core.realtime import broadcast, org_group
from tests.conftest import PASSWORD
from tests.factories.jobs import TrainingJobFactory
from tests.sockets import Socket, run_sockets


def _headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://localhost")]


@pytest.mark.django_db(transaction=True)
def test_jobs_socket_streams_own_progress_and_refuses_strangers(make_org):
    org, owner = make_org()
    other, other_owner = make_org()
    mine = TrainingJobFactory(organisation=org)  # a usage export on the default queue
    theirs = TrainingJobFactory(organisation=other)

    async def scenario():
        socket = Socket(application, "/ws/jobs/", headers=await sync_to_async(_headers)(owner))
        connected, _ = await socket.connect()
        assert connected
        await sync_to_async(jobs.job_start)(job_id=theirs.pk)  # another tenant's event: must not arrive
        await sync_to_async(jobs.job_start)(job_id=mine.pk)
        event = await socket.receive_json_from(timeout=5)
        assert event["type"] == "job.progress" and event["data"]["id"] == mine.pk
        assert event["data"]["status"] == "running"
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

        anonymous = Socket(application, "/ws/jobs/", headers=[(b"origin", b"http://localhost")])
        connected, code = await anonymous.connect()
        assert not connected and code == 4401

    run_sockets(scenario)


@pytest.mark.parametrize(
    "path", ["/ws/jobs/", "/ws/finance-monitor/alerts/", "/ws/finance-monitor/documents/"]
)
@pytest.mark.django_db(transaction=True)
def test_member_feeds_answer_hostile_frames_with_an_error_frame_and_stay_open(make_org, path):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL): the embedded default's channel layer is in memory")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "core.channel_layer.RedisChannelLayer"
    org, owner = make_org()
    group = org_group(org.pk, path.strip("/").split("/")[-1])  # jobs, alerts, documents

    async def scenario():
        socket = Socket(application, path, headers=await sync_to_async(_headers)(owner))
        connected, _ = await socket.connect()
        assert connected
        for frame in ["not json", "{" * 10_000, "[" * 5_000, "[1, 2]", '"text"']:
            await socket.send_to(text_data=frame)
            assert await socket.receive_json_from(timeout=5) == {
                "type": "error",
                "error": {"code": "invalid", "message": "Frames are JSON objects."},
            }
        await socket.send_to(bytes_data=b"\x00\xff binary")
        error = (await socket.receive_json_from(timeout=5))["error"]
        assert error["code"] == "invalid" and "Binary frames" in error["message"]
        await socket.send_to(text_data='{"type": "hello"}')  # a JSON object: nothing to answer on a feed
        assert await socket.receive_nothing(timeout=0.3)
        await sync_to_async(broadcast)(group=group, event_type="probe.event", payload={"n": 1})
        assert await socket.receive_json_from(timeout=5) == {"type": "probe.event", "data": {"n": 1}}
        await socket.disconnect()

    run_sockets(scenario)
