"""Where finished videos live, one folder per job, and how long they stay.

The output folder is ``OUTPUT_DIR/svd-studio`` when ``OUTPUT_DIR`` is set (made if needed,
kept at exit: it is the owner's disk), otherwise a temp folder of this run, removed at exit.

A public Space runs for weeks, so the folder is bounded. A sweeper removes whole job
folders, oldest first, that are older than ``OUTPUT_MAX_AGE_MINUTES`` (default 240), or
while all of them together are over ``OUTPUT_MAX_MB`` (default 4096; MB here is 2**20
bytes). It runs in a daemon thread every 15 s, and before each new job folder is made
(which also frees room for that job, so the folder is still under the cap once it is done).

A job's folder is never removed while the job runs: ``job_dir`` hands it out already
marked busy, and whoever asked for it calls ``release`` when the job is over (``service``
does, in a ``finally``). Work that reads another job's files (finishing, extending) wraps
the reading in ``hold(path)``. A folder released less than ``GRACE_S`` ago is kept too, so
the page can still make its thumbnail and GIF just after the job, and an extend run can
take hold of a segment's folder the moment ``generate`` gives it back. An API call needs
none of that (Gradio copies the answer's file into its own cache as it answers), so its
jobs are released ``kept_briefly``: a burst of API jobs stays within the cap.

A job folder's name ends in 128 random bits (``<UTC time>-<n>-<backend>-<32 hex>``): the
folder is served to no one (``ui.gates`` refuses every file under it; pages get Gradio's
copies, named by a keyed hash of their content), and its name is the only handle a
browser keeps (``ref``). A stranger can neither guess it nor list it. ``from_ref`` turns a
handle that came back from a browser into a path only when it names a file inside such
a folder; a path never counts.

Busy marks live in this process, so one studio process uses one ``OUTPUT_DIR`` (as a
Space does). Only folders named like job folders, directly in the output folder, are
ever removed, and symlinks are neither followed nor counted. The grey "file removed"
card and the preset copies live beside the job folders and are left alone (their owners
remake them on demand). The history may still point at a removed video: it says so.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import itertools
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from studio.errors import BadSetting

log = logging.getLogger(__name__)

MB = 1024 * 1024
SUBFOLDER = "svd-studio"  # inside OUTPUT_DIR, so the owner's own files there are never in our way
SWEEP_EVERY_S = 15.0  # a pass stats each job folder once (sizes are cached): cheap
GRACE_S = 30.0  # a released folder is kept this long: the page makes its poster and GIF right after
BRIEF_GRACE_S = 5.0  # for API jobs: Gradio copies the answer's file as soon as the handler returns
DEFAULT_MAX_AGE_MINUTES = 240.0
DEFAULT_MAX_MB = 4096.0
_JOB_NAME = re.compile(r"^\d{8}-\d{6}-\d{4,}-[A-Za-z0-9_.-]+$")  # what job_dir makes (and made); nothing else is swept
_SECRET_NAME = re.compile(r"^\d{8}-\d{6}-\d{4,}-[A-Za-z0-9_.-]+-[0-9a-f]{32}$")  # the only folders a handle may name
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .()+-]*$")  # a file name inside it: no separators, no "..", no dotfile
TOKEN_BYTES = 16  # 128 random bits in every job folder's name
_REMOVING = ".removing-"  # a job folder renamed on its way out; a sweep that died half-way is finished later

_lock = threading.RLock()  # guards the state below; held only briefly, never while deleting
_sweeping = threading.Lock()  # one sweep at a time
_counter = itertools.count(1)
_temp_root: Path | None = None
_made: set[Path] = set()
_busy: dict[Path, int] = {}  # job folder -> how many holders
_released: dict[Path, float] = {}  # job folder -> time.time() until which it is kept after its last holder let go
_grace: contextvars.ContextVar[float] = contextvars.ContextVar("output_grace", default=GRACE_S)
_sizes: dict[Path, tuple[int, int, float]] = {}  # job folder -> (its st_mtime_ns, bytes, newest mtime)
_sweeper: threading.Thread | None = None


@dataclass(frozen=True)
class Limits:
    max_age_s: float
    max_bytes: int


@dataclass(frozen=True)
class Swept:
    """What one sweep removed."""

    removed: tuple[str, ...] = ()  # job folder names
    freed: int = 0  # bytes


@dataclass(frozen=True)
class _Folder:
    path: Path
    size: int
    newest: float  # the latest mtime of the folder or anything in it: when the job was last touched


def env_number(name: str, default: float) -> float:
    """A number, 0 or more, from the environment (floats welcome: ``MAX_VIDEO_MB=0.5``)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise BadSetting(f"{name} must be a number, 0 or more, got {raw!r}.")
    return value


