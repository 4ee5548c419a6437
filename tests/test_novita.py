"""Novita backend against the fake async server (real HTTP on 127.0.0.1).

Covers every task state and error row of docs/hosted-apis.md §2; outcomes are checked by
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
from backends.novita import NovitaBackend
from studio.errors import Cancelled, GenerationFailed, InvalidParameter, MissingKey, ProviderError, TimedOut
from studio.images import load_image
from studio.request import PARAMETERS, GenerationRequest
from studio.video import probe
from tests.fakes import FakeNovita, Reply, html_error, novita_error, novita_error_cases

KEY = "test-key"
FAST = dict(poll_interval=0.01, max_poll_interval=0.05, deadline=5.0, backoff=0.01, max_backoff=0.05, retries=3)
BODY = {"model_name": "SVD-XT", "image_file": base64.b64encode(b"\x89PNG fake").decode(), "frames_num": 25,
        "frames_per_second": 6, "image_file_resize_mode": "CROP_TO_ASPECT_RATIO", "steps": 20, "seed": 42}
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def image(photo: Path) -> Image.Image:
    """The photo at a quarter size: what is sent is checked, and small PNGs encode fast."""
    picture = load_image(photo)
    return picture.resize((picture.width // 4, picture.height // 4))


@pytest.fixture(scope="module")
def client():
    with http.default_client() as c:
        yield c


@pytest.fixture
def make(client):
    return lambda **overrides: NovitaBackend(client, **{**FAST, **overrides})


@pytest.fixture
def backend(make):
    return make()


@pytest.fixture
def fake(monkeypatch):
    started: list[FakeNovita] = []

    def start(**kwargs) -> FakeNovita:
        nv = FakeNovita(KEY, **kwargs).start()
        started.append(nv)
        monkeypatch.setenv("NOVITA_BASE_URL", nv.base_url)
        return nv

    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    yield start
    for nv in started:
        nv.stop()


class Recorder:
    def __init__(self, workdir: Path, api_key: str | None = KEY) -> None:
        self.progress: list[tuple[float | None, str]] = []
        self.job_ids: list[str] = []
        self.job = Job(workdir=workdir, api_key=api_key, on_progress=lambda f, t: self.progress.append((f, t)),
                       on_job_id=self.job_ids.append)


def request(**params) -> GenerationRequest:
    """A request from flat params: SVD's parameters as fields, Novita's own under ``options``."""
    return GenerationRequest(**{k: v for k, v in params.items() if k in PARAMETERS},
                             options={k: v for k, v in params.items() if k not in PARAMETERS})


def run(backend: NovitaBackend, image: Image.Image, tmp_path: Path, api_key: str | None = KEY, **params):
    rec = Recorder(tmp_path, api_key)
    return backend.generate(image, backend.resolve(request(**params)), rec.job), rec


def frames(path: Path) -> int:
    return probe(path)[0]


def uuid_of(nv: FakeNovita) -> str:
    """The id of the (first) task the fake has seen."""
    return next(iter(nv.tasks))


def sent_image(body: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(body["image_file"], validate=True)))


# --- declarations -------------------------------------------------------------------


def test_limits_defaults_and_teaching_errors(backend):
    r = backend.resolve(GenerationRequest())
    assert (r.model, r.num_frames, r.fps, r.num_inference_steps, r.noise_aug_strength) == ("svd-xt", 25, 6, 25, 0.02)
    assert backend.resolve(GenerationRequest(model="svd")).num_frames == 14
    assert r.options == {"enable_frame_interpolation": False, "output_format": "mp4"}  # webhook: empty
    assert set(backend.options("svd-xt")).isdisjoint(backend.limits("svd-xt"))
    for params, text in [
        ({"num_frames": 16}, "num_frames must be exactly 25 for Novita AI, got 16"),
        ({"model": "svd", "num_frames": 25}, "num_frames must be exactly 14 for Novita AI, got 25"),
        ({"fps": 8}, "fps must be exactly 6 for Novita AI, got 8"),
        ({"num_inference_steps": 60}, "num_inference_steps must be 1-50 for Novita AI, got 60"),
        ({"width": 512}, "width must be left empty (this backend does not use it) for Novita AI, got 512"),
        ({"output_format": "base64"}, "output_format must be one of 'mp4', 'gif' for Novita AI, got 'base64'"),
        ({"negative_prompt": "blurry"}, "negative_prompt must be left empty (this backend does not use it) "
                                        "for Novita AI, got 'blurry'"),  # another provider's option
    ]:
        with pytest.raises(InvalidParameter) as err:
            backend.resolve(request(**params))
        assert str(err.value) == text


# --- the happy paths --------------------------------------------------------------------


def test_exact_payload_states_and_progress(backend, fake, image, tmp_path):
    nv = fake(queued_polls=1, processing_polls=2)
    result, rec = run(backend, image, tmp_path, model="svd", seed=42, num_inference_steps=30, motion_bucket_id=100,
                      noise_aug_strength=0.1, enable_frame_interpolation=True, webhook="https://example.com/hook")
    [submit] = nv.requests_for("submit")
    wire = dict(submit.json)
    image_file = wire.pop("image_file")
    expected = {
        "model_name": "SVD", "frames_num": 14, "frames_per_second": 6, "image_file_resize_mode": "CROP_TO_ASPECT_RATIO",
        "steps": 30, "seed": 42, "motion_bucket_id": 100, "cond_aug": 0.1, "enable_frame_interpolation": True,
        "extra": {"response_video_type": "mp4", "webhook": {"url": "https://example.com/hook"}},
    }
    assert wire == expected
    assert (submit.method, submit.headers["authorization"], submit.headers["user-agent"]) == (
        "POST", f"Bearer {KEY}", "svd-studio/0.1")
    assert not image_file.startswith("data:") and sent_image(submit.json).size == image.size
    assert result.sent == {**expected, "image_file": f"<base64 PNG, {len(image_file)} bytes>"}
    assert KEY not in json.dumps(result.sent) + json.dumps(result.used)

    polls = nv.requests_for("poll")
    task_id = result.job_id
    assert len(polls) == 4 and all(p.method == "GET" and p.query == {"task_id": task_id} for p in polls)
    assert all(p.headers["authorization"] == f"Bearer {KEY}" for p in polls)
    assert rec.job_ids == [task_id]
    fractions = [f for f, _ in rec.progress if f is not None]
    assert fractions == [0.33, 0.66, 1.0]  # progress_percent from PROCESSING, then done
    assert (0.33, f"Novita is generating the video 33% (task {task_id}, about 2 s left)") in rec.progress
    assert (None, f"Waiting in Novita's queue (task {task_id}, about 3 s left)") in rec.progress
    assert result.used == {"task_id": task_id, "seed": 42}  # only what Novita reported (extra.seed)
    assert frames(result.video) == 4 and result.video.suffix == ".mp4" and result.gif is None
    assert nv.downloaded_at[task_id] >= nv.ready_at[task_id]


def test_fit_mode_resizes_within_1024x576(backend, fake, photo, tmp_path):
    nv = fake(queued_polls=0, processing_polls=0)
    run(backend, load_image(photo), tmp_path, resize_mode="fit")
    body = nv.requests_for("submit")[0].json
    assert body["image_file_resize_mode"] == "ORIGINAL_RESOLUTION"
    assert sent_image(body).size == (832, 576)  # 451x300 scaled into 1024x576, multiples of 64


def test_crop_mode_keeps_large_photos_within_2048(backend, fake, tmp_path):
    nv = fake(queued_polls=0, processing_polls=0)
    run(backend, Image.new("RGB", (3000, 1000), (200, 30, 30)), tmp_path)
    assert sent_image(nv.requests_for("submit")[0].json).size == (2048, 683)


def test_gif_output_with_ttl_as_int(backend, fake, image, tmp_path):
    fake(queued_polls=0, processing_polls=1, ttl_as_int=True)
    result, rec = run(backend, image, tmp_path, output_format="gif")
    assert result.gif is not None and result.gif.suffix == ".gif" and frames(result.gif) == 4
    assert result.video.suffix == ".mp4" and frames(result.video) == 4
    assert any("the link is valid for 3600 s" in text for _, text in rec.progress)


def test_seed_reported_as_a_number_or_a_string(backend, fake, image, tmp_path):
    nv = fake(queued_polls=0, processing_polls=0)
    result, _ = run(backend, image, tmp_path, seed=7)
    assert result.used["seed"] == 7  # the fake answers extra.seed "7" (a string)
    task_id = uuid_of(nv)
    nv.script("poll", Reply(json={"task": {"task_id": task_id, "status": "TASK_STATUS_SUCCEED"},
                                  "videos": [{"video_url": nv.video_url(task_id), "video_url_ttl": 3600}],
                                  "extra": {"seed": 9}}))
    resumed = backend.resume(task_id, Recorder(tmp_path).job)
    assert resumed.used == {"task_id": task_id, "seed": 9} and frames(resumed.video) == 4


def test_unknown_state_keeps_polling(backend, fake, image, tmp_path):
    nv = fake(queued_polls=0, processing_polls=0)
    nv.script("poll", Reply(json={"task": {"status": "TASK_STATUS_UNKNOWN", "eta": 0}, "videos": []}))
    result, rec = run(backend, image, tmp_path)
    assert len(nv.requests_for("poll")) == 2 and frames(result.video) == 4
    assert any("unknown state" in text for _, text in rec.progress)


def test_unexpected_state_fails_loudly(backend, fake, image, tmp_path):
    nv = fake()
    nv.script("poll", Reply(json={"task": {"status": "TASK_STATUS_PAUSED"}}))
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path)
    assert str(err.value).startswith("Novita answered with an unexpected status 'TASK_STATUS_PAUSED'; stopped")
    assert err.value.job_id == uuid_of(nv) and len(nv.requests_for("poll")) == 1


def test_failed_task(backend, fake, image, tmp_path):
    nv = fake()
    nv.fail_reason = "NSFW content detected"
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == f"Novita could not generate the video: NSFW content detected (task id {uuid_of(nv)})"


# --- the error table (§2.4) ---------------------------------------------------------------

KEY_HINT = " Check your API key (NOVITA_API_KEY or the key field)."
TERMINAL = {
    "invalid_request_body": "Novita rejected the request: frames_num must be 25 (INVALID_REQUEST_BODY).",
    "image_too_big_bytes": "The image is too large for Novita: image file exceeds max size "
                           "(IMAGE_FILE_EXCEEDS_MAX_SIZE). Use a file under 30 MB.",
    "invalid_image_format": "Novita cannot read this image format: invalid image format (INVALID_IMAGE_FORMAT). "
                            "Use a PNG or JPEG.",
    "image_too_big_resolution": "The image resolution is too high for Novita: image exceeds max resolution "
                                "(IMAGE_EXCEEDS_MAX_RESOLUTION). Use at most 2048 px a side.",
    "invalid_image_size": "Novita does not accept this image size: invalid image size (INVALID_IMAGE_SIZE). "
                          "Use at most 2048 px a side.",
    "illegal_image_content": "Novita's moderation refused this image: illegal image content (ILLEGAL_IMAGE_CONTENT).",
    "illegal_prompt": "Novita's moderation refused the prompt: illegal prompt (ILLEGAL_PROMPT).",
    "balance_not_enough_400": "Your Novita balance is too low: billing balance not enough "
                              "(BILLING_BALANCE_NOT_ENOUGH). Top up your Novita account.",
    "missing_api_key_400": "Novita did not receive an API key: missing api key (MISSING_API_KEY)." + KEY_HINT,
    "invalid_api_key_403": "Novita rejected the API key: invalid api key (INVALID_API_KEY)." + KEY_HINT,
    "failed_to_auth_401": "Novita rejected the API key: failed to auth (FAILED_TO_AUTH)." + KEY_HINT,
    "not_enough_balance_403": "Your Novita balance is too low: not enough balance (NOT_ENOUGH_BALANCE). "
                              "Top up your Novita account.",
    "billing_auth_failed_403": "Novita could not authorise billing for this account: billing auth failed "
                               "(BILLING_AUTH_FAILED). Check the account's payment settings.",
    "api_not_allowed_403": "Novita does not allow this account to use img2video: api not allowed (API_NOT_ALLOWED).",
    "need_real_name_verify_403": "Novita requires identity verification for this account: need real name verify "
                                 "(NEED_REAL_NAME_VERIFY). Complete it in the Novita dashboard.",
    "feature_not_allowed_403": "Novita does not allow this feature for this account: feature not allowed "
                               "(FEATURE_NOT_ALLOWED).",
    "api_not_found_404": "Novita does not know this endpoint: api not found (API_NOT_FOUND). Check NOVITA_BASE_URL; "
                         "otherwise the API has changed.",
    "task_failed_500": "Novita could not generate the video: task failed (TASK_FAILED).",
}


@pytest.mark.parametrize("case", novita_error_cases(), ids=lambda c: c.name)
def test_error_table(backend, fake, image, tmp_path, case):
    nv = fake(queued_polls=0, processing_polls=1)
    nv.script(case.route, case.reply)
    # §2.3: a fresh task may briefly be unknown, so one TASK_NOT_FOUND right after submit
    # is retried; resuming an unknown id fails at once (test_resume_unknown_task).
    if case.retryable or case.name == "task_not_found_404":
        result, rec = run(backend, image, tmp_path)
        assert frames(result.video) == 4
        assert len(nv.requests_for("submit")) == (2 if case.route == "submit" else 1)
        assert len(nv.requests_for("poll")) == (3 if case.route == "poll" else 2)
        assert any("Retrying in" in text for _, text in rec.progress)
        return
    assert case.name in TERMINAL, f"add the expected text for {case.name}"
    with pytest.raises((ProviderError, GenerationFailed)) as err:
        run(backend, image, tmp_path)
    text = TERMINAL[case.name]
    if case.route == "poll":
        text += f" (task id {uuid_of(nv)})"
    assert str(err.value) == text
    assert type(err.value) is (GenerationFailed if case.name == "task_failed_500" else ProviderError)
    assert len(nv.requests_for("submit")) == 1  # never resubmitted
    if isinstance(err.value, ProviderError):
        assert err.value.status == case.reply.status


def test_429_honours_retry_after(make, fake, image, tmp_path):
    nv = fake(queued_polls=0, processing_polls=1)
    nv.script("poll", novita_error(429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "1"}))
    result, rec = run(make(max_backoff=60), image, tmp_path)
    first, second = nv.requests_for("poll")[:2]
    assert 1.0 <= second.time - first.time < 3.0
    assert (None, "Novita's rate limit was reached: rate limit exceeded (RATE_LIMIT_EXCEEDED). "
                  "Retrying in 1 s (try 2 of 4).") in rec.progress
    assert frames(result.video) == 4


def test_poll_survives_5xx_dropped_connections_and_read_timeouts(make, fake, image, tmp_path):
    nv = fake(queued_polls=0, processing_polls=1)
    nv.script("poll", html_error(502, "Bad Gateway"), Reply(close=True), Reply(delay=2, passthrough=True))
    result, _ = run(make(timeouts=http.Timeouts(poll=0.5)), image, tmp_path)
    assert len(nv.requests_for("poll")) == 5 and frames(result.video) == 4


def test_task_not_found_after_the_grace_fails(backend, fake, image, tmp_path):
    nv = fake()
    nv.script("poll", *[novita_error(404, "TASK_NOT_FOUND", "task not found") for _ in range(3)])
    with pytest.raises(ProviderError) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == ("Novita has no task with this id: task not found (TASK_NOT_FOUND). "
                              f"(task id {uuid_of(nv)})")


@pytest.mark.parametrize("reply", [Reply(delay=2, passthrough=True), html_error(504, "Gateway Time-out")],
                         ids=["read-timeout", "gateway-504"])
def test_submit_timeout_is_never_resubmitted(make, fake, image, tmp_path, reply):
    nv = fake()
    nv.script("submit", reply)
    with pytest.raises(ProviderError) as err:
        run(make(timeouts=http.Timeouts(submit=0.5)), image, tmp_path)
    why = "ReadTimeout" if reply.passthrough else "HTTP 504: 504 Gateway Time-out"
    assert str(err.value) == (
        f"Novita did not answer the submit request ({why}). The job may have been created anyway, so it was "
        "not sent again (that could charge you twice). Check your jobs on Novita's dashboard before trying again."
    )
    assert len(nv.requests_for("submit")) == 1


# --- deadline, cancel, downloads --------------------------------------------------------


def test_stuck_task_times_out_with_the_task_id(make, fake, image, tmp_path):
    nv = fake()
    nv.stuck = True
    with pytest.raises(TimedOut) as err:
        run(make(deadline=0.3), image, tmp_path)
    task_id = uuid_of(nv)
    assert str(err.value) == ("Novita did not finish within 0.3 s. The job may still be running: resume it "
                              f"later with its task id. (task id {task_id})")


def test_cancel_while_polling_is_immediate(make, fake, image, tmp_path):
    nv = fake()
    nv.stuck = True
    backend = make(poll_interval=10, max_poll_interval=30, deadline=60)
    rec = Recorder(tmp_path)
    rec.job.on_job_id = lambda i: threading.Timer(0.1, rec.job.cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled) as err:
        backend.generate(image, backend.resolve(GenerationRequest()), rec.job)
    assert time.monotonic() - start < 2
    assert err.value.job_id == uuid_of(nv) and len(nv.requests_for("poll")) <= 1


@pytest.mark.parametrize("switch, text", [
    ("expire_downloads", "The video link from Novita has expired (HTTP 403); outputs are only kept for a short "
                         "time. Run the job again."),
    ("truncate_downloads", "The video from Novita is truncated or not a video file (1031 bytes); the download was "
                           "incomplete. Try again: resume with the task id."),
    ("download_not_video", "The video link from Novita returned a web page instead of a video (the file may not "
                           "be ready yet, or the link is wrong)."),
])
def test_bad_downloads(backend, fake, image, tmp_path, switch, text):
    nv = fake(queued_polls=0, processing_polls=0)
    setattr(nv, switch, True)
    with pytest.raises(GenerationFailed) as err:
        run(backend, image, tmp_path)
    assert str(err.value) == f"{text} (task id {uuid_of(nv)})"


# --- keys and resume ------------------------------------------------------------------


def test_page_key_wins_over_environment(backend, fake, image, tmp_path, monkeypatch):
    nv = fake(queued_polls=0, processing_polls=0)
    monkeypatch.setenv("NOVITA_API_KEY", "env-key")
    run(backend, image, tmp_path)  # the fake only accepts test-key
    assert nv.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_environment_key_is_used_when_the_field_is_empty(backend, fake, image, tmp_path, monkeypatch):
    nv = fake(queued_polls=0, processing_polls=0)
    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    result, _ = run(backend, image, tmp_path, api_key="")
    assert nv.requests[0].headers["authorization"] == f"Bearer {KEY}" and frames(result.video) == 4


def test_missing_key_fails_before_any_request(backend, fake, image, tmp_path):
    nv = fake()
    with pytest.raises(MissingKey) as err:
        run(backend, image, tmp_path, api_key=None)
    assert str(err.value) == "Novita AI needs an API key: set NOVITA_API_KEY or paste a key into the API key field."
    assert nv.requests == []


def test_key_echoed_by_the_provider_is_redacted(backend, fake, image, tmp_path):
    nv = fake()
    nv.script("submit", novita_error(403, "INVALID_API_KEY", f"invalid api key {KEY}"))
    with pytest.raises(ProviderError) as err:
        run(backend, image, tmp_path)
    assert KEY not in str(err.value) and "invalid api key ***" in str(err.value)


def test_resume_by_task_id(backend, fake, tmp_path):
    nv = fake(queued_polls=1, processing_polls=1)
    with httpx.Client() as c:
        task_id = c.post(nv.base_url + "/v3/async/img2video", json=BODY,
                         headers={"Authorization": f"Bearer {KEY}"}).json()["task_id"]
    rec = Recorder(tmp_path)
    result = backend.resume(task_id, rec.job)
    assert result.job_id == task_id and rec.job_ids == [task_id]
    assert result.used == {"task_id": task_id, "seed": 42} and result.sent == {"task_id": task_id}
    assert frames(result.video) == 4 and len(nv.requests_for("poll")) == 3


def test_resume_unknown_task(backend, fake, tmp_path):
    nv = fake()
    with pytest.raises(ProviderError) as err:
        backend.resume("no-such-task", Recorder(tmp_path).job)
    assert str(err.value) == ("Novita has no task with this id: task not found (TASK_NOT_FOUND). "
                              "(task id no-such-task)")
    assert len(nv.requests_for("poll")) == 1  # no grace for a pasted id


@pytest.mark.parametrize("pasted, name", [
    ("../../etc/x", "______etc_x"),
    ("a/b", "a_b"),
    ("/../../../x", "__________x"),  # joined as it came, this one would leave the job folder
])
def test_a_pasted_task_id_cannot_write_outside_the_job_folder(backend, fake, tmp_path, pasted, name):
    """A pasted id is only ever a clean file-name part. The fake knows no such id, so it is
    scripted to answer for it with a real finished task's video (a presigned link)."""
    nv = fake(queued_polls=0, processing_polls=0)
    with httpx.Client() as c:
        real = c.post(nv.base_url + "/v3/async/img2video", json=BODY, headers=BEARER).json()["task_id"]
        c.get(nv.base_url + "/v3/async/task-result", params={"task_id": real}, headers=BEARER)  # now done
    nv.script("poll", Reply(json={"task": {"task_id": pasted, "status": "TASK_STATUS_SUCCEED"},
                                  "videos": [{"video_url": nv.video_url(real), "video_url_ttl": "3600"}]}))
    workdir = tmp_path / "jobs" / "one"
    result = backend.resume(pasted, Recorder(workdir).job)
    assert nv.requests_for("poll")[-1].query == {"task_id": pasted}  # asked about as given
    assert result.job_id == pasted and result.video == workdir / f"novita-{name}.mp4"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [result.video]
    assert frames(result.video) == 4
