"""The page in a real browser (Debian's chromium driven by Playwright).

One app per module, launched in-process against the tiny local pipeline and fake
ModelsLab / Novita servers; one browser per module and a fresh page (a fresh Gradio
session) per test. Each test leaves a full-page screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - depends on the machine
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

from studio import video  # noqa: E402
from tests.browser_helpers import (  # noqa: E402
    ADVANCED, GENERATION_TIMEOUT_MS, assert_video_plays, download, generate, history_count, json_text, number_box,
    open_group, select, set_number, slider_max, studio_page, toast_texts, upload, wait_ready,
)
from tests.conftest import EXAMPLES, launched_demo  # noqa: E402
from tests.fakes import FakeModelsLab, FakeNovita  # noqa: E402
from ui import sessions  # noqa: E402

KEY = "sk-browser-canary-5e1d9b"
LOCAL, MODELSLAB, NOVITA = "Local GPU (diffusers)", "ModelsLab", "Novita AI"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers():
    with FakeModelsLab(api_key=KEY, processing_polls=1, eta=1) as ml, \
            FakeNovita(api_key=KEY, queued_polls=0, processing_polls=1) as nv:
        yield ml, nv


@pytest.fixture(scope="module")
def launched(servers, tiny_model):
    """The studio, launched in this process: local uses the tiny pipeline, the hosted
    backends the fakes; ModelsLab's key comes from the environment, Novita has none."""
    ml, nv = servers
    env = {"MODELSLAB_BASE_URL": ml.base_url, "NOVITA_BASE_URL": nv.base_url,
           "MODELSLAB_API_KEY": KEY, "NOVITA_API_KEY": None}
    with launched_demo(env) as (demo, url):
        yield demo, url


@pytest.fixture(scope="module")
def app_url(launched):
    return launched[1]


@pytest.fixture
def page(browser, app_url, request):
    """A fresh page (its own Gradio session) with the layout loaded; screenshot at the end."""
    with studio_page(browser, app_url, request.node.name) as (pg, errors):
        # demo.load shows the local backend's controls: the page is ready once they are there.
        wait_ready(pg)
        yield pg
    assert not errors, f"uncaught errors in the page: {errors}"


def small_local(page: Page, steps: int = 2) -> None:
    """Settings that make the tiny local pipeline quick: 128x64, 4 frames, few steps."""
    set_number(page, "width", 128)
    set_number(page, "height", 64)
    set_number(page, "num_frames", 4)
    open_group(page, "Guidance and steps")
    set_number(page, "num_inference_steps", steps)


# --- flows ------------------------------------------------------------------------------------


def test_local_generation_with_a_preset(page: Page, tmp_path: Path):
    upload(page, EXAMPLES / "rocket.jpg")
    expect(page.locator("#image img")).to_be_visible()
    small_local(page)
    select(page, "preset", "Subtle motion")
    expect(number_box(page, "motion_bucket_id")).to_have_value("40")
    for name, value in (("width", "128"), ("height", "64"), ("num_frames", "4"), ("num_inference_steps", "2")):
        expect(number_box(page, name)).to_have_value(value)  # a preset keeps what it does not set

    status = generate(page)
    assert status.startswith("Done"), status
    assert_video_plays(page)

    mp4 = download(page, "download-mp4", tmp_path)
    assert mp4.suffix == ".mp4" and mp4.read_bytes()[4:8] == b"ftyp"
    assert video.probe(mp4) == (4, 128, 64)

    seed = number_box(page, "seed").input_value()
    assert seed.isdigit(), f"the seed used should be written back, got {seed!r}"
    assert f"seed {seed}" in status
    used = json_text(page, "used-json")
    assert f'"seed":{seed}' in used
    assert '"motion_bucket_id":40' in used
    assert '"width":128' in used and '"height":64' in used and '"num_frames":4' in used
    assert history_count(page) == 1
    assert not toast_texts(page, "error")


