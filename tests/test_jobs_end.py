"""Jobs end when nobody waits for them any more, and each backend keeps its own line.

Closing the page (in Chromium) or killing an API client in the middle of a job stops
the fake provider's polls or frees the GPU, logs the task id at INFO and no error; a
hosted job submitted after several slow local jobs finishes first.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

import backends
from tests.conftest import EXAMPLES, ROOT, launched_studio, wait_for
from tests.fakes import FakeNovita

KEY = "nv-end-key"
LEFT = "A job was left by its page or client and told to stop"


@pytest.fixture(scope="module")
def novita():
    with FakeNovita(api_key=KEY, job_seconds=120) as nv:  # never finishes within a test
        yield nv


@pytest.fixture(scope="module")
def app_url(novita, tiny_model):
    with launched_studio({"NOVITA_BASE_URL": novita.base_url, "NOVITA_API_KEY": KEY}) as url:
        yield url


def polls(nv: FakeNovita) -> int:
    return len([r for r in nv.requests if r.route == "poll"])



def left_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(LEFT)]


def assert_polls_stopped(nv: FakeNovita) -> None:
    """No poll arrives for longer than Novita's longest interval between two polls (5 s)."""
    before = polls(nv)
    time.sleep(7)
    assert polls(nv) == before, "the fake provider is still being polled for nobody"


def assert_no_errors(caplog) -> None:
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, bad


def test_an_api_client_that_disconnects_stops_its_hosted_job(app_url, novita, caplog):
    caplog.set_level(logging.INFO)
    submits = len([r for r in novita.requests if r.route == "submit"])
    script = (
        "import sys; from gradio_client import Client, handle_file\n"
        "Client(sys.argv[1], verbose=False).predict(image=handle_file(sys.argv[2]), backend='novita',"
        " api_name='/generate')\n"
    )
    client = subprocess.Popen([sys.executable, "-c", script, app_url, str(EXAMPLES / "coffee.png")], cwd=ROOT)
    try:
        wait_for(lambda: len([r for r in novita.requests if r.route == "submit"]) > submits, 60, "the submit")
        wait_for(lambda: polls(novita) > 0, 30, "the first poll")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(10)
    wait_for(lambda: left_records(caplog), 40, "the job to be left")
    assert_polls_stopped(novita)
    assert "resume it with task id" in left_records(caplog)[-1].getMessage()
    assert_no_errors(caplog)


def test_a_hosted_job_is_not_held_up_by_local_jobs_waiting_for_the_gpu(app_url, monkeypatch):
    client = Client(app_url, verbose=False)
    photo = handle_file(str(EXAMPLES / "rocket.jpg"))
    slow = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 100, "seed": 1}
    local_jobs = [client.submit(image=photo, backend="local", **slow, api_name="/generate") for _ in range(3)]
    wait_for(lambda: backends.get_backend("local").slots.busy == 1, 60, "the first local job to start")
    with FakeNovita(api_key=KEY, job_seconds=1) as quick:
        monkeypatch.setenv("NOVITA_BASE_URL", quick.base_url)  # read per job: the next job goes here
        path, used = client.submit(image=photo, backend="novita", api_name="/generate").result(timeout=120)
    assert used["backend"] == "novita" and Path(path).is_file()
    waiting = [job for job in local_jobs if not job.done()]
    assert len(waiting) >= 2, "the hosted job waited behind the local ones"
    for job in local_jobs:
        job.result(timeout=600)


def open_studio(browser, url: str):

    from tests.browser_helpers import wait_ready

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    wait_ready(page)
    return context, page


def test_closing_the_page_stops_a_hosted_job(browser, app_url, novita, caplog):
    from playwright.sync_api import expect

    from tests.browser_helpers import select, upload

    caplog.set_level(logging.INFO)
    context, page = open_studio(browser, app_url)
    select(page, "backend", "Novita AI")
    upload(page, EXAMPLES / "chelsea.png")
    expect(page.locator("#image img")).to_be_visible()
    before = len(left_records(caplog))
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("task", timeout=60_000)
    context.close()
    wait_for(lambda: len(left_records(caplog)) > before, 30, "the job to be left")
    assert_polls_stopped(novita)
    assert "resume it with task id" in left_records(caplog)[-1].getMessage()
    assert_no_errors(caplog)


def test_closing_the_page_frees_the_gpu(browser, app_url, caplog):
    from playwright.sync_api import expect

    from tests.browser_helpers import open_group, set_number, upload

    caplog.set_level(logging.INFO)
    context, page = open_studio(browser, app_url)
    set_number(page, "width", 128)
    set_number(page, "height", 64)
    set_number(page, "num_frames", 4)
    open_group(page, "Guidance and steps")
    set_number(page, "num_inference_steps", 100)
    upload(page, EXAMPLES / "rocket.jpg")
    expect(page.locator("#image img")).to_be_visible()
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("Denoising step", timeout=120_000)
    local = backends.get_backend("local")
    assert local.slots.busy == 1
    context.close()
    wait_for(lambda: local.slots.busy == 0, 30, "the GPU to be released")
    assert left_records(caplog)
    assert_no_errors(caplog)