def limits() -> Limits:
    """Read at every sweep, so a changed variable counts from the next one."""
    return Limits(max_age_s=env_number("OUTPUT_MAX_AGE_MINUTES", DEFAULT_MAX_AGE_MINUTES) * 60,
                  max_bytes=int(env_number("OUTPUT_MAX_MB", DEFAULT_MAX_MB) * MB))


def gradio_cache() -> tuple[int, int]:
    """``delete_cache`` for ``gr.Blocks``: (check every, delete files older than) in seconds.

    Gradio keeps its own copy of every upload and of every file it serves (each video is
    copied into its cache), so its cache grows as fast as our folder. Its files go once
    they are as old as ours may get; never under an hour, because an uploaded photo must
    outlive the job that reads it (a job copies its photo when it ends). Checked hourly.
    """
    age = max(3600, int(limits().max_age_s))
    return 3600, age


def run_dir() -> Path:
    """The output folder (the only folder the page serves files from)."""
    global _temp_root
    owner = os.environ.get("OUTPUT_DIR", "").strip()
    with _lock:
        if owner:
            root = Path(owner).expanduser().resolve() / SUBFOLDER
            if root not in _made:
                root.mkdir(parents=True, exist_ok=True)
                _made.add(root)
        else:
            if _temp_root is None:
                _temp_root = Path(tempfile.mkdtemp(prefix="svd-studio-")).resolve()
                atexit.register(shutil.rmtree, _temp_root, True)  # ours alone: an OUTPUT_DIR is never removed
            root = _temp_root
    start_sweeper()
    return root


def job_dir(backend: str) -> Path:
    """A new, empty folder for one job, named so that a listing sorts by time. It is busy
    (never swept) until ``release(folder)``: call it when the job is over, even on failure."""
    try:
        sweep(wait=False, room=_typical_job())  # make room before the job writes; skipped if a sweep is running
    except Exception:  # a sweep problem must never stop a job; the sweeper thread keeps trying
        log.exception("Could not sweep the output folder before a new job")
    root = run_dir()
    root.mkdir(parents=True, exist_ok=True)  # someone may have removed it while we ran
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", backend) or "job"
    while True:
        # UTC (no DST), so a listing sorts by time; the random tail makes the name unguessable.
        stamp = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{next(_counter):04d}"
        path = root / f"{stamp}-{name}-{secrets.token_hex(TOKEN_BYTES)}"
        with _lock:  # made and marked busy at once, so no sweep ever sees it free
            try:
                path.mkdir()
            except FileExistsError:  # left by an earlier run in the same second with the same number
                continue
            _busy[path] = _busy.get(path, 0) + 1
            return path


def release(folder: str | Path) -> None:
    """The job that owns ``folder`` (or a holder of it) is done with it."""
    key = _job_key(folder)
    if key is None:
        return
    with _lock:
        left = _busy.get(key, 0) - 1
        if left > 0:
            _busy[key] = left
        else:
            _busy.pop(key, None)
            _released[key] = time.time() + _grace.get()


@contextlib.contextmanager
def kept_briefly() -> Iterator[None]:
    """Folders released in this context (and in job threads started from it) are kept for
    ``BRIEF_GRACE_S`` only: for API calls, whose answer Gradio copies at once."""
    token = _grace.set(BRIEF_GRACE_S)
    try:
        yield
    finally:
        _grace.reset(token)


