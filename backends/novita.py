"""Novita AI's async img2video API (SVD and SVD-XT), behind the same interface as the local backend.

Wire details and their sources are in /work/shared/api-contracts.md §2; comments cite
the section for each quirk. The flow: POST the photo as bare base64 with a Bearer key,
GET the task result until ``TASK_STATUS_SUCCEED``, download the presigned video at once
(it expires in about an hour) and check that it is one. Errors are told apart by the
body's ``reason``, not the HTTP status (§2.4).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from backends import http
from backends.base import Backend, Choice, Flag, Job, Limit, Range, Result, Text
from backends.polling import PollState, Timing, Transient, poll, retrying, unexpected
from studio import images
from studio.errors import GenerationFailed, ProviderError
from studio.request import GenerationRequest

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.novita.ai"
PROVIDER = "Novita"
WIRE_MODELS = {"svd-xt": "SVD-XT", "svd": "SVD"}  # §2.1: hyphen, not the prose's "SVD_XT"
FRAMES = {"svd-xt": 25, "svd": 14}  # §2.1: fixed per model
RESIZE_MODES = {"crop": "CROP_TO_ASPECT_RATIO", "fit": "ORIGINAL_RESOLUTION"}  # not the SDK's ORIGINAL_DIMENSION
FIT_BOX = (1024, 576)  # §2.1: ORIGINAL_RESOLUTION must stay within 1024x576
MAX_SIDE = 2048  # §2.1: image at most 2048x2048 px
MAX_BASE64 = 30_000_000  # §2.1: at most 30 MB

KEY_HINT = "Check your API key (NOVITA_API_KEY or the key field)."
# §2.4 (plus the LLM section's 401/403 auth and balance reasons): reason -> (summary, hint, retryable).
REASONS: dict[str, tuple[str, str, bool]] = {
    "INVALID_REQUEST_BODY": ("Novita rejected the request", "", False),
    "IMAGE_FILE_EXCEEDS_MAX_SIZE": ("The image is too large for Novita", "Use a file under 30 MB.", False),
    "INVALID_IMAGE_FORMAT": ("Novita cannot read this image format", "Use a PNG or JPEG.", False),
    "IMAGE_EXCEEDS_MAX_RESOLUTION": ("The image resolution is too high for Novita",
                                     "Use at most 2048 px a side.", False),
    "INVALID_IMAGE_SIZE": ("Novita does not accept this image size", "Use at most 2048 px a side.", False),
    "ILLEGAL_IMAGE_CONTENT": ("Novita's moderation refused this image", "", False),
    "ILLEGAL_PROMPT": ("Novita's moderation refused the prompt", "", False),
    "BILLING_BALANCE_NOT_ENOUGH": ("Your Novita balance is too low", "Top up your Novita account.", False),
    "NOT_ENOUGH_BALANCE": ("Your Novita balance is too low", "Top up your Novita account.", False),
    "MISSING_API_KEY": ("Novita did not receive an API key", KEY_HINT, False),
    "INVALID_API_KEY": ("Novita rejected the API key", KEY_HINT, False),
    "FAILED_TO_AUTH": ("Novita rejected the API key", KEY_HINT, False),
    "ANONYMOUS_ACCESS_QUOTA_EXCEEDS": ("Novita needs an API key for this", KEY_HINT, False),
    "BILLING_AUTH_FAILED": ("Novita could not authorise billing for this account",
                            "Check the account's payment settings.", False),
    "API_NOT_ALLOWED": ("Novita does not allow this account to use img2video", "", False),
    "NEED_REAL_NAME_VERIFY": ("Novita requires identity verification for this account",
                              "Complete it in the Novita dashboard.", False),
    "FEATURE_NOT_ALLOWED": ("Novita does not allow this feature for this account", "", False),
    "API_NOT_FOUND": ("Novita does not know this endpoint",
                      "Check NOVITA_BASE_URL; otherwise the API has changed.", False),
    "TASK_NOT_FOUND": ("Novita has no task with this id", "", False),
    "RATE_LIMIT_EXCEEDED": ("Novita's rate limit was reached", "", True),
    "BILLING_FAILED": ("Novita's billing service failed", "", True),
    "CREATE_TASK_FAILED": ("Novita could not create the task", "", True),
    "GET_RESULT_FAILED": ("Novita could not look up the result", "", True),
    "TASK_FAILED": ("Novita could not generate the video", "", False),
}
PENDING = ("TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING", "TASK_STATUS_UNKNOWN")  # §2.2, UNKNOWN from the JS SDK
NOT_FOUND_GRACE = 2  # §2.3: a fresh task id may briefly be unknown; tolerate a couple of 404s


class NovitaBackend(Backend):
    name = "novita"
    label = "Novita AI"
    blurb = "SVD and SVD-XT on Novita AI's hosted API (fixed 14 or 25 frames at 6 fps). Needs a Novita key."
    key_env = "NOVITA_API_KEY"
    models = {"svd-xt": "SVD-XT (25 frames)", "svd": "SVD (14 frames)"}

    def __init__(self, client: httpx.Client | None = None, *, timeouts: http.Timeouts | None = None,
                 poll_interval: float = 2.0, max_poll_interval: float = 5.0, deadline: float | None = None,
                 backoff: float = 1.0, max_backoff: float = 60.0, retries: int = 4) -> None:
        """``deadline`` None means HOSTED_TIMEOUT_SECONDS (default 600 s), read per job.
        api-contracts §2.3: poll every 2-5 s, guided by the task's eta."""
        self.timeouts = timeouts or http.Timeouts()
        self.client = client or http.default_client(self.timeouts)
        self.timing = Timing(poll_interval, max_poll_interval, deadline, backoff, max_backoff, retries)

    @staticmethod
    def base_url() -> str:
        """Read at call time so a changed NOVITA_BASE_URL (or a test's fake) applies."""
        return (os.environ.get("NOVITA_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    def limits(self, model: str) -> dict[str, Limit]:
        frames = FRAMES.get(model, 25)
        return {
            "num_frames": Range(frames, frames, frames),
            "fps": Range(6, 6, 6),  # §2.1: only 6 is supported
            "num_inference_steps": Range(1, 50, 25),
            "motion_bucket_id": Range(1, 255, 127),
            "noise_aug_strength": Range(0.0, 1.0, 0.02, step=0.01, integer=False),
            "seed": Range(0, 2**32 - 1, None, optional=True),
            "resize_mode": Choice(("crop", "fit"), "crop"),
            "enable_frame_interpolation": Flag(False),
            "output_format": Choice(("mp4", "gif"), "mp4"),
            "webhook": Text(max_length=2000, url=True),
        }

    # --- the wire payload -----------------------------------------------------------

    @staticmethod
    def payload(r: GenerationRequest, image_file: str) -> dict[str, Any]:
        """Our request under Novita's names. The one translation."""
        extra: dict[str, Any] = {"response_video_type": r.output_format or "mp4"}
        if r.webhook:
            extra["webhook"] = {"url": r.webhook}
        return {
            "model_name": WIRE_MODELS[r.model or "svd-xt"],
            "image_file": image_file,  # §2.1: bare base64, no data: prefix
            "frames_num": r.num_frames,
            "frames_per_second": r.fps,
            "image_file_resize_mode": RESIZE_MODES[r.resize_mode or "crop"],
            "steps": r.num_inference_steps,
            "seed": r.seed,  # §2.1: required by the older reference, so always a concrete one
            "motion_bucket_id": r.motion_bucket_id,
            "cond_aug": r.noise_aug_strength,
            "enable_frame_interpolation": bool(r.enable_frame_interpolation),
            "extra": extra,
        }

    @staticmethod
    def prepare(image: Image.Image, resize_mode: str) -> Image.Image:
        """'fit': we pick the size (within 1024x576, multiples of 64) and Novita keeps it;
        'crop': Novita crops, we only keep the photo within 2048 px (§2.1)."""
        if resize_mode == "fit":
            return images.frame(image, images.fit_size(image.size, FIT_BOX), "fit")
        if max(image.size) > MAX_SIDE:
            image = image.copy()
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return image

    # --- generation -------------------------------------------------------------------

    def generate(self, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        key = http.api_key(job, self.key_env or "", self.label)  # before any network call
        deadline_at = time.monotonic() + self.timing.seconds()
        r = request
        b64, fmt = http.image_base64(self.prepare(image, r.resize_mode or "crop"), MAX_BASE64)
        wire = self.payload(r, b64)
        sent = {**wire, "image_file": http.base64_placeholder(b64, fmt)}

        job.on_progress(None, "Sending the photo to Novita")
        task_id = retrying(lambda: self._submit(wire, key), job, self.timing, provider=PROVIDER,
                           what="submitting the job", deadline_at=deadline_at)
        job.on_job_id(task_id)
        log.info("Novita task %s submitted", task_id)
        first = PollState("pending", text=f"Waiting in Novita's queue (task {task_id})")
        done = self._poll(task_id, key, job, deadline_at, first=first)
        path = self._download(done.payload, task_id, job)
        used = r.model_dump(exclude_none=True) | {"task_id": task_id} | _seed(done.payload)
        mp4, gif = http.browser_video(path)
        job.on_progress(1.0, f"Done (Novita task {task_id})")
        return Result(video=mp4, used=used, sent=sent, job_id=task_id, gif=gif)

    def resume(self, job_id: str, request: GenerationRequest | None, job: Job) -> Result:
        """Look up a task that already exists (its id pasted back in) and download its video."""
        key, task_id, deadline_at = http.resume_start(self, job, job_id, self.timing.seconds())
        done = self._poll(task_id, key, job, deadline_at, grace=0)
        path = self._download(done.payload, task_id, job)
        mp4, gif = http.browser_video(path)
        used: dict[str, Any] = {"task_id": task_id} | _seed(done.payload)
        if request is not None and request.model:
            used["model"] = request.model
        job.on_progress(1.0, f"Done (Novita task {task_id})")
        return Result(video=mp4, used=used, sent={"task_id": task_id}, job_id=task_id, gif=gif)

    def _submit(self, wire: dict[str, Any], key: str) -> str:
        # §2.1: POST, whatever the docs' curl example says; Bearer as documented.
        response = http.send(self.client, "POST", f"{self.base_url()}/v3/async/img2video", json=wire,
                             headers=_auth(key), provider=PROVIDER, timeout=self.timeouts.for_submit(),
                             repeatable=False)
        body = http.json_body(response)
        _raise_for_error(response, body, key, task_id=None, submitting=True)
        task_id = body.get("task_id")
        if task_id in (None, ""):
            raise ProviderError(f"Novita accepted the job but sent no task id ({http.body_snippet(response)}).",
                                status=response.status_code)
        return str(task_id)

    def _poll(self, task_id: str, key: str, job: Job, deadline_at: float, *,
              first: PollState | None = None, grace: int = NOT_FOUND_GRACE) -> PollState:
        misses = 0

        def check() -> PollState:
            nonlocal misses
            # §2.2: the task result really is GET, with the same Bearer header.
            response = http.send(self.client, "GET", f"{self.base_url()}/v3/async/task-result",
                                 params={"task_id": task_id}, headers=_auth(key), provider=PROVIDER,
                                 timeout=self.timeouts.for_poll(), repeatable=True)
            body = http.json_body(response)
            if body.get("reason") == "TASK_NOT_FOUND" and misses < grace:
                misses += 1
                raise Transient(f"Novita does not know task {task_id} yet.", status=response.status_code)
            _raise_for_error(response, body, key, task_id=task_id, submitting=False)
            return _state(body, task_id)

        return poll(check, job, self.timing, provider=PROVIDER, task_id=task_id, deadline_at=deadline_at,
                    first=first)

    def _download(self, body: dict[str, Any], task_id: str, job: Job) -> Path:
        videos = [v for v in body.get("videos") or [] if isinstance(v, dict) and v.get("video_url")]
        if not videos:
            raise GenerationFailed("Novita said the task succeeded but sent no video.", job_id=task_id)
        ttl = http.number(videos[0].get("video_url_ttl"))  # §2.2: "3600" or 3600
        valid = f", the link is valid for {ttl:.0f} s" if ttl else ""
        job.on_progress(None, f"Downloading the video (Novita task {task_id}{valid})")
        return http.download(self.client, str(videos[0]["video_url"]), job.workdir / f"novita-{task_id[:64]}",
                             job_id=task_id, provider=PROVIDER, timeouts=self.timeouts)


def _seed(body: dict[str, Any]) -> dict[str, int]:
    """The seed Novita reports having used; §2.2: "42" or 42."""
    seed = http.number(http.obj(body.get("extra")).get("seed"))
    return {"seed": int(seed)} if seed is not None else {}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _state(body: dict[str, Any], task_id: str) -> PollState:
    """One task-result body as a typed state (§2.2; SUCCEED is spelled that way)."""
    task = http.obj(body.get("task"))
    status = task.get("status")
    if status == "TASK_STATUS_SUCCEED":
        return PollState("done", payload=body)
    if status == "TASK_STATUS_FAILED":
        reason = str(task.get("reason") or "").strip() or "no reason given"
        return PollState("failed", text=f"Novita could not generate the video: {reason}")
    if status not in PENDING:
        raise unexpected(PROVIDER, status, task_id)
    eta = http.number(task.get("eta"))
    percent = http.number(task.get("progress_percent"))
    left = f", about {eta:.0f} s left" if eta else ""
    if status == "TASK_STATUS_QUEUED":
        return PollState("pending", eta=eta, text=f"Waiting in Novita's queue (task {task_id}{left})")
    if status == "TASK_STATUS_UNKNOWN":
        return PollState("pending", eta=eta, text=f"Novita reports an unknown state for task {task_id}; still waiting")
    fraction = min(max(percent / 100, 0.0), 1.0) if percent else None
    shown = f" {percent:.0f}%" if percent else ""
    return PollState("pending", eta=eta, progress=fraction,
                     text=f"Novita is generating the video{shown} (task {task_id}{left})")


def _raise_for_error(response: httpx.Response, body: dict[str, Any], key: str, *,
                     task_id: str | None, submitting: bool) -> None:
    """Map an HTTP error by its ``reason`` first (§2.4: 401 and 403 may each be auth or
    billing, and an empty balance comes as 400), by its status only when there is none."""
    code = response.status_code
    if code < 400:
        return
    reason = str(body.get("reason") or "").strip()
    detail = http.redact(str(body.get("message") or "").strip() or http.body_snippet(response), key)
    summary, hint, retryable = REASONS.get(reason, (f"Novita answered HTTP {code}", "", code >= 500 or code == 429))
    if code == 429:
        retryable = True
    label = f" ({reason})" if reason else ""
    message = f"{summary}: {detail}{label}." + (f" {hint}" if hint else "")
    if retryable:
        if submitting and code == 504:  # a gateway timeout: the task may exist
            raise http.not_resubmitted(PROVIDER, f"HTTP 504: {detail}")
        raise Transient(message, retry_after=http.retry_after(response, body), status=code)
    if reason == "TASK_FAILED":
        raise GenerationFailed(message, job_id=task_id)
    raise ProviderError(message, status=code, job_id=task_id)
