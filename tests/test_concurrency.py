"""Many people at once: hosted jobs overlap, local jobs take turns and say so, and
cancelling one job leaves the others running."""

from __future__ import annotations

import threading
import time

import pytest
from gradio_client import Client, handle_file

from studio import video
from orchestration import service
from studio.errors import Cancelled
from tests.conftest import EXAMPLES, launched_studio
from tests.fakes import FakeNovita

KEY = "nv-test-key"
JOB_SECONDS = 3.0


@pytest.fixture
def novita(monkeypatch):
    with FakeNovita(api_key=KEY, job_seconds=JOB_SECONDS) as nv:
        monkeypatch.setenv("NOVITA_BASE_URL", nv.base_url)
        monkeypatch.setenv("NOVITA_API_KEY", KEY)
        yield nv


def test_eight_hosted_jobs_through_the_app_run_side_by_side(novita, tiny_model):
    with launched_studio() as url:
        client = Client(url, verbose=False)
        photo = handle_file(str(EXAMPLES / "coffee.png"))
        started = time.monotonic()
        jobs = [client.submit(image=photo, backend="novita", seed=i, api_name="/generate") for i in range(8)]
        results = [job.result(timeout=120) for job in jobs]
        total = time.monotonic() - started
    assert all(video.probe(path)[0] == 4 for path, _ in results)
    assert len({used["task_id"] for _, used in results}) == 8
    # One after another they would need at least 8 x 3 s = 24 s.
    assert total < 0.6 * 8 * JOB_SECONDS, f"8 jobs took {total:.1f} s: they did not overlap"


def test_cancelling_one_hosted_job_leaves_the_others_running(novita):
    photo = EXAMPLES / "chelsea.png"
    cancels = [threading.Event() for _ in range(3)]
    outcome: dict[int, object] = {}
    ids: dict[int, str] = {}

    def run(i: int) -> None:
        try:
            outcome[i] = service.generate(photo, "novita", {"seed": i}, cancel=cancels[i],
                                          on_job_id=lambda job_id: ids.setdefault(i, job_id))
        except Exception as exc:  # recorded and checked below
            outcome[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while 1 not in ids and time.monotonic() < deadline:
        time.sleep(0.05)
    cancels[1].set()
    for t in threads:
        t.join(60)
    assert isinstance(outcome[1], Cancelled) and ids[1] in str(outcome[1])
    for i in (0, 2):
        assert video.probe(outcome[i].video)[0] == 4, outcome[i]


def test_local_jobs_take_turns_and_the_second_is_told_its_place(tiny_model):
    photo = EXAMPLES / "rocket.jpg"
    params = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 6, "seed": 1}
    events: list[tuple[float, int, str]] = []
    first_running = threading.Event()

    def progress(i: int):
        def report(fraction, text):
            events.append((time.monotonic(), i, text))
            if i == 0 and text.startswith("Denoising"):
                first_running.set()
        return report

    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            service.generate(photo, "local", params, on_progress=progress(i))
        except BaseException as exc:
            errors.append(exc)

    one = threading.Thread(target=run, args=(0,))
    one.start()
    assert first_running.wait(120)
    two = threading.Thread(target=run, args=(1,))
    two.start()
    one.join(180)
    two.join(180)
    assert not errors
    texts = [text for _, i, text in events if i == 1]
    assert "Waiting for a free GPU: you are 1st in line, 1 running" in texts
    steps = [(t, i) for t, i, text in events if text.startswith("Denoising")]
    last_of_first = max(t for t, i in steps if i == 0)
    first_of_second = min(t for t, i in steps if i == 1)
    assert last_of_first < first_of_second, "the two local jobs denoised at the same time"
