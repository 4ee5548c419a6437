"""Encoding: our MP4 and GIF writers against plain imageio, on 25 frames of 1024x576.

Why: every local video is encoded twice (MP4 for the page, GIF for the download), so the
encoders add directly to what a person waits for. The reference is what a plain script
would do: ``imageio.v2.mimwrite`` to MP4 through imageio-ffmpeg with its defaults
(libx264, quality 5) and ``imageio.v3.imwrite`` to GIF through Pillow. Frames are smooth
moving gradients with mild noise, closer to real video than pure noise or flat colour.
Ours makes the GIF from the MP4 (as ``orchestration.service`` does); Pillow gets the raw frames.

    python -m bench.encoding [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bench._common import load_note, median, table
from studio import video

FPS = 7


def make_frames(count: int = 25, width: int = 1024, height: int = 576, seed: int = 0) -> list[np.ndarray]:
    """Moving colour gradients plus Gaussian noise (sigma 4), as uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(count):
        shift = i * 6.0
        r = 128 + 100 * np.sin((xs + shift) / 180.0)
        g = 128 + 100 * np.cos((ys - shift / 2) / 140.0)
        b = 128 + 80 * np.sin((xs + ys + 2 * shift) / 260.0)
        img = np.stack([r, g, b], axis=-1) + rng.normal(0, 4, (height, width, 3))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each encoder (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of each")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs

    import imageio.v2 as iio2
    import imageio.v3 as iio3

    load_before = load_note()
    frames = make_frames()
    stack = np.stack(frames)
    with tempfile.TemporaryDirectory(prefix="bench-enc-") as name:
        tmp = Path(name)
        paths = {k: tmp / f"{k}.{k.split('_')[1]}" for k in ("ours_mp4", "ours_gif", "plain_mp4", "plain_gif")}
        jobs: dict[str, Callable[[], object]] = {
            "ours_mp4": lambda: video.write_mp4(frames, paths["ours_mp4"], FPS),
            "ours_gif": lambda: video.mp4_to_gif(paths["ours_mp4"], paths["ours_gif"]),
            "plain_mp4": lambda: iio2.mimwrite(paths["plain_mp4"], frames, fps=FPS),
            "plain_gif": lambda: iio3.imwrite(paths["plain_gif"], stack, plugin="pillow", duration=1000 / FPS, loop=0),
        }
        times: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(runs):
            for key, job in jobs.items():  # ours_gif reads the ours_mp4 written just before it
                times[key].append(timed(job))
        sizes = {k: p.stat().st_size / 1e6 for k, p in paths.items()}

    t = {k: median(v) for k, v in times.items()}
    rows = [
        ["MP4 (H.264)", "write_mp4: crf 18, veryfast, +faststart", t["ours_mp4"], "imageio mimwrite (quality 5)",
         t["plain_mp4"], t["ours_mp4"] / t["plain_mp4"], sizes["ours_mp4"], sizes["plain_mp4"]],
        ["GIF", "mp4_to_gif: palettegen/paletteuse", t["ours_gif"], "imageio + Pillow", t["plain_gif"],
         t["ours_gif"] / t["plain_gif"], sizes["ours_gif"], sizes["plain_gif"]],
        ["both", "", t["ours_mp4"] + t["ours_gif"], "", t["plain_mp4"] + t["plain_gif"],
         (t["ours_mp4"] + t["ours_gif"]) / (t["plain_mp4"] + t["plain_gif"]), "", ""],
    ]
    print(f"## Encoding 25 frames of 1024x576 at {FPS} fps (median of {runs} run(s))\n")
    print(table(["output", "ours", "ours s", "plain", "plain s", "ours/plain", "ours MB", "plain MB"], rows))
    print(f"\nmachine: {load_before} before, {load_note()} after")


if __name__ == "__main__":
    main()
