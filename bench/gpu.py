"""GPU: seconds per video and peak GPU memory for full-size SVD-XT, recipe by recipe.

Why: the local backend's value is speed on a GPU and fitting into small GPUs. Speed does
not depend on the weights, so this builds the full SVD-XT architecture with random weights
(no download), in fp16 on the GPU: the default UNetSpatioTemporalConditionModel (1.52 B parameters, 25 frames),
the temporal-decoder VAE with 4 blocks [128, 256, 512, 512], SVD's CLIP ViT-H image encoder
(1280 hidden, 32 layers) and its Euler scheduler. Every config makes a 1024x576, 25-frame,
25-step video with guidance 1.0-3.0 (so classifier-free guidance doubles the UNet batch):

* a_plain: the diffusers recipe: fp16, ``.to("cuda")``, default decode_chunk_size (all frames)
* b_ours: our defaults: fp16, full GPU, decode_chunk_size from ``backends.local.auto_chunk``,
  a per-step callback as the backend passes
* c_*: speed: channels_last convolutions and cudnn.benchmark, fp16 vs bf16, decode_chunk_size from a decode-only
  sweep, ``torch.compile`` of the UNet (warm-up run, which compiles, is not timed)
* d_*: low memory: model / sequential CPU offload with decode_chunk_size 2 / 1 (target < 8 GiB)
* e_*: doing less work (``backends.speedups``), otherwise as b_ours: cache_interval 2 and 3,
  guidance_stop 0.5, and cache_interval 3 with guidance_stop 0.5. They come last, so the
  default --budget may skip them; measure them with
  ``--only a_plain b_ours e_cache_2 e_cache_3 e_stop_05 e_cache_3_stop_05``

The compute floor is the counted FLOPs (``torch.utils.flop_counter`` on meta tensors: about
160 TFLOP per guided UNet step and 174 TFLOP for the 25-frame decode) over the measured
dense matmul rate (8192^3 matmuls, CUDA events); each config is shown as a multiple of it.
Each config gets 1 warm-up and 2 timed runs (sequential offload: 1 timed); a failing config
(OOM, compile error) records its error and the next one runs. Results go to ``--json``
after every config, so a run cut short keeps what it measured.

    python -m bench.gpu --json gpu.json          # on a CUDA machine; stops starting configs after --budget (540 s)
    python -m bench.gpu --dry-run                # tiny model on the CPU (fp32 for fp16): checks the code path
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class Size:
    height: int
    width: int
    frames: int
    steps: int


FULL = Size(576, 1024, 25, 25)
TINY = Size(64, 128, 4, 2)


@dataclass
class Config:
    name: str
    dtype: str = "fp16"  # fp16 | bf16 | best (the faster of the c_ rows so far)
    placement: str = "gpu"  # gpu | model_offload | sequential_offload
    chunk: int | str | None = None  # frames per VAE decode; None: all; "auto": ours; "best": sweep
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    callback: bool = False
    cache_interval: int = 1  # backends.speedups; 1 = off
    guidance_stop: float = 1.0  # backends.speedups; 1 = off
    warmup: int = 1
    runs: int = 2


CONFIGS = [
    Config("a_plain"),
    Config("b_ours", chunk="auto", callback=True),
    Config("c_fp16_channels_last", chunk="best", channels_last=True, cudnn_benchmark=True),
    Config("c_bf16_channels_last", dtype="bf16", chunk="best", channels_last=True, cudnn_benchmark=True),
    Config("d_model_offload", placement="model_offload", chunk=2),
    Config("c_compiled", dtype="best", chunk="best", channels_last=True, cudnn_benchmark=True, compile=True),
    Config("d_sequential_offload", placement="sequential_offload", chunk=1, warmup=0, runs=1),
    Config("e_cache_2", chunk="auto", callback=True, cache_interval=2),
    Config("e_cache_3", chunk="auto", callback=True, cache_interval=3),
    Config("e_stop_05", chunk="auto", callback=True, guidance_stop=0.5),
    Config("e_cache_3_stop_05", chunk="auto", callback=True, cache_interval=3, guidance_stop=0.5),
]


@dataclass
class Row:
    name: str
    dtype: str = ""
    placement: str = ""
    chunk: int | None = None
    extras: str = ""
    seconds: list[float] = field(default_factory=list)
    warmup_s: float | None = None
    peak_alloc_gib: float | None = None
    peak_reserved_gib: float | None = None
    error: str = ""

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


# --- building the model ---------------------------------------------------------------------


def build_components(tiny: bool, device: str, dtype: Any) -> dict[str, Any]:
    """SVD-XT's components with random weights, built on ``device`` (no download)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    if tiny:  # the sizes of tests/tiny_svd.py, with the VAE's real 8x scale
        unet_kw: dict[str, Any] = dict(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
            num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32, num_frames=4,
        )
        vae_channels = [32, 32, 32, 32]
        clip = CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=5, num_attention_heads=4,
                                image_size=224, intermediate_size=37, patch_size=32)
    else:  # SVD-XT: the UNet's defaults are its config; the VAE and CLIP as in the hub repo
        unet_kw = {}
        vae_channels = [128, 256, 512, 512]
        clip = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                num_attention_heads=16, patch_size=14, image_size=224, projection_dim=1024,
                                hidden_act="gelu")
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**unet_kw)
        vae = AutoencoderKLTemporalDecoder(block_out_channels=vae_channels, down_block_types=["DownEncoderBlock2D"] * 4,
                                           layers_per_block=2, latent_channels=4)
        encoder = CLIPVisionModelWithProjection(clip)
    # The temporal mixers' factors are made with torch.Tensor([...]), on the CPU whatever the
    # device context says: move everything explicitly.
    parts = {"unet": unet, "vae": vae, "image_encoder": encoder}
    for module in parts.values():
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
    )
    return {**parts, "scheduler": scheduler, "feature_extractor": CLIPImageProcessor(crop_size=224, size=224)}


