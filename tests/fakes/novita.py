"""Fake Novita AI async img2video server (contract: docs/hosted-apis.md §2).

Routes (names used by ``script()``):

* ``submit``   POST /v3/async/img2video               -> ``{"task_id": uuid}``
* ``poll``     GET  /v3/async/task-result?task_id=...  -> task-result body
* ``download`` GET/HEAD /faas-output-video/<id>.<mp4|gif>?X-Amz-...  (presigned-looking)
* ``other``    anything else, including GET on the submit path -> 404 ``API_NOT_FOUND``

Auth is ``Authorization: Bearer <key>``: missing -> 400 ``MISSING_API_KEY``, anything
else wrong (including a bare key without ``Bearer``) -> 403 ``INVALID_API_KEY``.
Quirks kept on purpose: ``TASK_STATUS_SUCCEED`` spelling, ``video_url_ttl`` and
``extra.seed`` as strings, ``progress_percent``/``eta`` 0 on success, job failure as
HTTP 200 + ``TASK_STATUS_FAILED``. The download URL only works with its query string
intact (a stripped or altered signature -> 403 ``SignatureDoesNotMatch``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ._server import ErrorCase, FakeServer, RecordedRequest, Reply, html_error, s3_error
from .media import make_gif_bytes, make_mp4_bytes

__all__ = ["FakeNovita", "novita_error", "novita_error_cases"]

SUBMIT_PATH = "/v3/async/img2video"
RESULT_PATH = "/v3/async/task-result"
_VIDEO_RE = re.compile(r"^/faas-output-video/([0-9a-f-]{36})\.(mp4|gif)$")
_RESIZE_MODES = ("ORIGINAL_RESOLUTION", "CROP_TO_ASPECT_RATIO")
_FRAMES = {"SVD-XT": 25, "SVD": 14}


def novita_error(status: int, reason: str, message: str = "", *, metadata: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
    """A Novita HTTP error: ``{"code", "reason", "message", "metadata"}``."""
    body = {"code": status, "reason": reason, "message": message or reason.lower().replace("_", " "),
            "metadata": dict(metadata or {})}
    return Reply(status=status, json=body, headers=dict(headers or {}))


def novita_error_cases() -> list[ErrorCase]:
    """Every row of contract §2.4 (plus 401 auth variants and HTML gateway pages), fresh each call."""
    n = novita_error
    return [
        ErrorCase("invalid_request_body", "submit", n(400, "INVALID_REQUEST_BODY", "frames_num must be 25"), False),
        ErrorCase("image_too_big_bytes", "submit", n(400, "IMAGE_FILE_EXCEEDS_MAX_SIZE"), False),
        ErrorCase("invalid_image_format", "submit", n(400, "INVALID_IMAGE_FORMAT"), False),
        ErrorCase("image_too_big_resolution", "submit", n(400, "IMAGE_EXCEEDS_MAX_RESOLUTION"), False),
        ErrorCase("invalid_image_size", "submit", n(400, "INVALID_IMAGE_SIZE"), False),
        ErrorCase("illegal_image_content", "submit", n(400, "ILLEGAL_IMAGE_CONTENT"), False),
        ErrorCase("illegal_prompt", "submit", n(400, "ILLEGAL_PROMPT"), False),
        ErrorCase("balance_not_enough_400", "submit", n(400, "BILLING_BALANCE_NOT_ENOUGH"), False),
        ErrorCase("missing_api_key_400", "submit", n(400, "MISSING_API_KEY"), False),
        ErrorCase("invalid_api_key_403", "submit", n(403, "INVALID_API_KEY"), False),
        ErrorCase("failed_to_auth_401", "submit", n(401, "FAILED_TO_AUTH"), False),
        ErrorCase("not_enough_balance_403", "submit", n(403, "NOT_ENOUGH_BALANCE"), False),
        ErrorCase("billing_auth_failed_403", "submit", n(403, "BILLING_AUTH_FAILED"), False),
        ErrorCase("api_not_allowed_403", "submit", n(403, "API_NOT_ALLOWED"), False),
        ErrorCase("need_real_name_verify_403", "submit", n(403, "NEED_REAL_NAME_VERIFY"), False),
        ErrorCase("feature_not_allowed_403", "submit", n(403, "FEATURE_NOT_ALLOWED"), False),
        ErrorCase("api_not_found_404", "submit", n(404, "API_NOT_FOUND"), False),
        ErrorCase("rate_limited_429", "submit", n(429, "RATE_LIMIT_EXCEEDED"), True),
        ErrorCase("billing_failed_500", "submit", n(500, "BILLING_FAILED"), True),
        ErrorCase("create_task_failed_500", "submit", n(500, "CREATE_TASK_FAILED"), True),
        ErrorCase("overloaded_503_html", "submit", html_error(503, "Service Unavailable"), True),
        ErrorCase("task_not_found_404", "poll", n(404, "TASK_NOT_FOUND"), False),
        ErrorCase("get_result_failed_500", "poll", n(500, "GET_RESULT_FAILED"), True),
        ErrorCase("task_failed_500", "poll", n(500, "TASK_FAILED"), False),
        ErrorCase("poll_rate_limited_429", "poll", n(429, "RATE_LIMIT_EXCEEDED"), True),
        ErrorCase("gateway_timeout_504_html", "poll", html_error(504, "Gateway Time-out"), True),
    ]


@dataclass
class _Task:
    task_id: str
    created: float
    created_wall_ms: int
    video_type: str  # mp4 | gif
    seed: Any
    polls: int = 0
    request: dict[str, Any] = field(default_factory=dict)


class FakeNovita(FakeServer):
    """Fake of Novita's ``/v3/async/img2video`` + ``/v3/async/task-result``.

    queued_polls / processing_polls: how many polls answer ``TASK_STATUS_QUEUED`` and then
        ``TASK_STATUS_PROCESSING`` (progress rising, eta falling) before ``SUCCEED``.
    job_seconds: instead, a task finishes this long after submit (queued for the
        first 20 % of that time, then processing).
    ttl_as_int: send ``video_url_ttl`` as an int instead of the documented string.
    ttl_seconds: value of ``video_url_ttl`` and ``X-Amz-Expires``.
    validate: reject bad bodies with 400 ``INVALID_REQUEST_BODY`` (model_name, frames_num
        per model, fps 6, steps 1-50, resize-mode enum, raw base64 without ``data:`` prefix,
        motion_bucket_id 1-255, cond_aug 0-1, response_video_type mp4|gif).
    """

    ROUTES = ("submit", "poll", "download", "other")

    def __init__(self, api_key: str = "test-key", *, queued_polls: int = 1, processing_polls: int = 2,
                 job_seconds: float | None = None, ttl_as_int: bool = False, ttl_seconds: int = 3600,
                 validate: bool = True, video_bytes: bytes | None = None,
                 gif_bytes: bytes | None = None) -> None:
        super().__init__(api_key, job_seconds=job_seconds)
        self.queued_polls = queued_polls
        self.processing_polls = processing_polls
        self.ttl_as_int = ttl_as_int
        self.ttl_seconds = ttl_seconds
        self.validate = validate
        self.video_bytes = video_bytes if video_bytes is not None else make_mp4_bytes()
        self.gif_bytes = gif_bytes if gif_bytes is not None else make_gif_bytes()
        self.tasks: dict[str, _Task] = {}
        self._secret = uuid.uuid4().hex

    def __enter__(self) -> FakeNovita:
        self.start()
        return self

    @property
    def base_url(self) -> str:
        """What the client is configured with; it appends ``/v3/async/...``."""
        return self.root_url

    # ----- routing ---------------------------------------------------------------
    def _route(self, method: str, path: str) -> str:
        if method == "POST" and path == SUBMIT_PATH:
            return "submit"
        if method == "GET" and path == RESULT_PATH:
            return "poll"
        if method in ("GET", "HEAD") and _VIDEO_RE.match(path):
            return "download"
        return "other"

    def _default(self, req: RecordedRequest) -> Reply:
        if req.route == "download":
            return self._download(req)
        if req.route == "other":
            return novita_error(404, "API_NOT_FOUND", "api not found")
        bad = self._check_auth(req)
        if bad is not None:
            return bad
        return self._submit(req) if req.route == "submit" else self._poll(req)

    # ----- helpers ---------------------------------------------------------------
    def _check_auth(self, req: RecordedRequest) -> Reply | None:
        auth = req.headers.get("authorization", "").strip()
        if auth in ("", "Bearer"):
            return novita_error(400, "MISSING_API_KEY", "missing api key")
        if auth != f"Bearer {self.api_key}":
            return novita_error(403, "INVALID_API_KEY", "invalid api key")
        return None

    def _signature(self, task_id: str, ext: str) -> str:
        return hashlib.sha256(f"{self._secret}/{task_id}.{ext}".encode()).hexdigest()

    def video_url(self, task_id: str) -> str:
        """Presigned-looking S3 URL for a task's video (query string is checked on download)."""
        task = self.tasks[task_id]
        ext = task.video_type
        cred = quote("FAKEAKIA/20240101/us-east-2/s3/aws4_request", safe="")
        return (f"{self.root_url}/faas-output-video/{task_id}.{ext}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                f"&X-Amz-Credential={cred}&X-Amz-Date=20240101T000000Z&X-Amz-Expires={self.ttl_seconds}"
                f"&X-Amz-SignedHeaders=host&X-Amz-Signature={self._signature(task_id, ext)}")

    def _validate(self, body: dict[str, Any]) -> str | None:
        """Return the reason text for an invalid body, or None."""
        model = body.get("model_name")
        if model not in _FRAMES:
            return f"model_name must be one of {sorted(_FRAMES)}"
        image = body.get("image_file")
        if not isinstance(image, str) or not image:
            return "image_file is required"
        if image.startswith("data:"):
            return "image_file must be raw base64 without a data: prefix"
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            return "image_file is not valid base64"
        if body.get("frames_num") != _FRAMES[model]:
            return f"frames_num must be {_FRAMES[model]} for {model}"
        if body.get("frames_per_second") != 6:
            return "frames_per_second must be 6"
        if body.get("image_file_resize_mode") not in _RESIZE_MODES:
            return f"image_file_resize_mode must be one of {list(_RESIZE_MODES)}"
        steps = body.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 50:
            return "steps must be an integer in [1, 50]"
        mb = body.get("motion_bucket_id")
        if mb is not None and (not isinstance(mb, int) or not 1 <= mb <= 255):
            return "motion_bucket_id must be in [1, 255]"
        ca = body.get("cond_aug")
        if ca is not None and (not isinstance(ca, (int, float)) or not 0 <= ca <= 1):
            return "cond_aug must be in [0, 1]"
        extra = body.get("extra") or {}
        if not isinstance(extra, dict) or extra.get("response_video_type", "mp4") not in ("mp4", "gif"):
            return "extra.response_video_type must be mp4 or gif"
        return None

    # ----- endpoints -------------------------------------------------------------
    def _submit(self, req: RecordedRequest) -> Reply:
        body = req.json
        if not isinstance(body, dict):
            return novita_error(400, "INVALID_REQUEST_BODY", "request body must be a JSON object")
        if self.validate:
            problem = self._validate(body)
            if problem is not None:
                return novita_error(400, "INVALID_REQUEST_BODY", problem)
        extra = body.get("extra") if isinstance(body.get("extra"), dict) else {}
        video_type = "gif" if extra.get("response_video_type") == "gif" else "mp4"
        seed = body.get("seed", random.randint(0, 2**31 - 1))
        task = _Task(str(uuid.uuid4()), time.monotonic(), int(time.time() * 1000), video_type, seed,
                     request=dict(body))
        with self.lock:
            self.tasks[task.task_id] = task
        return Reply(json={"task_id": task.task_id})

    def _poll(self, req: RecordedRequest) -> Reply:
        task_id = req.query.get("task_id", "")
        if not task_id:
            return novita_error(400, "INVALID_REQUEST_BODY", "task_id is required")
        needed = self.queued_polls + self.processing_polls
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                return novita_error(404, "TASK_NOT_FOUND", "task not found")
            k = task.polls
            done = self._is_done(task_id, task.created, k, needed)
            task.polls += 1
        info: dict[str, Any] = {"task_id": task_id, "task_type": "IMG_TO_VIDEO", "reason": "",
                                "eta": 0, "progress_percent": 0}
        videos: list[dict[str, Any]] = []
        if not done:
            if self.job_seconds is not None:
                frac = (time.monotonic() - task.created) / self.job_seconds if self.job_seconds else 1.0
                queued = frac < 0.2
                left = math.ceil(max(0.0, task.created + self.job_seconds - time.monotonic()))
                progress = 0 if queued else min(99, int(frac * 100))
            else:
                queued = k < self.queued_polls
                left = max(1, needed - k)
                progress = 0 if queued else min(99, (k - self.queued_polls + 1) * 100 // (self.processing_polls + 1))
            info.update(status="TASK_STATUS_QUEUED" if queued else "TASK_STATUS_PROCESSING",
                        eta=max(1, left), progress_percent=progress)
        elif self.fail_reason is not None:
            info.update(status="TASK_STATUS_FAILED", reason=self.fail_reason)
        else:
            info.update(status="TASK_STATUS_SUCCEED")
            ttl: int | str = self.ttl_seconds if self.ttl_as_int else str(self.ttl_seconds)
            videos.append({"video_url": self.video_url(task_id), "video_url_ttl": ttl,
                           "video_type": task.video_type})
        now_ms = int(time.time() * 1000)
        debug = {"request_info": "", "submit_time_ms": str(task.created_wall_ms),
                 "execute_time_ms": str(task.created_wall_ms + 50),
                 "complete_time_ms": str(now_ms) if done else "0"}
        return Reply(json={
            "task": info, "images": [], "videos": videos, "audios": [],
            "extra": {"seed": str(task.seed), "enable_nsfw_detection": False, "debug_info": debug},
        })

    def _download(self, req: RecordedRequest) -> Reply:
        match = _VIDEO_RE.match(req.path_only)
        assert match is not None
        task_id, ext = match.groups()
        with self.lock:
            task = self.tasks.get(task_id)
        if task is None or task.video_type != ext:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if req.query.get("X-Amz-Signature") != self._signature(task_id, ext):
            return s3_error(403, "SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature you provided.")
        ready = self._is_done(task_id, task.created, task.polls - 1,  # after the SUCCEED poll
                              self.queued_polls + self.processing_polls) and self.fail_reason is None
        data = self.gif_bytes if ext == "gif" else self.video_bytes
        ctype = "image/gif" if ext == "gif" else "video/mp4"
        pending = s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return self._serve_video(task_id, data, ctype, ready=ready, pending=pending)
