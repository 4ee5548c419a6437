"""Real, tiny video files for the fake servers to hand out.

Why real files: the app downloads, validates and plays back what the providers
return, so a fake that serves a few random bytes would let a broken download or
decode path pass. These helpers encode genuine H.264 MP4 / GIF files with the
ffmpeg binary that ships with ``imageio_ffmpeg``. Results are cached because
encoding takes ~100 ms and every fake job serves the same clip.
"""

from __future__ import annotations

import functools
import os
import tempfile

import imageio_ffmpeg
import numpy as np

__all__ = ["make_frames", "make_mp4_bytes", "make_gif_bytes", "looks_like_mp4", "looks_like_gif"]


def make_frames(frames: int = 4, width: int = 64, height: int = 64) -> list[np.ndarray]:
    """Return ``frames`` RGB uint8 frames: a moving gradient, so frames differ."""
    ys, xs = np.mgrid[0:height, 0:width]
    out = []
    for i in range(frames):
        r = (xs * 255 // max(width - 1, 1) + i * 40) % 256
        g = (ys * 255 // max(height - 1, 1)) % 256
        b = np.full_like(xs, (i * 255) // max(frames - 1, 1))
        out.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return out


def _encode(suffix: str, frames: int, width: int, height: int, fps: int, **kwargs: object) -> bytes:
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="fake-media-")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            path, (width, height), fps=fps, macro_block_size=1, ffmpeg_log_level="error", **kwargs
        )
        writer.send(None)  # prime the generator (starts ffmpeg)
        for frame in make_frames(frames, width, height):
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


@functools.lru_cache(maxsize=16)
def make_mp4_bytes(frames: int = 4, width: int = 64, height: int = 64, fps: int = 6) -> bytes:
    """H.264 / yuv420p MP4 (the format both providers return). Width and height must be even."""
    return _encode(
        ".mp4", frames, width, height, fps,
        codec="libx264", pix_fmt_out="yuv420p", output_params=["-movflags", "+faststart"],
    )


@functools.lru_cache(maxsize=16)
def make_gif_bytes(frames: int = 4, width: int = 64, height: int = 64, fps: int = 6) -> bytes:
    """Animated GIF (ModelsLab ``output_type: gif`` / Novita ``response_video_type: gif``)."""
    return _encode(".gif", frames, width, height, fps, codec="gif", pix_fmt_out="rgb8")


def looks_like_mp4(data: bytes) -> bool:
    """Cheap container sniff: ISO-BMFF files carry ``ftyp`` at offset 4."""
    return len(data) >= 12 and data[4:8] == b"ftyp"


def looks_like_gif(data: bytes) -> bool:
    return data[:6] in (b"GIF87a", b"GIF89a")
