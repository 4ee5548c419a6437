"""The local backend on a tiny but real diffusers SVD pipeline, loaded through LOCAL_SVD_MODEL."""

from __future__ import annotations

import threading

import imageio_ffmpeg
import numpy as np
import pytest

import backends
from studio import video
from orchestration import service
from studio.errors import BackendError, Cancelled, InvalidParameter

SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2}


def frames_of(path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def test_generates_a_playable_mp4_with_the_requested_frames_and_size(tiny_model, photo):
    progress = []
    result = service.generate(photo, "local", {**SMALL, "num_frames": 5, "seed": 3, "fps": 9},
                              on_progress=lambda f, t: progress.append((f, t)))
    assert video.probe(result.video) == (5, 128, 64)
    assert result.video.suffix == ".mp4" and result.gif is None  # the GIF is made on demand
    gif = service.make_gif(result)
    assert gif.suffix == ".gif" and gif.read_bytes()[:6] == b"GIF89a" and video.probe(gif)[0] == 5
    # H.264 in yuv420p with the index up front is what every browser plays.
    head = result.video.read_bytes()[:4096]
    assert b"moov" in head, "faststart: the moov atom must come before the media data"
    info = imageio_ffmpeg.read_frames(str(result.video))
    meta = next(info)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["fps"] == 9
    assert result.used["seed"] == 3 and result.used["model"] == "custom" and result.used["backend"] == "local"
    assert ("Denoising step 2/2") in [t for _, t in progress]
    assert progress[-1][1] == "Encoding the video"


def test_same_seed_same_frames_other_seed_other_frames(tiny_model, photo):
    a = frames_of(service.generate(photo, "local", {**SMALL, "seed": 42}).video)
    b = frames_of(service.generate(photo, "local", {**SMALL, "seed": 42}).video)
    c = frames_of(service.generate(photo, "local", {**SMALL, "seed": 43}).video)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_random_seed_is_reported_and_reproduces(tiny_model, photo):
    first = service.generate(photo, "local", {**SMALL, "seed": None})
    again = service.generate(photo, "local", {**SMALL, "seed": first.used["seed"]})
    assert all(np.array_equal(x, y) for x, y in zip(frames_of(first.video), frames_of(again.video), strict=True))


def test_fit_mode_keeps_the_aspect_ratio_in_multiples_of_64(tiny_model, photo):
    # chelsea.png is 451x300: inside 256x256 that is 256x170, rounded down to 256x128.
    result = service.generate(photo, "local", {**SMALL, "width": 256, "height": 256, "resize_mode": "fit"})
    assert (result.used["width"], result.used["height"]) == (256, 128)
    assert video.probe(result.video) == (4, 256, 128)


def test_cancel_stops_between_steps(tiny_model, photo):
    cancel = threading.Event()
    steps = []

    def on_progress(fraction, text):
        if text.startswith("Denoising"):
            steps.append(text)
            cancel.set()  # pressed during step 1 of 20

    with pytest.raises(Cancelled) as info:
        service.generate(photo, "local", {**SMALL, "num_inference_steps": 20}, on_progress=on_progress, cancel=cancel)
    assert steps == ["Denoising step 1/20"]
    assert "Cancelled" in str(info.value)


def test_offload_modes_need_cuda_and_say_so(tiny_model, photo):
    with pytest.raises(InvalidParameter) as info:
        service.generate(photo, "local", {**SMALL, "memory_mode": "sequential_offload"})
    assert str(info.value) == (
        "memory_mode must be 'auto' or 'full_gpu' on this machine (it has no CUDA GPU, runs on cpu) "
        "for Local GPU (diffusers), got 'sequential_offload'"
    )


def test_fast_mode_needs_cuda_and_says_so(tiny_model, photo):
    with pytest.raises(InvalidParameter) as info:
        service.generate(photo, "local", {**SMALL, "fast_mode": True})
    assert str(info.value) == (
        "fast_mode must be off on this machine (it has no CUDA GPU, runs on cpu) for Local GPU (diffusers), got True"
    )


def test_fast_mode_prepares_the_real_svd_architecture(tiny_model):
    import torch
    from diffusers import StableVideoDiffusionPipeline

    from backends.local import speed_up

    pipe = speed_up(StableVideoDiffusionPipeline.from_pretrained(tiny_model))
    convs = [m for m in pipe.vae.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert any(isinstance(m, torch.nn.Conv3d) for m in pipe.vae.modules())  # left as they were
    assert type(pipe.unet).__name__ == "OptimizedModule"  # compiled lazily, on the first call


def test_a_hub_model_that_cannot_be_loaded_gives_a_clear_message(tiny_model, photo):
    with pytest.raises(BackendError) as info:
        service.generate(photo, "local", {**SMALL, "model": "svd"})
    message = str(info.value)
    assert message.startswith("Could not load the model 'stabilityai/stable-video-diffusion-img2vid'")
    assert "LOCAL_SVD_MODEL" in message


def test_cuda_out_of_memory_becomes_advice(tiny_model, photo):
    import torch

    class OomPipe:
        def __call__(self, *args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    class OomBackend(type(backends.get_backend("local"))):
        def _pipeline(self, model, memory_mode, fast=False):
            return OomPipe(), "cuda", "full_gpu"

    backend = OomBackend()
    request = backend.resolve(service.build_request({**SMALL, "decode_chunk_size": 8}, backend))
    from backends.base import Job
    from studio import images, outputs

    with pytest.raises(BackendError) as info:
        backend.generate(images.load_image(photo), request, Job(workdir=outputs.job_dir("test")))
    assert str(info.value) == (
        "The GPU ran out of memory at 128x64, 4 frames, decode_chunk_size 8, memory_mode 'full_gpu'. "
        "Lower decode_chunk_size (try 2 or 1), num_frames or the resolution, or pick memory_mode "
        "'model_offload' or 'sequential_offload'."
    )


def test_the_pipeline_is_loaded_once_and_reused(tiny_model, photo):
    backend = backends.get_backend("local")
    service.generate(photo, "local", SMALL)
    pipe = backend._pipe
    service.generate(photo, "local", SMALL)
    assert backend._pipe is pipe


def test_what_the_machine_cannot_do_is_refused_before_waiting_for_the_gpu(tiny_model, photo):
    """A memory_mode this CPU machine cannot honour is refused at once, even while another
    job holds the GPU (if the check came after the wait, this would block)."""
    from backends.base import Job
    from studio import outputs

    local = backends.get_backend("local")
    with local.slots.hold(Job(workdir=outputs.job_dir("test"))):
        assert local.slots.busy == 1
        with pytest.raises(InvalidParameter) as info:
            service.generate(photo, "local", {**SMALL, "memory_mode": "model_offload"})
    assert "memory_mode must be 'auto' or 'full_gpu' on this machine" in str(info.value)
    assert local.slots.busy == 0
