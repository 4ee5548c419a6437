"""The live preview: when it renders (a fake clock), what it draws, the GIF it writes, and a
real run of the tiny SVD pipeline with previews on against one with them off."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio import preview
from orchestration import service
from studio.preview import PreviewThrottle, denoised_estimate, latents_to_frames, latents_to_rgb, write_preview
from tests.test_local import SMALL, frames_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_steps(throttle: PreviewThrottle, clock: FakeClock, step_seconds: float, render_seconds: float = 0.0):
    """Drive ``throttle`` through all its steps; return the step indices that rendered."""

    def render() -> None:
        clock.now += render_seconds

    done = []
    for i in range(throttle.steps):
        clock.now += step_seconds
        if throttle.maybe(i, render):
            done.append(i)
    return done


# --- the throttle ------------------------------------------------------------------------


def test_every_fifth_step_of_25_never_the_first_or_last():
    clock = FakeClock()
    throttle = PreviewThrottle(25, clock=clock)
    assert throttle.every == 5
    assert run_steps(throttle, clock, 1.0) == [5, 10, 15, 20]
    assert throttle.renders == 4


def test_every_step_still_skips_step_zero_and_the_last():
    clock = FakeClock()
    assert run_steps(PreviewThrottle(6, every=1, clock=clock), clock, 1.0) == [1, 2, 3, 4]
    clock = FakeClock()
    assert run_steps(PreviewThrottle(6, every=2, clock=clock), clock, 1.0) == [2, 4]
    clock = FakeClock()
    assert run_steps(PreviewThrottle(2, every=1, clock=clock), clock, 1.0) == []  # step 1 is the last


def test_the_default_every_gives_a_few_previews_however_many_steps():
    for steps, expected in [(10, 4), (25, 4), (50, 4), (100, 4), (4, 2)]:
        clock = FakeClock()
        assert len(run_steps(PreviewThrottle(steps, clock=clock), clock, 1.0)) == expected, steps


def test_a_render_that_would_exceed_the_budget_is_skipped_then_previews_resume():
    clock = FakeClock()
    throttle = PreviewThrottle(40, every=1, budget=0.1, clock=clock)
    # 1 s steps, 0.5 s renders: 10 % of the run allows one render per 5 s of run time.
    done = run_steps(throttle, clock, step_seconds=1.0, render_seconds=0.5)
    # The first render has no cost to go by. After n renders (0.5 n s spent), step k sees
    # elapsed k + 1 + 0.5 n and renders once 0.5 n + 0.5 <= 0.1 * (elapsed + 0.5), i.e.
    # k >= 4.5 n + 3.5: skipped for a while, then resumed, again and again.
    assert done == [1, 8, 13, 17, 22, 26, 31, 35]
    total = clock.now - throttle.started
    assert throttle.spent == pytest.approx(0.5 * len(done))
    assert throttle.spent <= 0.1 * total + 1e-9


def test_the_time_is_measured_around_the_render_even_when_it_fails():
    clock = FakeClock()
    throttle = PreviewThrottle(10, every=1, clock=clock)
    clock.now += 1.0

    def broken() -> None:
        clock.now += 0.25
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        throttle.maybe(1, broken)
    assert throttle.spent == 0.25


# --- latents to frames -------------------------------------------------------------------------


def test_random_latents_become_uint8_frames_of_the_latent_size():
    import torch

    latents = torch.randn(1, 5, 4, 9, 16, generator=torch.Generator().manual_seed(0))
    frames = latents_to_frames(latents)
    assert frames.shape == (5, 9, 16, 3) and frames.dtype == np.uint8
    assert frames.min() < 30 and frames.max() > 225  # stretched over the range, not constant


def test_only_batch_element_zero_is_shown():
    rng = np.random.default_rng(1)
    latents = rng.normal(size=(2, 3, 4, 8, 8)).astype(np.float32)
    assert np.array_equal(latents_to_frames(latents), latents_to_frames(latents[:1]))


def test_the_colour_map_is_the_documented_matrix_and_linear():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 1, 3, 4, 5, 6)).astype(np.float32)
    zero = latents_to_rgb(np.zeros_like(a))
    # Linear plus bias: f(a + b) - f(0) == (f(a) - f(0)) + (f(b) - f(0)).
    assert np.allclose(latents_to_rgb(a + b) - zero, latents_to_rgb(a) - zero + latents_to_rgb(b) - zero, atol=1e-5)
    for channel in range(4):
        unit = np.zeros((1, 1, 4, 1, 1), np.float32)
        unit[0, 0, channel] = 1.0
        assert np.allclose(latents_to_rgb(unit)[0, 0, 0], preview.LATENT_RGB[channel] + preview.LATENT_RGB_BIAS)


def test_latent_directions_come_out_as_their_colours():
    """Channel 1 is brightness, channel 4 negated is blue: a frame whose left half is
    +channel 1 and right half -channel 1 is brighter on the left; -channel 4 is bluer."""
    latents = np.zeros((1, 2, 4, 4, 8), np.float32)
    latents[0, 0, 0, :, :4], latents[0, 0, 0, :, 4:] = 1.0, -1.0
    latents[0, 1, 3, :, :4], latents[0, 1, 3, :, 4:] = -1.0, 1.0
    frames = latents_to_frames(latents).astype(int)
    bright, dark = frames[0, 0, 0], frames[0, 0, 7]
    assert (bright > dark + 50).all()
    blue = frames[1, 0, 0]
    assert blue[2] > blue[1] > blue[0]


def test_other_channel_counts_fall_back_instead_of_failing():
    rng = np.random.default_rng(3)
    eight = latents_to_frames(rng.normal(size=(1, 3, 8, 5, 7)))
    assert eight.shape == (3, 5, 7, 3) and eight.dtype == np.uint8 and eight.std() > 0
    one = latents_to_frames(rng.normal(size=(1, 3, 1, 5, 7)))
    assert one.shape == (3, 5, 7, 3)
    assert (one[..., 0] == one[..., 1]).all() and (one[..., 1] == one[..., 2]).all()  # grey
    flat = latents_to_frames(np.full((1, 2, 4, 3, 3), np.nan, np.float32))
    assert flat.shape == (2, 3, 3, 3)  # NaNs from an fp16 overflow give a flat picture, not an error


def test_the_denoised_estimate_is_what_diffusers_euler_scheduler_predicts():
    import torch
    from diffusers import EulerDiscreteScheduler

    # SVD's scheduler settings, as in tests/tiny_svd.py.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
    )
    scheduler.set_timesteps(6)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 2, 4, 3, 5, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps[:4]:
        scheduler.scale_model_input(sample, t)
        out = scheduler.step(torch.randn(sample.shape, generator=g), t, sample)
        sigmas = preview.euler_sigmas(scheduler)
        assert sigmas is not None
        estimate = denoised_estimate(sample, out.prev_sample, *sigmas)
        assert torch.allclose(estimate, out.pred_original_sample, atol=2e-3 * float(sigmas[0]))
        sample = out.prev_sample
    assert preview.euler_sigmas(object()) is None


# --- the GIF -----------------------------------------------------------------------------------


def test_write_preview_writes_a_looping_gif_about_256_pixels_wide(tmp_path):
    frames = np.random.default_rng(4).integers(0, 256, size=(25, 72, 128, 3), dtype=np.uint8)
    path = write_preview(frames, tmp_path / "preview-5.gif", fps=7)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 25
        assert gif.size == (256, 144)
        assert gif.info.get("loop") == 0  # forever
        assert gif.info.get("duration") == 140  # 1000 / 7 ms, in the GIF's hundredths of a second


def test_write_preview_scales_tall_and_tiny_latents_to_the_same_longest_side(tmp_path):
    frames = np.zeros((3, 16, 8, 3), np.uint8)
    frames[1], frames[2] = 128, 255  # Pillow merges identical frames
    with Image.open(write_preview(frames, tmp_path / "p.gif", fps=7)) as gif:
        assert gif.size == (128, 256) and gif.n_frames == 3


# --- a real run ---------------------------------------------------------------------------------


def test_a_local_run_shows_previews_and_they_do_not_change_the_video(tiny_model, photo, monkeypatch):
    monkeypatch.setattr(preview, "EVERY", 1)
    monkeypatch.setattr(preview, "BUDGET", 100.0)  # every step, whatever this machine's speed
    params = {**SMALL, "num_frames": 5, "num_inference_steps": 8, "seed": 11}
    seen = []

    def on_preview(path) -> None:
        assert path.exists() and path.name == f"preview-{len(seen) + 2}.gif"
        with Image.open(path) as gif:
            seen.append((gif.n_frames, gif.size))

    monkeypatch.setenv("SVD_PREVIEW", "1")
    shown = service.generate(photo, "local", params, on_preview=on_preview)
    # Steps 2 to 7 of 8 (indices 1-6): never the first, never the last.
    assert len(seen) == 6
    assert all(n == 5 and max(size) <= 256 for n, size in seen)
    left = sorted(p.name for p in shown.video.parent.glob("preview-*.gif"))
    assert left == ["preview-6.gif", "preview-7.gif"]

    monkeypatch.setenv("SVD_PREVIEW", "0")
    called = []
    hidden = service.generate(photo, "local", params, on_preview=called.append)
    assert called == [] and not list(hidden.video.parent.glob("preview-*.gif"))
    a, b = frames_of(shown.video), frames_of(hidden.video)
    assert len(a) == 5 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_failing_preview_stops_previews_but_not_the_video(tiny_model, photo, monkeypatch, caplog):
    monkeypatch.setattr(preview, "EVERY", 1)
    monkeypatch.setattr(preview, "BUDGET", 100.0)
    monkeypatch.delenv("SVD_PREVIEW", raising=False)
    calls = []

    def on_preview(path) -> None:
        calls.append(path)
        raise OSError("the page went away")

    with caplog.at_level("DEBUG", logger="studio.preview"):
        result = service.generate(photo, "local", {**SMALL, "num_inference_steps": 6}, on_preview=on_preview)
    assert len(frames_of(result.video)) == 4
    assert len(calls) == 1  # tried once, then no more previews this run
    assert [r.getMessage() for r in caplog.records] == ["live preview failed at step 2; no more previews this run"]
