"""The one polling helper both hosted backends use (STYLE.md lesson 5).

A backend supplies a ``check()`` that asks the provider once and returns a typed
``PollState``; this module owns everything else: how long to wait (guided by the
server's ``eta``, bounded), bounded backoff on transient errors (429 honouring the
server's wait, 5xx, dropped connections, read timeouts), the overall deadline, and
Cancel. Unknown states fail loudly instead of spinning until the deadline.

Waiting is ``job.cancel.wait(seconds)``, so Cancel takes effect at once, and every
interval is injectable so tests run in milliseconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, TypeVar

from backends.base import Job
from studio.errors import BackendError, Cancelled, GenerationFailed, ProviderError, TimedOut

T = TypeVar("T")
Kind = Literal["pending", "done", "failed"]
DEFAULT_DEADLINE = 600.0


@dataclass(frozen=True)
class PollState:
    """What one look at a job said. ``text`` is shown to the person (pending) or is the
    failure message (failed); ``payload`` is the provider's body for the backend."""

    kind: Kind
    eta: float | None = None  # seconds the server expects the job still needs
    progress: float | None = None  # 0..1 when the server reports it
    text: str = ""
    payload: Any = None


class Transient(Exception):
    """One failed attempt that may succeed if repeated: raised by a ``check()`` or a
    submit for 429, 5xx, a dropped connection or a read timeout (polls only)."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after, self.status = retry_after, status


def default_deadline() -> float:
    """The overall limit for one hosted job, from ``HOSTED_TIMEOUT_SECONDS`` (default 600)."""
    raw = os.environ.get("HOSTED_TIMEOUT_SECONDS", "").strip()
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BackendError(f"HOSTED_TIMEOUT_SECONDS must be a positive number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True)
class Timing:
    """How patiently to poll. Production defaults; tests pass tiny values."""

    interval: float = 2.0  # shortest wait between two polls
    max_interval: float = 30.0  # longest wait between two polls, whatever the eta says
    deadline: float | None = None  # seconds for the whole job; None: HOSTED_TIMEOUT_SECONDS
    backoff: float = 1.0  # first wait after a transient error; doubles each time
    max_backoff: float = 60.0  # cap on any retry wait, a server's retry_after included
    retries: int = 4  # consecutive transient errors tolerated before giving up

    def seconds(self) -> float:
        return self.deadline if self.deadline is not None else default_deadline()

    def next_wait(self, eta: float | None, polls: int) -> float:
        """Wait about as long as the server says the job still needs, within bounds; with
        no eta, grow gently from ``interval``."""
        guess = eta if eta is not None and eta > 0 else self.interval * 1.5**polls
        return min(max(guess, self.interval), self.max_interval)


def wait(job: Job, seconds: float, *, provider: str, task_id: str | None) -> None:
    """Sleep, but wake at once when the person presses Cancel."""
    if job.cancel.wait(max(0.0, seconds)) or job.cancel.is_set():
        raise cancelled(provider, task_id)


def cancelled(provider: str, task_id: str | None) -> Cancelled:
    if task_id is None:
        return Cancelled(f"Cancelled before {provider} accepted the job.")
    return Cancelled(
        f"Cancelled while waiting for {provider}. The job may still finish on {provider}'s side "
        "(and be charged); you can resume it with its task id.",
        job_id=task_id,
    )


def timed_out(provider: str, seconds: float, task_id: str | None) -> TimedOut:
    if task_id is None:
        return TimedOut(f"{provider} did not accept the job within {seconds:g} s (it kept answering busy). "
                        "Nothing was queued; try again later.")
    return TimedOut(
        f"{provider} did not finish within {seconds:g} s. The job may still be running: "
        "resume it later with its task id.",
        job_id=task_id,
    )


def unexpected(provider: str, status: Any, task_id: str | None) -> GenerationFailed:
    """For a status this studio does not know: stop and say so rather than spin."""
    return GenerationFailed(
        f"{provider} answered with an unexpected status {status!r}; stopped instead of waiting "
        "forever. Resume with the task id later, or report this.",
        job_id=task_id,
    )


def retrying(call: Callable[[], T], job: Job, timing: Timing, *, provider: str, what: str,
             task_id: str | None = None, deadline_at: float | None = None) -> T:
    """Run ``call`` and retry it on ``Transient``, a bounded number of times, waiting the
    server's ``retry_after`` when it gives one and an exponential backoff otherwise."""
    failures = 0
    while True:
        if job.cancel.is_set():
            raise cancelled(provider, task_id)
        try:
            return call()
        except Transient as exc:
            failures += 1
            if failures > timing.retries:
                raise ProviderError(
                    f"{provider} kept failing while {what} ({failures} tries): {exc}",
                    status=exc.status, job_id=task_id,
                ) from exc
            delay = exc.retry_after if exc.retry_after is not None else timing.backoff * 2 ** (failures - 1)
            delay = min(delay, timing.max_backoff)
            if deadline_at is not None and time.monotonic() + delay > deadline_at:
                raise timed_out(provider, timing.seconds(), task_id) from exc
            job.on_progress(None, f"{exc} Retrying in {delay:.3g} s (try {failures + 1} of {timing.retries + 1}).")
            wait(job, delay, provider=provider, task_id=task_id)


def poll(check: Callable[[], PollState], job: Job, timing: Timing, *, provider: str, task_id: str,
         deadline_at: float, first: PollState | None = None) -> PollState:
    """Ask ``check()`` until the job is done; return the done state.

    ``first`` is a state already known (from the submit answer): the first wait follows
    its eta instead of polling at once. ``failed`` raises ``GenerationFailed``; passing
    ``deadline_at`` (a ``time.monotonic()`` value) raises ``TimedOut``; Cancel raises
    ``Cancelled``. All keep the task id.
    """
    state, polls = first, 0
    while True:
        if state is None:
            state = retrying(check, job, timing, provider=provider, what="checking the job",
                             task_id=task_id, deadline_at=deadline_at)
            polls += 1
        if state.kind == "done":
            return state
        if state.kind == "failed":
            raise GenerationFailed(state.text, job_id=task_id)
        if state.kind != "pending":
            raise unexpected(provider, state.kind, task_id)
        job.on_progress(state.progress, state.text)
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise timed_out(provider, timing.seconds(), task_id)
        wait(job, min(timing.next_wait(state.eta, polls), remaining), provider=provider, task_id=task_id)
        state = None
