"""How long a local SVD run takes, worked out from the request before anything is loaded.

The work is counted in FLOPs on the real SVD-XT architecture (torch's FlopCounterMode on
meta tensors, as ``bench.cpu_speed`` counts it) at five sizes from 256x144 to 2048x1152, 4
to 25 frames. Per frame it is linear in the frame count, and in the frame's megapixels P it
is a*P + b*P^2: the square is spatial attention, a fifth of the UNet's work at 1024x576
and half of it at 2048x1152. The fits, in TFLOP per frame (within 0.5 % of every count
from 512x288 up; 5 % under at 256x144, where the margins below cover it):

    one pass of the whole UNet, unguided          4.383 P + 1.777 P^2  (1024x576: 3.20)
    one shallow pass (cache_interval, in between)  1.337 P + 1.562 P^2  (1024x576: 1.33)
    the VAE decode                                11.477 P + 0.500 P^2  (1024x576: 6.94)

    work = frames x (sum over steps of passes x pass cost) x unet scale + frames x decode x vae scale

A step's passes are 2 with guidance (the UNet runs on a batch of 2) and 1 without; guidance
is on when the larger guidance scale is over 1, as in diffusers, and only for the first
``round(guidance_stop x steps)`` steps. With ``cache_interval`` k, steps 0, k, 2k... run the
whole UNet and the others the shallow edge (``backends.speedups``, which this follows). The
shallow share grows with the size (0.30 of a whole pass at 256x144, 0.42 at 1024x576, 0.59
at 2048x1152), so it is counted per size here rather than as one saving.

The scales are the model's UNet and VAE parameter counts against SVD-XT's: 1 for the hub
models (svd, svd-xt and svd-xt-1-1 share one architecture) and for a model whose weights
cannot be read, read from the weight files' headers for a LOCAL_SVD_MODEL folder. That
holds for models near SVD-XT's size, whose convolutions and projections are most of the
work. It does not for a much smaller one (``SMALLEST_ESTIMATED``), such as the tests' tiny
model (a thousandth of the UNet): its time goes to attention over the pixels with heads of
width 4, which no FLOP count here describes (BENCHMARKS.md: 10-37 s a call at 256x256,
1-3 s at 128x128), so such models are not estimated at all.

A folder whose UNet is not SVD-XT's (another width, depth or head count) is counted from
its own config instead (``work``): its UNet and VAE are built on the meta device (no
memory, no weights) and one whole pass, one shallow pass and the decode are counted with
FlopCounterMode at the run's size, cached per size. A parameter count says nothing of how
the work grows with the pixels: a narrow model's attention over a 1024x576 frame costs far
more than its share of SVD-XT's weights suggests, so scaling under-asked for it on ZeroGPU.

Seconds are work over the hardware's effective rate: ``CPU_TFLOPS_PER_THREAD`` here, the GPU's
in ``backends.zerogpu``. Loading the model (once per process) is not counted.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from backends.speedups import guided_steps
from studio.errors import BadSetting

# TFLOP per frame of P megapixels: (a, b) in a*P + b*P^2 (see above).
UNET_PASS = (4.383, 1.777)
SHALLOW_PASS = (1.337, 1.562)
DECODE = (11.477, 0.500)
SVD_XT_UNET_PARAMS = 1_524_623_082  # UNetSpatioTemporalConditionModel() with its default (SVD-XT) config
SVD_XT_VAE_PARAMS = 97_700_000  # the temporal-decoder VAE of the hub repos (BENCHMARKS.md)
SMALLEST_ESTIMATED = 0.1  # a UNet under a tenth of SVD-XT's is not estimated (see above)

# Effective fp32 rate of the full-size UNet per torch thread. Measured: one guided UNet step
# of the real architecture (random weights) at 512x256 and 2 frames, 2.33 TFLOP counted,
# took 46 s (57 s on a second try) with 2 threads on a 2-core Intel Xeon (AVX-512, 2.0 GHz)
# shared with other work at a load average of about 4, so with about one core's worth of
# time: 0.05 TFLOP/s. A 2-core machine then makes a full-size SVD-XT video (4,171 TFLOP)
# in about 11.5 hours. Tune it here: higher for a faster CPU (the estimate is then
# pessimistic there), lower for an older one.
CPU_TFLOPS_PER_THREAD = 0.05
CPU_MAX_SECONDS_ENV = "LOCAL_CPU_MAX_SECONDS"
CPU_MAX_SECONDS = 600.0  # longer than this on the CPU is refused before it starts

# Cheaper settings to suggest, most faithful first: (size factor, at most frames, at most steps).
LADDER = ((0.75, 14, 15), (0.5, 14, 10), (0.5, 8, 8), (0.375, 8, 6), (0.25, 8, 6), (0.25, 4, 4))


@dataclass(frozen=True)
class Run:
    """What a run's cost depends on."""

    width: int
    height: int
    frames: int
    steps: int
    guided: bool
    cache_interval: int = 1
    guidance_stop: float = 1.0

    @classmethod
    def of(cls, request: Any) -> Run:
        """From a resolved request; its width x height bounds what 'fit' makes."""
        top = max(request.min_guidance_scale or 0.0, request.max_guidance_scale or 0.0)
        stop = 1.0 if request.guidance_stop is None else request.guidance_stop
        return cls(request.width, request.height, request.num_frames, request.num_inference_steps, top > 1,
                   request.cache_interval or 1, stop)

    def passes(self) -> tuple[int, int]:
        """(whole-UNet passes, shallow passes) of the run, a guided step counting two."""
        guided = guided_steps(self.guidance_stop, self.steps) if self.guided else 0
        whole = shallow = 0
        for step in range(self.steps):
            width = 2 if step < guided else 1
            if step % self.cache_interval == 0:
                whole += width
            else:
                shallow += width
        return whole, shallow

    def tflop(self, unet_scale: float = 1.0, vae_scale: float = 1.0) -> float:
        mp = self.width * self.height / 1e6
        unet_pass, shallow_pass, decode = (a * mp + b * mp * mp for a, b in (UNET_PASS, SHALLOW_PASS, DECODE))
        whole, shallow = self.passes()
        return self.frames * ((whole * unet_pass + shallow * shallow_pass) * unet_scale + decode * vae_scale)

    def describe(self, last: str = ", ") -> str:
        """'1024x576, 25 frames, 25 steps' (``last`` joins the steps: ' and ')."""
        return f"{self.width}x{self.height}, {self.frames} frames{last}{self.steps} steps"