def count_tflop(tiny: bool, size: Size) -> dict[str, float]:
    """TFLOP of one guided UNet step (batch 2) and of decoding all frames, counted on meta."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    parts = build_components(tiny, "meta", torch.float16)
    h, w, f = size.height // 8, size.width // 8, size.frames
    out = {}
    with torch.device("meta"):
        cross = parts["unet"].config.cross_attention_dim
        sample = torch.randn(2, f, 8, h, w, dtype=torch.float16)
        args = (sample, torch.tensor([1.0]), torch.randn(2, 1, cross, dtype=torch.float16),
                torch.randn(2, 3, dtype=torch.float16))
        for key, fn in (("unet_step", lambda: parts["unet"](*args, return_dict=False)),
                        ("decode", lambda: parts["vae"].decode(torch.randn(f, 4, h, w, dtype=torch.float16),
                                                               num_frames=f))):
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out[key] = counter.get_total_flops() / 1e12
    return out


# --- measuring --------------------------------------------------------------------------------


def matmul_tflops(device: str, dtype: Any, n: int, iters: int) -> float:
    """Dense matmul rate in TFLOP/s (CUDA events on a GPU, wall clock on the CPU)."""
    import torch

    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            a @ b
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        seconds = time.perf_counter() - t
    return 2 * n**3 * iters / seconds / 1e12


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peaks(device: str) -> tuple[float | None, float | None]:
    import torch

    if device != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated() / GIB, torch.cuda.max_memory_reserved() / GIB


def decode_sweep(pipe: Any, size: Size, device: str, dtype: Any) -> list[dict[str, Any]]:
    """VAE decode alone of all frames at several decode_chunk_size values."""
    import torch

    latents = torch.randn(1, size.frames, 4, size.height // 8, size.width // 8, device=device, dtype=dtype)
    results = []
    with torch.no_grad():
        pipe.decode_latents(latents, size.frames, 1)  # warm-up, at the smallest footprint
    for chunk in sorted({c for c in (1, 2, 4, 8, 14, size.frames) if c <= size.frames}):
        reset_memory(device)
        try:
            with torch.no_grad():
                sync(device)
                t = time.perf_counter()
                pipe.decode_latents(latents, size.frames, chunk)
                sync(device)
            results.append({"chunk": chunk, "seconds": time.perf_counter() - t, "peak_alloc_gib": peaks(device)[0]})
        except Exception as exc:  # an OOM at a big chunk is a result
            results.append({"chunk": chunk, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
    del latents
    reset_memory(device)
    return results


def set_channels_last(module: Any, on: bool) -> None:
    """channels_last for the 2-D convolutions only: ``module.to(memory_format=...)`` raises
    on SVD's 5-D temporal convolution weights."""
    import torch

    fmt = torch.channels_last if on else torch.contiguous_format
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=fmt)