@contextlib.contextmanager
def hold(path: str | Path) -> Iterator[Path | None]:
    """Keep the job folder that holds ``path`` (a video, a photo, the folder itself) from
    the sweeper while the block runs. Paths outside the output folder (an upload) are
    fine and hold nothing. Yields the job folder, or None."""
    key = _job_key(path)
    if key is not None:
        with _lock:
            _busy[key] = _busy.get(key, 0) + 1
    try:
        yield key
    finally:
        if key is not None:
            release(key)


def is_busy(folder: str | Path) -> bool:
    key = _job_key(folder)
    with _lock:
        return key is not None and _busy.get(key, 0) > 0


def is_output(path: str | Path) -> bool:
    """True only for files this process wrote as outputs (used to refuse anything else)."""
    try:
        return Path(path).resolve().is_relative_to(run_dir().resolve())
    except (OSError, ValueError):
        return False


def ref(path: str | Path | None) -> str | None:
    """The handle a browser may keep for one of our files: ``<job folder>/<file>``, no
    server path in it. None for anything that is not a file in a job folder."""
    if path is None:
        return None
    key = _job_key(path)
    if key is None or not _SECRET_NAME.match(key.name):
        return None
    inside = Path(path).resolve().relative_to(key)
    return "/".join((key.name, *inside.parts)) if inside.parts else None


def from_ref(handle: object) -> Path | None:
    """The file a handle from ``ref`` names, if it is still there; None for anything else.

    A handle comes back from a browser, so it is read as untrusted text: a job folder's
    full (secret) name, then plain file names; no absolute path, no "..", no link that
    leads out of the folder."""
    if not isinstance(handle, str) or len(handle) > 400:
        return None
    parts = handle.split("/")
    if len(parts) < 2 or not _SECRET_NAME.match(parts[0]) or not all(_PLAIN.match(p) for p in parts[1:]):
        return None
    folder = run_dir() / parts[0]
    path = folder.joinpath(*parts[1:])
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if real.is_relative_to(folder.resolve()) and real.is_file() else None


def _job_key(path: str | Path) -> Path | None:
    """The job folder that holds ``path``, as ``job_dir`` named it; None outside the output folder.
    ``resolve`` follows links, so a link pointing elsewhere is not ours."""
    if not isinstance(path, (str, os.PathLike)):  # a picture handed over in memory lives in no folder
        return None
    root = run_dir()
    try:
        parts = Path(path).resolve().relative_to(root).parts
    except (OSError, ValueError):
        return None
    return root / parts[0] if parts and _JOB_NAME.match(parts[0]) else None


# --- the sweeper ----------------------------------------------------------------------


def start_sweeper() -> None:
    """The background sweep, once per process (started with the output folder)."""
    global _sweeper
    with _lock:
        if _sweeper is not None:
            return
        _sweeper = threading.Thread(target=_sweep_forever, name="output-sweeper", daemon=True)
    _sweeper.start()


def _sweep_forever() -> None:
    from studio import uploads  # it reads its setting through this module

    while True:
        time.sleep(SWEEP_EVERY_S)
        try:
            sweep()
            uploads.sweep()  # uploads no job used, past UPLOAD_MAX_AGE_MINUTES
            uploads.cap_cache()  # Gradio's cache as a whole, under GRADIO_CACHE_MAX_MB
        except Exception:  # a bad setting or a disk error: say so, and try again next time
            log.exception("The output sweep failed; trying again in %.0f s", SWEEP_EVERY_S)


def sweep(now: float | None = None, *, wait: bool = True, room: int = 0) -> Swept:
    """Remove the job folders the limits say must go, oldest first; never a busy one.

    ``now`` (seconds since the epoch) is when the sweep happens; ``wait=False`` returns at
    once when another sweep is running; ``room`` bytes are freed under the cap besides,
    for a job about to start, so that the folder is still under the cap once it is done.
    The choice is made and the folders are renamed out of the way under the lock; the
    slow deleting happens outside it.
    """
    if not _sweeping.acquire(blocking=wait):
        return Swept()
    try:
        now = time.time() if now is None else now
        rules = limits()
        root = run_dir()
        with _lock:
            jobs, leftovers = _scan(root, now)
            doomed = _choose(jobs, Limits(rules.max_age_s, max(0, rules.max_bytes - room)), now)
            moved = []
            for job in doomed:
                target = root / f"{_REMOVING}{uuid.uuid4().hex[:8]}-{job.path.name}"
                try:
                    job.path.rename(target)
                except OSError as exc:
                    log.warning("Could not remove the old job folder %s: %s", job.path.name, exc)
                    continue
                moved.append((job, target))
                _sizes.pop(job.path, None)
                _released.pop(job.path, None)
            for key in [k for k, until in _released.items() if now >= until]:
                del _released[key]
        for target in [t for _, t in moved] + leftovers:
            _remove(target)
        swept = Swept(tuple(job.path.name for job, _ in moved), sum(job.size for job, _ in moved))
        if swept.removed:
            log.info("Output sweep: removed %d job folder(s), %.1f MB freed (limits: %g minutes, %g MB)",
                     len(swept.removed), swept.freed / MB, rules.max_age_s / 60, rules.max_bytes / MB)
        return swept
    finally:
        _sweeping.release()


