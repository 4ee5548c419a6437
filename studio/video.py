"""Writing and checking video files with the ffmpeg that imageio-ffmpeg ships.

MP4s are H.264, yuv420p, with the index at the front (``+faststart``) so every browser
plays them while they download. GIFs use a palette made from the clip itself, which looks
far better than a fixed web palette.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterable

import numpy as np

from studio.errors import GenerationFailed

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp (to shield it from Ctrl+C). Python
# documents preexec_fn as unsafe in a program with threads: the child runs Python code between
# fork and exec and can deadlock there. The studio encodes and probes in worker threads, and a
# soak run caught such a child spinning forever. This is imageio-ffmpeg's own switch to not do
# it; the ffmpeg children then stop with the server on Ctrl+C, which is what we want anyway.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def to_uint8(frames: Iterable[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Frames as HxWx3 uint8 arrays, whether they come as floats in [0, 1] or bytes."""
    out = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if frame.ndim == 2:
            frame = np.stack([frame] * 3, axis=-1)
        out.append(np.ascontiguousarray(frame[..., :3]))
    return out


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """Encode uint8 frames to a browser-playable MP4."""
    import imageio_ffmpeg

    if not frames:
        raise GenerationFailed("The model returned no frames.")
    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        # Even sizes are what yuv420p needs; only pad when a size is odd (hosted videos).
        macro_block_size=2,
        quality=None,
        output_params=["-crf", "18", "-preset", "veryfast", "-movflags", "+faststart"],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    return path


def _run(args: list[str], what: str) -> None:
    proc = subprocess.run([ffmpeg(), "-v", "error", "-y", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GenerationFailed(f"Could not {what}: {proc.stderr.strip()[-300:]}")


def mp4_to_gif(mp4: Path, gif: Path) -> Path:
    _run(
        ["-i", str(mp4), "-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse",
         "-loop", "0", str(gif)],
        "make the GIF",
    )
    return gif


def to_browser_mp4(src: Path, dst: Path) -> Path:
    """Re-encode any video ffmpeg reads (a GIF, a WebM, an odd MP4) as a browser-safe MP4."""
    _run(
        ["-i", str(src), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18",
         "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-movflags", "+faststart", str(dst)],
        "convert the video",
    )
    return dst


def probe(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video, decoding it completely; raises if it is not one."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        w, h = meta["size"]
        count = sum(1 for _ in reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise GenerationFailed(f"The file is not a video that can be decoded ({exc}).") from exc
    finally:
        reader.close()  # stops ffmpeg and closes its pipes
    if count == 0:
        raise GenerationFailed("The video has no frames.")
    return count, w, h


def poster(mp4: Path, png: Path, width: int = 320) -> Path:
    """A still of the clip for thumbnails: a gallery shows an image, not a video's frame.
    ffmpeg's ``thumbnail`` filter picks the most representative of the first frames."""
    _run(["-i", str(mp4), "-vf", f"thumbnail,scale={width}:-2", "-frames:v", "1", "-update", "1", str(png)],
         "make the thumbnail")
    return png
