"""What goes into a batch: the photos (loose files or ZIPs of them) and the file names.

Every upload is read here, before anything is spent. A file that cannot be used becomes
a ``Photo`` with an ``error`` sentence that names it, and the rest of the batch goes on.
A ZIP is read from its central directory first: more entries than the batch may hold,
or more bytes than ``BATCH_MAX_UNPACKED_MB`` once unpacked, refuses the whole ZIP before
one byte is unpacked (a ZIP bomb). Folders inside are flattened, ``__MACOSX`` and hidden
files are skipped, and an entry whose path climbs out (``../``) or is absolute is refused
by name; entries are written under names made here, never under their own paths.

Names come from a template such as ``{photo}-{seed}``; an unknown field, a format spec or
a path separator refuses the template in one sentence, and two names that would collide
become ``name``, ``name-2``, ``name-3``...
"""

from __future__ import annotations

import os
import re
import shutil
import string
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from studio import images
from studio.errors import BadImage, StudioError

MAX_PHOTOS_ENV, MAX_UNPACKED_ENV = "BATCH_MAX_PHOTOS", "BATCH_MAX_UNPACKED_MB"
DEFAULT_MAX_PHOTOS, SPACE_MAX_PHOTOS, DEFAULT_MAX_UNPACKED_MB = 50, 8, 500
DEFAULT_TEMPLATE = "{photo}-{seed}"
FIELDS = ("photo", "seed", "backend", "preset", "index", "date")
MAX_NAME = 120  # characters of a video's stem: room for "-12.mp4" under every file system's limit
MB = 1024 * 1024


class BatchRefused(StudioError, ValueError):
    """The batch as a whole cannot run (empty, too many photos, a bad template...)."""


@dataclass
class Photo:
    """One photo of the batch: its own file name, and the staged file or why there is none."""

    name: str
    path: Path | None = None
    error: str = ""


def max_photos() -> int:
    """BATCH_MAX_PHOTOS, or 50 (8 on a public Space, where SPACE_ID is set)."""
    default = SPACE_MAX_PHOTOS if os.environ.get("SPACE_ID", "").strip() else DEFAULT_MAX_PHOTOS
    return _positive(MAX_PHOTOS_ENV, default)


def max_unpacked_bytes() -> int:
    return _positive(MAX_UNPACKED_ENV, DEFAULT_MAX_UNPACKED_MB) * MB


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if re.fullmatch(r"[0-9]+", raw) and int(raw) > 0:
        return int(raw)
    from studio.errors import BadSetting

    raise BadSetting(f"{name} must be a positive whole number, got {raw!r}.")


def gather(files: list[str | Path], folder: Path) -> list[Photo]:
    """Every photo in ``files`` (images and ZIPs of images), in the order given, each
    checked as a single photo would be; staged copies go into ``folder``. Refuses an
    empty batch and one with more photos than ``BATCH_MAX_PHOTOS``."""
    folder.mkdir(parents=True, exist_ok=True)
    photos: list[Photo] = []
    for file in files:
        path = Path(file)
        if path.suffix.lower() == ".zip" or (path.is_file() and zipfile.is_zipfile(path)):
            photos.extend(_from_zip(path, folder, len(photos)))
        else:
            photos.append(_check(path.name, path, folder, len(photos)))
    cap = max_photos()
    if not photos:
        raise BatchRefused("The batch is empty: add photos (PNG, JPEG or WebP), or a ZIP of them.")
    if len(photos) > cap:
        raise BatchRefused(f"This batch has {len(photos)} photos, more than the {cap} one batch may hold "
                           f"({MAX_PHOTOS_ENV}); split it into smaller batches.")
    return photos