def _typical_job() -> int:
    """The room a new job will take: the median size of the newest settled job folders
    (a median, so one long extend does not make every later job sweep more); 0 at first."""
    with _lock:
        newest = sorted(_sizes.values(), key=lambda measured: measured[2])[-9:]
    sizes = sorted(size for _, size, _ in newest)
    return sizes[len(sizes) // 2] if sizes else 0


def _choose(jobs: list[_Folder], rules: Limits, now: float) -> list[_Folder]:
    """Oldest first: what is too old, then what keeps the total over the cap. Busy and
    just-released folders count toward the total but are skipped."""
    total = sum(job.size for job in jobs)
    doomed = []
    for job in sorted(jobs, key=lambda j: (j.newest, j.path.name)):
        if _busy.get(job.path, 0) > 0 or now < _released.get(job.path, -math.inf):
            continue
        if now - job.newest > rules.max_age_s or total > rules.max_bytes:
            doomed.append(job)
            total -= job.size
    return doomed


def _scan(root: Path, now: float) -> tuple[list[_Folder], list[Path]]:
    """(job folders, leftovers of an earlier sweep). Anything else in the folder, and any
    symlink, is not looked at."""
    jobs: list[_Folder] = []
    leftovers: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:  # removed by someone else: nothing to sweep (job_dir makes it again)
        entries = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue  # files (the grey card) and links of any kind
        path = Path(entry.path)
        if entry.name.startswith(_REMOVING):
            leftovers.append(path)
        elif _JOB_NAME.match(entry.name):
            jobs.append(_measure(path, entry.stat(follow_symlinks=False), now))
    seen = {job.path for job in jobs}
    for gone in [k for k in _sizes if k not in seen]:  # removed by someone else
        del _sizes[gone]
    return jobs, leftovers


def _measure(path: Path, stat: os.stat_result, now: float) -> _Folder:
    """Size and last change of one job folder. A finished folder changes its own mtime
    whenever a file is added, removed or replaced in it (a GIF made later, a stamped
    video), so its last measure is reused until then; busy ones are always walked."""
    cached = _sizes.get(path)
    settled = _busy.get(path, 0) == 0 and now >= _released.get(path, -math.inf)
    if settled and cached is not None and cached[0] == stat.st_mtime_ns:
        return _Folder(path, cached[1], cached[2])
    size, newest = 0, stat.st_mtime
    for folder, dirs, files in os.walk(path):  # followlinks=False: a link inside is counted as a link
        for name in dirs:
            newest = max(newest, _lstat(os.path.join(folder, name))[1])
        for name in files:
            st_size, st_mtime = _lstat(os.path.join(folder, name))
            size, newest = size + st_size, max(newest, st_mtime)
    if settled:
        _sizes[path] = (stat.st_mtime_ns, size, newest)
    return _Folder(path, size, newest)


def _lstat(path: str) -> tuple[int, float]:
    try:
        st = os.lstat(path)
    except OSError:  # removed while we looked
        return 0, 0.0
    return st.st_size, st.st_mtime


def _remove(path: Path) -> None:
    if path.is_symlink():  # never followed: only the link goes
        path.unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path)  # does not follow links inside (it removes the links themselves)
    except OSError as exc:
        log.warning("Could not finish removing %s (the next sweep tries again): %s", path.name, exc)
