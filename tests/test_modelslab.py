"""ModelsLab backend against the fake enterprise server (real HTTP on 127.0.0.1).

Covers every answer shape and error row of docs/hosted-apis.md §1; outcomes are checked by
decoding the downloaded video and by exact error texts.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from backends import http
from backends.base import Job
from backends.modelslab import ModelsLabBackend
from studio.errors import Cancelled, GenerationFailed, InvalidParameter, MissingKey, ProviderError, TimedOut
from studio.images import load_image
from studio.request import PARAMETERS, GenerationRequest
from studio.video import probe
from tests.fakes import FakeModelsLab, Reply, html_error, modelslab_error, modelslab_error_cases

KEY = "test-key"
FAST = dict(poll_interval=0.01, max_poll_interval=0.05, deadline=5.0, backoff=0.01, max_backoff=0.05, retries=3)


@pytest.fixture
def image(photo: Path) -> Image.Image:
    return load_image(photo)


@pytest.fixture(scope="module")
def client():
    """One production-configured client for the module (building one costs ~0.2 s)."""
    with http.default_client() as c:
        yield c


@pytest.fixture
def make(client):
    """``make(deadline=0.3)``: a backend with fast timings, any of them overridden."""
    return lambda **overrides: ModelsLabBackend(client, **{**FAST, **overrides})


@pytest.fixture
def backend(make):
    return make()


@pytest.fixture
def fake(monkeypatch):
    """A factory: ``fake(processing_polls=2)`` starts a FakeModelsLab and points the backend at it."""
    started: list[FakeModelsLab] = []

    def start(**kwargs) -> FakeModelsLab:
        ml = FakeModelsLab(KEY, **kwargs).start()
        started.append(ml)
        monkeypatch.setenv("MODELSLAB_BASE_URL", ml.base_url)
        return ml

    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    yield start
    for ml in started:
        ml.stop()


class Recorder:
    """A Job plus everything the backend reported through it."""

    def __init__(self, workdir: Path, api_key: str | None = KEY) -> None:
        self.progress: list[tuple[float | None, str]] = []
        self.job_ids: list[str] = []
        self.job = Job(workdir=workdir, api_key=api_key, on_progress=lambda f, t: self.progress.append((f, t)),
                       on_job_id=self.job_ids.append)


def request(**params) -> GenerationRequest:
    """A request from flat params: SVD's parameters as fields, ModelsLab's own under ``options``."""
    return GenerationRequest(**{k: v for k, v in params.items() if k in PARAMETERS},
                             options={k: v for k, v in params.items() if k not in PARAMETERS})


def run(backend: ModelsLabBackend, image: Image.Image, tmp_path: Path, api_key: str | None = KEY, **params):
    params = {"width": 128, "height": 128, "num_frames": 4, **params}  # small frames keep PNG encoding quick
    rec = Recorder(tmp_path, api_key)
    result = backend.generate(image, backend.resolve(request(**params)), rec.job)
    return result, rec


def frames(path: Path) -> int:
    return probe(path)[0]


# --- declarations -------------------------------------------------------------------


def test_limits_defaults_and_teaching_errors(backend):
    r = backend.resolve(GenerationRequest())
    assert (r.width, r.height, r.num_frames, r.num_inference_steps, r.fps) == (512, 512, 16, 20, 8)
    assert (r.noise_aug_strength, r.min_guidance_scale, r.max_guidance_scale) == (0.5, 0.0, 8.0)
    assert r.options == {"output_format": "mp4", "enhance_prompt": True, "latent_interpolation_method": "lerp",
                         "temp": False, "instant_response": True}  # clip_skip, texts: empty by default
    assert r.seed is not None
    options = backend.options("svd")
    assert set(options).isdisjoint(backend.limits("svd"))  # SVD's parameters and ModelsLab's own, apart
    assert [n for n, o in options.items() if not o.shown] == ["instant_response"]  # for API callers only
    for params, text in [
        ({"fps": 24}, "fps must be 1-16 for ModelsLab, got 24"),
        ({"width": 576}, "width must be a multiple of 64 from 64 to 512 for ModelsLab, got 576"),
        ({"num_frames": 26}, "num_frames must be 1-25 for ModelsLab, got 26"),
        ({"max_guidance_scale": 9.0}, "max_guidance_scale must be 0-8 for ModelsLab, got 9.0"),
        ({"decode_chunk_size": 4}, "decode_chunk_size must be left empty (this backend does not use it) "
                                   "for ModelsLab, got 4"),
        ({"webhook": "ftp://x"}, "webhook must be an http(s) URL or empty for ModelsLab, got 'ftp://x'"),
    ]:
        with pytest.raises(InvalidParameter) as err:
            backend.resolve(request(**params))
        assert str(err.value) == text


# --- answer shapes --------------------------------------------------------------------


def test_exact_payload_and_instant_response(backend, fake, image, tmp_path):
    """The default submit asks for an instant answer (§1.4): 'processing' with the id at
    once, then one fetch says success."""
    ml = fake()
    result, rec = run(
        backend, image, tmp_path, width=256, height=192, num_frames=4, num_inference_steps=12, fps=6,
        motion_bucket_id=90, noise_aug_strength=0.1, min_guidance_scale=1.0, max_guidance_scale=3.5, seed=42,
        output_format="mp4", negative_prompt="blurry", enhance_prompt=False, latent_interpolation_method="slerp",
        clip_skip=2, temp=True, webhook="https://example.com/hook", track_id="run-7",
    )
    [submit] = ml.requests_for("submit")
    wire = submit.json
    init_image = wire.pop("init_image")
    expected = {
        "key": KEY, "model_id": "svd", "width": 256, "height": 192, "num_frames": 4, "num_inference_steps": 12,
        "fps": 6, "motion_bucket_id": 90, "noise_aug_strength": 0.1, "min_guidance_scale": 1.0,
        "max_guidance_scale": 3.5, "seed": 42, "output_type": "mp4", "enhance_prompt": "no",
        "latent_interpolation_method": "slerp", "instant_response": True, "temp": True,
        "negative_prompt": "blurry", "clip_skip": 2, "webhook": "https://example.com/hook", "track_id": "run-7",
    }
    assert wire == expected
    assert (submit.method, submit.path, submit.headers["user-agent"]) == ("POST", "/api/v1/enterprise/video/img2video",
                                                                         "svd-studio/0.1")
    prefix = "data:image/png;base64,"
    assert init_image.startswith(prefix)
    b64 = init_image[len(prefix):]
    assert Image.open(io.BytesIO(base64.b64decode(b64))).size == (256, 192)  # framed by us, cropped
    # Result.sent: the wire payload with the key and the image redacted.
    assert result.sent == {**expected, "key": "***", "init_image": f"<base64 PNG, {len(b64)} bytes>"}
    assert KEY not in json.dumps(result.sent) + json.dumps(result.used)
    assert result.job_id == "4711" and rec.job_ids == ["4711"]
    # Result.used: only the backend's own facts (the size it framed, the seed meta echoed).
    assert result.used == {"width": 256, "height": 192, "task_id": "4711", "seed": 42}
    assert frames(result.video) == 4 and result.video.suffix == ".mp4" and result.gif is None
    assert result.video.parent == tmp_path
    assert len(ml.requests_for("fetch")) == 1
    assert rec.progress[:2] == [(None, "Sending the photo to ModelsLab"),
                                (None, "ModelsLab is generating the video (task 4711, about 1 s left)")]


def test_held_open_submit_can_answer_success(backend, fake, image, tmp_path):
    """instant_response=False (API callers only): the server holds the submit open and
    answers 'success' with the video; nothing is fetched (§1.2, §1.4)."""
    ml = fake()
    result, rec = run(backend, image, tmp_path, seed=42, instant_response=False)
    [submit] = ml.requests_for("submit")
    assert submit.json["instant_response"] is False and result.sent["instant_response"] is False
    assert not ml.requests_for("fetch")
    assert result.job_id == "4711" and rec.job_ids == ["4711"]
    assert result.used == {"width": 128, "height": 128, "task_id": "4711", "seed": 42}
    assert frames(result.video) == 4 and rec.progress[-1] == (1.0, "Done (ModelsLab task 4711)")


def test_fit_mode_sizes_the_frame_to_the_photo(backend, fake, image, tmp_path):
    ml = fake()
    result, _ = run(backend, image, tmp_path, resize_mode="fit", width=512, height=512)
    wire = ml.requests[0].json
    assert (wire["width"], wire["height"]) == (512, 320)  # 451x300 photo within 512x512, multiples of 64
    assert (result.used["width"], result.used["height"]) == (512, 320)
    data = base64.b64decode(wire["init_image"].split(",", 1)[1])
    assert Image.open(io.BytesIO(data)).size == (512, 320)


def test_processing_then_fetch_until_success(backend, fake, image, tmp_path):
    ml = fake(processing_polls=3, eta=2)
    seen_fetches_at_job_id: list[int] = []
    rec = Recorder(tmp_path)
    rec.job.on_job_id = lambda i: (rec.job_ids.append(i), seen_fetches_at_job_id.append(len(ml.requests_for("fetch"))))
    result = backend.generate(image, backend.resolve(request(width=128, height=128, num_frames=4)), rec.job)
    fetches = ml.requests_for("fetch")
    assert len(fetches) == 3
    assert {(f.method, f.path, json.dumps(f.json)) for f in fetches} == {
        ("POST", "/api/v1/enterprise/video/fetch/4711", json.dumps({"key": KEY}))}
    assert rec.job_ids == ["4711"] and seen_fetches_at_job_id == [0]  # reported before polling
    downloads = ml.requests_for("download")
    assert downloads and min(d.time for d in downloads) > fetches[-1].time  # future_links not used early
    assert ml.downloaded_at["4711"] >= ml.ready_at["4711"]
    assert frames(result.video) == 4 and result.job_id == "4711"
    assert (None, "ModelsLab is generating the video (task 4711, about 2 s left)") in rec.progress


def test_instant_response_and_future_links_fallback(backend, fake, image, tmp_path):
    """instant_response (the default) answers 'processing' at once; a thin fetch success
    without output falls back to the submit's future_links, now that the job is done (§1.4, §3.6)."""
    ml = fake(job_seconds=0.1)
    ml.script("fetch", Reply(delay=0.2, json={"status": "success", "id": 4711, "output": ""}))
    result, _ = run(backend, image, tmp_path)
    assert ml.requests[0].json["instant_response"] is True
    [download] = ml.requests_for("download")
    assert download.path_only.startswith("/video_generations/")  # the future link
    assert frames(result.video) == 4


