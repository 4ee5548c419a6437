"""Batch: a hosted batch of 16 photos against a fake provider, and the ZIP's overhead.

Why: a batch should cost a person about one job's wait, not sixteen: hosted photos run
side by side up to the backend's declared concurrency. So this runs one photo through
``service.generate`` against ``tests.fakes.FakeNovita(job_seconds=S)`` and then a batch of
``--photos`` through ``orchestration.batch``, and reports the batch's wall time as a ratio
to the one job's (aim: at most 1.5x). The poll interval is the production one, so the
ratio includes what a person really waits.

Second, the cost of packing: ``--videos`` small studio MP4s (64x64, 4 frames) put in one
ZIP with manifest.csv and manifest.json (``Batch.pack``), timed alone.

    python -m bench.batch [--photos 16] [--job-seconds 2.0] [--videos 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from bench._common import load_note, table

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "astronaut.png"
KEY = "bench-key"


def hosted(photos: int, job_seconds: float) -> list[list]:
    from orchestration import batch, service
    from tests.fakes.novita import FakeNovita

    with FakeNovita(api_key=KEY, job_seconds=job_seconds) as server:
        os.environ["NOVITA_BASE_URL"], os.environ["NOVITA_API_KEY"] = server.base_url, KEY
        started = time.monotonic()
        service.generate(IMAGE, "novita", {}, visitor="bench")
        one = time.monotonic() - started
        started = time.monotonic()
        made = batch.BatchManager().create([IMAGE] * photos, "novita", {}, visitor="bench")
        made.wait()
        whole = time.monotonic() - started
        counts = made.counts()
    return [["one job", 1, f"{one:.2f}", "1.00x"],
            [f"batch of {photos}", counts["made"], f"{whole:.2f}", f"{whole / one:.2f}x"]]


def packing(videos: int) -> list[list]:
    from orchestration.batch import Batch, Item
    from studio import outputs, recipe, video

    folder = outputs.job_dir("bench-batch")
    try:
        clip = folder / "clip.mp4"
        import numpy as np

        video.write_mp4([np.full((64, 64, 3), i * 40, np.uint8) for i in range(4)], clip, 8)
        used = {"backend": "local", "seed": 1, "num_frames": 4, "width": 64, "height": 64, "fps": 8}
        recipe.stamp(clip, recipe.make(used))
        items = []
        for i in range(videos):
            copy = folder / f"photo-{i}.mp4"
            shutil.copyfile(clip, copy)
            item = Item(i + 1, f"photo-{i}.png", str(copy), dict(used), stem=f"photo-{i}")
            item.status, item.video, item.output, item.used = "made", str(copy), copy.name, dict(used)
            items.append(item)
        made = Batch("bench", "local", items, folder)
        started = time.monotonic()
        target = made.pack()
        seconds = time.monotonic() - started
        per_video = clip.stat().st_size
        return [[videos, f"{per_video / 1024:.1f}", f"{target.stat().st_size / 1024:.0f}", f"{seconds:.3f}",
                 f"{seconds / videos * 1000:.2f}"]]
    finally:
        outputs.release(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--videos", type=int, default=50)
    args = parser.parse_args()
    print(load_note())
    print(table(["run", "videos made", "wall s", "ratio to one job"], hosted(args.photos, args.job_seconds)))
    print()
    print(table(["videos", "kB each", "ZIP kB", "pack s", "ms per video"], packing(args.videos)))
    print(load_note())


if __name__ == "__main__":
    main()
