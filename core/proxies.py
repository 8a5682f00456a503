"""The visitor's address behind trusted proxies: ``client_address(scope)`` for any product.

Behind a load balancer every connection comes from the balancer, so a throttle keyed on the peer address
would put every visitor in one allowance. ``TRUSTED_PROXIES`` (IP addresses and networks) names the proxies
whose ``X-Forwarded-For`` is believed: only when the direct peer is one of them, the address used is the
right-most one of the header that is not itself a trusted proxy (each proxy appends the address it saw, so
the entries left of it may be made up by the client); otherwise it is the peer's address, whatever the header
says. uvicorn is told the same list (``bin/run-all``), and applying the rule twice gives the same address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], *, name: str = "TRUSTED_PROXIES") -> tuple[Network, ...]:
    """IP addresses and CIDR networks, checked: a bad entry is refused, naming it."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {value!r} is not an IP address or network; give a comma-separated list such as "
                "10.0.0.5,10.1.0.0/16."
            ) from None
    return tuple(networks)


@functools.lru_cache(maxsize=8)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in networks)


def forwarded_address(peer: str, forwarded_for: list[str], networks: tuple[Network, ...]) -> str:
    """The address to key a visitor on: ``peer`` unless it is a trusted proxy; then the right-most entry of
    the ``X-Forwarded-For`` values (in header order) that is not a trusted proxy. An entry that is not an IP
    address stops the walk there (nothing left of it can be believed); a header of trusted proxies only, or
    none, leaves the peer."""
    if not networks or not is_trusted(peer, networks):
        return peer
    entries = [e.strip() for value in forwarded_for for e in value.split(",") if e.strip()]
    for entry in reversed(entries):
        ip = _ip(entry)
        if ip is None:
            return peer
        if not any(ip in network for network in networks):
            return str(ip)
    return peer


def client_address(scope) -> str:
    """The visitor's address for an ASGI ``scope`` (HTTP or websocket), by the rule above."""
    client = scope.get("client") or ("unknown", 0)
    peer = str(client[0])
    networks = _trusted(tuple(getattr(settings, "TRUSTED_PROXIES", ())))
    if not networks:
        return peer
    values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
    return forwarded_address(peer, values, networks)
