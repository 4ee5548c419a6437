"""Every validation rule, as a table: the exact message names parameter, value, rule, backend."""

from __future__ import annotations

import pytest

import backends
from studio.errors import InvalidParameter
from orchestration.service import build_request

LOCAL = "Local GPU (diffusers)"


def check(backend: str, params: dict):
    chosen = backends.get_backend(backend)
    return chosen.resolve(build_request(params, chosen))


BAD_LOCAL = [
    ({"num_frames": 0}, "num_frames must be 1-64 for Local GPU (diffusers), got 0"),
    ({"num_frames": 65}, "num_frames must be 1-64 for Local GPU (diffusers), got 65"),
    ({"num_frames": "many"}, "num_frames must be 1-64 for Local GPU (diffusers), got 'many'"),
    ({"width": 100}, "width must be a multiple of 64 from 64 to 2048 for Local GPU (diffusers), got 100"),
    ({"width": 0}, "width must be a multiple of 64 from 64 to 2048 for Local GPU (diffusers), got 0"),
    ({"height": 4096}, "height must be a multiple of 64 from 64 to 2048 for Local GPU (diffusers), got 4096"),
    ({"resize_mode": "stretch"}, "resize_mode must be one of 'crop', 'fit' for Local GPU (diffusers), got 'stretch'"),
    ({"fps": 0}, "fps must be 1-30 for Local GPU (diffusers), got 0"),
    ({"fps": 31}, "fps must be 1-30 for Local GPU (diffusers), got 31"),
    ({"fps": 99}, "fps must be 1-30 for Local GPU (diffusers), got 99"),
    ({"motion_bucket_id": 0}, "motion_bucket_id must be 1-255 for Local GPU (diffusers), got 0"),
    ({"motion_bucket_id": 256}, "motion_bucket_id must be 1-255 for Local GPU (diffusers), got 256"),
    ({"noise_aug_strength": -0.1}, "noise_aug_strength must be 0-1 for Local GPU (diffusers), got -0.1"),
    ({"noise_aug_strength": 1.5}, "noise_aug_strength must be 0-1 for Local GPU (diffusers), got 1.5"),
    ({"num_inference_steps": 0}, "num_inference_steps must be 1-100 for Local GPU (diffusers), got 0"),
    ({"num_inference_steps": 101}, "num_inference_steps must be 1-100 for Local GPU (diffusers), got 101"),
    ({"min_guidance_scale": -1}, "min_guidance_scale must be 0-20 for Local GPU (diffusers), got -1"),
    ({"max_guidance_scale": 25}, "max_guidance_scale must be 0-20 for Local GPU (diffusers), got 25"),
    (
        {"min_guidance_scale": 4.0, "max_guidance_scale": 2.0},
        "min_guidance_scale must be at most max_guidance_scale (2) for Local GPU (diffusers), got 4.0",
    ),
    ({"seed": -2}, "seed must be 0-4294967295 or empty for Local GPU (diffusers), got -2"),
    ({"seed": 2**32}, "seed must be 0-4294967295 or empty for Local GPU (diffusers), got 4294967296"),
    ({"decode_chunk_size": 0}, "decode_chunk_size must be 1-64 or empty for Local GPU (diffusers), got 0"),
    (
        {"memory_mode": "turbo"},
        "memory_mode must be one of 'auto', 'full_gpu', 'model_offload', 'sequential_offload' "
        "for Local GPU (diffusers), got 'turbo'",
    ),
    ({"model": "svd-9"}, "model must be one of "),
    (
        {"negative_prompt": "blurry"},
        "negative_prompt must be left empty (this backend does not use it) for Local GPU (diffusers), got 'blurry'",
    ),
    (
        {"enable_frame_interpolation": True},
        "enable_frame_interpolation must be left empty (this backend does not use it) "
        "for Local GPU (diffusers), got True",
    ),
    ({"colour": "red"}, "colour must be a known parameter name for Local GPU (diffusers), got 'red'"),
]


@pytest.mark.parametrize("params, message", BAD_LOCAL, ids=[str(p) for p, _ in BAD_LOCAL])
def test_local_rejects_with_a_clear_message(params, message):
    with pytest.raises(InvalidParameter) as info:
        check("local", params)
    assert str(info.value).startswith(message)
    assert next(iter(params)) in str(info.value)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(InvalidParameter) as info:
        check("local", {"model": "svd-9"})
    assert "'svd', 'svd-xt', 'svd-xt-1-1'" in str(info.value)
    assert str(info.value).endswith("got 'svd-9'")


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(InvalidParameter) as info:
        backends.get_backend("replicate")
    known = ", ".join(repr(n) for n in backends.names())
    assert str(info.value) == f"backend must be one of {known} for this studio, got 'replicate'"


def test_defaults_follow_the_model():
    xt = check("local", {"model": "svd-xt"})
    svd = check("local", {"model": "svd"})
    assert (xt.num_frames, svd.num_frames) == (25, 14)
    assert (xt.width, xt.height, xt.fps, xt.motion_bucket_id) == (1024, 576, 7, 127)
    assert (xt.noise_aug_strength, xt.min_guidance_scale, xt.max_guidance_scale) == (0.02, 1.0, 3.0)
    assert xt.num_inference_steps == 25 and xt.memory_mode == "auto" and xt.resize_mode == "crop"


def test_values_are_never_clamped_and_edges_are_accepted():
    edge = check("local", {"model": "svd", "num_frames": 1, "width": 64, "height": 2048, "fps": 30,
                           "motion_bucket_id": 255, "noise_aug_strength": 1.0, "seed": 0})
    assert (edge.num_frames, edge.width, edge.height, edge.fps, edge.motion_bucket_id) == (1, 64, 2048, 30, 255)
    assert edge.seed == 0


def test_random_seed_is_chosen_and_reported():
    seeds = {check("local", {"model": "svd", "seed": s}).seed for s in (None, -1, None, -1)}
    assert all(0 <= s < 2**32 for s in seeds) and len(seeds) > 1


def test_empty_strings_mean_not_set():
    resolved = check("local", {"model": "svd", "seed": "", "negative_prompt": ""})
    assert isinstance(resolved.seed, int) and resolved.options == {}