def test_falls_back_to_proxy_links(backend, fake, image, tmp_path):
    ml = fake()
    ml.script("download", html_error(404, "Not Found"))
    result, _ = run(backend, image, tmp_path)
    paths = [d.path_only for d in ml.requests_for("download")]
    assert paths[0].startswith("/video_generations/") and paths[1].startswith("/cdn/video_generations/")
    assert frames(result.video) == 4


def test_gif_output_becomes_a_browser_mp4(backend, fake, image, tmp_path):
    fake()
    result, _ = run(backend, image, tmp_path, output_format="gif")
    assert result.gif is not None and result.gif.suffix == ".gif" and frames(result.gif) == 4
    assert result.video.suffix == ".mp4" and frames(result.video) == 4
    assert result.video.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize("inline", [False, True], ids=["base64-file", "inline"])
@pytest.mark.parametrize("prefix", [True, False], ids=["data-prefix", "bare"])
def test_base64_output(backend, fake, image, tmp_path, inline, prefix):
    ml = fake(inline_base64=inline, base64_data_prefix=prefix, processing_polls=1)
    result, _ = run(backend, image, tmp_path, output_format="base64")
    assert ml.requests[0].json["output_type"] == "base64"
    assert frames(result.video) == 4 and result.video.suffix == ".mp4"
    downloads = ml.requests_for("download")
    assert [d.path_only.endswith(".base64") for d in downloads] == ([] if inline else [True])


