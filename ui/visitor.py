"""Who is asking: the name a visitor's jobs are counted under (``orchestration.limits``).

The client's address. Behind a proxy (the Spaces one included) the connection comes
from the proxy, an address on a private network, and the visitor's address is in
``x-forwarded-for``. Each proxy appends the address it was connected from, so the
list reads "what the client claimed, ..., what our proxies saw": the visitor is the
rightmost address that is not one of our own proxies (a private-network address).
Addresses to its left are the client's own word and are ignored, so a visitor cannot
dodge the per-visitor limit by sending a new made-up address each time.

A connection from a public address came with no proxy of ours in between, so its
``x-forwarded-for`` is not believed at all. Where no address is known, the page session
stands in, so a visitor is never mixed up with everyone else.

Every ``x-forwarded-for`` line counts, in order: a proxy may add its own line instead of
appending to the client's, and reading only the first would believe the client's word.
An IPv6 visitor is their /64: one home or phone gets a whole /64 and may pick any address
in it, so counting single addresses would give one client endless allowances.

uvicorn, which serves the page, rewrites the connection's address itself when the proxy
is one it trusts (``FORWARDED_ALLOW_IPS``, uvicorn's own setting, default 127.0.0.1): an
owner whose proxy sits at a known public address names it there, and this module then
sees the visitor's address as the connection's.
"""

from __future__ import annotations

import ipaddress
from typing import Any

# Where our own proxies live: loopback, RFC 1918, link-local, carrier-grade NAT, IPv6 ULA.
# Not ipaddress's is_private, which also counts the documentation ranges.
_INTERNAL = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
    "::1/128", "fc00::/7", "fe80::/10")]


def visitor(request: Any) -> str:
    """The visitor's address (an IPv6 one as its /64), else ``session <hash>``; works on
    ``gr.Request`` as Gradio passes it (headers a Starlette mapping, or a plain dict after
    a queue's pickling)."""
    return group(_address(request))


def group(address: str) -> str:
    """An IPv6 address as its /64 network (``2001:db8:1:2::/64``); anything else as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _address(request: Any) -> str:
    if request is None:
        return "unknown"
    host = getattr(getattr(request, "client", None), "host", None)
    host = str(host) if host else ""
    if not host or _internal(host):  # a proxy of ours (or no address at all): believe what it forwards
        hops = [h.strip() for h in _header(getattr(request, "headers", None), "x-forwarded-for").split(",")]
        hops = [h for h in hops if h]
        outside = [h for h in hops if not _internal(h)]
        if outside:
            return outside[-1]
        if hops:  # every hop is on a private network (a studio on a LAN): the first is the client
            return hops[0]
    if host:
        return host
    return f"session {getattr(request, 'session_hash', None) or 'unknown'}"


def _internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone ("fe80::1%eth0") is not part of it
    except ValueError:  # not an address (a test client's "testclient", garbage in a header)
        return False
    return any(ip in network for network in _INTERNAL if ip.version == network.version)


def _header(headers: Any, name: str) -> str:
    """Every line of a header, in order, joined with commas, by name in any letter case
    (Starlette's mapping yields each line of a repeated header; a dict holds one)."""
    if not headers or not hasattr(headers, "items"):
        return ""
    return ", ".join(str(v) for k, v in headers.items() if str(k).lower() == name)
