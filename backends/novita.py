"""Novita AI's async img2video API (SVD and SVD-XT): its wire format behind ``HostedBackend``.

Wire details and their sources are in docs/hosted-apis.md §2; comments cite the section
for each quirk. What is Novita's own: the photo goes as bare base64 with a Bearer key,
the task result is a GET whose ``task.status`` says QUEUED, PROCESSING or SUCCEED, the
video is a presigned link that expires in about an hour, and errors are told apart by
the body's ``reason``, not the HTTP status (§2.4). The flow of a job is ``backends.hosted``.
"""

from __future__ import annotations

from typing import Any, Callable

import httpx
from PIL import Image

from backends import http
from backends.base import Choice, Flag, Framed, Limit, Option, Range, Text
from backends.hosted import HostedBackend, Phase, Problem, Submitted, Wire
from backends.polling import PollState, Timing, Transient, unexpected
from studio import images
from studio.errors import ProviderError
from studio.request import GenerationRequest

WIRE_MODELS = {"svd-xt": "SVD-XT", "svd": "SVD"}  # §2.1: hyphen, not the prose's "SVD_XT"
FRAMES = {"svd-xt": 25, "svd": 14}  # §2.1: fixed per model
RESIZE_MODES = {"crop": "CROP_TO_ASPECT_RATIO", "fit": "ORIGINAL_RESOLUTION"}  # not the SDK's ORIGINAL_DIMENSION
FIT_BOX = (1024, 576)  # §2.1: ORIGINAL_RESOLUTION must stay within 1024x576
MAX_SIDE = 2048  # §2.1: image at most 2048x2048 px
CROP_FRAME = (1024, 576)  # §2.1: CROP_TO_ASPECT_RATIO crops to fit Novita's 1024x576 frame
CROP_NOTE = "Novita crops the photo to 1024x576 on its side; this preview is the studio's copy of that crop."
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
# §2.2: the states of a task under way (UNKNOWN from the JS SDK), as the base names them.
PHASES: dict[str, Phase] = {"TASK_STATUS_QUEUED": "queued", "TASK_STATUS_PROCESSING": "running",
                            "TASK_STATUS_UNKNOWN": "unknown"}
NOT_FOUND_GRACE = 2  # §2.3: a fresh task id may briefly be unknown; tolerate a couple of 404s


