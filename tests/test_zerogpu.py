"""The local backend on a ZeroGPU Space, against a stand-in ``spaces`` package
(tests/spaces_standin) that records what each call asked for and, like the real one, pickles
what crosses into its worker and can refuse a call as the scheduler does."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

import pytest

import backends
from backends import zerogpu
from backends.base import Job
from backends.local import LocalBackend
from studio import images, outputs, video
from orchestration import service
from studio.errors import BackendError, Cancelled, InvalidParameter

STANDIN = Path(__file__).parent / "spaces_standin"
SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2}
FULL = {"width": 1024, "height": 576, "num_frames": 25, "num_inference_steps": 25}


@pytest.fixture
def spaces(monkeypatch):
    """ZeroGPU as a Space sees it: SPACES_ZERO_GPU set and a fresh stand-in ``spaces``."""
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("SPACE_ID", "owner/space")
    monkeypatch.delenv("BACKENDS", raising=False)
    module = importlib.import_module("spaces")
    assert Path(module.__file__).is_relative_to(STANDIN)
    yield module
    sys.modules.pop("spaces", None)


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Every model diffusers' StableVideoDiffusionPipeline.from_pretrained is asked to load."""
    from diffusers import StableVideoDiffusionPipeline

    original = StableVideoDiffusionPipeline.from_pretrained
    seen: list[str] = []

    def counted(cls, source, *args, **kwargs):
        seen.append(str(source))
        return original(source, *args, **kwargs)

    monkeypatch.setattr(StableVideoDiffusionPipeline, "from_pretrained", classmethod(counted))
    return seen


def run(backend: LocalBackend, photo: Path, params: dict, **hooks):
    """What ``service.generate`` does with a backend: resolve, preflight, generate. A fresh
    backend per test, so no test finds another's model or GPU function."""
    request = backend.resolve(service.build_request(params, backend))
    backend.preflight(request)
    return backend.generate(images.load_image(photo), request, Job(workdir=outputs.job_dir("test"), **hooks))


def test_each_call_asks_for_the_time_its_request_needs(spaces, monkeypatch, photo, loads):
    monkeypatch.delenv("LOCAL_SVD_MODEL", raising=False)  # svd-xt, the full-size model
    backend = LocalBackend()
    asks = [
        {"width": 256, "height": 128, "num_frames": 4, "num_inference_steps": 4},
        FULL,
        {**FULL, "min_guidance_scale": 1.0, "max_guidance_scale": 1.0},  # no guidance: half the UNet work
        {**FULL, "num_frames": 14},
        {**FULL, "cache_interval": 3, "guidance_stop": 0.5},  # the speed modes do less work: it asks for less
    ]
    for params in asks:  # each call is refused before it runs: nothing is loaded
        spaces.refuse_next(spaces.quota_exceeded(999, 30))
        with pytest.raises(BackendError):
            run(backend, photo, params)
    small, full, unguided, fewer, faster = spaces.asked
    assert faster < full * 0.75
    assert small < full / 4
    assert full <= zerogpu.MAX_SECONDS
    assert small < fewer < full and unguided < full
    assert loads == []


def test_a_quota_refusal_becomes_one_sentence(spaces, monkeypatch, photo, loads):
    monkeypatch.delenv("LOCAL_SVD_MODEL", raising=False)
    spaces.refuse_next(spaces.quota_exceeded(102, 31))
    with pytest.raises(BackendError) as info:
        run(LocalBackend(), photo, FULL)
    assert str(info.value) == (
        f"The free GPU time of this Space is used up for you for now (this video would need about "
        f"{spaces.asked[-1]} s). Log in to Hugging Face for more, wait a while, or pick a hosted backend."
    )
    assert info.value.__cause__.title == "ZeroGPU quota exceeded"  # ZeroGPU's own error kept as the cause


def test_without_hosted_backends_the_sentence_does_not_offer_them(spaces, monkeypatch, photo, loads):
    monkeypatch.delenv("LOCAL_SVD_MODEL", raising=False)
    monkeypatch.setenv("BACKENDS", "local")
    spaces.refuse_next(spaces.quota_exceeded(102, 31))
    with pytest.raises(BackendError) as info:
        run(LocalBackend(), photo, FULL)
    assert str(info.value).endswith("s). Log in to Hugging Face for more, or wait a while.")


def test_an_illegal_duration_becomes_one_sentence(spaces, monkeypatch, photo, loads):
    monkeypatch.delenv("LOCAL_SVD_MODEL", raising=False)
    spaces.refuse_next(spaces.illegal_duration(102))
    with pytest.raises(BackendError) as info:
        run(LocalBackend(), photo, FULL)
    assert str(info.value) == (
        f"ZeroGPU does not give you that much GPU time in one go (this video would need about "
        f"{spaces.asked[-1]} s). Log in to Hugging Face for more, lower the size, frames or steps, "
        "or pick a hosted backend."
    )


def test_a_call_stopped_for_running_too_long_becomes_one_sentence(spaces, monkeypatch, photo, loads):
    monkeypatch.delenv("LOCAL_SVD_MODEL", raising=False)
    spaces.refuse_next(spaces.task_aborted())
    with pytest.raises(BackendError) as info:
        run(LocalBackend(), photo, FULL)
    assert str(info.value) == (
        f"ZeroGPU stopped this video because it ran past the {spaces.asked[-1]} s of GPU time it asked for (the GPU "
        "was slower than expected, or busy). Try again, lower the size, frames or steps, or pick a hosted backend."
    )


