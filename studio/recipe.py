"""Every video carries its recipe: the parameters used, as one JSON object inside the file.

Format: ``{"made_with": "SVD Studio", "recipe_version": 1, **used}``, compact UTF-8 JSON.
In MP4/MOV/WebM/MKV it is the container's ``comment`` tag, the one free-text tag every
muxer maps (``©cmt`` in MP4, ``COMMENT`` in Matroska) and every player and ``ffmpeg -i``
shows, so a person can see and copy it. It is written by a remux (``-c copy``), never a
re-encode: the frames stay bit-identical and stamping takes milliseconds. MP4/MOV keep
``+faststart`` (index before the data) so browsers still play them while downloading.
GIFs carry the same text in a Comment Extension right after the global colour table.

Nothing that looks like a credential goes in: names containing key/token/secret/password
are dropped at any depth and every string passes through ``secrets.redact`` (which also
masks a URL's query and user-info). A URL masked so is not restored: it would send the
provider a useless address, so the person enters it again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageSequence

from studio.errors import GenerationFailed, NotARecipe
from studio.secrets import is_masked, redact
from studio.video import ffmpeg

MARK = "SVD Studio"
VERSION = 1
MAX_FILE = 200 * 1024 * 1024
MAX_JSON = 1024 * 1024
MAX_TEXT = 60_000  # bytes; MOV stores tags with a 16-bit length and silently wraps longer ones
NOT_RESTORED = {"made_with", "recipe_version", "elapsed_seconds", "task_id", "device", "node", "backend",
                # how a longer clip was put together (orchestration.extend), not a control on the page
                "extended", "same_seed", "smooth_seams", "num_frames_total"}
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".webm": "webm", ".mkv": "matroska"}
_SECRET = re.compile("key|token|secret|password", re.IGNORECASE)
_log = logging.getLogger(__name__)
_REFUSALS = {
    "unreadable": "{name} is not a video, GIF or settings file that SVD Studio can read.",
    "empty": "{name} is empty, so it carries no settings to restore.",
    "large": "{name} is too large to read settings from.",
    "damaged": "{name} is damaged or incomplete, so its settings cannot be restored.",
    "foreign": "{name} was not made by SVD Studio, so it carries no settings to restore.",
    "not-object": "{name} holds JSON, but not a settings object, so there is nothing to restore.",
}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not _SECRET.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return redact(value) if isinstance(value, str) else value


def make(used: dict) -> dict:
    """The recipe for ``used``; idempotent, so a recipe passed in again comes out the same."""
    recipe: dict[str, Any] = {"made_with": MARK, "recipe_version": VERSION}
    return recipe | {k: v for k, v in _clean(used).items() if k not in recipe}


def _text(recipe: dict) -> str:
    # default=str: a stray Path or enum must not lose the whole recipe.
    text = json.dumps(make(recipe), separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text.encode("utf-8")) > MAX_TEXT:
        raise GenerationFailed("The settings are too long to store inside the video.")
    return text


def _replace_atomically(target: Path, write) -> Path:
    """Run ``write(temp)`` on a temp file beside ``target``, then swap it in; never a half file."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix)
    os.close(fd)
    temp = Path(name)
    try:
        write(temp)
        shutil.copymode(target, temp)  # mkstemp makes 0600; the video keeps its own mode
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def stamp(video: Path, recipe: dict) -> Path:
    """Store the recipe in the ``comment`` tag of an MP4/MOV/WebM/MKV (or a GIF) in place."""
    video = Path(video)
    if video.suffix.lower() == ".gif":
        return stamp_gif(video, recipe)
    muxer = _MUXERS.get(video.suffix.lower())
    if muxer is None:
        raise GenerationFailed(f"Settings can only be stored in MP4, MOV, WebM, MKV or GIF files, not {video.name}.")
    text = _text(recipe)
    fast = ["-movflags", "+faststart"] if muxer in ("mp4", "mov") else []

    def write(temp: Path) -> None:
        args = ["-nostdin", "-y", "-i", str(video), "-map", "0", "-c", "copy", "-metadata", f"comment={text}", *fast]
        proc = subprocess.run([ffmpeg(), "-v", "error", *args, "-f", muxer, str(temp)], capture_output=True, text=True)
        if proc.returncode != 0:
            _log.warning("ffmpeg could not stamp %s: %s", video.name, proc.stderr.strip()[-500:])
            raise GenerationFailed(f"Could not store the settings in {video.name}: ffmpeg cannot read it as a video.")

    return _replace_atomically(video, write)


