"""What every hosted provider's job goes through, written once: key, submit, poll, download.

``HostedBackend`` owns the flow of a job: the API key (page first, then environment), the
base URL, the submit (retried only when the server surely did not take it), reporting
the task id at once, polling through ``backends.polling``, the progress and eta text,
trying the video links in order, resuming a pasted task id, and turning a provider's
error answer into the studio's errors. A provider module keeps only its wire format; it
fills in these hooks:

    payload(image, request) -> Wire            the request under the provider's names
    submit(wire, key) -> Submitted             send it once; the task id and first state
    checker(task_id, key, fresh) -> check()    a function that asks about the job once
    problem(response, body, ...) -> Problem    what an error answer means, or None
    video_links(done, submitted) -> [str]      where the video is, best first
    reported(done, submitted) -> dict          facts the provider reports (the seed)
    download_note(done) -> str                 optional: said while downloading

The wire contracts are in docs/hosted-apis.md; §3 is the checklist this follows.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import httpx
from PIL import Image

from backends import http, media
from backends.base import Backend, Job, Result
from backends.polling import PollState, Timing, Transient, poll, retrying
from studio import secrets
from studio.errors import GenerationFailed, InvalidParameter, MissingKey, ProviderError, VideoTooLarge
from studio.request import GenerationRequest

log = logging.getLogger(__name__)

Phase = Literal["queued", "running", "unknown"]


@dataclass(frozen=True)
class Wire:
    """A request under a provider's names, ready to send (without the key)."""

    body: dict[str, Any]
    shown: dict[str, Any]  # Result.sent: the body with the key and the image replaced
    facts: dict[str, Any] = field(default_factory=dict)  # what the backend chose itself (a size after 'fit')


@dataclass(frozen=True)
class Submitted:
    """What a submit answer said."""

    task_id: str | None  # None only when the job is already done and the provider sent no id
    state: PollState  # "done" (payload: the body) or the first "pending" state
    body: dict[str, Any]  # the answer itself: links and facts only it may carry


@dataclass(frozen=True)
class Problem:
    """An error answer as the provider reads it; the base decides what to raise.

    ``retry``: worth sending again (429, 5xx), unless it was a submit that timed out at a
    gateway (504), which may have created the job. ``refused``: the provider will not do
    it (bad key, no credit, bad value). ``failed``: the job ran and failed.
    """

    message: str  # the whole text for the person; the base removes the key from it
    kind: Literal["retry", "refused", "failed"]
    detail: str = ""  # the provider's own words, for "did not answer the submit request (HTTP 504: ...)"
    retry_after: float | None = None


