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

# Where each control sits on the page; the UI groups fields by this and nothing else. The
# first group is the page's first view (the amounts people change most); the others sit in
# its Advanced box, in this order.
GROUPS = ("Motion", "Conditioning", "Guidance and steps", "Size and output", "Memory and speed", "Service options")


def _field(title: str, description: str, group: str, **bounds: Any) -> Any:
    """A request field: ``title`` is the everyday name the page shows beside diffusers'
    name, ``description`` the help line (in plain words, with the trade-off)."""
    return Field(None, title=title, description=description, json_schema_extra={"group": group}, **bounds)


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = _field(
        "Model", "Which SVD checkpoint. SVD was trained on 14 frames, SVD-XT on 25 (longer, a little slower).",
        "Size and output",
    )
    num_frames: int | None = _field(
        "Frames", "A longer clip, but slower to make.", "Motion", ge=1, le=64,
    )
    width: int | None = _field(
        "Width", "Video width in pixels. SVD was trained at 1024x576; larger is slower and can look odd.",
        "Size and output", ge=64, le=2048,
    )
    height: int | None = _field(
        "Height", "Video height in pixels. SVD was trained at 1024x576; larger is slower and can look odd.",
        "Size and output", ge=64, le=2048,
    )
    resize_mode: Literal["crop", "fit"] | None = _field(
        "Framing",
        "'crop' fills the frame and trims the edges; 'fit' keeps the whole photo and its shape (the video "
        "size follows the photo).",
        "Size and output",
    )
    fps: int | None = _field(
        "Playback speed", "Smoother, but a shorter clip.",
        "Motion", ge=1, le=60,
    )
    motion_bucket_id: int | None = _field(
        "Motion amount", "Higher moves more; too high can warp faces and objects.", "Motion", ge=1, le=255,
    )
    noise_aug_strength: float | None = _field(
        "Freedom from the photo",
        "Noise added to the photo (cond_aug). More lets the video drift from the photo and move more; "
        "less keeps it faithful.",
        "Conditioning", ge=0.0, le=1.0,
    )
    num_inference_steps: int | None = _field(
        "Quality steps", "Denoising steps. More steps are slower and usually a little cleaner.",
        "Guidance and steps", ge=1, le=100,
    )
    min_guidance_scale: float | None = _field(
        "Guidance at the start",
        "How closely the first frames follow the photo. Guidance rises from this value to the maximum over the clip.",
        "Guidance and steps", ge=0.0, le=20.0,
    )
    max_guidance_scale: float | None = _field(
        "Guidance at the end",
        "How closely the last frames follow the photo. Higher holds the photo better; too high looks burnt.",
        "Guidance and steps", ge=0.0, le=20.0,
    )
    seed: int | None = _field(
        "Seed", "The same seed and settings give the same video. Empty or -1 picks one at random.",
        "Conditioning", ge=-1, le=2**32 - 1,
    )
    decode_chunk_size: int | None = _field(
        "Frames decoded at once",
        "Lower uses less GPU memory, higher is faster; empty picks one for you.",
        "Memory and speed", ge=1, le=64,
    )
    memory_mode: Literal["auto", "full_gpu", "model_offload", "sequential_offload"] | None = _field(
        "Memory mode",
        "Where the model lives: 'full_gpu' is fastest; 'model_offload' moves parts to the CPU when "
        "idle; 'sequential_offload' needs the least GPU memory and is slowest; 'auto' chooses.",
        "Memory and speed",
    )
    fast_mode: bool | None = _field(
        "Compile for speed",
        "Compile the model for this GPU (torch.compile, channels-last memory). The first video "
        "takes a minute or two longer; every later one at the same size is faster. CUDA only.",
        "Memory and speed",
    )
    cache_interval: int | None = _field(
        "Reuse features",
        "Faster: reuse the model's deep features between steps (1 = off, 2-5 = how often the full model "
        "runs). The motion can differ slightly.",
        "Memory and speed", ge=1, le=5,
    )
    guidance_stop: float | None = _field(
        "Stop guidance early",
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


def title_of(name: str) -> str:
    """The everyday name of a parameter ('Motion amount'); the name itself when it has none."""
    return GenerationRequest.model_fields[name].title or name


def group_of(name: str) -> str:
    extra = GenerationRequest.model_fields[name].json_schema_extra
    return extra["group"] if isinstance(extra, dict) else GROUPS[0]
