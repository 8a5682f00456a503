"""Outbound HTTP to addresses that tenants give (feeds, webhooks): public internet addresses only.

A URL a tenant types is a request the server makes on its behalf, from inside our network: without a guard,
a feed or webhook pointed at ``http://127.0.0.1:6379/``, ``http://10.0.0.5/admin`` or the cloud metadata
address (``169.254.169.254``) reaches services no tenant should (server-side request forgery). Two checks:

- on save, ``outbound_url_check`` resolves the host and refuses a URL any of whose addresses is not public,
  so the tenant learns at once (a 400 naming the rule);
- on every connection, ``outbound_session`` checks the address the socket actually connected to, after DNS:
  a name that resolved to a public address when it was saved and to a private one now (DNS rebinding), and
  every redirect hop, are refused the same way, before a byte of the request is sent.

``outbound_deadline(seconds)`` bounds everything the outbound sessions inside it do, however slowly a server
answers: the read timeout of ``requests`` applies to each ``recv``, so a server that trickles a byte every few
seconds (status line, headers, TLS handshake or body) never trips it. Inside the block every connection's
socket is cut (``shutdown``) when the time is up, which ends any blocked read at once, and each new
connection's connect timeout is shrunk to the time left.

"Public" is Python's ``ipaddress`` ``is_global`` and not multicast: loopback, private (RFC 1918, ULA),
link-local, carrier-grade NAT, reserved and documentation ranges are refused. An IPv6 address that stands for
an IPv4 one (IPv4-mapped, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by that IPv4 address; the
local-use NAT64 prefix ``64:ff9b:1::/48`` and Teredo ``2001::/32`` are refused. ``OUTBOUND_ALLOW_NETWORKS``
(CIDRs, comma-separated in the environment) admits networks an installation trusts: an intranet feed, or the
127.0.0.1 servers of the tests.
"""

import contextlib
import contextvars
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from core.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """A connection to an address outside the public internet (and the allowed networks) was refused."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in getattr(settings, "OUTBOUND_ALLOW_NETWORKS", [])]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: the last 32 bits are the IPv4 address
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use translation (RFC 8215): refused
_TEREDO = ipaddress.IPv6Network("2001::/32")  # a tunnel to any IPv4 address behind a relay: refused


def _embedded(ip: ipaddress.IPv6Address) -> Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), else None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour  # 2002::/16


def address_allowed(address: str) -> bool:
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    networks = _allowed_networks()
    if any(ip in network for network in networks):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL or ip in _TEREDO:
            return False
        # the address a translator or tunnel reaches is what counts (NAT64 of 127.0.0.1 is loopback)
        embedded = _embedded(ip)
        if embedded is not None:
            ip = embedded
            if any(ip in network for network in networks):
                return True
    return ip.is_global and not ip.is_multicast


def _refuse_peer(sock: socket.socket, host: str) -> None:
    peer = sock.getpeername()[0]
    if not address_allowed(peer):
        sock.close()
        raise OutboundRefused(f"{host} is at {peer}, which is not a public internet address")


class OutboundDeadline:
    """The wall-clock limit of an ``outbound_deadline`` block (see the module's text)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._closed = False
        self._lock = threading.Lock()
        # duplicates of the connections' sockets: a shutdown through one ends a read blocked on the other
        # (also under TLS, whose socket replaces the plain one), and a duplicate's descriptor is ours, so it
        # can never be another connection's by the time the timer fires
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(self.ends - time.monotonic(), 0.0)

    def _expire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.expired = True
            for sock in self._sockets:
                _cut(sock)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired or self._closed:
                self.expired = True
                _cut(sock)
                return
            self._sockets.append(sock.dup())

    def _start(self) -> None:
        self._timer.start()

    def _close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        sock.shutdown(socket.SHUT_RDWR)


_deadline: contextvars.ContextVar[OutboundDeadline | None] = contextvars.ContextVar(
    "outbound_deadline", default=None
)


@contextmanager
def outbound_deadline(seconds: float) -> Iterator[OutboundDeadline]:
    """Connections the outbound sessions open inside the block are cut ``seconds`` after it starts; after
    an error (or a body that ended early), ``expired`` tells whether the deadline was the cause."""
    deadline = OutboundDeadline(seconds)
    token = _deadline.set(deadline)
    deadline._start()
    try:
        yield deadline
    finally:
        _deadline.reset(token)
        deadline._close()


class OutboundTimeout(Exception):
    """The ``outbound_deadline`` was over before a connection was made."""


def _deadline_connect(connection: HTTPConnection, connect: "type[HTTPConnection]") -> socket.socket:
    deadline = _deadline.get()
    if deadline is not None:
        left = deadline.remaining()
        if left <= 0:
            raise OutboundTimeout(f"no time left to connect to {connection.host}")
        if not isinstance(connection.timeout, int | float) or connection.timeout > left:
            connection.timeout = left
    sock = connect._new_conn(connection)
    _refuse_peer(sock, connection.host)
    if deadline is not None:
        deadline.watch(sock)
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _deadline_connect(self, HTTPConnection)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:  # the TLS handshake comes after, in connect()
        return _deadline_connect(self, HTTPSConnection)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):  # noqa: ANN001, ANN003
        self.poolmanager = PoolManager(num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def outbound_session() -> requests.Session:
    """A session that connects only to allowed addresses, and ignores proxies and .netrc of the environment
    (a proxy would connect for us, out of reach of the check). Catch ``OutboundRefused`` beside requests'
    own errors."""
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def outbound_url_check(url: str, *, what: str = "URL", field: str = "") -> None:
    """Refuse (``InvalidInput``) a URL that is not http(s), or whose host resolves to a refused address."""
    details = {"field": field} if field else None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"The {what} must be an http or https URL.", details=details)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError):
        return  # not resolvable now (offline, a name not yet published): every connection is checked anyway
    refused = sorted({str(info[4][0]) for info in infos if not address_allowed(str(info[4][0]))})
    if refused:
        raise InvalidInput(
            f"The {what}'s host {parts.hostname} is at {refused[0]}, which is not a public internet address.",
            details=details,
        )
