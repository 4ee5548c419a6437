"""The shared polling helper on its own: states, waits, retries, deadline, cancel.

Plain ``check()`` callables stand in for a provider here; the hosted backends' tests
drive the same helper through real HTTP against the fake servers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from backends.base import Job
from backends.polling import PollState, Timing, Transient, default_deadline, poll, retrying
from studio.errors import BackendError, Cancelled, GenerationFailed, ProviderError, TimedOut

FAST = Timing(interval=0.01, max_interval=0.02, deadline=5.0, backoff=0.01, max_backoff=1.0, retries=3)


def make_job(tmp_path: Path) -> tuple[Job, list[tuple[float | None, str]]]:
    seen: list[tuple[float | None, str]] = []
    return Job(workdir=tmp_path, on_progress=lambda f, t: seen.append((f, t))), seen


def states(*items: PollState | Exception):
    """A check() that answers ``items`` in order and counts its calls."""
    queue = list(items)
    calls = []

    def check() -> PollState:
        calls.append(time.monotonic())
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return check, calls


def run(check, job: Job, timing: Timing = FAST, **kwargs) -> PollState:
    deadline_at = time.monotonic() + timing.seconds()
    return poll(check, job, timing, provider="Acme", task_id="T-1", deadline_at=deadline_at, **kwargs)


def test_pending_until_done_reports_progress(tmp_path):
    job, seen = make_job(tmp_path)
    check, calls = states(PollState("pending", progress=0.25, text="a"), PollState("pending", text="b"),
                          PollState("done", payload={"ok": 1}))
    assert run(check, job).payload == {"ok": 1}
    assert len(calls) == 3
    assert seen == [(0.25, "a"), (None, "b")]


def test_first_state_waits_before_the_first_poll(tmp_path):
    job, _ = make_job(tmp_path)
    check, calls = states(PollState("done"))
    start = time.monotonic()
    timing = Timing(interval=0.01, max_interval=0.3, deadline=5.0)
    run(check, job, timing, first=PollState("pending", eta=0.2, text="queued"))
    assert calls[0] - start >= 0.19  # waited the server's eta, not polled at once


def test_wait_follows_eta_within_bounds():
    t = Timing(interval=2.0, max_interval=30.0)
    assert t.next_wait(960, 0) == 30.0  # a huge eta is capped
    assert t.next_wait(0.5, 0) == 2.0  # a tiny eta is raised to the interval
    assert t.next_wait(12, 3) == 12.0
    assert t.next_wait(None, 0) == 2.0  # no eta: grow gently from the interval
    assert t.next_wait(None, 2) == 4.5
    assert t.next_wait(None, 20) == 30.0


def test_failed_state_raises_with_task_id(tmp_path):
    job, _ = make_job(tmp_path)
    check, _ = states(PollState("failed", text="Acme could not generate the video: boom"))
    with pytest.raises(GenerationFailed) as err:
        run(check, job)
    assert str(err.value) == "Acme could not generate the video: boom (task id T-1)"
    assert err.value.job_id == "T-1"


def test_unknown_kind_fails_loudly(tmp_path):
    job, _ = make_job(tmp_path)
    check, calls = states(PollState("paused"))  # type: ignore[arg-type]
    with pytest.raises(GenerationFailed, match="unexpected status 'paused'"):
        run(check, job)
    assert len(calls) == 1


def test_transient_errors_are_retried_then_succeed(tmp_path):
    job, seen = make_job(tmp_path)
    check, calls = states(Transient("Acme had a server error (HTTP 502)."), Transient("Slow down.", retry_after=0.2),
                          PollState("done"))
    run(check, job)
    assert len(calls) == 3
    assert calls[2] - calls[1] >= 0.19  # the server's retry_after was honoured
    assert seen[0] == (None, "Acme had a server error (HTTP 502). Retrying in 0.01 s (try 2 of 4).")


def test_retry_waits_are_capped(tmp_path):
    job, _ = make_job(tmp_path)
    check, calls = states(Transient("busy", retry_after=60), PollState("done"))
    run(check, job, Timing(interval=0.01, deadline=5.0, max_backoff=0.05))
    assert calls[1] - calls[0] < 1


def test_transient_errors_are_bounded(tmp_path):
    job, _ = make_job(tmp_path)
    check, calls = states(*[Transient("HTTP 500", status=500)] * 4)
    with pytest.raises(ProviderError) as err:
        run(check, job)
    assert str(err.value) == "Acme kept failing while checking the job (4 tries): HTTP 500 (task id T-1)"
    assert err.value.status == 500 and len(calls) == 4


def test_deadline_times_out_with_task_id(tmp_path):
    job, _ = make_job(tmp_path)
    start = time.monotonic()
    with pytest.raises(TimedOut) as err:
        run(lambda: PollState("pending"), job, Timing(interval=0.01, max_interval=0.02, deadline=0.2))
    assert 0.2 <= time.monotonic() - start < 1
    assert str(err.value) == ("Acme did not finish within 0.2 s. The job may still be running: "
                              "resume it later with its task id. (task id T-1)")


def test_deadline_during_a_retry_wait_times_out(tmp_path):
    job, _ = make_job(tmp_path)
    with pytest.raises(TimedOut, match="T-1"):
        run(lambda: (_ for _ in ()).throw(Transient("busy", retry_after=30)), job,
            Timing(deadline=0.3, max_backoff=60))


def test_cancel_interrupts_a_long_wait(tmp_path):
    job, _ = make_job(tmp_path)
    threading.Timer(0.1, job.cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled) as err:
        run(lambda: PollState("pending", eta=30), job, Timing(interval=10, max_interval=30, deadline=60))
    assert time.monotonic() - start < 1
    assert err.value.job_id == "T-1"
    assert str(err.value).startswith("Cancelled while waiting for Acme. The job may still finish")


def test_cancel_before_submit_retry(tmp_path):
    job, _ = make_job(tmp_path)
    threading.Timer(0.05, job.cancel.set).start()
    with pytest.raises(Cancelled, match="^Cancelled before Acme accepted the job.$"):
        retrying(lambda: (_ for _ in ()).throw(Transient("busy", retry_after=10)), job,
                 Timing(max_backoff=30), provider="Acme", what="submitting the job")


def test_default_deadline_from_environment(monkeypatch):
    monkeypatch.delenv("HOSTED_TIMEOUT_SECONDS", raising=False)
    assert default_deadline() == 600
    assert Timing().seconds() == 600
    monkeypatch.setenv("HOSTED_TIMEOUT_SECONDS", "42.5")
    assert Timing().seconds() == 42.5
    assert Timing(deadline=3).seconds() == 3
    monkeypatch.setenv("HOSTED_TIMEOUT_SECONDS", "soon")
    with pytest.raises(BackendError, match="HOSTED_TIMEOUT_SECONDS must be a positive number of seconds, got 'soon'"):
        default_deadline()


def test_a_submit_that_stays_busy_past_the_deadline(tmp_path):
    job, _ = make_job(tmp_path)
    with pytest.raises(TimedOut) as err:
        retrying(lambda: (_ for _ in ()).throw(Transient("busy", retry_after=30)), job,
                 Timing(deadline=0.3, max_backoff=60), provider="Acme", what="submitting the job",
                 deadline_at=time.monotonic() + 0.3)
    assert str(err.value) == ("Acme did not accept the job within 0.3 s (it kept answering busy). "
                              "Nothing was queued; try again later.")
    assert err.value.job_id is None
