"""A live preview while the local backend denoises: a cheap picture of the latents every few steps.

Decoding latents with the VAE would cost about as much as a denoising step, so the
preview maps SD's 4-channel latent space to RGB with one fixed linear map instead, at the
latents' own resolution (1/8 of the video), and writes it as a small looping GIF that the
page shows in an ``<img>``. Raw latents are mostly noise until the last few steps, so with
diffusers' Euler scheduler (SVD's) the preview shows the scheduler's own estimate of the
finished latents, recovered exactly from two consecutive steps.

``PreviewThrottle`` keeps it cheap: a few previews a run, never on the first or last step,
and never more than ``BUDGET`` (3 %) of the run's time. ``SVD_PREVIEW=0`` in the
environment turns previews off (read at the start of each run).

torch is never imported here: tensors come in and leave through ``.float().cpu().numpy()``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

_log = logging.getLogger(__name__)

ENV = "SVD_PREVIEW"  # "0", "off", "false" or "no" turns previews off
EVERY: int | None = None  # steps between previews; None: about five a run (see PreviewThrottle)
BUDGET = 0.03  # the share of the run's time previews may take
KEEP = 2  # preview files left in the job folder: the newest, and the one a browser may still be fetching
LONGEST_SIDE = 256  # pixels: latents of a 1024x576 video are 128x72

# SD 1.x/2.x latents (as the UNet sees them, i.e. already multiplied by the VAE's
# scaling_factor 0.18215) to RGB in [-1, 1]: rows are latent channels, columns R, G, B.
# SVD encodes with the SD 2.x VAE encoder, so its latents live in the same space. The
# values are our rounding of the least-squares fit of latents to their decoded pixels
# that has been published for this VAE family (keturn, "Decoding latents to RGB without
# upscaling", 2022): channel 1 carries brightness, 2 warm/green, 3 cyan against red, and
# 4 (negated) blue. Only the directions matter much here, since the result is stretched
# to 0-255 afterwards. That fit has no intercept worth keeping; the bias is explicit so a
# fit with one drops in.
LATENT_RGB = np.array(
    [
        [0.30, 0.21, 0.21],
        [0.19, 0.29, 0.17],
        [-0.16, 0.19, 0.26],
        [-0.18, -0.27, -0.47],
    ],
    dtype=np.float32,
)
LATENT_RGB_BIAS = np.zeros(3, dtype=np.float32)

# A fixed 6x7x6 colour cube (252 colours, green finest because the eye is): quantising is
# then three table lookups per pixel instead of Pillow's per-frame palette search, which
# took longer than everything else put together.
_LEVELS = (6, 7, 6)
_LUTS = [
    (np.round(np.arange(256) * (n - 1) / 255) * weight).astype(np.uint8)
    for n, weight in zip(_LEVELS, (_LEVELS[1] * _LEVELS[2], _LEVELS[2], 1), strict=True)
]
_PALETTE = [
    round(level * 255 / (n - 1))
    for r in range(_LEVELS[0]) for g in range(_LEVELS[1]) for b in range(_LEVELS[2])
    for level, n in zip((r, g, b), _LEVELS, strict=True)
]


def enabled() -> bool:
    """False when ``SVD_PREVIEW`` says off; previews are on by default."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


# --- latents to pictures --------------------------------------------------------------


def _first(latents: Any) -> np.ndarray:
    """Batch element 0 as float32 numpy, (frames, channels, h, w). The pipeline's own
    ``latents`` hold one element per video; only the UNet's input is doubled for guidance."""
    x = latents[0]
    if hasattr(x, "detach"):  # a torch tensor, maybe fp16 on a GPU
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def latents_to_rgb(latents: Any) -> np.ndarray:
    """The linear map alone, (frames, h, w, 3) float in about [-1, 1]; 4 channels only."""
    # (frames, h, w, 4) @ (4, 3): one BLAS call; np.tensordot copied the transposed input first, 10x slower.
    return _first(latents).transpose(0, 2, 3, 1) @ LATENT_RGB + LATENT_RGB_BIAS