def test_base64_that_cannot_be_decoded(backend, fake, image, tmp_path):
    ml = fake(inline_base64=True, processing_polls=1)
    ml.script("fetch", Reply(json={"status": "success", "id": 4711, "output": ["data:video/mp4;base64,AAA*"]}))
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path, output_format="base64")
    assert str(err.value) == ("ModelsLab sent base64 output that cannot be decoded (it may be cut short). "
                              "(task id 4711)")


def test_legacy_messege_failure(backend, fake, image, tmp_path):
    ml = fake(legacy_messege=True, processing_polls=1)
    ml.fail_reason = "CUDA out of memory"
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == "ModelsLab could not generate the video: CUDA out of memory (task id 4711)"
    assert err.value.job_id == "4711"


def test_failure_in_the_submit_answer_keeps_the_id(backend, fake, image, tmp_path):
    ml = fake()  # held open, done, but failed: HTTP 200 + status "failed" with an id
    ml.fail_reason = "NSFW image"
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path, instant_response=False)
    assert str(err.value) == "ModelsLab could not generate the video: NSFW image (task id 4711)"
    assert not ml.requests_for("fetch")


def test_unexpected_status_fails_loudly(backend, fake, image, tmp_path):
    ml = fake(processing_polls=1)
    ml.script("fetch", Reply(json={"status": "queued", "output": ""}))
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path)
    assert str(err.value).startswith("ModelsLab answered with an unexpected status 'queued'; stopped")
    assert len(ml.requests_for("fetch")) == 1