def run_config(cfg: Config, parts: dict[str, Any], state: dict[str, Any], size: Size, device: str,
               dry: bool, compile_mode: str) -> Row:
    import torch
    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image

    from backends import speedups
    from backends.local import auto_chunk

    dtypes = {"fp16": torch.float32 if dry else torch.float16, "bf16": torch.bfloat16}
    timed = state.get("c_seconds", {"fp16": 0.0})
    dtype_name = min(timed, key=timed.get) if cfg.dtype == "best" else cfg.dtype
    row = Row(cfg.name, "fp32 (dry run)" if dry and dtype_name == "fp16" else dtype_name, cfg.placement)
    if dry and cfg.placement != "gpu":
        row.error = "skipped in --dry-run (CPU offload needs CUDA)"
        return row
    pipe = StableVideoDiffusionPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    try:
        if cfg.placement == "gpu":
            pipe.to(device, dtypes[dtype_name])
        else:
            pipe.to("cpu", dtypes[dtype_name])
            reset_memory(device)
            getattr(pipe, f"enable_{'model' if cfg.placement == 'model_offload' else 'sequential'}_cpu_offload")()
        set_channels_last(pipe.unet, cfg.channels_last)
        set_channels_last(pipe.vae, cfg.channels_last)
        extras = ["channels_last"] if cfg.channels_last else []
        if cfg.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
            extras.append("cudnn.benchmark")
        if cfg.compile:
            # --dry-run traces with dynamo only (backend "eager"): inductor on 2 CPU cores takes minutes.
            pipe.unet = torch.compile(parts["unet"], **({"backend": "eager"} if dry else {"mode": compile_mode}))
            extras.append("compile: eager backend (dry run)" if dry else f"compile {compile_mode}")
        if cfg.callback:
            extras.append("step callback")
        if cfg.cache_interval != 1:
            extras.append(f"cache_interval {cfg.cache_interval}")
        if cfg.guidance_stop != 1.0:
            extras.append(f"guidance_stop {cfg.guidance_stop:g}")
        if cfg.chunk == "auto":
            chunk = auto_chunk(device, size.frames, size.width, size.height)
        elif cfg.chunk == "best":
            chunk = state["best_chunk"]
        else:
            chunk = cfg.chunk or size.frames  # None: the pipeline's default, all frames at once
        row.chunk, row.extras = chunk, ", ".join(extras)
        image = Image.linear_gradient("L").resize((size.width, size.height)).convert("RGB")

        def on_step(p: Any, i: int, t: Any, kwargs: dict) -> dict:
            state["progress"] = (i + 1) / size.steps  # what our backend's callback does, minus the UI
            return kwargs

        def once() -> float:
            sync(device)
            t = time.perf_counter()
            with speedups.applied(pipe, cfg.cache_interval, cfg.guidance_stop, size.steps):  # off: untouched
                pipe(image, height=size.height, width=size.width, num_frames=size.frames,
                     num_inference_steps=size.steps, min_guidance_scale=1.0, max_guidance_scale=3.0,
                     decode_chunk_size=chunk, generator=torch.Generator("cpu").manual_seed(0), output_type="np",
                     callback_on_step_end=on_step if cfg.callback else None)
            sync(device)
            return time.perf_counter() - t

        reset_memory(device)
        warm = [once() for _ in range(cfg.warmup)]
        row.warmup_s = warm[0] if warm else None
        row.seconds = [once() for _ in range(1 if dry else cfg.runs)]
        row.peak_alloc_gib, row.peak_reserved_gib = peaks(device)
        if cfg.name.startswith("c_") and not cfg.compile:  # the dtype c_compiled will use
            state.setdefault("c_seconds", {})[dtype_name] = row.median_s
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    finally:
        torch.backends.cudnn.benchmark = False
        if cfg.placement != "gpu":
            pipe.remove_all_hooks()
        if cfg.compile:
            torch._dynamo.reset()
        pipe = None  # drop the last reference before measuring the next row
        reset_memory(device)
    return row


# --- reporting --------------------------------------------------------------------------------


