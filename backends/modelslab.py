"""ModelsLab's enterprise img2video API (SVD): its wire format behind ``HostedBackend``.

Wire details and their sources are in docs/hosted-apis.md §1; comments cite the section
for each quirk. What is ModelsLab's own: we frame the photo ourselves and send it with
the key in the JSON body, branch on the body's ``status`` (not just the HTTP code),
fetch queued jobs with a POST, and find the video in ``output``, ``proxy_links`` or
``future_links``. The flow of a job is ``backends.hosted``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable
from urllib.parse import quote

import httpx
from PIL import Image

from backends import http
from backends.base import Choice, Flag, Limit, Option, Range, Text
from backends.hosted import HostedBackend, Problem, Submitted, Wire
from backends.polling import PollState, Timing, unexpected
from studio.request import GenerationRequest

log = logging.getLogger(__name__)

FAILED = ("error", "failed")  # §1.2: webhooks and fetch say "failed", others "error"
KEY_HINT = "check your API key (MODELSLAB_API_KEY or the key field)."


class ModelsLabBackend(HostedBackend):
    name = "modelslab"
    label = "ModelsLab"
    blurb = "Stable Video Diffusion on ModelsLab's enterprise API (up to 512x512, 25 frames). Needs a ModelsLab key."
    key_env = "MODELSLAB_API_KEY"
    models = {"svd": "SVD"}
    provider = "ModelsLab"
    base_url_env = "MODELSLAB_BASE_URL"
    default_base_url = "https://modelslab.com/api/v1/enterprise"
    waiting_for = "a free ModelsLab slot"
    # §1.5: first fetch after the eta (at least 5 s), at most 30 s apart.
    default_timing = Timing(interval=5.0, max_interval=30.0, backoff=2.0)

    def limits(self, model: str) -> dict[str, Limit]:
        # §1.1, enterprise defaults (not the v6 ones).
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
        }

    def options(self, model: str) -> dict[str, Option]:
        # §1.1 and §1.4: ModelsLab's own fields, under our names.
        return {
            "output_format": Option(Choice(("mp4", "gif", "base64"), "mp4"),
                                    "The file format ModelsLab sends back. The page always shows an MP4 and "
                                    "offers both."),
            "negative_prompt": Option(Text(), "What the video should avoid."),
            "enhance_prompt": Option(Flag(True), "Let the service improve the prompt."),
            "latent_interpolation_method": Option(Choice(("lerp", "slerp"), "lerp"),
                                                  "How the service blends between frames: linear (lerp) or "
                                                  "spherical (slerp)."),
            "clip_skip": Option(Range(1, 2, None, optional=True),
                                "Skip the last CLIP layers when reading the image (1 or 2; empty for none)."),
            "temp": Option(Flag(False), "Store the result in the service's temporary storage (wiped every 24 hours)."),
            "webhook": Option(Text(max_length=2000, url=True),
                              "A public https URL the service calls when the job is done (optional; the page "
                              "polls anyway). The service gets it whole, but the history and the video's settings "
                              "keep it without its query and user name (https://example.org/hook?…): enter it "
                              "again to use it again."),
            "track_id": Option(Text(max_length=200), "Your own id, echoed back to the webhook (optional)."),
            # A transport detail nobody needs to see: the studio always polls, so an answer at
            # once is strictly better (the task id reaches the page at once, so the job can be
            # resumed or cancelled). API callers may still ask for the held-open submit (§1.4).
            "instant_response": Option(Flag(True), "Ask ModelsLab to answer at once with a job id instead of "
                                                   "holding the request open.", shown=False),
        }

    # --- the wire format -------------------------------------------------------------

    def payload(self, image: Image.Image, request: GenerationRequest) -> Wire:
        """Our request under ModelsLab's names, without the key. The one translation."""
        r, o = request, request.options  # resolved: every parameter and option with a default is set
        shot = self.frame(image, r)  # we frame the photo ourselves (§1.1): the page previews this picture
        width, height = shot.width, shot.height
        b64, fmt = http.image_base64(shot.image)
        body: dict[str, Any] = {
            "model_id": "svd",  # §1.1: the only allowed value
            # §1.1 accepts "URL or base64"; a data URI says which kind of image it is.
            "init_image": f"data:image/{fmt.lower()};base64,{b64}",
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
            "output_type": o["output_format"],
            "enhance_prompt": "yes" if o["enhance_prompt"] else "no",  # §1.1: a string, not a bool
            "latent_interpolation_method": o["latent_interpolation_method"],
            "instant_response": bool(o["instant_response"]),
            "temp": bool(o["temp"]),
        }
        # §1.1: the doc example's legacy "base64": false switch is not sent; output_type says it.
        optional = ("negative_prompt", "clip_skip", "webhook", "track_id")  # track_id: sent as given
        body.update({k: o[k] for k in optional if o.get(k) not in (None, "")})
        shown = {"key": "***", **body, "init_image": http.base64_placeholder(b64, fmt)}
        return Wire(body, shown, facts={"width": width, "height": height})

    def submit(self, wire: dict[str, Any], key: str) -> Submitted:
        """The answer is finished (§1.2 ``success``) or queued (``processing``)."""
        response, body = self.ask("POST", "/video/img2video", json={"key": key, **wire}, submitting=True)
        task_id = _task_id(body)
        self.raise_for_problem(response, body, key, task_id=task_id, submitting=True)
        if task_id and _status(body) == "processing":
            # §1.2: fetch_result's path is undocumented for enterprise; we build our own, log theirs.
            log.info("ModelsLab task %s queued (eta %s, fetch_result %s)", task_id, body.get("eta"),
                     body.get("fetch_result"))
        return Submitted(task_id, self._state(body, task_id), body)

    def checker(self, task_id: str, key: str, *, fresh: bool) -> Callable[[], PollState]:
        def fetch() -> PollState:
            # §1.3: fetch is POST with the key in the JSON body, not GET.
            response, body = self.ask("POST", f"/video/fetch/{quote(task_id, safe='')}", json={"key": key},
                                      task_id=task_id)
            self.raise_for_problem(response, body, key, task_id=task_id)
            return self._state(body, task_id)

        return fetch

    def _state(self, body: dict[str, Any], task_id: str | None) -> PollState:
        status = _status(body)
        if status == "success":
            return PollState("done", payload=body)
        if status == "processing" and task_id:  # §1.3: a fetch's "output" is then "" (a string): ignored
            return self.pending("running", task_id, eta=http.number(body.get("eta")))
        if status == "processing":
            return PollState("pending")  # queued without an id to fetch it by: the base refuses that
        raise unexpected(self.provider, body.get("status"), task_id)

    def video_links(self, done: dict[str, Any], submitted: dict[str, Any]) -> list[str]:
        """``output``, then ``proxy_links``, then (the job being done now) ``future_links`` (§3.6)."""
        return (_links(done.get("output")) + _links(done.get("proxy_links"))
                + _links(done.get("future_links")) + _links(submitted.get("future_links")))

    def reported(self, done: dict[str, Any], submitted: dict[str, Any]) -> dict[str, Any]:
        # §1.2: ``meta`` (in submit answers, not in fetch answers) echoes the seed really used.
        meta = http.obj(done.get("meta")) or http.obj(submitted.get("meta"))
        seed = http.number(meta.get("seed"))
        return {"seed": int(seed)} if seed is not None else {}

    def problem(self, response: httpx.Response, body: dict[str, Any], *, task_id: str | None,
                submitting: bool) -> Problem | None:
        """An error comes as HTTP 4xx/5xx (JSON or an HTML page) or as HTTP 200 with
        ``status: error|failed`` (§1.7), so both are read."""
        code = response.status_code
        if code < 400 and _status(body) not in FAILED:
            return None
        text = _message(body) or http.body_snippet(response) or f"HTTP {code}"
        lowered = text.lower()
        if code == 429 or (code < 400 and "retry_after" in body):  # §1.8: rejected, not queued
            wait = http.retry_after(response, body)
            return Problem(f"ModelsLab's queue is full ({text}).", "retry", text, 30.0 if wait is None else wait)
        if code >= 500:
            return Problem(f"ModelsLab had a server error (HTTP {code}: {text}).", "retry", text)
        if code == 401 or "api key" in lowered or "invalid key" in lowered:
            return Problem(f"ModelsLab rejected the API key ({text}): {KEY_HINT}", "refused")
        if code == 402 or "credit" in lowered:
            return Problem(f"ModelsLab says the account has run out of credits ({text}): top up your "
                           "ModelsLab account.", "refused")
        if code == 403:
            return Problem(f"ModelsLab refused the request ({text}): your plan may not include this "
                           "feature (SVD needs an enterprise plan).", "refused")
        if code == 404 and not submitting:
            return Problem(f"ModelsLab has no job with this task id ({text}).", "refused")
        if code >= 400:
            return Problem(f"ModelsLab rejected the request (HTTP {code}): {text}", "refused")
        if task_id is None:
            return Problem(f"ModelsLab refused the job: {text}", "refused")
        return Problem(f"ModelsLab could not generate the video: {text}", "failed")


def _status(body: dict[str, Any]) -> str:
    return str(body.get("status") or "").strip().lower()


def _message(body: dict[str, Any]) -> str:
    # §1.2: legacy endpoints spell it "messege"; read "message" first.
    for name in ("message", "messege", "error"):
        value = body.get(name)
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

