"""The job runner: one worker thread per job, watched from the page's event loop.

A job is ``task(cancel=, on_progress=, on_job_id=, on_preview=)`` returning a ``Result``
(see ``orchestration.service``). ``Runner.run`` starts it and yields status lines (and live
previews) while it runs, then its ``Result``. The worker stops at its next step or poll when:

- the person presses Cancel (``cancel_session``);
- the page is closed (Gradio runs the page's unload event, which cancels the session's
  jobs, and closes the handler's generator, which lands in ``run``'s ``finally``);
- an API client disconnects (``alive`` turns false; checked every ``TICK`` seconds).

A job left that way is logged at INFO with its task id, so a hosted job can be resumed;
it is not an error. Waiting here costs no thread of Gradio's pool: the handlers are
async, and only the worker thread blocks.

Every job, whatever started it (the page, the API, a sweep's or an extend's videos,
finishing), passes through ``Runner.run``, so this is where the operator's log is kept:
one INFO line on logger ``svd_studio`` when a job starts and one when it ends,

    job 12 start: backend=novita
    job 12 end: backend=novita task=abc123 seconds=41.2 outcome=video

with a number counted for the process, the provider's task id(s) when there are any, and
one of ``OUTCOMES``. No key, picture or payload: only what an operator needs to follow
the traffic and find a job again.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Result
from studio import secrets
from studio.errors import Cancelled, LimitReached, MissingKey, ProviderError, StudioError

log = logging.getLogger("svd_studio")
TICK = 0.5  # seconds between two checks that an API client is still there
Task = Callable[..., Result]
OUTCOMES = ("video", "refused", "failed", "cancelled", "limit")
_numbers = itertools.count(1)  # the operator's job numbers; next() on a count is atomic


@dataclass(frozen=True)
class Preview:
    """A rough picture of the frames so far (the local backend's live preview)."""

    path: Path


@dataclass(eq=False)
class _Running:
    cancel: threading.Event = field(default_factory=threading.Event)
    job_id: str | None = None
    left: bool = False  # nobody waits for it any more; logged once


class Runner:
    """The jobs running now, by browser session, so Cancel and a closed page find them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, set[_Running]] = {}

    def running(self, session: str) -> int:
        with self._lock:
            return len(self._jobs.get(session, ()))

    def cancel_session(self, session: str) -> int:
        """Ask every job of ``session`` to stop (Cancel); returns how many there were."""
        with self._lock:
            jobs = list(self._jobs.get(session, ()))
        for job in jobs:
            job.cancel.set()
        return len(jobs)

    def leave_session(self, session: str) -> None:
        """The page of ``session`` was closed: stop its jobs, and say so without alarm."""
        with self._lock:
            jobs = list(self._jobs.get(session, ()))
        for job in jobs:
            _leave(job)

    def _add(self, session: str, job: _Running) -> None:
        with self._lock:
            self._jobs.setdefault(session, set()).add(job)

    def _discard(self, session: str, job: _Running) -> None:
        with self._lock:
            jobs = self._jobs.get(session)
            if jobs is not None:
                jobs.discard(job)
                if not jobs:  # no empty set per visitor kept for the life of the process
                    del self._jobs[session]

    async def run(self, task: Task, session: str, *, alive: Callable[[], bool] = lambda: True,
                  on_progress: Callable[[float | None, str], None] | None = None,
                  ) -> AsyncIterator[str | Preview | Result]:
        """Run ``task`` in a worker; yield status lines, then its Result (or raise its error).

        Ends without a Result when nobody is waiting any more (``alive`` false or the
        generator closed): the worker is told to stop and the task id is logged.
        """
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()

        def post(kind: str, a: Any = None, b: Any = None) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, (kind, a, b))
            except RuntimeError:  # the loop is gone (server shutting down): nobody to tell
                pass

        running = _Running()
        cancel = running.cancel
        outcome: dict[str, Any] = {}
        record = _Record(next(_numbers), job_backend(task))

        def report_job_id(task_id: str) -> None:
            record.task_ids.append(str(task_id))
            post("job", task_id)

        def work() -> None:
            record.start()
            try:
                # Progress is redacted here, in the job's thread, where the job's own key is still known.
                outcome["result"] = task(cancel=cancel, on_job_id=report_job_id,
                                         on_progress=lambda f, text: post("progress", f, secrets.redact(text)),
                                         on_preview=lambda path: post("preview", path))
            except Exception as exc:  # handed to the page's loop and translated there
                outcome["error"] = exc
            finally:
                record.end(outcome)
                post("done")

        self._add(session, running)
        # The worker runs in a copy of this context: Gradio's request context comes along, and
        # ZeroGPU reads the visitor's token from it (without it, every visitor would share
        # the Space's quota).
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(work,), daemon=True, name=f"job-{session[:8]}").start()
        finished = False
        checked = loop.time()
        try:
            while True:
                try:
                    kind, a, b = await asyncio.wait_for(inbox.get(), TICK)
                except asyncio.TimeoutError:
                    kind = "tick"
                if kind != "done" and loop.time() - checked >= TICK:  # busy jobs are checked too
                    checked = loop.time()
                    if not alive():
                        return
                if kind == "tick":
                    continue
                if kind == "done":
                    finished = True
                    break
                if kind == "job":
                    running.job_id = a
                    yield f"Submitted. Provider task id: `{a}` (keep it to resume if you close the page)."
                    continue
                if kind == "preview":
                    yield Preview(a)
                    continue
                if on_progress is not None:
                    on_progress(a, b)
                job_id = running.job_id
                yield b + (f" · task id `{job_id}`" if job_id and job_id not in b else "")
        finally:
            self._discard(session, running)
            if not finished:
                _leave(running)
        if "error" in outcome:
            raise outcome["error"]
        yield outcome["result"]


    async def run_many(self, tasks: list[tuple[Task, str]], session: str, lanes: dict[str, int], *,
                       alive: Callable[[], bool] = lambda: True,
                       ) -> AsyncIterator[tuple[int, str | Preview | Result | Exception]]:
        """Run several jobs, each ``(task, lane)``; yield ``(index, item)`` as they report.

        At most ``lanes[lane]`` jobs of one lane run at once, started in order (a lane is a
        backend: local values take turns on the GPU in the order given, hosted ones run
        side by side). One job's error is yielded as its item and the others go on;
        after a Cancel, jobs not yet started are not started.
        """
        inbox: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        gates = {lane: asyncio.Semaphore(size) for lane, size in lanes.items()}
        stopped = asyncio.Event()
        done = object()

        async def one(index: int, task: Task, lane: str) -> None:
            try:
                async with gates[lane]:
                    if stopped.is_set():
                        raise Cancelled("Cancelled before it started.")
                    async for item in self.run(task, session, alive=alive):
                        await inbox.put((index, item))
            except Exception as exc:
                if isinstance(exc, Cancelled):
                    stopped.set()
                await inbox.put((index, exc))
            finally:
                await inbox.put((index, done))

        workers = [asyncio.create_task(one(i, task, lane)) for i, (task, lane) in enumerate(tasks)]
        remaining = len(workers)
        try:
            while remaining:
                index, item = await inbox.get()
                if item is done:
                    remaining -= 1
                else:
                    yield index, item
        finally:  # the page left: every run's own cleanup tells its worker to stop
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


@dataclass(eq=False)
class _Record:
    """One job in the operator's log."""

    number: int
    backend: str
    task_ids: list[str] = field(default_factory=list)
    started: float = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        log.info("job %d start: backend=%s", self.number, self.backend)

    def end(self, outcome: dict[str, Any]) -> None:
        """``outcome``: the worker's, with its ``result`` or its ``error`` (neither when
        something that is not an ``Exception`` stopped the thread: a failure too)."""
        error = outcome.get("error")
        if "result" in outcome:
            word = "video"
        else:
            word = outcome_of(error) if error is not None else "failed"
        task = f" task={','.join(dict.fromkeys(self.task_ids))}" if self.task_ids else ""
        log.info("job %d end: backend=%s%s seconds=%.1f outcome=%s", self.number, self.backend, task,
                 time.monotonic() - self.started, word)


def outcome_of(error: BaseException) -> str:
    """How a job that raised ``error`` ended, in one word: ``refused`` by the studio or
    the provider (a bad value, picture or video, no key or a rejected one, no credit: the
    person can fix it); ``limit``, a spend limit on the owner's key; ``cancelled`` (Cancel,
    a closed page, a client gone); or ``failed``, everything else (the provider or the
    machine failed). A job that returned its video is ``video``."""
    if isinstance(error, LimitReached):
        return "limit"
    if isinstance(error, Cancelled):
        return "cancelled"
    if isinstance(error, StudioError) and isinstance(error, (ValueError, MissingKey)):
        return "refused"
    if isinstance(error, ProviderError) and error.status is not None and 400 <= error.status < 500 \
            and error.status not in (408, 429):  # a timeout or "too many requests" is not a refusal
        return "refused"
    return "failed"


def job_backend(task: Task) -> str:
    """The backend a job runs on, for the operator's log: the ``backend`` argument its
    task was given (``service.generate`` and ``resume``, ``extend.extend``). A task given
    none runs on no backend: finishing a video (ffmpeg work), logged as ``finish``."""
    func = getattr(task, "func", task)
    args, keywords = getattr(task, "args", ()), getattr(task, "keywords", {})
    try:
        bound = inspect.signature(func).bind_partial(*args, **keywords).arguments
    except (TypeError, ValueError):  # not a task we can read: still a job worth counting
        return "unknown"
    return str(bound.get("backend") or "finish")


def _leave(job: _Running) -> None:
    job.cancel.set()
    if not job.left:
        job.left = True
        log.info("A job was left by its page or client and told to stop%s.",
                 f"; resume it with task id {job.job_id}" if job.job_id else "")


def client_alive(request: Any) -> Callable[[], bool]:
    """Whether the API client behind ``request`` is still connected.

    Gradio marks a session's queued jobs not ``alive`` as soon as its event stream
    closes, but it does not stop a plain function that is already running; this reads
    that mark. (It reads the queue's state, so it is kept to this one function.)
    """
    session = getattr(request, "session_hash", None)
    try:
        queue = request.request.app.get_blocks()._queue
    except AttributeError:
        return lambda: True

    def alive() -> bool:
        jobs = [job for group in queue.active_jobs if group for job in group if job.session_hash == session]
        return not jobs or any(job.alive for job in jobs)

    return alive