# --- the error table (§1.7) ---------------------------------------------------------------

KEY_TEXT = "check your API key (MODELSLAB_API_KEY or the key field)."
TERMINAL = {
    "invalid_key_401": (ProviderError, f"ModelsLab rejected the API key (Invalid API key): {KEY_TEXT}"),
    "invalid_key_200_body_error": (ProviderError, f"ModelsLab rejected the API key (Invalid API key): {KEY_TEXT}"),
    "bad_param_400": (ProviderError, "ModelsLab rejected the request (HTTP 400): prompt is required"),
    "model_not_found_400": (ProviderError, "ModelsLab rejected the request (HTTP 400): Model not found: svd-x"),
    "bad_image_url_400": (ProviderError,
                          "ModelsLab rejected the request (HTTP 400): Unable to fetch image from provided URL"),
    "insufficient_credits_402": (ProviderError, "ModelsLab says the account has run out of credits (Insufficient "
                                                "credits. Please top up.): top up your ModelsLab account."),
    "not_on_plan_403": (ProviderError, "ModelsLab refused the request (This feature is not available on your plan): "
                                       "your plan may not include this feature (SVD needs an enterprise plan)."),
    "fetch_unknown_id_404": (ProviderError, "ModelsLab has no job with this task id (Video not found). (task id 4711)"),
    "generation_failed_200_failed": (GenerationFailed,
                                     "ModelsLab could not generate the video: Generation failed (task id 4711)"),
    "generation_failed_200_error_messege": (GenerationFailed, "ModelsLab could not generate the video: Something "
                                                              "went wrong (task id 4711)"),
}


@pytest.mark.parametrize("case", modelslab_error_cases(), ids=lambda c: c.name)
def test_error_table(backend, fake, image, tmp_path, case):
    ml = fake(processing_polls=1)  # one fetch happens, so fetch rows apply
    ml.script(case.route, case.reply)
    if case.retryable:
        result, rec = run(backend, image, tmp_path)
        assert frames(result.video) == 4
        assert len(ml.requests_for("submit")) == (2 if case.route == "submit" else 1)
        assert len(ml.requests_for("fetch")) == (2 if case.route == "fetch" else 1)
        assert any("Retrying in" in text for _, text in rec.progress)
        return
    assert case.name in TERMINAL, f"add the expected text for {case.name}"
    kind, text = TERMINAL[case.name]
    with pytest.raises(kind) as err:
        run(backend, image, tmp_path)
    assert type(err.value) is kind and str(err.value) == text
    assert len(ml.requests_for("submit")) == 1  # never resubmitted
    if isinstance(err.value, ProviderError) and case.reply.status >= 400:
        assert err.value.status == case.reply.status


