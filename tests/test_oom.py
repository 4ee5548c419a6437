"""Out of memory during a local run: once more with safer settings, said in the progress
and in ``used``; out of memory again, the advice.

The stand-in is diffusers' own pipeline call raising torch's CUDA out-of-memory error (this
machine has no CUDA): the first call, or every call.
"""

from __future__ import annotations

import pytest
import torch

from backends.devices import Settings
from studio import video
from orchestration import service
from studio.errors import OutOfMemory

SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2, "decode_chunk_size": 8}


@pytest.fixture
def out_of_memory(monkeypatch):
    """Make diffusers' pipeline call run out of memory ``fail["times"]`` times, then run."""
    from diffusers import StableVideoDiffusionPipeline

    call = StableVideoDiffusionPipeline.__call__
    fail = {"times": 1, "calls": []}

    def run(self, *args, **kwargs):
        fail["calls"].append(kwargs["decode_chunk_size"])
        if len(fail["calls"]) <= fail["times"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return call(self, *args, **kwargs)

    monkeypatch.setattr(StableVideoDiffusionPipeline, "__call__", run)
    return fail


def test_a_run_out_of_memory_is_run_again_with_a_smaller_chunk_and_says_so(tiny_model, photo, out_of_memory):
    progress = []
    result = service.generate(photo, "local", SMALL, on_progress=lambda f, t: progress.append(t))
    assert video.probe(result.video) == (4, 128, 64)
    assert out_of_memory["calls"] == [8, 2]
    assert (
        "Out of memory: trying once more with decode_chunk_size 8 → 2 "
        "(on cpu only decode_chunk_size can change: offloading needs a CUDA GPU)"
    ) in progress
    assert result.used["recovered"] == "decode_chunk_size 8 → 2"
    assert result.used["decode_chunk_size"] == 2 and result.used["memory_mode"] == "auto"


def test_out_of_memory_twice_gives_the_advice(tiny_model, photo, out_of_memory):
    out_of_memory["times"] = 99
    with pytest.raises(OutOfMemory) as info:
        service.generate(photo, "local", SMALL)
    assert out_of_memory["calls"] == [8, 2]  # once more, not again and again
    assert str(info.value) == (
        "The GPU ran out of memory at 128x64, 4 frames, decode_chunk_size 8, memory_mode 'auto'. "
        "Lower decode_chunk_size (try 2 or 1), num_frames or the resolution, or pick memory_mode "
        "'model_offload' or 'sequential_offload'."
    )


def test_nothing_safer_left_gives_the_advice_at_once(tiny_model, photo, out_of_memory):
    out_of_memory["times"] = 99
    with pytest.raises(OutOfMemory):
        service.generate(photo, "local", {**SMALL, "decode_chunk_size": 1})
    assert out_of_memory["calls"] == [1]


def test_on_a_cuda_gpu_the_retry_also_offloads():
    retry = Settings("cuda:1", 8, "full_gpu").safer()
    assert retry.change == "decode_chunk_size 8 → 2, memory_mode full_gpu → model_offload" and retry.note == ""
    assert retry.settings == Settings("cuda:1", 2, "model_offload")
    assert retry.progress() == (
        "Out of memory: trying once more with decode_chunk_size 8 → 2, memory_mode full_gpu → model_offload"
    )
    assert Settings("cuda", 1, "model_offload").safer().change == "memory_mode model_offload → sequential_offload"
    assert Settings("cuda", 1, "sequential_offload").safer() is None
    fast = Settings("cuda", 8, "full_gpu", fast=True).safer()
    assert fast.settings.memory_mode == "full_gpu" and fast.note == "fast_mode keeps the whole model on the GPU"
