"""Idle websockets on the Redis channel layer stay open: the production configuration under a real server.

Each idle socket's consumer waits in a blocking Redis read (channels_redis's 5 s BZPOPMIN); with redis-py's
default 5 s socket timeout that read failed after about 5 s and closed the socket. Idle here for three such
reads and more, then an event from another process must still arrive on both a member feed and a chat widget.
"""

import json
import time

import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import connect

from core.realtime import broadcast, org_group
from core.tenancy.models import Role
from customer_service import services
from customer_service.models import Conversation
from tests.conftest import PASSWORD
from tests.worker import asgi_server

IDLE_S = 16  # more than three of channels_redis's 5 s blocking reads


def _frames_until(socket, wanted: str, timeout: float = 20) -> dict:
    while True:
        frame = json.loads(socket.recv(timeout=timeout))
        if frame["type"] == wanted:
            return frame


@pytest.mark.django_db(transaction=True)
def test_idle_sockets_on_redis_outlive_the_blocking_reads_and_still_receive(make_org, make_member):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL): the embedded default's channel layer is in memory")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "core.channel_layer.RedisChannelLayer"
    organisation, owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    operator = make_member(organisation, Role.OPERATOR)
    client = Client()
    assert client.login(username=owner.email, password=PASSWORD)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    with asgi_server() as url:
        ws_url = url.replace("http://", "ws://")
        with (
            connect(f"{ws_url}/ws/jobs/", additional_headers={"Cookie": cookie, "Origin": url}) as jobs,
            connect(f"{ws_url}/ws/chat/{bot.widget_key}/", additional_headers={"Origin": url}) as chat,
        ):
            chat.send(json.dumps({"type": "start"}))
            public_id = _frames_until(chat, "conversation")["data"]["id"]
            assert _frames_until(chat, "message")["data"]["text"] == bot.greeting

            time.sleep(IDLE_S)  # both sockets idle: no frame either way (the protocol's pings aside)

            broadcast(
                group=org_group(organisation.pk, "jobs"),
                event_type="job.progress",
                payload={"id": 1, "progress": 0.5},
            )
            assert _frames_until(jobs, "job.progress")["data"] == {"id": 1, "progress": 0.5}
            conversation = Conversation.objects.for_org(organisation).get(public_id=public_id)
            services.conversation_take_over(
                organisation=organisation, conversation_id=conversation.pk, user=operator
            )
            joined = _frames_until(chat, "message")
            assert "joined the conversation" in joined["data"]["text"]