def test_switching_backends_reshapes_the_controls(page: Page):
    open_group(page, "Memory and speed")
    expect(page.locator("#param-memory_mode")).to_be_visible()
    expect(page.locator("#param-decode_chunk_size")).to_be_visible()
    expect(page.locator("#api-key")).to_be_hidden()
    assert slider_max(page, "width") == "2048"

    select(page, "backend", MODELSLAB)
    expect(page.locator("#api-key")).to_be_visible()
    expect(page.locator("#param-memory_mode")).to_be_hidden()
    expect(page.locator("#param-decode_chunk_size")).to_be_hidden()
    expect(page.locator("#param-width input[type=range]")).to_have_attribute("max", "512")
    expect(number_box(page, "width")).to_have_attribute("max", "512")
    expect(page.locator("#param-width [data-testid=max-value]")).to_have_text("512")
    open_group(page, "Service options")
    expect(page.locator("#param-negative_prompt")).to_be_visible()
    assert not toast_texts(page, "warning"), "MODELSLAB_API_KEY is set: no key warning expected"

    select(page, "backend", NOVITA)
    expect(page.locator(".toast-body.warning")).to_contain_text("NOVITA_API_KEY")
    expect(page.locator(".toast-body.warning")).to_have_count(1)  # one pick, one warning
    expect(page.locator("#param-width")).to_be_hidden()
    expect(page.locator("#param-negative_prompt")).to_be_hidden()
    expect(number_box(page, "num_frames")).to_have_value("25")
    expect(number_box(page, "num_frames")).to_be_disabled()
    expect(number_box(page, "fps")).to_have_value("6")
    expect(number_box(page, "fps")).to_be_disabled()
    expect(page.locator("#param-num_frames")).to_contain_text("Fixed at 25")
    expect(page.locator("#param-fps")).to_contain_text("Fixed at 6")
    expect(page.locator("#model input[role=combobox]")).to_have_value(re.compile("SVD-XT"))

    select(page, "backend", LOCAL)
    expect(page.locator("#api-key")).to_be_hidden()
    expect(page.locator("#param-width")).to_be_visible()
    expect(page.locator("#param-width input[type=range]")).to_have_attribute("max", "2048")
    expect(number_box(page, "width")).to_have_value("1024")
    expect(number_box(page, "num_frames")).to_be_enabled()
    open_group(page, "Memory and speed")
    expect(page.locator("#param-memory_mode")).to_be_visible()
    assert not toast_texts(page, "error")


def test_modelslab_end_to_end_with_the_key_from_the_environment(page: Page, servers, tmp_path: Path):
    ml, _ = servers
    submits_before = len([r for r in ml.requests if r.route == "submit"])
    select(page, "backend", MODELSLAB)
    expect(page.locator("#api-key")).to_be_visible()
    upload(page, EXAMPLES / "chelsea.png")
    expect(page.locator("#image img")).to_be_visible()

    status = generate(page)
    assert "task id" in status
    assert_video_plays(page)

    submits = [r for r in ml.requests if r.route == "submit"]
    assert len(submits) == submits_before + 1 and submits[-1].json["key"] == KEY

    sent = json_text(page, "sent")  # opens the raw view
    expect(page.locator("#sent")).to_be_visible()
    assert '"***"' in sent, sent
    assert KEY not in sent
    assert '"modelslab"' in json_text(page, "used-json")

    gif = download(page, "download-gif", tmp_path)
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert video.probe(download(page, "download-mp4", tmp_path))[0] == 4  # the fake's clip
    assert KEY not in page.content()
    assert not toast_texts(page, "error")


def test_the_page_works_on_after_the_server_slims_its_session(page: Page, launched, monkeypatch):
    """ui.sessions drops the bulky part of an idle page's server-side state; what Gradio
    checks the next event against (here the model list ModelsLab brought) must stay."""
    demo, _ = launched
    select(page, "backend", MODELSLAB)
    open_group(page, ADVANCED)
    expect(page.locator("#param-width input[type=range]")).to_have_attribute("max", "512")
    upload(page, EXAMPLES / "chelsea.png")
    expect(page.locator("#image img")).to_be_visible()
    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 0.0)
    held = demo.state_holder.session_data
    deadline = time.monotonic() + 3 * sessions.EVERY_S + 5
    while any(state.config_values for state in list(held.values())):
        assert time.monotonic() < deadline, "the idle page's session was not slimmed"
        time.sleep(0.2)
    monkeypatch.setattr(sessions, "SLIM_AFTER_S", 3600.0)  # slimming again mid-run would prove nothing more

    assert "task id" in generate(page)
    assert_video_plays(page)
    assert '"modelslab"' in json_text(page, "used-json")
    assert not toast_texts(page, "error")


