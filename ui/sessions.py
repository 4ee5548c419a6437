"""Keep Gradio's per-session state small, and forget pages that closed long ago.

Gradio keeps a ``SessionState`` for every session that ever called the app, until more
than ``state_session_capacity`` exist. About 95 % of one (0.34 of 0.36 MB for this page,
measured) is ``config_values``: a copy of every component's config, kept only to build
deep links (``/gradio_api/deep_link``), which this studio does not offer. A public Space
that sees a few thousand visitors would hold gigabytes of it (``bench.soak`` found it).

So a small thread, every ``EVERY_S``:

- slims every session idle for ``SLIM_AFTER_S``: its deep-link copy goes. What the page
  needs stays (the components as handlers last updated them, which Gradio validates the
  next event against, and ``gr.State`` values); Gradio writes to the copy again as the
  page changes, and nothing reads it, so the page works on as before;
- forgets a session that has no heartbeat open (its page closed, or it never opened
  one: a raw HTTP caller, or a client that switched sessions before its heartbeat
  caught up), idle for ``FORGET_CLOSED_S`` and with nothing queued or running: an hour,
  Gradio's own time for a closed page's state values, so a laptop that slept or a phone
  that switched apps comes back to a working page.

Whether a heartbeat is open is watched at the server's door (``HeartbeatWatch``, an ASGI
middleware that ``app.launch`` installs), not read from Gradio's ``is_closed`` mark: that
mark is set only when an open heartbeat ends, so a session that never had one was never
marked and stayed until ``state_session_capacity`` pushed it out. gradio_client shows it
plainly: its heartbeat thread notices a ``reset_session`` only at the server's next
"ALIVE" line, so a session used and left within one heartbeat interval never gets one.
And the mark is never cleared, so a page whose heartbeat dropped once and came back
would have been forgotten while open.

``state_session_capacity`` still bounds the sessions of callers busy within the hour,
now that each costs little. Slimming soon matters more than giving memory back: Python
reuses what a slimmed session freed for the next one, so the process stops growing, but
it rarely returns freed memory to the system (measured: slimming 200 sessions at once
freed 68 MB of objects and 12 MB of resident size). After freeing, at most once a minute,
glibc is asked to return its free pages (``studio.heap``).

This reaches into Gradio's ``StateHolder`` (``session_data``, ``time_last_used``, its
lock), ``SessionState.config_values``, the queue's ``pending_event_ids_session`` and the
heartbeat route's path (``/heartbeat/<session>``); ``tests/test_sessions.py`` pins all of them.
"""

from __future__ import annotations

import collections
import datetime
import gc
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio import heap

log = logging.getLogger(__name__)
_trimmed = [-float("inf")]  # time.monotonic() of the last malloc_trim

SLIM_AFTER_S = 5.0  # idle this long: the deep-link copy goes (soon: freed memory is reused by new sessions)
FORGET_CLOSED_S = 3600.0  # no heartbeat open and idle this long: the whole session goes
TRIM_EVERY_S = 60.0  # at most this often, after freeing, glibc is asked to return free memory
EVERY_S = 5.0  # a pass over at most state_session_capacity sessions: well under a millisecond each


_HEARTBEAT = re.compile(r"/heartbeat/([^/]+)/?$")
_open_lock = threading.Lock()
_open: collections.Counter[str] = collections.Counter()  # session -> heartbeat streams open now


class HeartbeatWatch:
    """ASGI middleware: counts the heartbeat streams open for each session.

    A page keeps one open for as long as it is open (a reconnect after a network blip
    opens the next one); the count falls back to zero when the stream ends, however it ends.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        found = _HEARTBEAT.search(scope.get("path", "")) if scope.get("type") == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        session = found.group(1)
        with _open_lock:
            _open[session] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with _open_lock:
                _open[session] -= 1
                if _open[session] <= 0:
                    del _open[session]


def heartbeat_open(session_id: str) -> bool:
    with _open_lock:
        return _open.get(session_id, 0) > 0


@dataclass(frozen=True)
class Tidied:
    slimmed: int = 0
    forgotten: int = 0


def tidy(demo: gr.Blocks, now: datetime.datetime | None = None) -> Tidied:
    """Slim the idle sessions and forget those long without a heartbeat (see the module's text)."""
    holder = getattr(demo, "state_holder", None)
    queue = getattr(demo, "_queue", None)
    if holder is None or queue is None:  # not launched yet
        return Tidied()
    now = now or datetime.datetime.now()  # Gradio stamps time_last_used in local time
    pending = queue.pending_event_ids_session
    slimmed = forgotten = 0
    with holder.lock:
        for session_id, state in list(holder.session_data.items()):
            last = holder.time_last_used.get(session_id)
            idle = (now - last).total_seconds() if last else float("inf")
            if idle < SLIM_AFTER_S or pending.get(session_id):
                continue
            if idle >= FORGET_CLOSED_S and not heartbeat_open(session_id):
                _drop(holder, session_id)
                forgotten += 1
            elif state.config_values:
                state.config_values.clear()
                slimmed += 1
    if forgotten:  # rare (an hour after a page closed), so the slower clean-up is worth it here
        gc.collect()
        log.info("Sessions: forgot %d closed page(s); %d kept", forgotten, len(holder.session_data))
    if (slimmed or forgotten) and time.monotonic() - _trimmed[0] >= TRIM_EVERY_S:
        _trimmed[0] = time.monotonic()
        heap.give_back()
    return Tidied(slimmed, forgotten)


def _drop(holder: Any, session_id: str) -> None:
    """Run the session's ``gr.State`` delete callbacks, as Gradio does on expiry, then forget it."""
    try:
        holder.delete_state(session_id)
    except Exception:  # a callback's failure must not keep the rest in memory
        log.exception("A state delete callback failed")
    holder.session_data.pop(session_id, None)
    holder.time_last_used.pop(session_id, None)


def start(demo: gr.Blocks) -> threading.Thread:
    """Tidy every ``EVERY_S`` for as long as ``demo`` runs (call it once it is launched)."""

    def loop() -> None:
        while _sleep(demo, EVERY_S):
            try:
                tidy(demo)
            except Exception:  # never take the page down over housekeeping
                log.exception("Could not tidy the sessions; trying again in %.0f s", EVERY_S)

    thread = threading.Thread(target=loop, name="session-tidier", daemon=True)
    thread.start()
    return thread


def _sleep(demo: gr.Blocks, seconds: float) -> bool:
    """Sleep, waking early when the demo closes (tests launch and close many); False then."""
    deadline = time.monotonic() + seconds
    while demo.is_running and time.monotonic() < deadline:
        time.sleep(0.5)
    return demo.is_running