def stamp_gif(gif: Path, recipe: dict) -> Path:
    """Put the recipe in a Comment Extension, replacing any comment already in that place."""
    gif = Path(gif)
    data = gif.read_bytes()
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        raise GenerationFailed(f"Could not store the settings in {gif.name}: it is not a GIF.")
    packed = data[10]  # header (6) + logical screen descriptor (7), then the global colour table
    end = at = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    while data[end:end + 2] == b"\x21\xfe":  # an earlier stamp: skip its sub-blocks
        end += 2
        while end < len(data) and data[end]:
            end += data[end] + 1
        end += 1
    raw = _text(recipe).encode("utf-8")
    chunks = b"".join(bytes([len(c)]) + c for c in (raw[i:i + 255] for i in range(0, len(raw), 255)))
    # Comment extensions are a GIF89a feature, so an 87a header is raised to 89a.
    out = b"GIF89a" + data[6:at] + b"\x21\xfe" + chunks + b"\x00" + data[end:]
    return _replace_atomically(gif, lambda temp: temp.write_bytes(out))


def _refuse(name: str, why: str) -> NotARecipe:
    return NotARecipe(_REFUSALS[why].format(name=name))  # the base name only: never a folder


def _ffmetadata(text: str) -> dict[str, str]:
    """Global tags of ffmpeg's ffmetadata text: ``=;#\\`` and newline come escaped by a backslash."""
    tags: dict[str, str] = {}
    for line in re.findall(r"(?:[^\\\n]|\\.)*(?=\n|$)", text, re.DOTALL):
        if line.startswith("["):
            break  # [STREAM]/[CHAPTER] sections follow the global tags
        pair = re.fullmatch(r"((?:[^\\=]|\\.)*)=(.*)", line, re.DOTALL)
        if pair and not line.startswith((";", "#")):
            key, value = (re.sub(r"\\(.)", r"\1", part, flags=re.DOTALL) for part in pair.groups())
            tags.setdefault(key.lower(), value)  # Matroska spells it COMMENT
    return tags


def _video_comment(path: Path) -> str | None:
    # Copying the video stream to nowhere reads every packet (no decoding), so a truncated
    # file is caught even when its index, and with it the tag, is intact at the front.
    args = ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-", "-f", "ffmetadata", "pipe:1"]
    try:
        proc = subprocess.run([ffmpeg(), "-v", "error", "-nostdin", *args], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise _refuse(path.name, "damaged") from None
    if proc.returncode != 0 or proc.stderr.strip():
        raise _refuse(path.name, "damaged")
    return _ffmetadata(proc.stdout.decode("utf-8", "replace")).get("comment")


def _gif_comment(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            comment = image.info.get("comment")
            for frame in ImageSequence.Iterator(image):
                frame.load()  # decodes every frame: a cut-off GIF fails here, not on the page
    except (OSError, EOFError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _refuse(path.name, "damaged") from None
    return comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment


def _unmark(name: str, text: str | None, *, marked: bool) -> dict:
    """The object in ``text``; from a video or GIF it must carry the mark."""
    try:
        data = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        data = None
    if marked and not (isinstance(data, dict) and data.get("made_with") == MARK):
        raise _refuse(name, "foreign")
    if not isinstance(data, dict):
        raise _refuse(name, "unreadable" if data is None else "not-object")
    if not marked and isinstance(data.get("parameters"), dict) and "name" in data:
        data = data["parameters"]  # a preset file
    return {k: v for k, v in _clean(data).items() if k not in ("made_with", "recipe_version")}


def read(path: str | Path) -> dict:
    """The parameters stored in a studio video or GIF, or in a settings/preset JSON file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        raise _refuse(path.name, "unreadable") from None
    if size == 0:
        raise _refuse(path.name, "empty")
    if size > MAX_FILE:
        raise _refuse(path.name, "large")
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return _unmark(path.name, _video_comment(path), marked=True)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _unmark(path.name, _gif_comment(path), marked=True)
    if path.suffix.lower() == ".json" or head.lstrip()[:1] in (b"{", b"["):
        if size > MAX_JSON:
            raise _refuse(path.name, "large")
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            raise _refuse(path.name, "unreadable") from None
        return _unmark(path.name, text, marked=False)
    raise _refuse(path.name, "unreadable")


def settings(recipe: dict) -> tuple[str | None, dict]:
    """(backend, values a page can restore): bookkeeping and lists/dicts such as ``segments``
    stay behind, and so does None, which restores nothing."""
    backend = recipe.get("backend")
    values = {k: v for k, v in recipe.items()
              if k not in NOT_RESTORED and isinstance(v, (str, int, float, bool)) and not is_masked(v)}
    return (backend if isinstance(backend, str) else None), values