def test_novita_end_to_end_with_a_typed_key(page: Page, servers):
    _, nv = servers
    select(page, "backend", NOVITA)
    expect(page.locator(".toast-body.warning")).to_contain_text("NOVITA_API_KEY")
    key_box = page.locator("#api-key input")
    expect(key_box).to_have_attribute("type", "password")
    key_box.fill(KEY)
    upload(page, EXAMPLES / "rocket.jpg")
    expect(page.locator("#image img")).to_be_visible()

    status = generate(page)
    assert "task id" in status
    assert_video_plays(page)

    submit = [r for r in nv.requests if r.route == "submit"][-1]
    assert submit.headers["authorization"] == f"Bearer {KEY}"
    used = json_text(page, "used-json")
    assert '"backend":"novita"' in used and '"num_frames":25' in used and '"fps":6' in used
    assert KEY not in used
    assert KEY not in json_text(page, "sent")
    expect(page.locator("#sent")).to_be_visible()
    assert KEY not in page.content()
    assert not toast_texts(page, "error")


def test_a_bad_upload_is_explained_and_the_studio_keeps_working(page: Page, tmp_path: Path):
    small_local(page)
    upload(page, EXAMPLES / "coffee.png")
    expect(page.locator("#image img")).to_be_visible()
    generate(page)
    first_video = page.locator("#video video").get_attribute("src")
    assert first_video

    notes = tmp_path / "notes.png"
    notes.write_text("Shopping list: milk, eggs, a rocket.\n")
    upload(page, notes)
    page.click("#generate")
    error = page.locator(".toast-body.error")
    expect(error).to_contain_text("not an image this studio can read", timeout=GENERATION_TIMEOUT_MS)
    assert "Traceback" not in error.inner_text()
    assert history_count(page) == 1
    expect(page.locator("#video video")).to_have_attribute("src", first_video)

    page.locator(".toast-body.error [data-testid=toast-close]").first.click()
    upload(page, EXAMPLES / "astronaut.png")
    expect(page.locator("#image img")).to_be_visible()
    status = generate(page)
    assert status.startswith("Done"), status
    assert history_count(page) == 2
    assert_video_plays(page)
    assert page.locator("#video video").get_attribute("src") != first_video


def test_cancel_stops_the_run_and_the_next_one_works(page: Page):
    small_local(page, steps=100)
    upload(page, EXAMPLES / "rocket.jpg")
    expect(page.locator("#image img")).to_be_visible()

    page.click("#generate")
    status = page.locator("#status")
    expect(status).to_contain_text("Denoising step", timeout=GENERATION_TIMEOUT_MS)
    page.click("#cancel")
    expect(status).to_contain_text(re.compile("Stopped|Cancelled"), timeout=60_000)
    expect(page.locator("#generate")).to_be_enabled()
    assert not toast_texts(page, "error"), toast_texts(page, "error")
    assert history_count(page) == 0

    set_number(page, "num_inference_steps", 2)
    status_text = generate(page)
    assert status_text.startswith("Done"), status_text
    assert_video_plays(page)
    assert history_count(page) == 1
    assert not toast_texts(page, "error")


def test_a_typed_key_survives_a_change_of_model_and_preset(page: Page, servers):
    _, nv = servers
    select(page, "backend", NOVITA)
    key_box = page.locator("#api-key input")
    key_box.fill(KEY)
    set_number(page, "motion_bucket_id", 99)
    select(page, "model", "SVD (14 frames)")
    expect(number_box(page, "num_frames")).to_have_value("14")
    select(page, "preset", "Dynamic")  # sets motion and noise, not the key
    expect(key_box).to_have_value(KEY)
    upload(page, EXAMPLES / "rocket.jpg")
    expect(page.locator("#image img")).to_be_visible()

    status = generate(page)
    assert "task id" in status
    submit = [r for r in nv.requests if r.route == "submit"][-1]
    assert submit.headers["authorization"] == f"Bearer {KEY}"
    assert submit.json["model_name"] == "SVD" and submit.json["frames_num"] == 14
    assert not toast_texts(page, "error")
