"""The one request model, under diffusers' parameter names.

It holds what SVD itself means (frames, size, motion, noise, steps, guidance, seed) and
the local memory and speed options. What only one provider understands (ModelsLab's
``negative_prompt``, Novita's ``enable_frame_interpolation``...) is declared by that
backend as an ``Option`` and travels in ``options``: a new backend with its own settings
touches nothing here.

Every field defaults to ``None``, which means "this backend's documented default": the
same request can be sent to any backend, and each backend fills in and checks its own
values (see ``backends.base.Backend.resolve``). The bounds here are only the widest any
backend accepts; each backend declares its own, narrower ranges. Field descriptions are
the help text the page shows under each control.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Where each control sits on the page; the UI groups fields by this and nothing else.
GROUPS = ("Frames and size", "Motion", "Sampling", "Memory and speed", "Service options")


def _field(description: str, group: str, **bounds: Any) -> Any:
    return Field(None, description=description, json_schema_extra={"group": group}, **bounds)


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = _field(
        "Which SVD checkpoint to use. SVD was trained on 14 frames, SVD-XT on 25.", "Frames and size"
    )
    num_frames: int | None = _field(
        "How many frames to generate. More frames make a longer clip and need more memory.",
        "Frames and size", ge=1, le=64,
    )
    width: int | None = _field(
        "Width of the video in pixels. SVD was trained at 1024x576.", "Frames and size", ge=64, le=2048
    )
    height: int | None = _field(
        "Height of the video in pixels. SVD was trained at 1024x576.", "Frames and size", ge=64, le=2048
    )
    resize_mode: Literal["crop", "fit"] | None = _field(
        "How the photo is framed: 'crop' fills the frame and trims the edges; 'fit' keeps the "
        "whole photo and its aspect ratio (the video size follows the photo).",
        "Frames and size",
    )
    fps: int | None = _field(
        "Frames per second. SVD is told this rate while generating and the video plays at it.",
        "Motion", ge=1, le=60,
    )
    motion_bucket_id: int | None = _field(
        "How much the picture moves: low values give subtle motion, high values lots of motion.",
        "Motion", ge=1, le=255,
    )
    noise_aug_strength: float | None = _field(
        "Noise added to the photo (cond_aug). More noise lets the video drift further from the "
        "photo and move more; less keeps it faithful.",
        "Motion", ge=0.0, le=1.0,
    )
    num_inference_steps: int | None = _field(
        "Denoising steps. More steps are slower and usually a little cleaner.", "Sampling", ge=1, le=100
    )
    min_guidance_scale: float | None = _field(
        "Guidance for the first frame. Guidance rises from this value to the maximum over the clip.",
        "Sampling", ge=0.0, le=20.0,
    )
    max_guidance_scale: float | None = _field(
        "Guidance for the last frame. Higher values follow the photo more strictly.",
        "Sampling", ge=0.0, le=20.0,
    )
    seed: int | None = _field(
        "Random seed. The same seed and settings give the same video; empty or -1 picks one at random.",
        "Sampling", ge=-1, le=2**32 - 1,
    )
    decode_chunk_size: int | None = _field(
        "Frames decoded at once. Lower uses less GPU memory, higher is faster; empty picks one for you.",
        "Memory and speed", ge=1, le=64,
    )
    memory_mode: Literal["auto", "full_gpu", "model_offload", "sequential_offload"] | None = _field(
        "Where the model lives: 'full_gpu' is fastest; 'model_offload' moves parts to the CPU when "
        "idle; 'sequential_offload' needs the least GPU memory and is slowest; 'auto' chooses.",
        "Memory and speed",
    )
    fast_mode: bool | None = _field(
        "Compile the model for this GPU (torch.compile, channels-last memory). The first video "
        "takes a minute or two longer; every later one at the same size is faster. CUDA only.",
        "Memory and speed",
    )
    cache_interval: int | None = _field(
        "Faster: reuse the model's deep features between steps (1 = off, 2-5 = how often the full model "
        "runs). The motion can differ slightly.",
        "Memory and speed", ge=1, le=5,
    )
    guidance_stop: float | None = _field(
        "Faster: after this fraction of the steps, skip the unguided pass (1 = guidance on every step). "
        "The last steps then cost half as much; details can follow the photo a little less closely.",
        "Memory and speed", ge=0.0, le=1.0,
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The chosen backend's own settings (a provider's extras), by the names it declares.",
    )


# SVD's own parameters, the same on every backend; ``options`` holds the rest.
PARAMETERS: tuple[str, ...] = tuple(n for n in GenerationRequest.model_fields if n != "options")


def describe(name: str) -> str:
    return GenerationRequest.model_fields[name].description or ""


def group_of(name: str) -> str:
    extra = GenerationRequest.model_fields[name].json_schema_extra
    return extra["group"] if isinstance(extra, dict) else GROUPS[0]
