"""Who is asking: the name a visitor's jobs are counted under (``studio.limits``).

The client's address, as Gradio reports it. Behind a proxy (the Spaces one included) the
connection comes from the proxy, so the first address of ``x-forwarded-for``, the one
the client connected from, comes first. Where neither is known, the page session stands
in, so a visitor is never mixed up with everyone else.

The header is the client's word where no proxy rewrites it: someone calling the server
directly could send a new address each time. The per-visitor limit then only slows
them down; the daily limit for everyone is what bounds the owner's spending.
"""

from __future__ import annotations

from typing import Any


def visitor(request: Any) -> str:
    """The visitor's address, else ``session <hash>``; works on ``gr.Request`` as Gradio
    passes it (headers a Starlette mapping, or a plain dict after a queue's pickling)."""
    if request is None:
        return "unknown"
    forwarded = _header(getattr(request, "headers", None), "x-forwarded-for")
    first = forwarded.split(",")[0].strip()
    if first:
        return first
    host = getattr(getattr(request, "client", None), "host", None)
    if host:
        return str(host)
    return f"session {getattr(request, 'session_hash', None) or 'unknown'}"


def _header(headers: Any, name: str) -> str:
    """A header by name in any letter case: Starlette's mapping is case-blind, a dict is not."""
    if not headers or not hasattr(headers, "items"):
        return ""
    return next((str(v) for k, v in headers.items() if str(k).lower() == name), "")
