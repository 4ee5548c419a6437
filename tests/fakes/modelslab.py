"""Fake ModelsLab enterprise img2video server (contract: docs/hosted-apis.md §1).

Routes (names used by ``script()``):

* ``submit``   POST {base}/video/img2video            key in JSON body
* ``fetch``    POST {base}/video/fetch/{id}            body ``{"key"}``; also the v6-style
               ``/api/v6/video/fetch/{id}`` that ``fetch_result`` points at
* ``download`` GET/HEAD the output / proxy / future / ``.base64`` file URLs
* ``other``    anything else (404 ``status: error``)

where ``base = http://127.0.0.1:PORT/api/v1/enterprise``. The shapes follow the
contract's quirks on purpose: ``id`` is an int, ``meta`` booleans come back as
``"yes"``/``"no"``, the fetch "processing" body has ``"output": ""`` (a string), the
fetch "success" body is thin (no meta / generationTime), ``future_links`` 404 (HTML)
until the job is done, and ``legacy_messege=True`` spells the text field ``messege``.
"""

from __future__ import annotations

import base64
import itertools
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._server import ErrorCase, FakeServer, RecordedRequest, Reply, html_error
from .media import make_gif_bytes, make_mp4_bytes

__all__ = ["FakeModelsLab", "modelslab_error", "modelslab_error_cases"]

ENTERPRISE_PREFIX = "/api/v1/enterprise"
_FETCH_RE = re.compile(r"^(?:/api/v1/enterprise|/api/v6)/video/fetch/([^/]+)$")
_FILE_RE = re.compile(r"^/(?:cdn/)?(?:video_generations|temp)/([0-9a-f-]{36})(?:-0)?\.(mp4|gif|base64)$")


def modelslab_error(status: int, message: str, *, legacy: bool = False, retry_after: int | None = None,
                    body_status: str = "error", headers: dict[str, str] | None = None) -> Reply:
    """A ModelsLab error body: ``{"status": "error", "message"|"messege": ..., ["retry_after"]}``.

    ``status`` is the HTTP code (use 200 for the "HTTP 200 but status error/failed" case);
    ``body_status`` may be ``"failed"`` (webhook/fetch wording).
    """
    body: dict[str, Any] = {"status": body_status, ("messege" if legacy else "message"): message}
    if retry_after is not None:
        body["retry_after"] = retry_after
    return Reply(status=status, json=body, headers=dict(headers or {}))


def modelslab_error_cases() -> list[ErrorCase]:
    """Every row of contract §1.7 (plus the HTTP-200 and HTML variants it warns about), fresh each call."""
    e = modelslab_error
    return [
        ErrorCase("invalid_key_401", "submit", e(401, "Invalid API key"), False),
        ErrorCase("invalid_key_200_body_error", "submit", e(200, "Invalid API key"), False),
        ErrorCase("bad_param_400", "submit", e(400, "prompt is required"), False),
        ErrorCase("model_not_found_400", "submit", e(400, "Model not found: svd-x"), False),
        ErrorCase("bad_image_url_400", "submit", e(400, "Unable to fetch image from provided URL"), False),
        ErrorCase("insufficient_credits_402", "submit", e(402, "Insufficient credits. Please top up."), False),
        ErrorCase("not_on_plan_403", "submit", e(403, "This feature is not available on your plan"), False),
        ErrorCase("queue_full_429", "submit",
                  e(429, "Rate limit exceeded. Maximum 5 queued requests allowed.", retry_after=30), True),
        ErrorCase("server_error_500", "submit", e(500, "Internal server error"), True),
        ErrorCase("server_error_500_html", "submit", html_error(500, "Internal Server Error"), True),
        ErrorCase("overloaded_503", "submit", e(503, "Server is under maintenance"), True),
        ErrorCase("gateway_502_html", "fetch", html_error(502, "Bad Gateway"), True),
        ErrorCase("fetch_rate_limited_429", "fetch", e(429, "Rate limit exceeded.", retry_after=2), True),
        ErrorCase("fetch_unknown_id_404", "fetch", e(404, "Video not found"), False),
        ErrorCase("generation_failed_200_failed", "fetch", e(200, "Generation failed", body_status="failed"), False),
        ErrorCase("generation_failed_200_error_messege", "fetch",
                  e(200, "Something went wrong", legacy=True), False),
    ]


@dataclass
class _Job:
    id: int
    uuid: str
    created: float
    output_type: str  # mp4 | gif | base64
    media: str  # mp4 | gif (what the file contains)
    meta: dict[str, Any]
    polls: int = 0  # status answers already given (submit counts as one)
    request: dict[str, Any] = field(default_factory=dict)


def _yes_no(v: Any) -> Any:
    return ("yes" if v else "no") if isinstance(v, bool) else v


