"""Per-visitor throttles behind a load balancer: X-Forwarded-For is believed only from TRUSTED_PROXIES.

Through the real ASGI server (uvicorn, with the proxy options ``bin/run-all`` gives it) over real websockets:
the widget's "start" allowance (``CS_WIDGET_STARTS_PER_MINUTE``, 2 here) is what a visitor's address keys.
The test connects from 127.0.0.1, so that address is either an untrusted peer or the trusted proxy.
"""

import asyncio
import json
import os
import subprocess
import sys

import pytest
import websockets

from core.proxies import forwarded_address, parse_networks
from customer_service import services
from tests.worker import ROOT, asgi_server

SITE = "https://shop.example.com"


def _uvicorn_proxy_args(trusted: str) -> tuple[str, ...]:
    """As bin/run-all starts uvicorn from TRUSTED_PROXIES."""
    return ("--proxy-headers", "--forwarded-allow-ips", trusted) if trusted else ("--no-proxy-headers",)


def _server(trusted: str, *, uvicorn_told: bool = True):
    """``uvicorn_told=False``: uvicorn leaves the peer address alone, so the application's rule alone decides
    (as under any other ASGI server)."""
    args = _uvicorn_proxy_args(trusted) if uvicorn_told else ("--no-proxy-headers",)
    return asgi_server({"TRUSTED_PROXIES": trusted, "CS_WIDGET_STARTS_PER_MINUTE": "2"}, args=args)


async def _starts(url: str, forwarded_for: str | None, count: int) -> list[str]:
    """``count`` conversations started on one socket: "ok" for each started, else the error's code."""
    headers = {"Origin": SITE}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    outcomes = []
    async with websockets.connect(url, additional_headers=headers) as socket:
        for _ in range(count):
            await socket.send(json.dumps({"type": "start"}))
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
                if frame["type"] == "conversation":
                    outcomes.append("ok")
                    break
                if frame["type"] == "error":
                    outcomes.append(frame["error"]["code"])
                    break
    return outcomes


def _widget_url(base: str, organisation) -> str:
    bot = services.bot_settings_update(organisation=organisation, allowed_origins=[SITE])
    return base.replace("http://", "ws://") + f"/ws/chat/{bot.widget_key}/"


@pytest.mark.django_db(transaction=True)
def test_a_spoofed_forwarded_address_from_an_untrusted_peer_is_ignored(make_org):
    organisation, _owner = make_org()
    with _server("") as base:
        url = _widget_url(base, organisation)
        first = asyncio.run(_starts(url, "198.51.100.1", 2))
        # another made-up address from the same peer: the same allowance, already spent
        second = asyncio.run(_starts(url, "198.51.100.2", 1))
        plain = asyncio.run(_starts(url, None, 1))
    assert first == ["ok", "ok"]
    assert second == ["rate_limited"]
    assert plain == ["rate_limited"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("uvicorn_told", [True, False], ids=["run-all", "application-only"])
def test_behind_a_trusted_proxy_each_visitor_has_their_own_allowance(make_org, uvicorn_told):
    organisation, _owner = make_org()
    with _server("127.0.0.1,10.0.0.0/8", uvicorn_told=uvicorn_told) as base:
        url = _widget_url(base, organisation)
        # two visitors behind the one proxy (127.0.0.1 here, one more proxy of 10/8 in between for the second)
        one = asyncio.run(_starts(url, "203.0.113.5", 3))
        two = asyncio.run(_starts(url, "203.0.113.6, 10.1.2.3", 2))
        # what a visitor writes left of the address the proxy appended is not believed: still 203.0.113.5
        spoofed = asyncio.run(_starts(url, "192.0.2.44, 203.0.113.5", 1))
        # the proxy itself, with no header: its own allowance
        proxy = asyncio.run(_starts(url, None, 1))
    assert one == ["ok", "ok", "rate_limited"]
    assert two == ["ok", "ok"]
    assert spoofed == ["rate_limited"]
    assert proxy == ["ok"]


NETWORKS = parse_networks(["10.0.0.0/8", "192.168.1.1", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # untrusted peer: the header is ignored
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.3.3.3"], "198.51.100.1"),  # right-most untrusted
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # several header lines, in order
        ("10.0.0.2", ["198.51.100.1:5555"], "198.51.100.1"),
        ("2001:db8::1", ["[2001:db9::7]:443"], "2001:db9::7"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["10.0.0.3, 192.168.1.1"], "10.0.0.2"),  # proxies only: the peer
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["6.6.6.6, garbage, 10.0.0.9"], "10.0.0.2"),  # not an address: nothing left of it
    ],
)
def test_the_forwarded_address_rule(peer, header, expected):
    assert forwarded_address(peer, header, NETWORKS) == expected
    assert forwarded_address(peer, header, ()) == peer  # no trusted proxies: always the peer


def test_a_bad_trusted_proxy_setting_is_refused_naming_it():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["TRUSTED_PROXIES"] = "10.0.0.1,load-balancer"
    code = "import os; os.environ['DJANGO_SETTINGS_MODULE']='core.settings'; import django; django.setup()"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "TRUSTED_PROXIES: 'load-balancer' is not an IP address or network" in result.stderr
