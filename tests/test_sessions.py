"""Gradio's per-session state stays small, and pages without a heartbeat are forgotten.

A real launched app, real ``gradio_client`` sessions with real heartbeats (Gradio's fast
test rate), raw HTTP callers that never open one, and the studio's tidying thread
running with short times.

gradio_client moves its heartbeat to a new session only at the server's next "ALIVE"
line, so a session it used and left within one heartbeat interval may never have had
one: these tests never assume it had, and wait for what the server saw instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from tests.conftest import launched_demo, wait_for
from ui import sessions


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"backend": "novita", "num_frames": 14, "motion_bucket_id": 90}))
    return path


def read(client: Client, settings_file: Path) -> dict:
    answer = client.predict(handle_file(str(settings_file)), api_name="/read_settings")
    assert answer["motion_bucket_id"] == 90  # a real call, which made or used a session
    return answer


def launch(monkeypatch, every: float):
    monkeypatch.setenv("GRADIO_IS_E2E_TEST", "1")  # Gradio's own test rate: a heartbeat every 0.25 s
    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 0.5)
    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 1.5)
    monkeypatch.setattr(sessions, "EVERY_S", every)  # read by the tidying thread before its first sleep
    return launched_demo({"BACKENDS": "novita,modelslab"})


@pytest.fixture
def studio(monkeypatch):
    with launch(monkeypatch, 0.5) as (demo, url):
        yield demo, url


@pytest.fixture
def studio_untidied(monkeypatch):
    """The thread sleeps the whole test: the test calls ``tidy`` itself, and no pass of
    the thread can race it, however loaded the machine."""
    with launch(monkeypatch, 3600.0) as (demo, url):
        yield demo, url


def test_idle_sessions_are_slimmed_and_closed_ones_forgotten(studio, settings_file, monkeypatch):
    demo, url = studio
    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 3600.0)  # nothing happens until the test says so:
    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 3600.0)  # a busy machine must not race the checks
    held = demo.state_holder.session_data
    stayer = Client(url, verbose=False)
    read(stayer, settings_file)
    mover = Client(url, verbose=False)
    left = []
    for _ in range(3):
        read(mover, settings_file)
        left.append(mover.session_hash)
        mover.reset_session()  # a new page: the old one's heartbeat ends
    read(mover, settings_file)
    assert set(left) <= set(held)
    assert held[stayer.session_hash].config_values  # Gradio's deep-link copy of the page, per session
    page = held[stayer.session_hash].blocks_config

    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 0.5)
    wait_for(lambda: not held[stayer.session_hash].config_values, 20, "the idle session to be slimmed")
    assert held[stayer.session_hash].blocks_config is page  # what Gradio validates events against stays
    read(stayer, settings_file)  # and the slimmed session still answers

    wait_for(lambda: sessions.heartbeat_open(stayer.session_hash) and sessions.heartbeat_open(mover.session_hash),
             20, "the open clients' heartbeats to reach the server")
    # Ended (the server sees the disconnect a moment after the client opened its next one), or never opened.
    wait_for(lambda: not any(sessions.heartbeat_open(old) for old in left), 20, "the old pages' heartbeats to end")

    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 1.5)
    wait_for(lambda: not set(left) & set(held), 20, "the sessions left behind to be forgotten")
    assert stayer.session_hash in held and mover.session_hash in held  # open pages keep their state
    stayer.close()
    wait_for(lambda: not sessions.heartbeat_open(stayer.session_hash), 20, "a closed client's heartbeat to end")
    wait_for(lambda: stayer.session_hash not in held, 20, "a closed client's session to go")
    assert mover.session_hash in held
    mover.close()


def test_a_caller_that_never_opens_a_heartbeat_is_forgotten_too(studio, monkeypatch):
    """A raw HTTP caller (``/call/``) has a session but never a heartbeat: Gradio never marks
    it closed, so only the server's own count of open heartbeats lets it go."""
    demo, url = studio
    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 3600.0)
    held = demo.state_holder.session_data
    answer = httpx.post(f"{url}gradio_api/call/read_settings", json={"data": [None]})
    event = answer.json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/read_settings/{event}") as stream:
        told = "".join(stream.iter_lines())
    assert "file is required" in told  # a real call, answered with the studio's sentence
    assert event in held and not held[event].is_closed and not sessions.heartbeat_open(event)
    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 1.5)
    wait_for(lambda: event not in held, 20, "the raw caller's session to be forgotten")


def test_a_closed_session_is_kept_while_it_has_work_or_was_used_lately(studio_untidied, settings_file,
                                                                       monkeypatch):
    demo, url = studio_untidied
    held = demo.state_holder.session_data
    client = Client(url, verbose=False)
    read(client, settings_file)
    busy = client.session_hash
    client.reset_session()
    read(client, settings_file)
    quiet = client.session_hash
    client.close()
    wait_for(lambda: not sessions.heartbeat_open(busy) and not sessions.heartbeat_open(quiet), 20,
             "no heartbeat open for either session")

    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 3600.0)
    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 3600.0)
    assert sessions.tidy(demo) == sessions.Tidied(0, 0) and {busy, quiet} <= set(held)  # used lately: kept whole

    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 0.0)
    monkeypatch.setattr(sessions, "FORGET_CLOSED_S", 0.0)
    demo._queue.pending_event_ids_session[busy] = {"an event still queued"}
    try:
        assert sessions.tidy(demo) == sessions.Tidied(0, 1)
        assert busy in held and held[busy].config_values and quiet not in held
    finally:
        demo._queue.pending_event_ids_session.pop(busy, None)
    assert sessions.tidy(demo) == sessions.Tidied(0, 1) and busy not in held


def test_the_c_heap_is_limited_to_few_arenas_unless_the_owner_chose(monkeypatch):
    from studio import heap

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.limit_arenas() is False  # glibc already read the owner's value at start
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert heap.limit_arenas() is (heap._libc() is not None)  # glibc accepted the limit (where there is one)
