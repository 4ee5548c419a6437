"""ModelsLab's enterprise img2video API (SVD), behind the same interface as the local backend.

Wire details and their sources are in /work/shared/api-contracts.md §1; comments cite
the section for each quirk. The flow: frame the photo ourselves, POST it with the key in
the body, branch on the body's ``status`` (not just the HTTP code), poll the fetch
endpoint for queued jobs, download the video at once and check that it is one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from PIL import Image

from backends import http
from backends.base import Backend, Choice, Flag, Job, Limit, Range, Result, Text
from backends.polling import PollState, Timing, Transient, poll, retrying, unexpected
from studio import images
from studio.errors import GenerationFailed, ProviderError
from studio.request import GenerationRequest

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://modelslab.com/api/v1/enterprise"
PROVIDER = "ModelsLab"
FAILED = ("error", "failed")  # api-contracts §1.2: webhooks and fetch say "failed", others "error"


class ModelsLabBackend(Backend):
    name = "modelslab"
    label = "ModelsLab"
    blurb = "Stable Video Diffusion on ModelsLab's enterprise API (up to 512x512, 25 frames). Needs a ModelsLab key."
    key_env = "MODELSLAB_API_KEY"
    models = {"svd": "SVD"}

    def __init__(self, client: httpx.Client | None = None, *, timeouts: http.Timeouts | None = None,
                 poll_interval: float = 5.0, max_poll_interval: float = 30.0, deadline: float | None = None,
                 backoff: float = 2.0, max_backoff: float = 60.0, retries: int = 4) -> None:
        """``deadline`` None means HOSTED_TIMEOUT_SECONDS (default 600 s), read per job.
        api-contracts §1.5: first fetch after the eta (at least 5 s), at most 30 s apart."""
        self.timeouts = timeouts or http.Timeouts()
        self.client = client or http.default_client(self.timeouts)
        self.timing = Timing(poll_interval, max_poll_interval, deadline, backoff, max_backoff, retries)

    @staticmethod
    def base_url() -> str:
        """Read at call time so a changed MODELSLAB_BASE_URL (or a test's fake) applies."""
        return (os.environ.get("MODELSLAB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    def limits(self, model: str) -> dict[str, Limit]:
        # api-contracts §1.1, enterprise defaults (not the v6 ones).
        return {
            "width": Range(64, 512, 512, step=64, multiple=64),
            "height": Range(64, 512, 512, step=64, multiple=64),
            "resize_mode": Choice(("crop", "fit"), "crop"),
            "num_frames": Range(1, 25, 16),
            "num_inference_steps": Range(1, 50, 20),
            "fps": Range(1, 16, 8),
            "motion_bucket_id": Range(1, 255, 127),
            "noise_aug_strength": Range(0.0, 1.0, 0.5, step=0.01, integer=False),
            "min_guidance_scale": Range(0.0, 8.0, 0.0, step=0.1, integer=False),
            "max_guidance_scale": Range(0.0, 8.0, 8.0, step=0.1, integer=False),
            "seed": Range(0, 2**32 - 1, None, optional=True),
            "output_format": Choice(("mp4", "gif", "base64"), "mp4"),
            "negative_prompt": Text(),
            "enhance_prompt": Flag(True),
            "latent_interpolation_method": Choice(("lerp", "slerp"), "lerp"),
            "clip_skip": Range(1, 2, None, optional=True),
            "instant_response": Flag(False),
            "temp": Flag(False),
            "webhook": Text(max_length=2000, url=True),
            "track_id": Text(max_length=200),
        }

    # --- the wire payload -----------------------------------------------------------

    @staticmethod
    def payload(r: GenerationRequest, width: int, height: int, init_image: str) -> dict[str, Any]:
        """Our request under ModelsLab's names, without the key. The one translation."""
        body: dict[str, Any] = {
            "model_id": "svd",  # api-contracts §1.1: the only allowed value
            "init_image": init_image,
            "width": width,
            "height": height,
            "num_frames": r.num_frames,
            "num_inference_steps": r.num_inference_steps,
            "fps": r.fps,
            "motion_bucket_id": r.motion_bucket_id,
            "noise_aug_strength": r.noise_aug_strength,  # keeps diffusers' name on ModelsLab
            "min_guidance_scale": r.min_guidance_scale,
            "max_guidance_scale": r.max_guidance_scale,
            "seed": r.seed,
            "output_type": r.output_format,
            "enhance_prompt": "yes" if r.enhance_prompt else "no",  # §1.1: a string, not a bool
            "latent_interpolation_method": r.latent_interpolation_method,
            "instant_response": bool(r.instant_response),
            "temp": bool(r.temp),
        }
        # §1.1: the doc example's legacy "base64": false switch is not sent; output_type says it.
        optional = {"negative_prompt": r.negative_prompt, "clip_skip": r.clip_skip,
                    "webhook": r.webhook, "track_id": r.track_id}  # track_id: sent as given
        body.update({k: v for k, v in optional.items() if v not in (None, "")})
        return body

    # --- generation -------------------------------------------------------------------

    def generate(self, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        key = http.api_key(job, self.key_env or "", self.label)  # before any network call
        deadline_at = time.monotonic() + self.timing.seconds()
        r = request  # resolved: every declared field is filled in
        width, height, mode = r.width or 512, r.height or 512, r.resize_mode or "crop"
        if mode == "fit":
            width, height = images.fit_size(image.size, (width, height))
        framed = images.frame(image, (width, height), mode)
        b64, fmt = http.image_base64(framed)
        # §1.1 accepts "URL or base64"; a data URI says which kind of image it is.
        wire = self.payload(r, width, height, f"data:image/{fmt.lower()};base64,{b64}")
        sent = {"key": "***", **wire, "init_image": http.base64_placeholder(b64, fmt)}

        job.on_progress(None, "Sending the photo to ModelsLab")
        body = retrying(lambda: self._submit({"key": key, **wire}, key), job, self.timing,
                        provider=PROVIDER, what="submitting the job", deadline_at=deadline_at)
        task_id, done = self._after_submit(body, key, job, deadline_at)
        path = self._download(done.payload, body, task_id, job)
        used = r.model_dump(exclude_none=True) | {"width": width, "height": height, "task_id": task_id}
        seed = http.number(http.obj(body.get("meta")).get("seed"))  # §1.2: meta echoes the seed the server really used
        if seed is not None:
            used["seed"] = int(seed)
        mp4, gif = http.browser_video(path)
        job.on_progress(1.0, f"Done (ModelsLab task {task_id})")
        return Result(video=mp4, used=used, sent=sent, job_id=task_id, gif=gif)

    def resume(self, job_id: str, request: GenerationRequest | None, job: Job) -> Result:
        """Fetch a job that already exists (its id pasted back in) and download its video."""
        key, task_id, deadline_at = http.resume_start(self, job, job_id, self.timing.seconds())
        done = poll(lambda: self._fetch(task_id, key), job, self.timing, provider=PROVIDER,
                    task_id=task_id, deadline_at=deadline_at)
        path = self._download(done.payload, {}, task_id, job)
        mp4, gif = http.browser_video(path)
        used: dict[str, Any] = {"task_id": task_id}
        if request is not None and request.model:
            used["model"] = request.model
        job.on_progress(1.0, f"Done (ModelsLab task {task_id})")
        return Result(video=mp4, used=used, sent={"key": "***"}, job_id=task_id, gif=gif)

    def _after_submit(self, body: dict[str, Any], key: str, job: Job,
                      deadline_at: float) -> tuple[str, PollState]:
        """The submit answer is either finished (§1.2 success) or queued (processing)."""
        task_id = _task_id(body)
        if task_id:
            job.on_job_id(task_id)  # at once, so the page can show it even if we fail later
        status = _status(body)
        if status == "success":
            return task_id or "unknown", PollState("done", payload=body)
        if status != "processing":
            raise unexpected(PROVIDER, body.get("status"), task_id)
        if not task_id:
            raise ProviderError("ModelsLab queued the job but sent no id to fetch it with.")
        first = PollState("pending", eta=http.number(body.get("eta")), text=_waiting(task_id, body))
        # §1.2: fetch_result's path is undocumented for enterprise; we build our own, log theirs.
        log.info("ModelsLab task %s queued (eta %s, fetch_result %s)", task_id, body.get("eta"),
                 body.get("fetch_result"))
        return task_id, poll(lambda: self._fetch(task_id, key), job, self.timing, provider=PROVIDER,
                             task_id=task_id, deadline_at=deadline_at, first=first)

    def _submit(self, wire: dict[str, Any], key: str) -> dict[str, Any]:
        response = http.send(self.client, "POST", f"{self.base_url()}/video/img2video", json=wire,
                             provider=PROVIDER, timeout=self.timeouts.for_submit(), repeatable=False)
        body = http.json_body(response)
        _raise_for_error(response, body, key, task_id=_task_id(body), submitting=True)
        return body

    def _fetch(self, task_id: str, key: str) -> PollState:
        # api-contracts §1.3: fetch is POST with the key in the JSON body, not GET.
        url = f"{self.base_url()}/video/fetch/{quote(task_id, safe='')}"
        response = http.send(self.client, "POST", url, json={"key": key}, provider=PROVIDER,
                             timeout=self.timeouts.for_poll(), repeatable=True)
        body = http.json_body(response)
        _raise_for_error(response, body, key, task_id=task_id, submitting=False)
        status = _status(body)
        if status == "success":
            return PollState("done", payload=body)
        if status == "processing":  # §1.3: here "output" is "" (a string), ignore it
            return PollState("pending", eta=http.number(body.get("eta")), text=_waiting(task_id, body))
        raise unexpected(PROVIDER, body.get("status"), task_id)

    def _download(self, done: dict[str, Any], submitted: dict[str, Any], task_id: str, job: Job) -> Path:
        """Try output, then proxy_links, then (the job being done now) future_links (§3.6)."""
        candidates = _links(done.get("output")) + _links(done.get("proxy_links"))
        candidates += _links(done.get("future_links")) + _links(submitted.get("future_links"))
        candidates = list(dict.fromkeys(candidates))
        if not candidates:
            raise GenerationFailed("ModelsLab said the job succeeded but sent no video.", job_id=task_id)
        job.on_progress(None, f"Downloading the video (ModelsLab task {task_id})")
        stem = job.workdir / f"modelslab-{_safe(task_id)}"
        errors: list[GenerationFailed] = []
        for item in candidates:
            try:  # §1.4: inline base64 data, a URL to a .base64 text file, or a plain video URL
                if not item.startswith(("http://", "https://")):
                    return http.decode_base64_video(item, stem, job_id=task_id, provider=PROVIDER)
                fetch = http.download_base64 if urlsplit(item).path.endswith(".base64") else http.download
                return fetch(self.client, item, stem, job_id=task_id, provider=PROVIDER, timeouts=self.timeouts)
            except GenerationFailed as exc:
                log.warning("ModelsLab task %s: download failed: %s", task_id, exc)
                errors.append(exc)
        raise errors[0]


def _raise_for_error(response: httpx.Response, body: dict[str, Any], key: str, *,
                     task_id: str | None, submitting: bool) -> None:
    """Turn an error answer into the studio's errors, whether it came as HTTP 4xx/5xx
    (JSON or an HTML page) or as HTTP 200 with ``status: error|failed`` (§1.7)."""
    code = response.status_code
    if code < 400 and _status(body) not in FAILED:
        return
    text = http.redact(_message(body) or http.body_snippet(response) or f"HTTP {code}", key)
    lowered = text.lower()
    if code == 429 or (code < 400 and "retry_after" in body):  # §1.8: rejected, not queued
        wait = http.retry_after(response, body)
        raise Transient(f"ModelsLab's queue is full ({text}).", retry_after=30.0 if wait is None else wait,
                        status=code)
    if code >= 500:
        if submitting and code == 504:  # a gateway timeout: the job may exist
            raise http.not_resubmitted(PROVIDER, f"HTTP 504: {text}")
        raise Transient(f"ModelsLab had a server error (HTTP {code}: {text}).", status=code)
    if code == 401 or "api key" in lowered or "invalid key" in lowered:
        raise ProviderError(f"ModelsLab rejected the API key ({text}): check your API key "
                            "(MODELSLAB_API_KEY or the key field).", status=code, job_id=task_id)
    if code == 402 or "credit" in lowered:
        raise ProviderError(f"ModelsLab says the account has run out of credits ({text}): top up your "
                            "ModelsLab account.", status=code, job_id=task_id)
    if code == 403:
        raise ProviderError(f"ModelsLab refused the request ({text}): your plan may not include this "
                            "feature (SVD needs an enterprise plan).", status=code, job_id=task_id)
    if code == 404 and not submitting:
        raise ProviderError(f"ModelsLab has no job with this task id ({text}).", status=code, job_id=task_id)
    if code >= 400:
        raise ProviderError(f"ModelsLab rejected the request (HTTP {code}): {text}", status=code, job_id=task_id)
    if task_id is None:
        raise ProviderError(f"ModelsLab refused the job: {text}", status=code)
    raise GenerationFailed(f"ModelsLab could not generate the video: {text}", job_id=task_id)


def _status(body: dict[str, Any]) -> str:
    return str(body.get("status") or "").strip().lower()


def _message(body: dict[str, Any]) -> str:
    # §1.2: legacy endpoints spell it "messege"; read "message" first.
    for field in ("message", "messege", "error"):
        value = body.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _task_id(body: dict[str, Any]) -> str | None:
    # §1.2: "id" is an int in the docs and a string elsewhere: always keep a string.
    value = body.get("id") if body.get("id") not in (None, "") else http.obj(body.get("meta")).get("id")
    return str(value) if value not in (None, "") else None


def _links(value: Any) -> list[str]:
    """A list of non-empty strings from a field that may be a list, a string or "" (§1.3)."""
    items = value if isinstance(value, list) else [value]
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def _waiting(task_id: str, body: dict[str, Any]) -> str:
    eta = http.number(body.get("eta"))
    left = f", about {eta:.0f} s left" if eta else ""
    return f"ModelsLab is generating the video (task {task_id}{left})"


def _safe(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task_id)[:64]
