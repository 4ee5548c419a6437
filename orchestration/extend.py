"""Extending a clip: several videos chained from each one's last frame, joined into one.

SVD makes a few seconds at most. People make longer clips by starting the next video
from the final frame of the one before; ``extend`` does that for them with one backend
and one set of settings, and joins the segments into a single MP4.

Like a sweep, the whole run is planned before anything starts: the segment count, every
value and every segment's seed are checked and resolved up front, so a bad request is
refused at once instead of after some segments were paid for.

Seeds: with ``same_seed`` every segment shares one seed (the given one, or one drawn
once), so the segments move alike; without it each segment after the first gets a fresh
seed (the first keeps a seed the person gave, so the clip starts as the one they chose).
Each segment's real seed is read back from its own ``used``: a provider may report it.

The joined clip drops the first frame of every later segment: it is the seam frame, the
same picture the previous segment ended on. ``smooth_seams`` eases the frames just
after each seam in from that seam frame, which softens a jump in motion or colour.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

import backends
from backends.base import ProgressFn, Range, Result
from studio import outputs, recipe, video
from orchestration import limits, service
from studio.errors import Cancelled, GenerationFailed, InvalidParameter

MIN_SEGMENTS, MAX_SEGMENTS = 2, 8
# How many frames after a seam ``smooth_seams`` eases in (fewer in a very short segment).
BLEND_FRAMES = 3
LAST_FRAME = "last_frame.png"  # in each segment's folder: the picture the next segment starts from

SegmentFn = Callable[[int, Result], None]


def plan(backend: str, params: dict[str, Any], *, segments: int, same_seed: bool) -> list[dict[str, Any]]:
    """The parameters of each segment, in order; refuses the whole run on anything wrong.

    Every segment's values go through ``resolve`` and ``preflight`` here, exactly as
    ``service.generate`` will check them, so nothing can be refused after segment 1.
    """
    chosen = backends.get_backend(backend)
    if isinstance(segments, bool) or not isinstance(segments, int) or not MIN_SEGMENTS <= segments <= MAX_SEGMENTS:
        raise InvalidParameter("segments", segments, f"{MIN_SEGMENTS} to {MAX_SEGMENTS}", chosen.label)
    model = chosen.model_for(params.get("model"))
    first = chosen.resolve(service.build_request({**params, "model": model}, chosen))
    seeds = _seeds(chosen.limits(model).get("seed"), first.seed, segments, same_seed)
    planned = []
    for seed in seeds:
        values = {**params, "model": model} | ({"seed": seed} if seed is not None else {})
        chosen.preflight(chosen.resolve(service.build_request(values, chosen)))
        planned.append(values)
    return planned


def _seeds(limit: Any, first: int | None, count: int, same_seed: bool) -> list[int | None]:
    """One seed per segment, all drawn now. ``first`` is the first request's seed once
    resolved: the given one, or one ``resolve`` drew because none was given."""
    if not isinstance(limit, Range):
        return [None] * count  # a backend without seeds: nothing to share or vary
    if same_seed:
        return [first] * count
    lo, hi = int(limit.lo), int(limit.hi)
    seeds = [first]
    while len(seeds) < count:
        seed = random.randint(lo, hi)
        if seed not in seeds:  # "a new seed each segment" should mean it, even by chance
            seeds.append(seed)
    return seeds


def extend(image: str | Path, backend: str, params: dict[str, Any], *, segments: int, same_seed: bool,
           smooth_seams: bool = False, api_key: str | None = None, on_segment: SegmentFn | None = None,
           first: Result | None = None, visitor: str | None = None, **hooks: Any) -> Result:
    """Make ``segments`` videos, each from the last frame of the one before, and join them.

    ``hooks`` are ``service.generate``'s (``on_progress``, ``on_job_id``, ``on_preview``,
    ``cancel``); progress reads "segment 2 of 4 · ..." with the fraction of the whole run.
    ``on_segment(index, result)`` hears of each finished segment (index from 0), for a
    page that shows them as they come. A cancel raises ``Cancelled`` and starts nothing more.

    ``first``: a video already made with these settings (the page's current video), which
    is then segment 1 as it is: the run continues from its last frame.

    ``visitor``: who is asking; every new segment is a job on their allowance of the
    owner's key, and the whole run is refused at once unless all of them fit.
    """
    started = time.monotonic()
    planned = plan(backend, params, segments=segments, same_seed=same_seed)
    limits.check(backend, visitor, typed_key=bool((api_key or "").strip()), jobs=segments - (first is not None))
    report: ProgressFn = hooks.pop("on_progress", None) or (lambda fraction, text: None)
    cancel: threading.Event | None = hooks.get("cancel")
    # Every job folder this run reads (the photo's, the first video's, each segment's) and the
    # one it writes stay busy until it ends, so the output sweeper cannot take them midway.
    with contextlib.ExitStack() as reading:
        reading.enter_context(outputs.hold(image))
        if first is not None:
            reading.enter_context(outputs.hold(first.video))
        results: list[Result] = []
        clips: list[list[np.ndarray]] = []
        fps: float | None = None
        source: str | Path = image
        for index, values in enumerate(planned):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"Cancelled after segment {index} of {segments}; nothing more was started.")
            if index == 0 and first is not None:
                result = first
            else:
                result = service.generate(source, backend, values, api_key=api_key, visitor=visitor,
                                          on_progress=_within(report, index, segments), **hooks)
                reading.enter_context(outputs.hold(result.video))  # still in its grace: safe to take
            frames, rate = read_frames(result.video)
            fps = fps or rate
            results.append(result)
            clips.append(frames)
            if index + 1 < segments:
                source = save_frame(frames[-1], result.video.with_name(LAST_FRAME))
            if on_segment is not None:
                on_segment(index, result)

        # Joining is finishing work (every frame in memory, then an encode): it waits in the same line.
        reading.enter_context(service.finishing_slot({"on_progress": report, "cancel": cancel}, visitor))
        report(None, f"Joining the {segments} segments into one video")
        joined = stitch(clips, smooth=smooth_seams)
        folder = outputs.job_dir(backend)
        reading.callback(outputs.release, folder)
        first = results[0]
        # The files' own rate first: a provider that adds in-between frames plays faster than its fps setting.
        mp4 = video.write_mp4(joined, folder / "extended.mp4", fps or float(first.used.get("fps") or 7))
        used = {k: v for k, v in first.used.items() if k not in ("task_id", "elapsed_seconds")}  # per segment only
        used |= {"segments": [r.used for r in results], "extended": segments, "same_seed": same_seed,
                 "smooth_seams": smooth_seams, "num_frames_total": len(joined),
                 "elapsed_seconds": round(time.monotonic() - started, 1)}
        recipe.stamp(mp4, recipe.make(used))  # every segment's settings and seed travel with the video
        photo = None
        if first.photo is not None:  # the original photo, so "again" and a longer run can start over
            photo = folder / first.photo.name
            shutil.copyfile(first.photo, photo)
        return Result(video=mp4, used=used, photo=photo, job_id=None)


def _within(report: ProgressFn, index: int, count: int) -> ProgressFn:
    """One segment's progress as progress of the whole run."""
    def on_progress(fraction: float | None, text: str) -> None:
        overall = None if fraction is None else (index + min(max(fraction, 0.0), 1.0)) / count
        report(overall, f"segment {index + 1} of {count} · {text}")

    return on_progress


def read_frames(path: Path) -> tuple[list[np.ndarray], float | None]:
    """Every frame of a video as HxWx3 uint8, and its frame rate when the file states one."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        w, h = meta["size"]
        frames = [np.frombuffer(raw, np.uint8).reshape(h, w, 3) for raw in reader]
    except (RuntimeError, OSError, StopIteration) as exc:
        raise GenerationFailed(f"The segment {path.name} could not be decoded ({exc}).") from exc
    finally:
        reader.close()
    if not frames:
        raise GenerationFailed(f"The segment {path.name} has no frames.")
    rate = meta.get("fps")
    return frames, (float(rate) if rate else None)


def save_frame(frame: np.ndarray, path: Path) -> Path:
    """A frame as a PNG: lossless, so the next segment starts from exactly this picture."""
    Image.fromarray(frame).save(path, format="PNG")
    return path


def stitch(clips: list[list[np.ndarray]], smooth: bool = False) -> list[np.ndarray]:
    """The clips as one run of frames, each seam frame once: the first frame of every
    later clip repeats the last one of the clip before, so it is left out. Clips of
    another size are resized to the first clip's size. ``smooth`` blends up to
    ``BLEND_FRAMES`` frames after each seam from the seam frame toward the new clip;
    a clip's own last frame is never blended, since the next clip starts from it."""
    if not clips or not clips[0]:
        raise GenerationFailed("There are no segments to join.")
    h, w = clips[0][0].shape[:2]
    out = [np.asarray(f) for f in clips[0]]
    for clip in clips[1:]:
        seam = out[-1].astype(np.float32)
        rest = [_sized(f, w, h) for f in clip[1:]]
        blended = min(BLEND_FRAMES, len(rest) - 1) if smooth else 0
        for j in range(blended):
            weight = (j + 1) / (blended + 1)  # the new clip's share grows frame by frame
            rest[j] = np.clip(seam * (1 - weight) + rest[j] * weight + 0.5, 0, 255).astype(np.uint8)
        out.extend(rest)
    return out


def _sized(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    if frame.shape[:2] == (h, w):
        return np.asarray(frame)
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.LANCZOS))