def test_429_waits_the_retry_after_then_resubmits(make, fake, image, tmp_path):
    ml = fake()
    ml.script("submit", modelslab_error(429, "Rate limit exceeded. Maximum 5 queued requests allowed.", retry_after=1))
    backend = make(max_backoff=60)
    result, rec = run(backend, image, tmp_path)
    first, second = ml.requests_for("submit")
    assert 1.0 <= second.time - first.time < 3.0
    assert (None, "ModelsLab's queue is full (Rate limit exceeded. Maximum 5 queued requests allowed.). "
                  "Retrying in 1 s (try 2 of 4).") in rec.progress
    assert frames(result.video) == 4


def test_poll_survives_5xx_dropped_connections_and_read_timeouts(make, fake, image, tmp_path):
    ml = fake(processing_polls=1)
    ml.script("fetch", modelslab_error(500, "Internal server error"), Reply(close=True),
              Reply(delay=2, passthrough=True))
    backend = make(timeouts=http.Timeouts(poll=0.5))
    result, _ = run(backend, image, tmp_path)
    assert len(ml.requests_for("fetch")) == 4 and frames(result.video) == 4


def test_too_many_poll_errors_give_up_with_the_task_id(backend, fake, image, tmp_path):
    ml = fake(processing_polls=1)
    ml.script("fetch", *[html_error(502, "Bad Gateway") for _ in range(4)])
    with pytest.raises(ProviderError) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == ("ModelsLab kept failing while checking the job (4 tries): ModelsLab had a server error "
                              "(HTTP 502: 502 Bad Gateway). (task id 4711)")


@pytest.mark.parametrize("reply", [Reply(delay=2, passthrough=True), html_error(504, "Gateway Time-out")],
                         ids=["read-timeout", "gateway-504"])
def test_submit_timeout_is_never_resubmitted(make, fake, image, tmp_path, reply):
    ml = fake()
    ml.script("submit", reply)
    backend = make(timeouts=http.Timeouts(submit=0.5))
    with pytest.raises(ProviderError) as err:
        run(backend, image, tmp_path)
    why = "ReadTimeout" if reply.passthrough else "HTTP 504: 504 Gateway Time-out"
    assert str(err.value) == (
        f"ModelsLab did not answer the submit request ({why}). The job may have been created anyway, so it was "
        "not sent again (that could charge you twice). Check your jobs on ModelsLab's dashboard before trying again."
    )
    assert len(ml.requests_for("submit")) == 1


def test_unreachable_server_is_retried_then_reported(make, monkeypatch, image, tmp_path):
    monkeypatch.setenv("MODELSLAB_BASE_URL", "http://127.0.0.1:9/api")  # discard port: connection refused
    backend = make()
    with pytest.raises(ProviderError, match=r"^ModelsLab kept failing while submitting the job \(4 tries\): "
                                            r"Could not reach ModelsLab \(ConnectError\)\.$"):
        run(backend, image, tmp_path)


# --- deadline, cancel, downloads --------------------------------------------------------


def test_stuck_job_times_out_with_the_task_id(make, fake, image, tmp_path):
    ml = fake(processing_polls=1)
    ml.stuck = True
    backend = make(deadline=0.3)
    with pytest.raises(TimedOut) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == ("ModelsLab did not finish within 0.3 s. The job may still be running: resume it "
                              "later with its task id. (task id 4711)")
    assert err.value.job_id == "4711"