class NovitaBackend(HostedBackend):
    name = "novita"
    label = "Novita AI"
    blurb = "SVD and SVD-XT on Novita AI's hosted API (fixed 14 or 25 frames at 6 fps). Needs a Novita key."
    key_env = "NOVITA_API_KEY"
    models = {"svd-xt": "SVD-XT (25 frames)", "svd": "SVD (14 frames)"}
    provider = "Novita"
    base_url_env = "NOVITA_BASE_URL"
    default_base_url = "https://api.novita.ai"
    waiting_for = "a free Novita slot"
    default_timing = Timing(interval=2.0, max_interval=5.0)  # §2.3: poll every 2-5 s, guided by the eta

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
        }

    def options(self, model: str) -> dict[str, Option]:
        return {  # §2.1
            "enable_frame_interpolation": Option(Flag(False), "Let the service add in-between frames so the clip "
                                                              "plays smoothly at 24 fps."),
            "output_format": Option(Choice(("mp4", "gif"), "mp4"), "The file format Novita sends back. The page "
                                                                   "always shows an MP4 and offers both."),
            "webhook": Option(Text(max_length=2000, url=True),
                              "A public https URL the service calls when the job is done (optional; the page "
                              "polls anyway). The service gets it whole, but the history and the video's settings "
                              "keep it without its query and user name (https://example.org/hook?…): enter it "
                              "again to use it again."),
        }

    # --- the wire format -------------------------------------------------------------

    def payload(self, image: Image.Image, request: GenerationRequest) -> Wire:
        """Our request under Novita's names. The one translation."""
        r, o = request, request.options  # resolved: every parameter and option with a default is set
        b64, fmt = http.image_base64(self.sent_image(image, r), MAX_BASE64)
        extra: dict[str, Any] = {"response_video_type": o["output_format"]}
        if o.get("webhook"):
            extra["webhook"] = {"url": o["webhook"]}
        body = {
            "model_name": WIRE_MODELS[r.model or "svd-xt"],
            "image_file": b64,  # §2.1: bare base64, no data: prefix
            "frames_num": r.num_frames,
            "frames_per_second": r.fps,
            "image_file_resize_mode": RESIZE_MODES[r.resize_mode or "crop"],
            "steps": r.num_inference_steps,
            "seed": r.seed,  # §2.1: required by the older reference, so always a concrete one
            "motion_bucket_id": r.motion_bucket_id,
            "cond_aug": r.noise_aug_strength,
            "enable_frame_interpolation": bool(o["enable_frame_interpolation"]),
            "extra": extra,
        }
        return Wire(body, shown={**body, "image_file": http.base64_placeholder(b64, fmt)})

    def frame(self, image: Image.Image, request: GenerationRequest) -> Framed:
        """The picture the video starts from. Novita takes no width or height (§2.1):

        'fit' (ORIGINAL_RESOLUTION): we pick the size, within 1024x576 in multiples of 64,
        and Novita keeps it, so this is exactly what ``sent_image`` sends.
        'crop' (CROP_TO_ASPECT_RATIO): Novita crops on its side to its 1024x576 frame, so
        we send the whole photo and this is our copy of that crop, made from the very
        picture sent, with a note saying it is a copy. Only the preview uses it.
        """
        if (request.resize_mode or "crop") == "fit":
            size = images.fit_size(image.size, FIT_BOX)
            return Framed(images.frame(image, size, "fit"), *size)
        cropped = images.frame(_within_max_side(image), CROP_FRAME, "crop")
        return Framed(cropped, *CROP_FRAME, note=CROP_NOTE)

    def sent_image(self, image: Image.Image, request: GenerationRequest) -> Image.Image:
        """The picture put on the wire: 'fit' sends ``frame``'s picture itself; 'crop'
        sends the photo within 2048 px a side and leaves the cropping to Novita (§2.1)."""
        if (request.resize_mode or "crop") == "fit":
            return self.frame(image, request).image
        return _within_max_side(image)

    def submit(self, wire: dict[str, Any], key: str) -> Submitted:
        # §2.1: POST, whatever the docs' curl example says; Bearer as documented.
        response, body = self.ask("POST", "/v3/async/img2video", json=wire, headers=_auth(key), submitting=True)
        self.raise_for_problem(response, body, key, task_id=None, submitting=True)
        task_id = body.get("task_id")
        if task_id in (None, ""):
            raise ProviderError(f"Novita accepted the job but sent no task id ({http.body_snippet(response)}).",
                                status=response.status_code)
        return Submitted(str(task_id), self.pending("queued", str(task_id)), body)

    def checker(self, task_id: str, key: str, *, fresh: bool) -> Callable[[], PollState]:
        grace = NOT_FOUND_GRACE if fresh else 0  # §2.3: only an id from our own submit gets it
        misses = 0

        def check() -> PollState:
            nonlocal misses
            # §2.2: the task result really is GET, with the same Bearer header.
            response, body = self.ask("GET", "/v3/async/task-result", params={"task_id": task_id},
                                      headers=_auth(key), task_id=task_id)
            if body.get("reason") == "TASK_NOT_FOUND" and misses < grace:
                misses += 1
                raise Transient(f"Novita does not know task {task_id} yet.", status=response.status_code)
            self.raise_for_problem(response, body, key, task_id=task_id)
            return self._state(body, task_id)

        return check

    def _state(self, body: dict[str, Any], task_id: str) -> PollState:
        """One task-result body as a typed state (§2.2; SUCCEED is spelled that way)."""
        task = http.obj(body.get("task"))
        status = task.get("status")
        if status == "TASK_STATUS_SUCCEED":
            return PollState("done", payload=body)
        if status == "TASK_STATUS_FAILED":
            reason = str(task.get("reason") or "").strip() or "no reason given"
            return PollState("failed", text=f"Novita could not generate the video: {reason}")
        if status not in PHASES:
            raise unexpected(self.provider, status, task_id)
        return self.pending(PHASES[status], task_id, eta=http.number(task.get("eta")),
                            percent=http.number(task.get("progress_percent")))

    def video_links(self, done: dict[str, Any], submitted: dict[str, Any]) -> list[str]:
        return [str(v["video_url"]) for v in _videos(done)]

    def download_note(self, done: dict[str, Any]) -> str:
        videos = _videos(done)
        ttl = http.number(videos[0].get("video_url_ttl")) if videos else None  # §2.2: "3600" or 3600
        return f", the link is valid for {ttl:.0f} s" if ttl else ""

    def reported(self, done: dict[str, Any], submitted: dict[str, Any]) -> dict[str, Any]:
        seed = http.number(http.obj(done.get("extra")).get("seed"))  # §2.2: "42" or 42
        return {"seed": int(seed)} if seed is not None else {}

    def problem(self, response: httpx.Response, body: dict[str, Any], *, task_id: str | None,
                submitting: bool) -> Problem | None:
        """By the body's ``reason`` first (§2.4: 401 and 403 may each be auth or billing, and
        an empty balance comes as 400), by the HTTP status only when there is none."""
        code = response.status_code
        if code < 400:
            return None
        reason = str(body.get("reason") or "").strip()
        detail = str(body.get("message") or "").strip() or http.body_snippet(response)
        summary, hint, retryable = REASONS.get(reason, (f"Novita answered HTTP {code}", "", code >= 500))
        label = f" ({reason})" if reason else ""
        message = f"{summary}: {detail}{label}." + (f" {hint}" if hint else "")
        if retryable or code == 429:
            return Problem(message, "retry", detail, http.retry_after(response, body))
        return Problem(message, "failed" if reason == "TASK_FAILED" else "refused", detail)


def _within_max_side(image: Image.Image) -> Image.Image:
    """The photo shrunk to at most 2048 px a side (§2.1), or itself when it already is."""
    if max(image.size) <= MAX_SIDE:
        return image
    image = image.copy()
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def _videos(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in body.get("videos") or [] if isinstance(v, dict) and v.get("video_url")]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
