"""The live jobs feed over a real websocket: members get their organisation's job events only."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from core.asgi import application
from core.jobs import services as jobs
from tests.conftest import PASSWORD
from tests.factories.jobs import TrainingJobFactory


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
        socket = WebsocketCommunicator(application, "/ws/jobs/", headers=await sync_to_async(_headers)(owner))
        connected, _ = await socket.connect()
        assert connected
        await sync_to_async(jobs.job_start)(job_id=theirs.pk)  # another tenant's event: must not arrive
        await sync_to_async(jobs.job_start)(job_id=mine.pk)
        event = await socket.receive_json_from(timeout=5)
        assert event["type"] == "job.progress" and event["data"]["id"] == mine.pk
        assert event["data"]["status"] == "running"
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

        anonymous = WebsocketCommunicator(
            application, "/ws/jobs/", headers=[(b"origin", b"http://localhost")]
        )
        connected, code = await anonymous.connect()
        assert not connected and code == 4401

    async_to_sync(scenario)()