def test_fast_mode_is_refused_on_zerogpu(spaces, tiny_model, photo):
    with pytest.raises(InvalidParameter) as info:
        run(LocalBackend(), photo, {**SMALL, "fast_mode": True})
    assert str(info.value) == (
        "fast_mode must be off on ZeroGPU (it does not support torch.compile) for Local GPU (diffusers), got True"
    )
    assert spaces.asked == []


def test_more_than_one_call_may_have_is_refused_before_asking(spaces, monkeypatch, photo, loads):
    monkeypatch.delenv("LOCAL_SVD_MODEL", raising=False)
    with pytest.raises(BackendError) as info:
        run(LocalBackend(), photo, {**FULL, "num_frames": 64, "num_inference_steps": 50})
    message = str(info.value)
    assert message.startswith("On ZeroGPU this video would need about ")
    assert message.endswith(" of GPU time (1024x576, 64 frames, 50 steps), more than the 5 min one call may have. "
                            "Lower the size, frames or steps, or pick a hosted backend.")
    assert spaces.asked == [] and loads == []


def test_only_what_the_start_up_load_serves_is_offered(spaces, tiny_model):
    backend = LocalBackend()
    assert list(backend.model_choices()) == ["custom"]  # LOCAL_SVD_MODEL, loaded at start-up
    assert backend.limits("custom")["memory_mode"].options == ("auto", "full_gpu")  # no offloading
    with pytest.raises(InvalidParameter) as info:
        backend.resolve(service.build_request({"model": "svd"}, backend))
    assert str(info.value) == "model must be 'custom' for Local GPU (diffusers), got 'svd'"


def test_warm_up_loads_the_model_and_generation_reuses_it(spaces, tiny_model, photo, loads):
    backend = LocalBackend()
    backend.warm_up()  # what app.main does on ZeroGPU, before launch
    assert loads == [str(tiny_model)]
    assert len(spaces.decorated) == 1  # the GPU function exists before the app launches

    progress: list[str] = []
    result = run(backend, photo, {**SMALL, "seed": 5}, on_progress=lambda f, text: progress.append(text))
    assert loads == [str(tiny_model)], "the GPU call must reuse the model loaded at start-up"
    assert video.probe(result.video) == (4, 128, 64)
    assert len(spaces.asked) == 1 and 0 < spaces.asked[0] <= zerogpu.MAX_SECONDS
    # Progress made in the worker reached the job, in order.
    assert "Denoising step 1/2" in progress and "Denoising step 2/2" in progress
    assert progress.index("Denoising step 1/2") < progress.index("Denoising step 2/2")
    assert sorted(p.name for p in result.video.parent.iterdir() if p.name.startswith(".")) == []


def test_cancel_reaches_the_worker_and_its_sentence_comes_back(spaces, tiny_model, photo):
    backend = LocalBackend()
    backend.warm_up()
    cancel = threading.Event()
    steps: list[str] = []

    def on_progress(fraction, text):
        if text.startswith("Denoising"):
            steps.append(text)
            cancel.set()  # pressed as the first step is reported

    with pytest.raises(Cancelled) as info:
        run(backend, photo, {**SMALL, "num_inference_steps": 60}, on_progress=on_progress, cancel=cancel)
    assert str(info.value) == "Cancelled: generation stopped between denoising steps."
    assert 1 <= len(steps) < 60


def test_start_up_warms_the_local_backend_only_on_zerogpu_and_when_offered(spaces, tiny_model, monkeypatch, loads):
    monkeypatch.setenv("BACKENDS", "novita,modelslab")
    backends.start_up()
    assert loads == [] and spaces.decorated == []
    monkeypatch.setenv("BACKENDS", "local,novita")
    backends.start_up()
    assert len(spaces.decorated) == 1


def test_off_zerogpu_nothing_changes(monkeypatch, tiny_model, photo, loads):
    monkeypatch.setenv("SPACE_ID", "owner/space")  # a Space, but not a ZeroGPU one
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.syspath_prepend(str(STANDIN))  # importable, so an import would show
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    backend = LocalBackend()
    assert "svd-xt" in backend.model_choices()
    assert backend.limits("custom")["memory_mode"].options == ("auto", "full_gpu", "model_offload",
                                                               "sequential_offload")
    result = run(backend, photo, SMALL)
    assert video.probe(result.video) == (4, 128, 64)
    assert "spaces" not in sys.modules


def test_a_model_that_ran_asks_from_its_measured_step_time(spaces, tiny_model, photo, monkeypatch):
    """After one call, the steps' own timing (reported by the worker) sets the model's rate:
    on this CPU the tiny model runs far below the 60 TFLOP/s assumed for the GPU slice,
    so the same request then asks for more time."""
    monkeypatch.setattr(zerogpu, "_measured", {})
    backend = LocalBackend()
    request = backend.resolve(service.build_request(SMALL, backend))
    from backends import estimate

    work = estimate.work(str(tiny_model), estimate.Run.of(request))
    before = zerogpu.seconds_needed(work, str(tiny_model))
    run(backend, photo, SMALL)
    measured = zerogpu.rate(str(tiny_model))
    assert measured < zerogpu.TFLOPS / 100  # a CPU, not a GPU slice
    assert zerogpu.seconds_needed(work, str(tiny_model)) > before
    assert zerogpu.rate("another/model") == zerogpu.TFLOPS  # only the model that ran is calibrated
    run(backend, photo, SMALL)
    assert spaces.asked[1] >= spaces.asked[0]
