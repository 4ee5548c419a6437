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
- forgets a session that is closed (its heartbeat dropped), idle for
  ``FORGET_CLOSED_S`` and has nothing queued or running: an hour, Gradio's own time
  for a closed page's state values, so a laptop that slept or a phone that switched
  apps comes back to a working page.

Sessions that never close (a raw HTTP caller opens no heartbeat) stay bounded by
``state_session_capacity``, now that each costs little. Slimming soon matters more than
giving memory back: Python reuses what a slimmed session freed for the next one, so the
process stops growing, but it rarely returns freed memory to the system (measured:
slimming 200 sessions at once freed 68 MB of objects and 12 MB of resident size). After
freeing, at most once a minute, glibc is asked to return its free pages (``studio.heap``).

This reaches into Gradio's ``StateHolder`` (``session_data``, ``time_last_used``, its
lock), ``SessionState.config_values`` and the queue's ``pending_event_ids_session``;
``tests/test_sessions.py`` pins all of them.
"""

from __future__ import annotations

import datetime
import gc
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio import heap

log = logging.getLogger(__name__)
_trimmed = [-float("inf")]  # time.monotonic() of the last malloc_trim

SLIM_AFTER_S = 5.0  # idle this long: the deep-link copy goes (soon: freed memory is reused by new sessions)
FORGET_CLOSED_S = 3600.0  # closed and idle this long: the whole session goes
TRIM_EVERY_S = 60.0  # at most this often, after freeing, glibc is asked to return free memory
EVERY_S = 5.0  # a pass over at most state_session_capacity sessions: well under a millisecond each


@dataclass(frozen=True)
class Tidied:
    slimmed: int = 0
    forgotten: int = 0


def tidy(demo: gr.Blocks, now: datetime.datetime | None = None) -> Tidied:
    """Slim the idle sessions and forget the long-closed ones (see the module's text)."""
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
            if state.is_closed and idle >= FORGET_CLOSED_S:
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
