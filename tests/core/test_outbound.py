"""Outbound requests to tenant-given URLs reach only public addresses (core.outbound): server-side request
forgery through a feed or a webhook is refused on save and on every connection, redirect hops included."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import InvalidInput
from core.outbound import address_allowed, outbound_session, outbound_url_check
from finance_monitor.services import alert_delivery, feeds

BASE = "/api/finance-monitor"


class _Server:
    """A real HTTP server on a loopback address that counts what reached it."""

    def __init__(self, host: str, redirect_to: str = "") -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.hits.append(self.path)
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                body = b"<rss version='2.0'><channel><title>t</title></channel></rss>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_private_networks(settings):
    settings.OUTBOUND_ALLOW_NETWORKS = []


@pytest.mark.parametrize(
    "address, allowed",
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 - an address checked, not bound
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("224.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d822", True),  # NAT64 of a public address (DNS64 networks)
        ("64:ff9b:1::5db8:d822", False),  # local-use NAT64
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:5db8:d822::1", True),  # 6to4 of a public address
        ("2001:0:5ef5:79fd::1", False),  # Teredo
    ],
)
def test_only_public_addresses_are_allowed_by_default(no_private_networks, address, allowed):
    assert address_allowed(address) is allowed


def test_save_time_check_names_the_address(no_private_networks):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://localhost:6379/", "https://10.0.0.8/x"):
        with pytest.raises(InvalidInput, match="not a public internet address"):
            outbound_url_check(url, what="webhook url")
    with pytest.raises(InvalidInput, match="http or https"):
        outbound_url_check("gopher://example.com/", what="feed_url")


def test_connections_to_loopback_are_refused_before_anything_is_sent(no_private_networks, settings):
    server = _Server("127.0.0.1")
    try:
        result = alert_delivery.webhook_post(
            url=server.url + "/hook", secret="s", body=b"{}", event="alert.test"
        )
        assert not result.ok and "not a public internet address" in result.error
        with pytest.raises(feeds.FeedError, match="refused: .*not a public internet address"):
            feeds.fetch(server.url.replace("127.0.0.1", "localhost") + "/feed")  # by name: after DNS
        assert server.hits == []
        settings.OUTBOUND_ALLOW_NETWORKS = ["127.0.0.1/32"]  # an installation that trusts this address
        with outbound_session() as session:
            assert session.get(server.url + "/ok", timeout=5).status_code == 200
        assert server.hits == ["/ok"]
    finally:
        server.close()


def test_every_redirect_hop_is_checked(settings):
    """An allowed feed that redirects to an address outside the allowed networks is refused at that hop."""
    inner = _Server("127.0.0.2")
    outer = _Server("127.0.0.1", redirect_to=inner.url + "/secret")
    settings.OUTBOUND_ALLOW_NETWORKS = ["127.0.0.1/32"]
    try:
        with pytest.raises(feeds.FeedError, match="127.0.0.2 is at 127.0.0.2, which is not a public"):
            feeds.fetch(outer.url + "/feed")
        assert outer.hits == ["/feed"] and inner.hits == []
    finally:
        inner.close()
        outer.close()


@pytest.mark.django_db
def test_feeds_and_webhooks_to_private_addresses_are_refused_on_save(
    no_private_networks, make_org, user_client
):
    organisation, owner = make_org()
    client = user_client(owner)
    rule = client.post(
        f"{BASE}/alert-rules/",
        {"name": "Metadata", "webhook_url": "http://169.254.169.254/latest/meta-data/"},
        format="json",
    )
    assert rule.status_code == 400, rule.json()
    assert rule.json()["error"]["details"]["field"] == "webhook_url"
    assert "not a public internet address" in rule.json()["error"]["message"]
    with pytest.raises(InvalidInput, match="not a public internet address"):
        feeds.feed_create(organisation=organisation, name="Redis", feed_url="http://127.0.0.1:6379/")
    assert client.get(f"{BASE}/alert-rules/").json()["count"] == 0