def cheaper(run: Run) -> Iterator[Run]:
    """Cheaper versions of ``run`` in the order worth suggesting (sizes in multiples of 64)."""
    for factor, frames, steps in LADDER:
        smaller = replace(run, width=_down64(run.width * factor), height=_down64(run.height * factor),
                          frames=min(run.frames, frames), steps=min(run.steps, steps))
        if smaller.tflop() < run.tflop():
            yield smaller


def _down64(pixels: float) -> int:
    return max(64, int(pixels) // 64 * 64)


def say(seconds: float) -> str:
    """'95 s', '9 min', '2 h 10 min'."""
    if seconds < 120:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def cpu_rate(threads: int) -> float:
    return CPU_TFLOPS_PER_THREAD * max(1, threads)


def cpu_max_seconds() -> float:
    """LOCAL_CPU_MAX_SECONDS, or 600: a run estimated longer on the CPU is refused."""
    raw = os.environ.get(CPU_MAX_SECONDS_ENV, "").strip()
    if not raw:
        return CPU_MAX_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise BadSetting(f"{CPU_MAX_SECONDS_ENV} must be a number of seconds above 0, got {raw!r}.")
    return value


def model_scale(source: str) -> tuple[float, float]:
    """(UNet, VAE) size against SVD-XT's for the model at ``source``; 1 for a hub id or
    a folder whose weights cannot be read (unknown is taken as full size)."""
    folder = Path(source)
    if not folder.is_dir():
        return 1.0, 1.0
    unet, vae = _param_count(folder / "unet"), _param_count(folder / "vae")
    return (unet / SVD_XT_UNET_PARAMS if unet else 1.0), (vae / SVD_XT_VAE_PARAMS if vae else 1.0)


def _param_count(folder: Path) -> int:
    """Parameters in a component folder's safetensors files, from their headers alone
    (8 bytes of length, then JSON with each tensor's shape). A folder may hold the same
    weights twice (fp32 and an fp16 variant), each perhaps in shards: the largest set counts."""
    sets: dict[str, int] = {}
    for file in sorted(folder.glob("*.safetensors")):
        name = re.sub(r"-\d+-of-\d+", "", file.name)  # shards of one set share a name
        try:
            with file.open("rb") as f:
                size = int.from_bytes(f.read(8), "little")
                if size > 100 * 1024 * 1024:
                    continue  # not a safetensors header
                header = json.loads(f.read(size))
        except (OSError, ValueError):
            continue
        tensors = [t for key, t in header.items() if key != "__metadata__" and isinstance(t, dict)]
        sets[name] = sets.get(name, 0) + sum(math.prod(t.get("shape", [])) for t in tensors)
    return max(sets.values(), default=0)


# SVD-XT's UNet, as its config spells it: a folder with this architecture is what the fit describes.
SVD_XT_UNET = {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
               "num_attention_heads": [5, 10, 20, 20], "cross_attention_dim": 1024, "in_channels": 8}


def work(source: str, run: Run) -> float:
    """TFLOP of ``run`` with the model at ``source``: the fit (times the weights' scale) for
    the hub models and SVD-XT-shaped folders; for any other folder, counted from its own config."""
    config = _unet_config(Path(source))
    if config is None or all(config.get(k) == v for k, v in SVD_XT_UNET.items()):
        return run.tflop(*model_scale(source))
    whole, shallow, decode = counted(str(Path(source).resolve()), run.width, run.height, run.frames)
    passes, shallows = run.passes()
    return passes * whole + shallows * shallow + decode


def _unet_config(folder: Path) -> dict | None:
    try:
        config = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


@functools.lru_cache(maxsize=128)
def counted(folder: str, width: int, height: int, frames: int) -> tuple[float, float, float]:
    """(one whole UNet pass, one shallow pass, the decode) in TFLOP for ``frames`` frames of
    ``width`` x ``height``, counted on the meta device from the folder's configs (seconds,
    once per size and model: cached)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from backends import speedups

    def count(fn: Any) -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops() / 1e12

    root = Path(folder)
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel.from_config(UNetSpatioTemporalConditionModel.load_config(root / "unet"))
        vae = AutoencoderKLTemporalDecoder.from_config(AutoencoderKLTemporalDecoder.load_config(root / "vae"))
        # The temporal mixers' factors are made on the CPU whatever the device context says.
        unet, vae = unet.to("meta"), vae.to("meta")
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        h, w = height // scale, width // scale
        args = (torch.randn(1, frames, unet.config.in_channels, h, w), torch.tensor(1.0),
                torch.randn(1, 1, unet.config.cross_attention_dim), torch.randn(1, 3))  # fps, motion, noise
        cache = speedups._DeepFeatures(unet)  # the shallow pass the speed mode runs (backends.speedups)
        try:
            cache.keep = True
            whole = count(lambda: unet(*args, return_dict=False))
            shallow = count(lambda: cache.shallow(*args))
        finally:
            cache.close()
        latents = vae.config.latent_channels
        decode = count(lambda: vae.decode(torch.randn(frames, latents, h, w), num_frames=frames))
    return whole, shallow, decode


def step_work(source: str, run: Run) -> float:
    """TFLOP of one denoising step of ``run``, on average (the decode left out): what a
    measured step time is compared with (``backends.zerogpu.calibrate``)."""
    return (work(source, run) - work(source, replace(run, steps=0))) / max(1, run.steps)
