"""LOCAL_DEVICES: one local job per listed device, side by side, each with its own pipeline.

On this CPU machine ``cpu,cpu`` stands for two GPUs: two jobs run at once, a third waits
and is told its place, and each device loads its own copy of the tiny real pipeline.
"""

from __future__ import annotations

import threading
import time

import pytest

import backends
from studio import video
from orchestration import service
from studio.errors import BadSetting
from tests.conftest import EXAMPLES

PARAMS = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 4, "seed": 1}
WAIT = 120  # seconds: generous for two CPU jobs on a busy two-core machine


@pytest.fixture
def two_devices(tiny_model, monkeypatch):
    """LOCAL_DEVICES=cpu,cpu, with a fresh local backend that reads it; diffusers'
    ``from_pretrained`` and ``__call__`` are wrapped to see which pipelines exist and run."""
    from diffusers import StableVideoDiffusionPipeline

    monkeypatch.setenv("LOCAL_DEVICES", "cpu,cpu")
    monkeypatch.setattr(backends, "_INSTANCES", {})
    seen: dict[str, list] = {"loaded": [], "ran": []}
    load, call = StableVideoDiffusionPipeline.from_pretrained.__func__, StableVideoDiffusionPipeline.__call__

    def from_pretrained(cls, *args, **kwargs):
        pipe = load(cls, *args, **kwargs)
        seen["loaded"].append(pipe)
        return pipe

    def run(self, *args, **kwargs):
        seen["ran"].append(self)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(StableVideoDiffusionPipeline, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(StableVideoDiffusionPipeline, "__call__", run)
    return seen


def test_two_jobs_run_side_by_side_and_a_third_is_told_its_place(two_devices):
    assert backends.get_backend("local").concurrency == 2
    events: list[tuple[float, int, str]] = []
    both_running = threading.Barrier(2, timeout=WAIT)  # broken (and the test failed) if the two cannot overlap
    third_waiting = threading.Event()
    results: dict[int, object] = {}

    def progress(i: int):
        def report(fraction, text):
            events.append((time.monotonic(), i, text))
            if i == 2 and "in line" in text:
                third_waiting.set()
            if i < 2 and text == f"Denoising step 1/{PARAMS['num_inference_steps']}":
                both_running.wait()  # both hold a device now: the third must wait for one
                assert third_waiting.wait(WAIT), "the third job was never told it waits"
        return report

    def run(i: int) -> None:
        try:
            results[i] = service.generate(EXAMPLES / "rocket.jpg", "local", PARAMS, on_progress=progress(i))
        except BaseException as exc:  # checked below
            results[i] = exc

    first_two = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in first_two:
        t.start()
    deadline = time.monotonic() + WAIT
    while sum(text.startswith("Denoising") for _, _, text in events) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    third = threading.Thread(target=run, args=(2,))
    third.start()
    for t in (*first_two, third):
        t.join(WAIT * 2)

    for i in range(3):
        assert video.probe(results[i].video) == (4, 128, 64), results[i]
        assert results[i].used["device"] == "cpu"
    span = {i: (min(t for t, j, text in events if j == i and text.startswith("Denoising")),
                max(t for t, j, text in events if j == i and text.startswith("Denoising"))) for i in range(3)}
    assert span[1][0] < span[0][1] and span[0][0] < span[1][1], "the first two jobs did not overlap"
    third_texts = [text for _, i, text in events if i == 2]
    waited = third_texts.index("Waiting for a free device: you are 1st in line, 2 running")
    assert waited < next(n for n, text in enumerate(third_texts) if text.startswith("Denoising"))
    # One pipeline per device, loaded once each; the three jobs ran on those two.
    assert len(two_devices["loaded"]) == 2 and two_devices["loaded"][0] is not two_devices["loaded"][1]
    ran = {id(p) for p in two_devices["ran"]}
    assert ran == {id(p) for p in two_devices["loaded"]}


def test_one_device_keeps_the_gpu_line_and_one_pipeline(tiny_model, monkeypatch):
    monkeypatch.delenv("LOCAL_DEVICES", raising=False)
    monkeypatch.setattr(backends, "_INSTANCES", {})
    local = backends.get_backend("local")
    assert local.concurrency == 1 and local.slots.waiting_for == "a free GPU" and not local.slots.show_busy


def test_an_unknown_device_is_refused_in_one_sentence(tiny_model, monkeypatch, photo):
    monkeypatch.setenv("LOCAL_DEVICES", "cpu,banana")
    monkeypatch.setattr(backends, "_INSTANCES", {})
    with pytest.raises(BadSetting) as info:
        service.generate(photo, "local", PARAMS)
    assert str(info.value) == (
        "LOCAL_DEVICES must list this machine's devices, separated by commas ('cpu', 'mps', 'cuda' or 'cuda:N', "
        "e.g. 'cuda:0,cuda:1'), got 'cpu,banana': 'banana' is not a device."
    )


def test_a_cuda_device_this_machine_lacks_is_refused(tiny_model, monkeypatch, photo):
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    monkeypatch.setenv("LOCAL_DEVICES", f"cpu,cuda:{count}")
    monkeypatch.setattr(backends, "_INSTANCES", {})
    with pytest.raises(BadSetting) as info:
        service.generate(photo, "local", PARAMS)
    assert str(info.value).startswith(f"LOCAL_DEVICES names cuda:{count}, but this machine has ")
