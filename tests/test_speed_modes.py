"""The opt-in speed modes (``backends.speedups``) on the tiny real SVD pipeline.

UNet calls are seen through ``speedups.recording``, the module's own seam; frames are
compared after decoding the MP4 the backend wrote (the encoder is deterministic).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import backends
from backends import estimate, speedups
from studio import images, outputs, video
from orchestration import service
from studio.errors import Cancelled, InvalidParameter
from tests.conftest import EXAMPLES
from tests.test_local import frames_of

STEPS = 6
FRAMES = 4
BASE = {"width": 128, "height": 64, "num_frames": FRAMES, "num_inference_steps": STEPS, "seed": 11}


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def planned(calls: list[speedups.Call]) -> tuple[int, int]:
    """(whole, shallow) UNet passes as ``backends.estimate`` counts them: a guided call is two."""
    return (sum(c.rows // FRAMES for c in calls if c.kind == "full"),
            sum(c.rows // FRAMES for c in calls if c.kind == "shallow"))


def estimated(**extra) -> tuple[int, int]:
    backend = backends.get_backend("local")
    return estimate.Run.of(backend.resolve(service.build_request({**BASE, **extra}, backend))).passes()


def run(photo, **extra) -> tuple[list[np.ndarray], list[speedups.Call], dict]:
    with speedups.recording() as calls:
        result = service.generate(photo, "local", {**BASE, **extra})
    return frames_of(result.video), list(calls), result.used


@pytest.fixture(scope="module")
def plain(tiny_model) -> list[np.ndarray]:
    """Frames of a run that does not name the new fields at all."""
    result = service.generate(EXAMPLES / "chelsea.png", "local", BASE)
    return frames_of(result.video)


def test_defaults_are_exactly_diffusers_called_directly(tiny_model, photo, plain):
    """The backend's frames with the modes off equal the pipeline called by hand on the
    same loaded model and inputs, written through the same encoder."""
    import torch

    backend = backends.get_backend("local")
    request = backend.resolve(service.build_request(BASE, backend))
    pipe = backend._pipe
    assert pipe is not None and "forward" not in vars(pipe.unet)  # unwrapped after the run
    framed = backend.frame(images.load_image(photo), request).image
    out = pipe(
        framed, height=64, width=128, num_frames=FRAMES, num_inference_steps=STEPS,
        min_guidance_scale=request.min_guidance_scale, max_guidance_scale=request.max_guidance_scale,
        fps=request.fps, motion_bucket_id=request.motion_bucket_id, noise_aug_strength=request.noise_aug_strength,
        decode_chunk_size=min(FRAMES, 8), generator=torch.Generator("cpu").manual_seed(11), output_type="np",
    )
    mp4 = video.write_mp4(video.to_uint8(out.frames[0]), outputs.job_dir("direct") / "video.mp4", request.fps)
    assert same(frames_of(mp4), plain)


def test_off_values_are_exact_no_ops(tiny_model, photo, plain):
    frames, calls, used = run(photo, cache_interval=1, guidance_stop=1.0)
    assert same(frames, plain)
    assert [(c.kind, c.rows) for c in calls] == [("full", 2 * FRAMES)] * STEPS
    assert used["cache_interval"] == 1 and used["guidance_stop"] == 1.0


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"guidance_stop": 0.5}, [("full", 8)] * 3 + [("full", 4)] * 3),
        ({"cache_interval": 3}, [("full", 8), ("shallow", 8), ("shallow", 8)] * 2),
    ],
    ids=["guidance_stop", "cache_interval"],
)
def test_a_mode_reproduces_differs_from_off_and_calls_the_unet_as_planned(tiny_model, photo, plain, extra, expected):
    first, calls, used = run(photo, **extra)
    again, _, _ = run(photo, **extra)
    assert same(first, again)  # same seed, same frames
    assert not same(first, plain)  # the mode changed the work, so the frames
    assert [(c.kind, c.rows) for c in calls] == expected  # rows: videos x frames (2 x 4 with guidance)
    assert [c.step for c in calls] == list(range(STEPS))
    assert all(used[name] == value for name, value in extra.items())  # reported, so in the recipe too
    assert estimated(**extra) == planned(calls)  # what ZeroGPU asks for and the CPU refusal count is what runs


def test_both_modes_together_keep_progress_and_the_cached_cond_half(tiny_model, photo):
    progress = []
    with speedups.recording() as calls:
        result = service.generate(photo, "local", {**BASE, "cache_interval": 2, "guidance_stop": 0.5},
                                  on_progress=lambda f, t: progress.append(t))
    assert video.probe(result.video) == (FRAMES, 128, 64)
    assert [(c.kind, c.rows) for c in calls] == [
        ("full", 8), ("shallow", 8), ("full", 8), ("shallow", 4), ("full", 4), ("shallow", 4),
    ]
    assert estimated(cache_interval=2, guidance_stop=0.5) == planned(calls) == (5, 4)
    assert [t for t in progress if t.startswith("Denoising")] == [f"Denoising step {i}/{STEPS}" for i in range(1, 7)]


def test_cancel_still_stops_between_steps_and_unwraps_the_unet(tiny_model, photo):
    cancel = threading.Event()

    def on_progress(fraction, text):
        if text == f"Denoising step 2/{STEPS}":
            cancel.set()

    with speedups.recording() as calls, pytest.raises(Cancelled):
        service.generate(photo, "local", {**BASE, "cache_interval": 3, "guidance_stop": 0.5},
                         on_progress=on_progress, cancel=cancel)
    assert [c.step for c in calls] == [0, 1]
    unet = backends.get_backend("local")._pipe.unet
    assert "forward" not in vars(unet) and not unet.up_blocks[-2]._forward_hooks


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cache_interval": 9}, "cache_interval must be 1-5 for Local GPU (diffusers), got 9"),
        ({"guidance_stop": 1.5}, "guidance_stop must be 0-1 for Local GPU (diffusers), got 1.5"),
        ({"cache_interval": 0}, "cache_interval must be 1-5 for Local GPU (diffusers), got 0"),
        ({"cache_interval": 2.5}, "cache_interval must be 1-5 for Local GPU (diffusers), got 2.5"),
        ({"cache_interval": 3, "fast_mode": True},
         "cache_interval must be 1 with fast_mode (the compiled model cannot hand out the features it would "
         "reuse) for Local GPU (diffusers), got 3"),
    ],
)
def test_values_out_of_range_are_refused_with_the_usual_sentence(tiny_model, photo, extra, message):
    with pytest.raises(InvalidParameter) as info:
        service.generate(photo, "local", {**BASE, **extra})
    assert str(info.value) == message


def test_guided_steps_round_half_up():
    assert [speedups.guided_steps(s, 6) for s in (0.0, 0.25, 0.5, 0.75, 1.0)] == [0, 2, 3, 5, 6]
    assert speedups.guided_steps(0.05, 25) == 1