class HostedBackend(Backend):
    """A provider reached over HTTP. Subclasses set the class attributes below and the hooks."""

    provider: ClassVar[str]  # the short name in messages: "ModelsLab", "Novita"
    base_url_env: ClassVar[str]  # environment variable overriding the base URL
    default_base_url: ClassVar[str]
    default_timing: ClassVar[Timing] = Timing()
    # Hosted jobs wait on someone else's servers, so many run side by side.
    concurrency: ClassVar[int] = 16

    def __init__(self, client: httpx.Client | None = None, *, timeouts: http.Timeouts | None = None,
                 poll_interval: float | None = None, max_poll_interval: float | None = None,
                 deadline: float | None = None, backoff: float | None = None, max_backoff: float | None = None,
                 retries: int | None = None) -> None:
        """Timings left as None keep the provider's ``default_timing``; ``deadline`` None
        means HOSTED_TIMEOUT_SECONDS (default 600 s), read per job."""
        super().__init__()
        self.timeouts = timeouts or http.Timeouts()
        self.client = client or http.default_client(self.timeouts)
        given = {"interval": poll_interval, "max_interval": max_poll_interval, "deadline": deadline,
                 "backoff": backoff, "max_backoff": max_backoff, "retries": retries}
        self.timing = dataclasses.replace(self.default_timing, **{k: v for k, v in given.items() if v is not None})

    @classmethod
    def base_url(cls) -> str:
        """Read at call time so a changed base URL variable (or a test's fake) applies."""
        return (os.environ.get(cls.base_url_env) or cls.default_base_url).rstrip("/")

    def api_key(self, job: Job) -> str:
        """The key pasted on the page wins over the environment; none at all is a clear
        ``MissingKey`` raised before any network call.

        Only the environment's key is masked for everyone from now on: a pasted key is
        its visitor's alone, masked in that job's messages by ``orchestration.service``
        (``secrets.job_secret``) and forgotten when the job ends."""
        env = self.key_env or ""
        key = (job.api_key or "").strip()
        if not key:
            secrets.remember_environment(env)  # the operator's key, even if set after the page was built
            key = os.environ.get(env, "").strip()
        if not key:
            raise MissingKey(f"{self.label} needs an API key: set {env} or paste a key into the API key field.")
        return key

    # --- the hooks ---------------------------------------------------------------------

    def payload(self, image: Image.Image, request: GenerationRequest) -> Wire:
        """The resolved ``request`` (SVD's parameters and this backend's options) and the
        photo under the provider's names: the one translation."""
        raise NotImplementedError

    def submit(self, wire: dict[str, Any], key: str) -> Submitted:
        """Send the job once (use ``ask`` and ``raise_for_problem``). A ``Transient`` is
        retried by the base, so raise one only when the server surely did not take it."""
        raise NotImplementedError

    def checker(self, task_id: str, key: str, *, fresh: bool) -> Callable[[], PollState]:
        """A function that asks about ``task_id`` once and says done, failed or pending (use
        ``pending`` for the text). ``fresh``: the id came from our own submit just now."""
        raise NotImplementedError

    def problem(self, response: httpx.Response, body: dict[str, Any], *, task_id: str | None,
                submitting: bool) -> Problem | None:
        """What an answer that reports an error means; None when it reports none."""
        raise NotImplementedError

    def video_links(self, done: dict[str, Any], submitted: dict[str, Any]) -> list[str]:
        """Where the finished video is, best first, from the done answer (and the submit
        answer, empty when resuming)."""
        raise NotImplementedError

    def reported(self, done: dict[str, Any], submitted: dict[str, Any]) -> dict[str, Any]:
        """Facts the provider reports about the finished job, such as the seed it used."""
        return {}

    def download_note(self, done: dict[str, Any]) -> str:
        """Added to "Downloading the video (... task X": how long the link lives, say."""
        return ""

    # --- helpers for the hooks ---------------------------------------------------------

    def ask(self, method: str, path: str, *, submitting: bool = False, task_id: str | None = None,
            **kwargs: Any) -> tuple[httpx.Response, dict[str, Any]]:
        """One request to ``base_url() + path``: (the response, its body as a dict or {}).
        Only a submit is not ``repeatable`` (docs/hosted-apis.md §3.5). An answer is read
        up to the size of the largest video allowed, as base64: a finished job's answer may
        carry the video inline (§1.4); anything larger is refused, naming ``task_id``."""
        timeout = self.timeouts.for_submit() if submitting else self.timeouts.for_poll()
        limit = media.max_video_bytes() * 4 // 3 + 2**20
        try:
            response = http.send(self.client, method, self.base_url() + path, provider=self.provider,
                                 timeout=timeout, repeatable=not submitting, limit=limit, **kwargs)
        except http.AnswerTooLarge as exc:
            if task_id is None:
                raise
            raise http.AnswerTooLarge(str(exc), status=exc.status, job_id=task_id) from None
        return response, http.json_body(response)

    def raise_for_problem(self, response: httpx.Response, body: dict[str, Any], key: str, *,
                          task_id: str | None, submitting: bool = False) -> None:
        """Raise the studio's error for an error answer, with the key removed from the text."""
        found = self.problem(response, body, task_id=task_id, submitting=submitting)
        if found is None:
            return
        code = response.status_code
        message = http.redact(found.message, key)
        if found.kind == "retry":
            if submitting and code == 504:  # a gateway timeout: the job may exist (§3.5)
                raise http.not_resubmitted(self.provider, http.redact(f"HTTP 504: {found.detail}", key))
            raise Transient(message, retry_after=found.retry_after, status=code)
        if found.kind == "failed":
            raise GenerationFailed(message, job_id=task_id)
        raise ProviderError(message, status=code, job_id=task_id)

    def pending(self, phase: Phase, task_id: str, *, eta: float | None = None,
                percent: float | None = None) -> PollState:
        """A job still under way, with the one text every provider shows for it."""
        left = f", about {eta:.0f} s left" if eta else ""
        if phase == "queued":
            return PollState("pending", eta=eta, text=f"Waiting in {self.provider}'s queue (task {task_id}{left})")
        if phase == "unknown":
            return PollState("pending", eta=eta,
                             text=f"{self.provider} reports an unknown state for task {task_id}; still waiting")
        fraction = min(max(percent / 100, 0.0), 1.0) if percent else None
        shown = f" {percent:.0f}%" if percent else ""
        return PollState("pending", eta=eta, progress=fraction,
                         text=f"{self.provider} is generating the video{shown} (task {task_id}{left})")

    # --- the flow ----------------------------------------------------------------------

    def generate(self, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        key = self.api_key(job)  # before any network call
        deadline_at = time.monotonic() + self.timing.seconds()
        wire = self.payload(image, request)
        job.on_progress(None, f"Sending the photo to {self.provider}")
        answer = retrying(lambda: self.submit(wire.body, key), job, self.timing, provider=self.provider,
                          what="submitting the job", deadline_at=deadline_at)
        state = answer.state
        if answer.task_id:
            job.on_job_id(answer.task_id)  # at once, so the page can show it even if we fail later
            log.info("%s task %s submitted", self.provider, answer.task_id)
        elif state.kind != "done":
            raise ProviderError(f"{self.provider} queued the job but sent no id to fetch it with.")
        task_id = answer.task_id or "unknown"
        if state.kind != "done":
            state = poll(self.checker(task_id, key, fresh=True), job, self.timing, provider=self.provider,
                         task_id=task_id, deadline_at=deadline_at, first=state)
        return self._finish(job, task_id, state.payload, answer.body, sent=wire.shown, facts=wire.facts)

    def resume(self, job_id: str, job: Job) -> Result:
        """Wait again for a job the provider already has (its id pasted back in) and download it."""
        key = self.api_key(job)
        task_id = str(job_id or "").strip()
        if not task_id:
            raise InvalidParameter("task id", job_id, f"the id {self.label} gave the job", self.label)
        job.on_job_id(task_id)
        deadline_at = time.monotonic() + self.timing.seconds()
        done = poll(self.checker(task_id, key, fresh=False), job, self.timing, provider=self.provider,
                    task_id=task_id, deadline_at=deadline_at)
        return self._finish(job, task_id, done.payload, {}, sent={"task_id": task_id}, facts={})

    def _finish(self, job: Job, task_id: str, done: Any, submitted: dict[str, Any], *,
                sent: dict[str, Any], facts: dict[str, Any]) -> Result:
        done = http.obj(done)
        path = self._download(job, task_id, done, submitted)
        mp4, gif = media.browser_video(path)
        used = {**facts, "task_id": task_id, **self.reported(done, submitted)}
        job.on_progress(1.0, f"Done ({self.provider} task {task_id})")
        return Result(video=mp4, used=used, sent=sent, job_id=task_id, gif=gif)

    def _download(self, job: Job, task_id: str, done: dict[str, Any], submitted: dict[str, Any]) -> Path:
        """Try each link in turn (§3.6); every failure is logged, the first one is raised."""
        links = list(dict.fromkeys(self.video_links(done, submitted)))
        if not links:
            raise GenerationFailed(f"{self.provider} said the job succeeded but sent no video.", job_id=task_id)
        job.on_progress(None, f"Downloading the video ({self.provider} task {task_id}{self.download_note(done)})")
        stem = job.workdir / f"{self.name}-{media.safe_name(task_id)}"
        errors: list[GenerationFailed] = []
        for link in links:
            try:
                return media.save_video(self.client, link, stem, job_id=task_id, provider=self.provider,
                                        timeouts=self.timeouts)
            except VideoTooLarge:
                raise  # the other links are the same video: they would be as large
            except GenerationFailed as exc:
                log.warning("%s task %s: download failed: %s", self.provider, task_id, exc)
                errors.append(exc)
        raise errors[0]
