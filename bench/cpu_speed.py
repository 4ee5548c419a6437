"""CPU: what the speed modes (``backends.speedups``) save, in seconds and in counted FLOPs.

Why: ``cache_interval`` and ``guidance_stop`` promise less work per video. Speed does not
depend on the weights, so this builds the FULL-SIZE SVD-XT architecture with random weights
(``bench.gpu.build_components``, fp32 on the CPU) and makes one small guided video (1.0-3.0)
per configuration: plain; cache_interval 2 and 3; guidance_stop 0.5; cache_interval 3 with
guidance_stop 0.5. Each is timed once (seed fixed), and its work is counted: every UNet call
the run made is recorded (``speedups.recording``: step, full or shallow, rows) and each kind
of call is counted once with ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors,
plus the VAE decode; the CLIP image encoder (one 224x224 image) is left out. The time ratio
can then be checked against the work ratio.

The default size is small so that five videos fit in a few minutes on 2 cores: 256x144,
4 frames, 6 steps (6 steps so that interval 3 runs the full UNet on steps 0 and 3).

    python -m bench.cpu_speed            # full-size architecture, a few minutes on 2 cores
    python -m bench.cpu_speed --quick    # the test-size model, seconds: checks the code path
    python -m bench.cpu_speed --count-sizes  # counting only, 512x288 to 2048x1152, against
                                             # backends.estimate's fitted formula (seconds)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from typing import Any

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("plain", {}),
    ("cache_interval 2", {"cache_interval": 2}),
    ("cache_interval 3", {"cache_interval": 3}),
    ("guidance_stop 0.5", {"guidance_stop": 0.5}),
    ("cache 3 + stop 0.5", {"cache_interval": 3, "guidance_stop": 0.5}),
]


def run_video(pipe: Any, image: Any, size: dict[str, int], modes: dict[str, Any]) -> tuple[float, list, Any]:
    """One guided video with ``modes``: seconds, the UNet calls it made, its frames."""
    import torch

    from backends import speedups

    with speedups.recording() as calls, speedups.applied(
        pipe, modes.get("cache_interval"), modes.get("guidance_stop"), size["steps"]
    ):
        t = time.perf_counter()
        out = pipe(image, height=size["height"], width=size["width"], num_frames=size["frames"],
                   num_inference_steps=size["steps"], min_guidance_scale=1.0, max_guidance_scale=3.0,
                   decode_chunk_size=size["frames"], generator=torch.Generator("cpu").manual_seed(0),
                   output_type="np")
        seconds = time.perf_counter() - t
    return seconds, list(calls), out.frames[0]


class WorkCounter:
    """TFLOP of each kind of UNet call, and of the decode, counted once on meta tensors."""

    def __init__(self, quick: bool, size: dict[str, int]) -> None:
        import torch

        from bench.gpu import build_components

        self.parts = build_components(quick, "meta", torch.float32)
        self.size = size
        self.memo: dict[tuple[str, int], float] = {}

    def _count(self, fn: Any) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops() / 1e12

    def call(self, kind: str, rows: int) -> float:
        import torch

        from backends import speedups

        key = (kind, rows)
        if key not in self.memo:
            unet, f = self.parts["unet"], self.size["frames"]
            h, w, videos = self.size["height"] // 8, self.size["width"] // 8, rows // f
            with torch.device("meta"):
                args = (torch.randn(videos, f, 8, h, w), torch.tensor(1.0),
                        torch.randn(videos, 1, unet.config.cross_attention_dim), torch.randn(videos, 3))
                cache = speedups._DeepFeatures(unet)
                try:
                    cache.keep = True
                    full = self._count(lambda: unet(*args, return_dict=False))
                    self.memo[("full", rows)] = full
                    self.memo[("shallow", rows)] = self._count(lambda: cache.shallow(*args))
                finally:
                    cache.close()
        return self.memo[key]

    def decode(self) -> float:
        import torch

        f, h, w = self.size["frames"], self.size["height"] // 8, self.size["width"] // 8
        with torch.device("meta"):
            return self._count(lambda: self.parts["vae"].decode(torch.randn(f, 4, h, w), num_frames=f))


SIZES = ((512, 288, 14), (1024, 576, 25), (1536, 864, 25), (2048, 1152, 25))


def count_sizes() -> None:
    """Counted TFLOP of one guided step (whole UNet, shallow edge) and of the decode per
    size, next to what ``backends.estimate.Run`` says for the same: its fit's error."""
    from backends.estimate import Run
    from bench._common import table

    rows = []
    for width, height, frames in SIZES:
        work = WorkCounter(False, {"width": width, "height": height, "frames": frames})
        whole, shallow, decode = work.call("full", 2 * frames), work.call("shallow", 2 * frames), work.decode()
        one = Run(width, height, frames, steps=1, guided=True)
        fit_whole = one.tflop() - Run(width, height, frames, steps=0, guided=True).tflop()
        fit_shallow = Run(width, height, frames, steps=2, guided=True, cache_interval=2).tflop() - one.tflop()
        fit_decode = Run(width, height, frames, steps=0, guided=True).tflop()
        rows.append([f"{width}x{height}, {frames} frames", whole, f"{fit_whole / whole - 1:+.1%}", shallow,
                     f"{shallow / whole:.2f}", f"{fit_shallow / shallow - 1:+.1%}", decode,
                     f"{fit_decode / decode - 1:+.1%}"])
    print(table(["size", "guided step TFLOP", "estimate", "shallow step TFLOP", "share", "estimate",
                 "decode TFLOP", "estimate"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the test-size model: checks the code path in seconds")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--count-sizes", action="store_true",
                        help="only count one UNet step (whole and shallow) and the decode at several sizes")
    args = parser.parse_args()
    if args.count_sizes:
        count_sizes()
        return
    began = time.perf_counter()

    import diffusers
    import numpy as np
    import torch
    from diffusers import StableVideoDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    from bench._common import load_note, table
    from bench.gpu import build_components

    diffusers_logging.set_verbosity_error()
    size = {"width": args.width, "height": args.height, "frames": args.frames, "steps": args.steps}
    t = time.perf_counter()
    pipe = StableVideoDiffusionPipeline(**build_components(args.quick, "cpu", torch.float32))
    pipe.set_progress_bar_config(disable=True)
    build_s = time.perf_counter() - t
    image = Image.linear_gradient("L").resize((size["width"], size["height"])).convert("RGB")
    work = WorkCounter(args.quick, size)
    decode = work.decode()

    rows, plain = [], None
    for name, modes in CONFIGS:
        seconds, calls, frames = run_video(pipe, image, size, modes)
        tflop = sum(work.call(c.kind, c.rows) for c in calls) + decode
        kinds = Counter(f"{c.kind} x{c.rows}" for c in calls)
        if plain is None:
            plain = (seconds, tflop, frames)
        diff = float(np.abs(frames - plain[2]).mean())
        rows.append([name, ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), seconds,
                     f"{plain[0] / seconds:.2f}x", tflop, f"{plain[1] / tflop:.2f}x", diff])
        print(f"[{time.perf_counter() - began:.0f} s] {name}: {seconds:.1f} s", file=sys.stderr, flush=True)

    model = "test-size model (--quick)" if args.quick else "full-size SVD-XT architecture, random weights, fp32"
    print(f"## CPU speed modes: {model}, {size['width']}x{size['height']}, {size['frames']} frames, "
          f"{size['steps']} steps, guidance 1.0-3.0\n")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {load_note()}; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); diffusers {diffusers.__version__}; "
          f"built in {build_s:.1f} s; decode {decode:.3g} TFLOP (counted in each row)\n")
    print(table(["config", "UNet calls (kind x rows)", "s/video", "speed-up", "TFLOP", "work saved",
                 "mean abs diff vs plain (0-1)"], rows))
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
