"""The one request model, under diffusers' parameter names.

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
GROUPS = ("Frames and size", "Motion", "Sampling", "Memory and speed", "Hosted options")


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
    output_format: Literal["mp4", "gif", "base64"] | None = _field(
        "The file format the hosted service sends back. The page always shows an MP4 and offers both.",
        "Hosted options",
    )
    negative_prompt: str | None = _field(
        "What the video should avoid (ModelsLab).", "Hosted options", max_length=1000
    )
    enhance_prompt: bool | None = _field("Let the service improve the prompt.", "Hosted options")
    latent_interpolation_method: Literal["lerp", "slerp"] | None = _field(
        "How the service blends between frames: linear (lerp) or spherical (slerp).", "Hosted options"
    )
    clip_skip: int | None = _field(
        "Skip the last CLIP layers when reading the image (1 or 2; empty for none).", "Hosted options", ge=1, le=2
    )
    enable_frame_interpolation: bool | None = _field(
        "Let the service add in-between frames so the clip plays smoothly at 24 fps.", "Hosted options"
    )
    instant_response: bool | None = _field(
        "Ask the service to answer at once with a job id instead of holding the request open.",
        "Hosted options",
    )
    temp: bool | None = _field(
        "Store the result in the service's temporary storage (wiped every 24 hours).", "Hosted options"
    )
    webhook: str | None = _field(
        "A public https URL the service calls when the job is done (optional; the page polls anyway).",
        "Hosted options", max_length=2000,
    )
    track_id: str | None = _field(
        "Your own id, echoed back to the webhook (optional).", "Hosted options", max_length=200
    )


PARAMETERS: tuple[str, ...] = tuple(GenerationRequest.model_fields)


def describe(name: str) -> str:
    return GenerationRequest.model_fields[name].description or ""


def group_of(name: str) -> str:
    extra = GenerationRequest.model_fields[name].json_schema_extra
    return extra["group"] if isinstance(extra, dict) else GROUPS[0]
