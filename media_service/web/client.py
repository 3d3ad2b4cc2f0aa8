"""Who is calling: the one answer every decision on a client's address uses.

The keyless routes (POST /api/createDataSet from `[App] keyless_networks`, the privacy API from this
machine), the wrong-key limit and the log lines all ask `current_client()`. Behind a reverse proxy
every request arrives from the proxy's address (nginx on the same host: 127.0.0.1), so the TCP peer
alone would open the keyless routes to the internet. The rule:

- A peer in `[App] trusted_proxies` speaks for its client: the client is the nearest address in
  X-Forwarded-For that is not a trusted proxy (what our own proxy saw; the hops before it are the
  client's to write). Without X-Forwarded-For the peer is the client (a local process calling the
  service directly), unless it forwards another header (its client stays unknown).
- Any other peer that sends a forwarding header is a proxy we were not told about, or a forger: its
  address is logged and counted, and it is never keyless.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flask import current_app, request

# Headers by which proxies name the client they forward (RFC 7239's Forwarded, the de facto rest).
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Client-IP", "True-Client-IP",
                      "CF-Connecting-IP", "Fastly-Client-IP", "X-Cluster-Client-IP")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
ENVIRON_KEY = "media_service.client"  # the client's address for the access log: %({media_service.client}e)s


@dataclass(frozen=True)
class Client:
    address: str  # for logs and the wrong-key limit
    vouched: bool  # the address is the TCP peer's own, or named by a trusted proxy

    def in_networks(self, networks) -> bool:
        """True only for an address we can vouch for inside one of `networks`."""
        ip = parse_ip(self.address)
        return self.vouched and ip is not None and any(ip in network for network in networks)

    def on_this_machine(self) -> bool:
        return self.in_networks(LOOPBACK)


def parse_ip(text: str):
    """An IPv4 or IPv6 address (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def resolve(peer: str | None, headers, trusted_proxies) -> Client:
    """The client of a request from `peer` carrying `headers` (anything with .get)."""
    def trusted(address: str) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in network for network in trusted_proxies)

    peer = peer or ""
    forwarding = [name for name in FORWARDING_HEADERS if headers.get(name) is not None]
    if not forwarding:
        return Client(peer, vouched=True)
    if not trusted(peer):
        return Client(peer, vouched=False)
    hops = [hop.strip() for hop in (headers.get("X-Forwarded-For") or "").split(",") if hop.strip()]
    if not hops:
        return Client(peer, vouched=False)
    for hop in reversed(hops):
        if not trusted(hop):
            return Client(hop, vouched=True)
    return Client(hops[0], vouched=True)  # every hop a trusted proxy: the first one called us


def current_client() -> Client:
    """The client of the request being answered (computed once per request)."""
    client = request.environ.get(ENVIRON_KEY + ".resolved")
    if client is None:
        settings = current_app.extensions["media"].settings
        client = resolve(request.remote_addr, request.headers, settings.app.trusted_proxies)
        request.environ[ENVIRON_KEY + ".resolved"] = client
    return client


class RecordClient:
    """WSGI middleware: puts the client's address in the environ before the app runs, where
    gunicorn's access log (`%({media_service.client}e)s`) and the dev server's find it."""

    def __init__(self, app, trusted_proxies):
        self.app, self.trusted_proxies = app, trusted_proxies

    def __call__(self, environ, start_response):
        headers = _EnvironHeaders(environ)
        client = resolve(environ.get("REMOTE_ADDR"), headers, self.trusted_proxies)
        environ[ENVIRON_KEY + ".resolved"] = client
        environ[ENVIRON_KEY] = client.address if client.vouched else f"{client.address} (forwarded, untrusted)"
        return self.app(environ, start_response)


class _EnvironHeaders:
    """Request headers read straight from a WSGI environ (before Flask has a request)."""

    def __init__(self, environ):
        self.environ = environ

    def get(self, name: str):
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))
