"""The local backend: diffusers' StableVideoDiffusionPipeline on this machine's GPU or CPU.

torch and diffusers are imported on the first generation, not before, so the page is
served in seconds. The loaded pipeline is cached; one local job runs at a time on each
device because a GPU runs one SVD job well and two badly. Where jobs run is one seam,
``backends.places``: in this process on the devices LOCAL_DEVICES lists
(``backends.devices``), in ZeroGPU's worker (``backends.zerogpu``), or on a Ray cluster's
workers (``backends.raypool``, with RAY_ADDRESS). The place sizes the backend's slots,
which make the other jobs wait and tell them their place. What the machine cannot do is
refused in ``preflight``, before a job waits for the GPU: on a CPU, a video estimated to
take longer than LOCAL_CPU_MAX_SECONDS (``backends.estimate``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from backends import devices, estimate, offer, places, speedups, zerogpu
from backends.base import Backend, Choice, Flag, Job, Limit, Range, Result
from studio import video
from studio.preview import LivePreview
from studio.errors import BackendError, Cancelled, InvalidParameter, OutOfMemory
from studio.request import GenerationRequest

HUB_MODELS = {
    "svd": "stabilityai/stable-video-diffusion-img2vid",
    "svd-xt": "stabilityai/stable-video-diffusion-img2vid-xt",
    "svd-xt-1-1": "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
}
LABELS = {"svd": "SVD (14 frames)", "svd-xt": "SVD-XT (25 frames)", "svd-xt-1-1": "SVD-XT 1.1 (25 frames)"}
NATIVE_FRAMES = {"svd": 14, "svd-xt": 25, "svd-xt-1-1": 25}
CUSTOM = "custom"  # the model named by LOCAL_SVD_MODEL
MEMORY_MODES = ("auto", "full_gpu", "model_offload", "sequential_offload")
GIB = 1024**3


class _Stop(Exception):
    """Raised inside the step callback to leave the denoising loop at once."""


class LocalBackend(Backend):
    name = "local"
    label = "Local GPU (diffusers)"
    blurb = "Runs Stable Video Diffusion on this machine with diffusers. Free; needs a GPU to be quick."
    models = LABELS  # model_choices adds the LOCAL_SVD_MODEL entry when it is set

    concurrency = 1  # per device: a GPU runs one SVD job well and two badly
    waiting_for = "a free GPU"

    def __init__(self, place: places.Place | None = None) -> None:
        # Where jobs run, read from the environment now (``places.choose``) unless given.
        self.place = place if place is not None else places.choose()
        self.slots = self.place.slots()
        self.concurrency, self.waiting_for = self.slots.size, self.slots.waiting_for
        # Seat index -> (key, pipeline). Each device holds its own copy of the model: two
        # GPUs take twice the memory of one, and "cpu,cpu" twice the RAM.
        self._pipes: dict[int, tuple[tuple, Any]] = {}
        self._on_zerogpu: Callable | None = None  # _on_gpu under spaces.GPU, made once

    # --- declarations -------------------------------------------------------------

    @property
    def custom_source(self) -> str | None:
        return os.environ.get("LOCAL_SVD_MODEL") or None

    def model_choices(self) -> dict[str, str]:
        # The folder's name only: the page must not show the server's paths to its visitors.
        shown = Path(self.custom_source).name or self.custom_source if self.custom_source else ""
        choices = {CUSTOM: f"LOCAL_SVD_MODEL ({shown})"} if self.custom_source else {}
        choices |= LABELS
        if zerogpu.active():  # only the model loaded at start-up: another would load in the visitor's GPU time
            return {self.default_model(): choices[self.default_model()]}
        return choices

    def default_model(self) -> str:
        return CUSTOM if self.custom_source else "svd-xt"

    def models_source(self, model: str) -> str:
        return self.custom_source if model == CUSTOM else HUB_MODELS[model]  # type: ignore[return-value]

    def native_frames(self, model: str) -> int:
        if model != CUSTOM:
            return NATIVE_FRAMES[model]
        config = Path(self.custom_source or "") / "unet" / "config.json"
        try:
            return int(json.loads(config.read_text())["num_frames"])
        except (OSError, ValueError, KeyError, TypeError):
            return 25

    def limits(self, model: str) -> dict[str, Limit]:
        return {
            "num_frames": Range(1, 64, self.native_frames(model)),
            "width": Range(64, 2048, 1024, step=64, multiple=64),
            "height": Range(64, 2048, 576, step=64, multiple=64),
            "resize_mode": Choice(("crop", "fit"), "crop"),
            "fps": Range(1, 30, 7),
            "motion_bucket_id": Range(1, 255, 127),
            "noise_aug_strength": Range(0.0, 1.0, 0.02, step=0.01, integer=False),
            "num_inference_steps": Range(1, 100, 25),
            "min_guidance_scale": Range(0.0, 20.0, 1.0, step=0.1, integer=False),
            "max_guidance_scale": Range(0.0, 20.0, 3.0, step=0.1, integer=False),
            "seed": Range(0, 2**32 - 1, None, optional=True),  # -1 also means random
            "decode_chunk_size": Range(1, 64, None, optional=True),
            # ZeroGPU places the model on its GPU at start-up; offloading would reload it in each call.
            "memory_mode": Choice(MEMORY_MODES[:2] if zerogpu.active() else MEMORY_MODES, "auto"),
            "fast_mode": Flag(False),
            "cache_interval": Range(1, 5, 1),  # backends.speedups
            "guidance_stop": Range(0.0, 1.0, 1.0, step=0.05, integer=False),
        }

    # --- generation -----------------------------------------------------------------

    def preflight(self, request: GenerationRequest) -> None:
        """Refuse what this machine cannot do before the job waits for the GPU."""
        if request.fast_mode and (request.cache_interval or 1) > 1:
            raise InvalidParameter(
                "cache_interval", request.cache_interval,
                "1 with fast_mode (the compiled model cannot hand out the features it would reuse)", self.label,
            )
        if zerogpu.active():
            return self._preflight_zerogpu(request)
        # A job may land on any device of its place: what one of them cannot do is refused (checks LOCAL_DEVICES).
        device = next((d for d in self.place.device_kinds() if d != "cuda"), "cuda")
        if request.memory_mode not in (None, "auto", "full_gpu") and device != "cuda":
            raise InvalidParameter(
                "memory_mode", request.memory_mode,
                f"'auto' or 'full_gpu' on this machine (it has no CUDA GPU, runs on {device})", self.label,
            )
        if request.fast_mode and device != "cuda":
            raise InvalidParameter(
                "fast_mode", True, f"off on this machine (it has no CUDA GPU, runs on {device})", self.label
            )
        if request.fast_mode and request.memory_mode not in (None, "auto", "full_gpu"):
            raise InvalidParameter(
                "fast_mode", True,
                f"off with memory_mode '{request.memory_mode}' (compiling needs the whole model on the GPU)",
                self.label,
            )
        if device == "cpu":
            self._refuse_long_cpu_runs(request)

    def estimate(self, request: GenerationRequest) -> str | None:
        """The work counted in FLOPs (``backends.estimate``) over this machine's rate: on
        ZeroGPU its GPU time, on the CPU its threads; a CUDA GPU's rate is not known."""
        scale = self._scale(request)
        if scale[0] < estimate.SMALLEST_ESTIMATED:
            return None  # a test-size model: its cost is not what the estimate describes
        if zerogpu.active():
            model = self.models_source(request.model or self.default_model())
            return f"about {estimate.say(zerogpu.seconds_needed(self._work(request), model))} of ZeroGPU time"
        if not isinstance(self.place, places.OnDevices) or set(self.place.device_kinds()) != {"cpu"}:
            return None  # a GPU, or a cluster's workers: their rate is not known here
        import torch

        seconds = estimate.Run.of(request).tflop(*scale) / estimate.cpu_rate(torch.get_num_threads())
        return f"about {estimate.say(seconds)} on this machine's CPU"

    def _refuse_long_cpu_runs(self, request: GenerationRequest) -> None:
        """A video the CPU would take hours over is refused, with settings that fit."""
        import torch

        limit = estimate.cpu_max_seconds()
        rate = estimate.cpu_rate(torch.get_num_threads())
        scale = self._scale(request)
        if scale[0] < estimate.SMALLEST_ESTIMATED:
            return  # a test-size model: its cost is not what the estimate describes
        run = estimate.Run.of(request)
        seconds = run.tflop(*scale) / rate
        if seconds <= limit:
            return
        head = f"On this machine's CPU this video would take about {estimate.say(seconds)} ({run.describe()})"
        smaller = next((r for r in estimate.cheaper(run) if r.tflop(*scale) / rate <= limit), None)
        if smaller is not None:
            head += f"; at {smaller.describe(' and ')} it would take about {estimate.say(smaller.tflop(*scale) / rate)}"
        raise BackendError(f"{head}. Lower the size, frames or steps{self._or_hosted()}.")

    def _preflight_zerogpu(self, request: GenerationRequest) -> None:
        if request.fast_mode:
            raise InvalidParameter("fast_mode", True, "off on ZeroGPU (it does not support torch.compile)", self.label)
        run = estimate.Run.of(request)
        seconds = zerogpu.seconds_needed(self._work(request), self.models_source(request.model or self.default_model()))
        if seconds > zerogpu.MAX_SECONDS:
            raise BackendError(
                f"On ZeroGPU this video would need about {estimate.say(seconds)} of GPU time ({run.describe()}), "
                f"more than the {estimate.say(zerogpu.MAX_SECONDS)} one call may have. "
                f"Lower the size, frames or steps{self._or_hosted()}."
            )

    def _scale(self, request: GenerationRequest) -> tuple[float, float]:
        """The model's UNet and VAE against SVD-XT's; read from disk, nothing loaded."""
        return estimate.model_scale(self.models_source(request.model or self.default_model()))

    def _work(self, request: GenerationRequest) -> float:
        """TFLOP of this request with this model (``backends.estimate``)."""
        return estimate.work(self.models_source(request.model or self.default_model()), estimate.Run.of(request))

    def _or_hosted(self) -> str:
        return ", or pick a hosted backend" if offer.others_offered(self.name) else ""

    def generate(self, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        job.check_cancelled()
        return self.place.run(self, image, request, job)

    def warm_up(self) -> None:
        """Before the app launches: get the place ready (on ZeroGPU, the model onto its GPU;
        on Ray, join the cluster); a ``StudioError`` says why it cannot work."""
        self.place.start(self)

    # --- ZeroGPU ----------------------------------------------------------------------

    def _zerogpu_call(self) -> Callable:
        if self._on_zerogpu is None:
            self._on_zerogpu = zerogpu.gpu(self._on_gpu, self._gpu_seconds)
        return self._on_zerogpu

    def _gpu_seconds(self, image: Image.Image, request: GenerationRequest, workdir: Path) -> int:
        """The GPU time one call asks ZeroGPU for; called by ``spaces`` with the call's arguments."""
        return zerogpu.seconds_asked(self._work(request), self.models_source(request.model or self.default_model()))

    def _on_gpu(self, image: Image.Image, request: GenerationRequest, workdir: Path) -> Result | zerogpu.Failed:
        """One generation in ZeroGPU's worker process (see ``backends.zerogpu``)."""
        try:
            return self._generate(image, request, zerogpu.worker_job(workdir))
        except BackendError as exc:
            return zerogpu.Failed(type(exc), str(exc))

    def _generate(self, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        r = request
        shot = self.frame(image, r)  # the same picture the page previewed
        framed, width, height = shot.image, shot.width, shot.height

        job.on_progress(0.0, "Loading the model (the first run takes a while)")
        _, device, memory_mode = self._pipeline(r.model, r.memory_mode, bool(r.fast_mode))  # run() gets it again
        job.check_cancelled()
        chunk = r.decode_chunk_size or auto_chunk(device, r.num_frames, width, height)

        import torch

        steps = r.num_inference_steps
        # A cheap picture of the latents every few steps (never over 3 % of the run; SVD_PREVIEW=0: off).
        live = LivePreview.start(job.workdir, steps, r.fps, job.on_preview)

        def on_step(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
            job.on_progress((i + 1) / steps, f"Denoising step {i + 1}/{steps}")
            if job.cancel.is_set():
                raise _Stop
            if live is not None:
                live.step(i, kwargs["latents"], pipe.scheduler)  # never raises: a failure only stops previews
            return kwargs

        def run(pipe: Any, chunk: int) -> Any:
            generator = torch.Generator(device="cpu").manual_seed(r.seed)  # same frames on any device, and on a retry
            with speedups.applied(pipe, r.cache_interval, r.guidance_stop, steps):  # the UNet, for this run only
                return pipe(
                    framed, height=height, width=width, num_frames=r.num_frames,
                    num_inference_steps=steps, min_guidance_scale=r.min_guidance_scale,
                    max_guidance_scale=r.max_guidance_scale, fps=r.fps,
                    motion_bucket_id=r.motion_bucket_id, noise_aug_strength=r.noise_aug_strength,
                    decode_chunk_size=chunk, generator=generator, output_type="np",
                    callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
                )

        first = devices.Settings(device, chunk, memory_mode, bool(r.fast_mode))
        advice = (
            f"The GPU ran out of memory at {width}x{height}, {r.num_frames} frames, "
            f"decode_chunk_size {chunk}, memory_mode '{memory_mode}'. Lower decode_chunk_size "
            "(try 2 or 1), num_frames or the resolution, or pick memory_mode "
            "'model_offload' or 'sequential_offload'."
        )
        try:
            out, done, retry = self._run_recovering(run, first, r.model, job, advice)
        except _Stop:
            raise Cancelled("Cancelled: generation stopped between denoising steps.") from None
        except BackendError:  # out of memory twice, or a model that could not be loaded for the retry
            raise
        except Exception as exc:  # torch raises many types
            raise BackendError(f"The local pipeline failed: {type(exc).__name__}: {exc}") from exc

        job.on_progress(1.0, "Encoding the video")
        frames = video.to_uint8(out.frames[0])
        mp4 = video.write_mp4(frames, job.workdir / "video.mp4", r.fps)
        used = {"width": width, "height": height, "decode_chunk_size": done.decode_chunk_size,
                "memory_mode": done.memory_mode, "device": device}
        if retry is not None:
            used["recovered"] = retry.change
        return Result(video=mp4, used=used)

    def _run_recovering(self, run: Callable[[Any, int], Any], first: devices.Settings, model: str, job: Job,
                        advice: str) -> tuple[Any, devices.Settings, devices.Retry | None]:
        """``run`` the pipeline with ``first``; out of memory, once more with safer settings
        (``devices.Settings.safer``), saying what changed; out of memory again, ``advice``.

        The pipeline is fetched for each attempt, never kept here: a retry that changes
        memory_mode loads another, and the old one must be free to go first.
        """
        try:
            return run(self._pipeline(model, first.memory_mode, first.fast)[0], first.decode_chunk_size), first, None
        except Exception as exc:
            if not _is_oom(exc):
                raise
            retry = first.safer()
            if retry is None:
                devices.free_cache(first.device)
                raise OutOfMemory(advice) from exc
        devices.free_cache(first.device)  # outside the except block: its traceback no longer holds the tensors
        job.check_cancelled()
        job.on_progress(None, retry.progress())
        safer = retry.settings
        try:
            return run(self._pipeline(model, safer.memory_mode, safer.fast)[0], safer.decode_chunk_size), safer, retry
        except Exception as exc:
            if not _is_oom(exc):
                raise
            devices.free_cache(first.device)
            raise OutOfMemory(advice) from exc

    def _pipeline(self, model: str, memory_mode: str, fast: bool = False) -> tuple[Any, str, str]:
        """Load (or reuse) the pipeline for ``model`` on the device this job holds, placed as
        ``memory_mode`` says."""
        import torch

        seat = self.place.current()
        device, dtype = seat.device, devices.dtype_for(seat.device)
        if memory_mode != "auto":
            mode = memory_mode
        elif device == "cuda" and zerogpu.active():
            mode = "full_gpu"  # a 70 GB slice; its free memory is not known before a call
        else:
            mode = auto_memory_mode(device)
        if fast and mode != "full_gpu":  # 'auto' chose offloading: this GPU is too small to compile for
            raise InvalidParameter(
                "fast_mode", True, f"off with memory_mode '{mode}' (compiling needs the whole model on the GPU)",
                self.label,
            )
        source = self.models_source(model)
        key = (source, mode, device, fast)
        cached = self._pipes.get(seat.index)
        if cached is not None and cached[0] == key:
            return cached[1], device, mode
        if cached is not None:
            del self._pipes[seat.index], cached  # drop the old one before loading the next
            devices.free_cache(device)
        from diffusers import StableVideoDiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # progress goes to the page, not the log

        kwargs: dict[str, Any] = {"dtype": dtype}
        if dtype == torch.float16 and source in HUB_MODELS.values():
            kwargs["variant"] = "fp16"  # half the download; the hub repos ship it
        try:
            with devices.LOADING:  # one load at a time: loading swaps torch functions process-wide
                pipe = StableVideoDiffusionPipeline.from_pretrained(source, **kwargs)
        except Exception as exc:
            raise BackendError(
                f"Could not load the model '{source}': {type(exc).__name__}: {str(exc)[:300]}. "
                "Check the hub id or folder (LOCAL_SVD_MODEL) and that this machine can reach the "
                "Hugging Face Hub or has the model cached."
            ) from exc
        if mode == "model_offload":
            pipe.enable_model_cpu_offload(device=device)
        elif mode == "sequential_offload":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        if fast:
            speed_up(pipe)
        pipe.set_progress_bar_config(disable=True)
        self._pipes[seat.index] = (key, pipe)
        return pipe, device, mode

    @property
    def _pipe(self) -> Any:
        """The first device's pipeline (the only one without LOCAL_DEVICES), or None."""
        return self._pipes.get(0, (None, None))[1]


def speed_up(pipe: Any) -> Any:
    """fast_mode: channels-last 2D convolutions and a compiled UNet.

    Only the 2D convolutions change layout: SVD's temporal layers hold 5-D Conv3d weights,
    which channels_last refuses. Compiling fuses the UNet's many small ops; not
    "reduce-overhead", whose CUDA graphs would pin a copy of memory per size.
    """
    import torch

    for model in (pipe.unet, pipe.vae):
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
    return pipe


def pick_device() -> tuple[str, Any]:
    """CUDA in fp16, Apple MPS in fp16, otherwise the CPU in fp32 (without LOCAL_DEVICES)."""
    device = devices.default_device()
    return device, devices.dtype_for(device)


def _free_gib(device: str) -> float:
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return free / GIB


def auto_memory_mode(device: str) -> str:
    """Full GPU when the whole model (about 10 GiB in fp16 with activations) fits easily."""
    if devices.kind(device) != "cuda":
        return "auto"  # nothing to choose: the whole pipeline sits on the CPU or MPS device
    free = _free_gib(device)
    return "full_gpu" if free >= 16 else "model_offload" if free >= 9 else "sequential_offload"


def auto_chunk(device: str, num_frames: int, width: int, height: int) -> int:
    """Frames to decode at once: as many as free GPU memory allows (about 1.3 GiB a frame
    at 1024x576 in fp16), a moderate 8 on CPU and MPS."""
    if devices.kind(device) != "cuda":
        return min(num_frames, 8)
    per_frame = 1.3 * (width * height) / (1024 * 576)
    return max(1, min(num_frames, int(_free_gib(device) * 0.8 / per_frame)))


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
