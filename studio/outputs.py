"""Where finished videos live: one folder per process run, one sub-folder per job.

Files stay until the process ends (then the folder is removed), so a video is never lost
while the page is open, and downloads keep working for every job in the history.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_counter = itertools.count(1)
_root: Path | None = None


def run_dir() -> Path:
    global _root
    with _lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="svd-studio-"))
            atexit.register(shutil.rmtree, _root, True)
        return _root


def job_dir(backend: str) -> Path:
    """A new, empty folder for one job, named so that a listing sorts by time."""
    path = run_dir() / f"{next(_counter):04d}-{time.strftime('%H%M%S')}-{backend}"
    path.mkdir()
    return path


def is_output(path: str | Path) -> bool:
    """True only for files this process wrote as outputs (used to refuse anything else)."""
    try:
        return Path(path).resolve().is_relative_to(run_dir().resolve())
    except (OSError, ValueError):
        return False