def test_cancel_while_polling_is_immediate(make, fake, image, tmp_path):
    ml = fake(processing_polls=1, eta=30)
    ml.stuck = True
    backend = make(poll_interval=10, max_poll_interval=30, deadline=60)
    rec = Recorder(tmp_path)
    rec.job.on_job_id = lambda i: threading.Timer(0.1, rec.job.cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled) as err:
        backend.generate(image, backend.resolve(request(width=128, height=128, num_frames=4)), rec.job)
    assert time.monotonic() - start < 2
    assert err.value.job_id == "4711" and "resume it with its task id" in str(err.value)


@pytest.mark.parametrize("switch, text", [
    ("expire_downloads", "The video link from ModelsLab has expired (HTTP 403); outputs are only kept for a short "
                         "time. Run the job again. (task id 4711)"),
    ("truncate_downloads", "The video from ModelsLab is truncated or not a video file (1031 bytes); the download was "
                           "incomplete. Try again: resume with the task id. (task id 4711)"),
    ("download_not_video", "The video link from ModelsLab returned a web page instead of a video (the file may not "
                           "be ready yet, or the link is wrong). (task id 4711)"),
])
def test_bad_downloads(backend, fake, image, tmp_path, switch, text):
    ml = fake(processing_polls=1)
    setattr(ml, switch, True)
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == text
    assert len(ml.requests_for("download")) == 2  # output, then the proxy link


# --- keys and resume ------------------------------------------------------------------


def test_page_key_wins_over_environment(backend, fake, image, tmp_path, monkeypatch):
    ml = fake()
    monkeypatch.setenv("MODELSLAB_API_KEY", "env-key")
    run(backend, image, tmp_path)  # the fake only accepts test-key
    assert ml.requests[0].json["key"] == KEY


def test_environment_key_is_used_when_the_field_is_empty(backend, fake, image, tmp_path, monkeypatch):
    ml = fake()
    monkeypatch.setenv("MODELSLAB_API_KEY", KEY)
    result, _ = run(backend, image, tmp_path, api_key="  ")
    assert ml.requests[0].json["key"] == KEY and frames(result.video) == 4


def test_missing_key_fails_before_any_request(backend, fake, image, tmp_path):
    ml = fake()
    with pytest.raises(MissingKey) as err:
        run(backend, image, tmp_path, api_key=None)
    assert str(err.value) == "ModelsLab needs an API key: set MODELSLAB_API_KEY or paste a key into the API key field."
    assert ml.requests == []
    with pytest.raises(MissingKey):
        backend.resume("4711", Recorder(tmp_path, None).job)


def test_key_echoed_by_the_provider_is_redacted(backend, fake, image, tmp_path):
    ml = fake()
    ml.script("submit", modelslab_error(401, f"Invalid API key {KEY}"))
    with pytest.raises(ProviderError) as err:
        run(backend, image, tmp_path)
    assert KEY not in str(err.value) and "Invalid API key ***" in str(err.value)


def test_resume_by_task_id(backend, fake, tmp_path):
    ml = fake(processing_polls=2)
    with httpx.Client() as c:
        sub = c.post(ml.base_url + "/video/img2video",
                     json={"key": KEY, "model_id": "svd", "init_image": "https://x/y.png", "output_type": "gif"}).json()
    assert sub["status"] == "processing"
    rec = Recorder(tmp_path)
    result = backend.resume(f" {sub['id']} ", rec.job)
    assert result.job_id == str(sub["id"]) and rec.job_ids == [str(sub["id"])]
    # sent: the one shape both providers give a resumed job; used: no seed (fetch answers carry no meta)
    assert result.used == {"task_id": str(sub["id"])} and result.sent == {"task_id": str(sub["id"])}
    assert frames(result.video) == 4 and result.gif is not None
    assert len(ml.requests_for("fetch")) == 2


def test_resume_unknown_or_empty_id(backend, fake, tmp_path):
    fake()
    with pytest.raises(ProviderError) as err:
        backend.resume("999", Recorder(tmp_path).job)
    assert str(err.value) == "ModelsLab has no job with this task id (Video not found). (task id 999)"
    with pytest.raises(InvalidParameter):
        backend.resume("  ", Recorder(tmp_path).job)