def report(rows: list[Row], floor_s: float) -> str:
    from bench._common import table

    lines = []
    for r in rows:
        med = r.median_s
        lines.append([
            r.name, r.dtype, r.placement, r.chunk if r.chunk is not None else "", r.extras,
            med if med is not None else "", f"{med / floor_s:.2f}x" if med else "",
            r.peak_alloc_gib if r.peak_alloc_gib is not None else "",
            r.peak_reserved_gib if r.peak_reserved_gib is not None else "",
            r.warmup_s if r.warmup_s is not None else "", r.error,
        ])
    return table(["config", "dtype", "placement", "decode chunk", "extras", "s/video", "x floor",
                  "peak alloc GiB", "peak reserved GiB", "warm-up s", "error"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on the CPU, to check the code path")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                        help="torch.compile mode for c_compiled (e.g. reduce-overhead, default)")
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds after which the remaining configs are skipped (default 540)")
    parser.add_argument("--only", nargs="*", help="run only these configs (names as in the table)")
    args = parser.parse_args()
    began = time.perf_counter()

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("bench.gpu needs a CUDA GPU (torch.cuda.is_available() is False here). "
                 "Run it on a CUDA machine, or use --dry-run to check the code path on the CPU.")
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # per-.to() dtype notes would bury the table
    dry = args.dry_run
    device, size = ("cpu", TINY) if dry else ("cuda", FULL)
    info: dict[str, Any] = {
        "device": "CPU (dry run)" if dry else torch.cuda.get_device_name(), "dry_run": dry,
        "python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
        "size": asdict(size), "guidance": [1.0, 3.0],
    }
    flops = count_tflop(dry, size)
    total_tflop = flops["unet_step"] * size.steps + flops["decode"]
    n, iters = (512, 5) if dry else (8192, 50)
    rates = {name: matmul_tflops(device, dt, n, iters)
             for name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16))}
    floor_s = total_tflop / max(rates.values())
    info |= {"tflop": flops | {"total": total_tflop}, "matmul_tflops": rates, "floor_s": floor_s}

    t = time.perf_counter()
    base_dtype = torch.float32 if dry else torch.float16  # fp16 on the CPU is slow and partly missing
    parts = build_components(dry, device, base_dtype)
    info["build_s"] = time.perf_counter() - t
    info["unet_params_b"] = sum(p.numel() for p in parts["unet"].parameters()) / 1e9
    from diffusers import StableVideoDiffusionPipeline

    sweep = decode_sweep(StableVideoDiffusionPipeline(**parts), size, device, base_dtype)
    info["decode_sweep"] = sweep
    good = [s for s in sweep if "seconds" in s]
    state: dict[str, Any] = {"best_chunk": min(good, key=lambda s: s["seconds"])["chunk"] if good else 1}

    rows: list[Row] = []
    for cfg in CONFIGS:
        if args.only and cfg.name not in args.only:
            continue
        if time.perf_counter() - began > args.budget:
            rows.append(Row(cfg.name, error=f"skipped: past the --budget of {args.budget:g} s"))
        else:
            rows.append(run_config(cfg, parts, state, size, device, dry, args.compile_mode))
            print(f"[{time.perf_counter() - began:.0f} s] {rows[-1].name}: {rows[-1].seconds} {rows[-1].error}",
                  file=sys.stderr, flush=True)
        if args.json:  # after every config, so a run cut short keeps what it measured
            configs = [asdict(r) | {"median_s": r.median_s} for r in rows]
            args.json.write_text(json.dumps(info | {"configs": configs}, indent=2))

    dry_note = " (DRY RUN: tiny model on the CPU, numbers mean nothing)" if dry else ""
    print(f"## GPU: full-size SVD-XT, random weights, {size.width}x{size.height}, {size.frames} frames, "
          f"{size.steps} steps, guidance 1.0-3.0{dry_note}\n")
    print(f"device {info['device']}; torch {torch.__version__}; diffusers {diffusers.__version__}; "
          f"UNet {info['unet_params_b']:.2f} B params; built in {info['build_s']:.1f} s")
    print(f"matmul {n}^3: fp16 {rates['fp16']:.4g}, bf16 {rates['bf16']:.4g} TFLOP/s; counted: "
          f"{flops['unet_step']:.4g} TFLOP per guided UNet step x {size.steps} + {flops['decode']:.4g} TFLOP decode "
          f"= {total_tflop:.4g} TFLOP; compute floor {floor_s:.3g} s/video\n")
    print("decode_chunk_size sweep (VAE decode only): " + "; ".join(
        f"{s['chunk']}: {s['seconds']:.2f} s" + (f", {s['peak_alloc_gib']:.1f} GiB" if s.get("peak_alloc_gib") else "")
        if "seconds" in s else f"{s['chunk']}: {s['error']}" for s in sweep) + f" -> best {state['best_chunk']}\n")
    print(report(rows, floor_s))
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
