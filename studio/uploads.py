"""Uploads no job uses go after ``UPLOAD_MAX_AGE_MINUTES`` (default 10).

Gradio keeps every file sent to ``/upload`` in its cache folder until its hourly cleanup
(``outputs.gradio_cache``), whether or not a job ever reads it, so a stranger could fill
the disk with uploads alone. ``ui.gates`` tells this module the path of every file the
upload route stored (``record``); the output sweeper calls ``sweep`` on each pass, which
removes each recorded upload older than the limit. A job never needs its upload once it
has started: a photo is read and copied into the job's folder first thing
(``orchestration.service``), a video to finish is opened by ffmpeg at once (on Linux an
open file stays readable when removed).

Only recorded paths are ever removed, and only inside Gradio's upload folder; the cache's
copies of our outputs (what pages play and download) keep Gradio's own hourly rule.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from studio.outputs import env_number

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_MINUTES = 10.0
MAX_RECORDED = 100_000  # a bound on memory: the oldest records are swept (removed) first anyway

_lock = threading.Lock()
_recorded: dict[Path, tuple[float, Path]] = {}  # upload path -> (time.time() it was stored, the upload folder)


def max_age_s() -> float:
    return env_number("UPLOAD_MAX_AGE_MINUTES", DEFAULT_MAX_AGE_MINUTES) * 60


def record(paths: list[str], root: str | Path, now: float | None = None) -> None:
    """Files the upload route just stored in ``root`` (Gradio's upload folder); any path
    outside it is ignored."""
    now = time.time() if now is None else now
    folder = Path(root).resolve()
    with _lock:
        for path in map(Path, paths):
            if path.resolve().is_relative_to(folder) and path.resolve() != folder:
                _recorded[path.resolve()] = (now, folder)
        while len(_recorded) > MAX_RECORDED:
            _recorded.pop(next(iter(_recorded)))


def sweep(now: float | None = None) -> list[Path]:
    """Remove every recorded upload older than the limit (with its folder, once empty)."""
    now = time.time() if now is None else now
    limit = max_age_s()
    with _lock:
        due = [(p, root) for p, (at, root) in _recorded.items() if now - at > limit]
        for path, _ in due:
            del _recorded[path]
    removed = []
    for path, root in due:
        try:
            path.unlink(missing_ok=True)
            removed.append(path)
            if path.parent != root and not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError as exc:
            log.warning("Could not remove an old upload %s: %s", path.name, exc)
    if removed:
        log.info("Uploads: removed %d unused upload(s) older than %g minutes", len(removed), limit / 60)
    return removed