def latents_to_frames(latents: Any) -> np.ndarray:
    """Latents (batch, frames, channels, h, w) to uint8 frames (frames, h, w, 3).

    Four channels go through ``LATENT_RGB`` and are stretched together, so colours keep
    their balance. Any other count (a custom model) shows its first three channels, each
    stretched on its own, or grey from the first: the preview never refuses a model.
    """
    x = _first(latents)
    if x.shape[1] == 4:
        return _stretch(latents_to_rgb(x[None]), per_channel=False)
    picked = [0, 1, 2] if x.shape[1] >= 3 else [0, 0, 0]
    return _stretch(x[:, picked].transpose(0, 2, 3, 1), per_channel=True)  # indexing with a list copies


def _stretch(x: np.ndarray, *, per_channel: bool) -> np.ndarray:
    """Map the 1st-99th percentile range to 0-255: one stray value cannot flatten the rest.
    The whole clip shares one scale, so frames do not flicker against each other.

    Works in place on ``x``, a fresh array of the caller's (fewer passes over 700,000
    values at full size); percentiles come from at most ~20,000 samples for the same reason.
    """
    if not np.isfinite(x).all():  # an fp16 overflow upstream: show the rest rather than fail
        np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    flat = x.reshape(-1, 3)
    sample = flat[:: max(1, len(flat) // 20_000)]
    lo, hi = np.percentile(sample if per_channel else sample.ravel(), [1, 99], axis=0)
    x -= lo
    x *= 255.0 / np.maximum(hi - lo, 1e-6)
    x += 0.5
    return np.clip(x, 0, 255, out=x).astype(np.uint8)


def denoised_estimate(before: Any, after: Any, sigma: float, sigma_next: float) -> Any:
    """The latents the Euler scheduler expects at the end, from one step of its own.

    Euler (no churn) steps ``after = before + (sigma_next - sigma) * (before - x0) / sigma``,
    so ``x0`` follows from ``before`` and ``after``: no model call, and the same arrays in
    as out (numpy or torch). Raw latents at step 5 of 25 carry noise of sigma ~180 over a
    signal of ~1; this estimate shows the picture from the first steps on.
    """
    if sigma_next == sigma:
        return after
    return before - (after - before) * (sigma / (sigma_next - sigma))


def write_preview(frames: np.ndarray, path: Path, fps: float) -> Path:
    """A looping GIF of uint8 ``frames`` (frames, h, w, 3), scaled (nearest) so its
    longest side is about ``LONGEST_SIDE``. Blocky on purpose: it is the latents'
    resolution, and nearest keeps the fixed palette so no frame needs quantising again."""
    count, h, w, _ = frames.shape
    scale = LONGEST_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    index = _LUTS[0][frames[..., 0]] + _LUTS[1][frames[..., 1]] + _LUTS[2][frames[..., 2]]
    pictures = []
    for plane in index:
        picture = Image.frombytes("P", (w, h), plane.tobytes())
        picture.putpalette(_PALETTE)
        pictures.append(picture.resize(size, Image.Resampling.NEAREST))
    pictures[0].save(
        path, "GIF", save_all=True, append_images=pictures[1:], duration=max(20, round(1000 / fps)), loop=0,
        optimize=False,  # a palette search per save: slower, and the cube is already small
    )
    return path


# --- when to preview -------------------------------------------------------------------


class PreviewThrottle:
    """Decides at which denoising steps a preview is worth its time.

    ``maybe(step_index, render)`` runs ``render`` (and times it) only when all hold:

    - ``step_index`` (0-based, as in diffusers' step callback) is neither 0 (nothing has
      formed yet) nor the last (the real video follows at once);
    - at least ``every`` steps since the previous preview (default: ``steps // 5``, so
      four or five previews a run);
    - the time spent rendering, plus what the previous render took, stays under
      ``budget`` of the time since the throttle started. A skipped preview is retried
      on the next step, so previews resume once the run has caught up.
    """

    def __init__(self, steps: int, every: int | None = None, budget: float = BUDGET,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.steps = steps
        self.every = every if every is not None else max(1, steps // 5)
        self.budget = budget
        self.clock = clock
        self.started = clock()
        self.spent = 0.0  # seconds inside render calls
        self.renders = 0
        self._last_step = 0
        self._last_cost = 0.0

    def due(self, step_index: int) -> bool:
        if step_index < 1 or step_index >= self.steps - 1 or step_index - self._last_step < self.every:
            return False
        elapsed = self.clock() - self.started
        # As if the next render costs what the previous one did (the first is free to try).
        return self.spent + self._last_cost <= self.budget * (elapsed + self._last_cost)

    def maybe(self, step_index: int, render: Callable[[], None]) -> bool:
        if not self.due(step_index):
            return False
        start = self.clock()
        try:
            render()
        finally:
            self._last_cost = self.clock() - start
            self.spent += self._last_cost
            self._last_step = step_index
        self.renders += 1
        return True


# --- one run's previews --------------------------------------------------------------------


class LivePreview:
    """The previews of one run: fed every step's latents, it renders when the throttle
    allows, writes ``preview-<step>.gif`` into ``workdir``, hands it to ``on_preview`` and
    deletes all but the newest ``KEEP``. The first failure stops previews for the run
    (logged at debug): a preview must never cost a video."""

    def __init__(self, workdir: Path, fps: float, on_preview: Callable[[Path], None],
                 throttle: PreviewThrottle) -> None:
        self.workdir, self.fps, self.on_preview, self.throttle = workdir, fps, on_preview, throttle
        self.failed = False
        self._before: Any = None
        self._files: list[Path] = []

    @classmethod
    def start(cls, workdir: Path, steps: int, fps: float, on_preview: Callable[[Path], None]) -> LivePreview | None:
        """The run's previews, or None when ``SVD_PREVIEW`` turns them off."""
        if not enabled():
            return None
        return cls(workdir, fps, on_preview, PreviewThrottle(steps, every=EVERY, budget=BUDGET))

    def step(self, step_index: int, latents: Any, scheduler: Any = None) -> None:
        """Call after each step with the pipeline's latents and scheduler."""
        if self.failed:
            return
        # Keeping a reference costs nothing: the scheduler makes a new tensor each step.
        before, self._before = self._before, latents
        try:
            self.throttle.maybe(step_index, lambda: self._render(step_index, before, latents, scheduler))
        except Exception:
            self.failed = True
            _log.debug("live preview failed at step %d; no more previews this run", step_index + 1, exc_info=True)

    def _render(self, step_index: int, before: Any, latents: Any, scheduler: Any) -> None:
        x = _first(latents)
        sigmas = euler_sigmas(scheduler)
        if before is not None and sigmas is not None:
            x = denoised_estimate(_first(before), x, *sigmas)
        path = write_preview(latents_to_frames(x[None]), self.workdir / f"preview-{step_index + 1}.gif", self.fps)
        self._files.append(path)
        self.on_preview(path)
        while len(self._files) > KEEP:
            self._files.pop(0).unlink(missing_ok=True)


def euler_sigmas(scheduler: Any) -> tuple[float, float] | None:
    """The noise levels before and after the step the scheduler just took, when it is
    diffusers' Euler scheduler (SVD's); None for any other, which then shows raw latents."""
    if scheduler is None or type(scheduler).__name__ != "EulerDiscreteScheduler":
        return None
    k, sigmas = getattr(scheduler, "step_index", None), getattr(scheduler, "sigmas", None)
    if k is None or sigmas is None or not 1 <= k < len(sigmas):
        return None
    return float(sigmas[k - 1]), float(sigmas[k])