def _check(name: str, source: Path, folder: Path, number: int) -> Photo:
    """A staged copy of ``source`` if it reads as a photo (the single-photo rules), else its sentence."""
    try:
        images.load_image(source)
    except BadImage as exc:
        return Photo(name, error=f"{name}: {_lower_first(str(exc))}")
    staged = folder / f"{number + 1:03d}{source.suffix.lower() or '.png'}"
    shutil.copyfile(source, staged)
    return Photo(name, staged)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _from_zip(path: Path, folder: Path, before: int) -> list[Photo]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return [Photo(path.name, error=f"{path.name} is not a ZIP file this studio can read.")]
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir() and not _skipped(e.filename)]
        cap, room = max_photos(), max_unpacked_bytes()
        unpacked = sum(e.file_size for e in entries)
        if len(entries) > cap:
            return [Photo(path.name, error=f"{path.name} holds {len(entries)} files, more than the {cap} photos "
                                           f"one batch may hold ({MAX_PHOTOS_ENV}); nothing was unpacked.")]
        if unpacked > room:
            return [Photo(path.name, error=f"{path.name} would unpack to {unpacked / MB:.0f} MB, more than "
                                           f"{room // MB} MB ({MAX_UNPACKED_ENV}); nothing was unpacked.")]
        photos = []
        for entry in entries:
            photos.append(_entry(archive, entry, path.name, folder, before + len(photos)))
        return photos


def _skipped(name: str) -> bool:
    """Mac resource forks and hidden files (``.DS_Store``, ``._photo.jpg``) are not photos."""
    parts = [p for p in re.split(r"[\\/]", name) if p]
    return any(p == "__MACOSX" or p.startswith(".") and p not in (".", "..") for p in parts)


def _entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, zip_name: str, folder: Path, number: int) -> Photo:
    raw = entry.filename
    name = PurePosixPath(raw.replace("\\", "/")).name or raw
    parts = raw.replace("\\", "/").split("/")
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw) or ".." in parts:
        why = "../" if ".." in parts else "an absolute path"
        return Photo(name, error=f"{raw} in {zip_name} climbs out of the ZIP ({why}), so it was not unpacked.")
    staged = folder / f"{number + 1:03d}{PurePosixPath(name).suffix.lower()[:8]}"
    try:
        with archive.open(entry) as source, open(staged, "wb") as target:
            shutil.copyfileobj(source, target)  # zipfile stops at the size the directory declared
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        staged.unlink(missing_ok=True)
        return Photo(name, error=f"{name} in {zip_name} is damaged and could not be unpacked.")
    try:
        images.load_image(staged)
    except BadImage as exc:
        staged.unlink(missing_ok=True)
        return Photo(name, error=f"{name} in {zip_name}: {_lower_first(str(exc))}")
    return Photo(name, staged)


# ---- names -----------------------------------------------------------------------------


def check_template(template: str | None) -> str:
    """The template, or a sentence saying what is wrong with it."""
    text = (template or "").strip() or DEFAULT_TEMPLATE
    if "/" in text or "\\" in text:
        raise BatchRefused(f"name_template must not contain a path separator ('/' or '\\'), got {text!r}: "
                           "every video goes straight into the ZIP.")
    allowed = ", ".join("{" + f + "}" for f in FIELDS)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        raise BatchRefused(f"name_template {text!r} has an unmatched brace; it may use {allowed}.") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELDS or spec or conversion:
            raise BatchRefused(f"name_template may use only {allowed}, got {{{field}}} in {text!r}.")
    return text


def sanitise(name: str) -> str:
    """A file-name stem safe everywhere: letters, digits, '.', '_' and '-' only."""
    clean = re.sub(r"[^\w.-]+", "_", name, flags=re.UNICODE).strip("._-")
    return clean[:MAX_NAME] or "video"


def render(template: str, values: dict[str, Any]) -> str:
    return sanitise(template.format(**{f: "" if values.get(f) is None else values[f] for f in FIELDS}))


def unique(stems: list[str]) -> list[str]:
    """``stems`` with the later of two equal ones (ignoring case) given -2, -3 and so on."""
    taken: set[str] = set()
    out = []
    for stem in stems:
        candidate, n = stem, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add(candidate.lower())
        out.append(candidate)
    return out
