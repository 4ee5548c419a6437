"""Uploads no job uses go after ``UPLOAD_MAX_AGE_MINUTES`` (default 10).

Gradio keeps every file sent to ``/upload`` in its cache folder until its hourly cleanup
(``outputs.gradio_cache``), whether or not a job ever reads it, so a stranger could fill
the disk with uploads alone. ``ui.gates`` tells this module the path of every file the
upload route stored (``record``); the output sweeper calls ``sweep`` on each pass, which
removes each recorded upload older than the limit. A job never needs its upload once it
has started: a photo is read and copied into the job's folder first thing
(``orchestration.service``), a video to finish is opened by ffmpeg at once (on Linux an
open file stays readable when removed).

Only recorded paths are ever removed by ``sweep``, and only inside Gradio's upload folder.

The cache as a whole (uploads and the copies of our outputs that pages play and download)
has a byte cap of its own besides Gradio's hourly age rule: ``cap_cache`` removes its
oldest files while it is over ``GRADIO_CACHE_MAX_MB`` (by default ``OUTPUT_MAX_MB``),
never one younger than ``CACHE_GRACE_S`` (a page may be fetching it). A page that needs a
removed copy again gets a new one: entries name our own files, which the server serves
afresh.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from studio.outputs import DEFAULT_MAX_MB, MB, env_number

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_MINUTES = 10.0
CACHE_GRACE_S = 60.0
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



def cache_folder() -> Path:
    """Gradio's cache and upload folder: GRADIO_TEMP_DIR, else ``<temp>/gradio`` (read
    here as Gradio reads it: this layer never imports gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def cache_max_bytes() -> int:
    default = env_number("OUTPUT_MAX_MB", DEFAULT_MAX_MB)
    return int(env_number("GRADIO_CACHE_MAX_MB", default) * MB)


def cap_cache(folder: Path | None = None, max_bytes: int | None = None, now: float | None = None) -> list[Path]:
    """Remove the cache's oldest files while it holds more than ``max_bytes``; never a
    link, never a file younger than ``CACHE_GRACE_S``. Returns what was removed."""
    folder = cache_folder() if folder is None else folder
    limit = cache_max_bytes() if max_bytes is None else max_bytes
    now = time.time() if now is None else now
    found = []
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                found.append((info.st_mtime, info.st_size, path))
        except OSError:
            continue  # removed meanwhile
    total = sum(size for _, size, _ in found)
    removed = []
    for mtime, size, path in sorted(found, key=lambda f: f[0]):
        if total <= limit:
            break
        if now - mtime < CACHE_GRACE_S:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed.append(path)
    if removed:
        log.info("Gradio's cache: removed %d file(s), oldest first, to stay under %.0f MB", len(removed), limit / MB)
    return removed