class FakeModelsLab(FakeServer):
    """Fake of ``POST /api/v1/enterprise/video/img2video`` and its fetch endpoint.

    processing_polls: 0 -> submit answers ``success`` at once; N -> submit and the next
        N-1 fetches answer ``processing``, then fetch answers ``success``.
    job_seconds: instead of counting polls, a job is done this long after submit.
    eta: ``eta`` reported while processing (default 1; in time mode, seconds left).
    legacy_messege: error/processing bodies use ``messege`` instead of ``message``.
    base64_data_prefix: ``.base64`` files start with ``data:video/mp4;base64,``.
    inline_base64: for ``output_type: base64``, put the (prefixed) base64 data itself in
        ``output`` instead of a URL to a ``.base64`` file.
    fetch_eta: include ``eta`` in fetch "processing" bodies.
    auth_error_status: HTTP code for a bad key (set 200 for "HTTP 200 + status error").
    pending_download_status: code of the HTML placeholder on not-yet-ready file URLs
        (404 default; 200 = placeholder page served with 200 text/html).
    validate: reject ``model_id != "svd"`` / missing ``init_image`` / bad ``output_type`` with 400.
    """

    ROUTES = ("submit", "fetch", "download", "other")

    def __init__(self, api_key: str = "test-key", *, processing_polls: int = 0,
                 job_seconds: float | None = None, eta: float | None = None,
                 legacy_messege: bool = False, base64_data_prefix: bool = True,
                 inline_base64: bool = False, fetch_eta: bool = True, auth_error_status: int = 401,
                 pending_download_status: int = 404, validate: bool = True, first_id: int = 4711,
                 video_bytes: bytes | None = None, gif_bytes: bytes | None = None) -> None:
        super().__init__(api_key, job_seconds=job_seconds)
        self.processing_polls = processing_polls
        self.eta = eta
        self.legacy_messege = legacy_messege
        self.base64_data_prefix = base64_data_prefix
        self.inline_base64 = inline_base64
        self.fetch_eta = fetch_eta
        self.auth_error_status = auth_error_status
        self.pending_download_status = pending_download_status
        self.validate = validate
        self.video_bytes = video_bytes if video_bytes is not None else make_mp4_bytes()
        self.gif_bytes = gif_bytes if gif_bytes is not None else make_gif_bytes()
        self.jobs: dict[str, _Job] = {}  # by str(id)
        self._by_uuid: dict[str, _Job] = {}
        self._ids = itertools.count(first_id)

    def __enter__(self) -> FakeModelsLab:
        self.start()
        return self

    @property
    def base_url(self) -> str:
        """What the client is configured with; it appends ``/video/img2video`` etc."""
        return self.root_url + ENTERPRISE_PREFIX

    # ----- routing ---------------------------------------------------------------
    def _route(self, method: str, path: str) -> str:
        if method == "POST" and path == ENTERPRISE_PREFIX + "/video/img2video":
            return "submit"
        if method == "POST" and _FETCH_RE.match(path):
            return "fetch"
        if method in ("GET", "HEAD") and _FILE_RE.match(path):
            return "download"
        return "other"

    def _default(self, req: RecordedRequest) -> Reply:
        if req.route == "submit":
            return self._submit(req)
        if req.route == "fetch":
            return self._fetch(req)
        if req.route == "download":
            return self._download(req)
        return self._error(404, "Not found")

    # ----- helpers ---------------------------------------------------------------
    @property
    def _msg_key(self) -> str:
        return "messege" if self.legacy_messege else "message"

    def _error(self, status: int, message: str, **extra: Any) -> Reply:
        return Reply(status=status, json={"status": "error", self._msg_key: message, **extra})

    def _check_key(self, body: Any) -> Reply | None:
        if not isinstance(body, dict):
            return self._error(400, "Invalid JSON body")
        if body.get("key") != self.api_key:
            return self._error(self.auth_error_status, "Invalid API key")
        return None

    def _urls(self, job: _Job) -> tuple[str, str]:
        """(bucket URL, proxy/CDN URL) of the job's output file."""
        name = f"temp/{job.uuid}-0.base64" if job.output_type == "base64" else \
            f"video_generations/{job.uuid}.{job.output_type}"
        return f"{self.root_url}/{name}", f"{self.root_url}/cdn/{name}"

    def _media_bytes(self, job: _Job) -> bytes:
        return self.gif_bytes if job.media == "gif" else self.video_bytes

    def _b64(self, data: bytes, media: str) -> bytes:
        text = base64.b64encode(data)
        return (f"data:video/{media};base64,".encode() + text) if self.base64_data_prefix else text

    def _output(self, job: _Job) -> list[str]:
        url, _ = self._urls(job)
        if job.output_type == "base64" and self.inline_base64:
            return [self._b64(self._media_bytes(job), job.media).decode()]
        return [url]

    def _eta(self, job: _Job) -> float:
        if self.eta is not None:
            return self.eta
        if self.job_seconds is not None:
            return max(0, math.ceil(job.created + self.job_seconds - time.monotonic()))
        return 1

    def _status_done(self, job: _Job) -> bool:
        """Done check for a status answer (submit or fetch); counts the answer."""
        done = self._is_done(str(job.id), job.created, job.polls, self.processing_polls)
        job.polls += 1
        return done

    def _failed_body(self, job: _Job) -> dict[str, Any]:
        return {"status": "failed", "id": job.id, self._msg_key: self.fail_reason}

    # ----- endpoints -------------------------------------------------------------
    def _submit(self, req: RecordedRequest) -> Reply:
        body = req.json
        bad = self._check_key(body)
        if bad is not None:
            return bad
        output_type = body.get("output_type") or ("base64" if body.get("base64") is True else "mp4")
        if self.validate:
            if body.get("model_id") != "svd":
                return self._error(400, f"Model not found: {body.get('model_id')}")
            if not body.get("init_image"):
                return self._error(400, "init_image is required")
            if output_type not in ("mp4", "gif", "base64"):
                return self._error(400, "output_type must be one of mp4, gif, base64")
        with self.lock:
            job_id = next(self._ids)
            file_prefix = str(uuid.uuid4())
            meta = {k: _yes_no(v) for k, v in body.items() if k not in ("key", "init_image")}
            meta.setdefault("seed", random.randint(1, 2**31 - 1))
            meta.update(instant_response=_yes_no(bool(body.get("instant_response"))),
                        temp=_yes_no(bool(body.get("temp"))),
                        base64=_yes_no(output_type == "base64"), file_prefix=file_prefix)
            job = _Job(job_id, file_prefix, time.monotonic(), output_type,
                       "gif" if output_type == "gif" else "mp4", meta, request=dict(body))
            self.jobs[str(job_id)] = job
            self._by_uuid[file_prefix] = job
            done = self._status_done(job)
        url, proxy = self._urls(job)
        if done and body.get("instant_response") is not True:
            if self.fail_reason is not None:
                return Reply(json=self._failed_body(job))
            return Reply(json={
                "status": "success", "generationTime": round(time.monotonic() - job.created + 0.5, 3),
                "id": job.id, "output": self._output(job), "proxy_links": [proxy],
                "meta": meta, "future_links": [url],
            })
        processing: dict[str, Any] = {
            "status": "processing", "id": job.id, "eta": self._eta(job),
            self._msg_key: "Try to fetch request after given estimated time",
            "tip": "Your request is queued; use the fetch API with this id to get the result",
            "fetch_result": f"{self.root_url}/api/v6/video/fetch/{job.id}",
            "output": [], "future_links": [url], "meta": meta,
        }
        if self.legacy_messege:
            processing.update(tip_1="Get more from an upgraded plan", webhook_status="")
        return Reply(json=processing)

    def _fetch(self, req: RecordedRequest) -> Reply:
        bad = self._check_key(req.json)
        if bad is not None:
            return bad
        match = _FETCH_RE.match(req.path_only)
        assert match is not None
        with self.lock:
            job = self.jobs.get(match.group(1))
            if job is None:
                return self._error(404, "Video not found")
            done = self._status_done(job)
        if not done:
            body: dict[str, Any] = {
                "status": "processing", self._msg_key: "Request processing; try again after some time",
                "output": "", "tip": "Upgrade your plan for faster processing",
            }
            if self.fetch_eta:
                body["eta"] = self._eta(job)
            return Reply(json=body)
        if self.fail_reason is not None:
            return Reply(json=self._failed_body(job))
        return Reply(json={"status": "success", "id": job.id, "output": self._output(job),
                           "proxy_links": [self._urls(job)[1]]})

    def _download(self, req: RecordedRequest) -> Reply:
        match = _FILE_RE.match(req.path_only)
        assert match is not None
        file_uuid, ext = match.groups()
        with self.lock:
            job = self._by_uuid.get(file_uuid)
        placeholder = html_error(self.pending_download_status, "Not Found")
        if job is None or ext != ("base64" if job.output_type == "base64" else job.output_type):
            return html_error(404, "Not Found")
        # Poll mode: the file appears only once a status answer has said "success"
        # (polls - 1 answers before it), so grabbing future_links early gets the placeholder.
        ready = self._is_done(str(job.id), job.created, job.polls - 1, self.processing_polls) \
            and self.fail_reason is None
        data = self._media_bytes(job)
        if ext == "base64":
            return self._serve_video(str(job.id), data, "", ready=ready, pending=placeholder,
                                     encode=lambda b: self._b64(b, job.media))
        ctype = "image/gif" if ext == "gif" else "video/mp4"
        return self._serve_video(str(job.id), data, ctype, ready=ready, pending=placeholder)
