"""History entries: plain data kept in the browser, one per video made on the page.

An entry is enough to show its video again or make it again. Entries live in the
browser (``gr.BrowserState``), so an entry names its files by handle (``studio.outputs.ref``:
the job folder's secret name and the file's), never by server path, and what comes back
from a browser is only ever looked up as a handle (``file``): an edited entry reaches
nothing but files whose secret folder name its browser was given.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from PIL import Image, ImageDraw

from backends.base import Result
from studio import outputs

MAX_ENTRIES = 60  # the oldest entries leave the list; their files follow the output folder's rules
GONE = ("This video's file was removed from the server to save space; its settings are kept: press "
        "**Use these settings**, then **Generate**, to make it again.")


FILES = ("video", "gif", "poster", "photo")  # the entry's keys that hold a file handle


def entry(result: Result, poster: Path | None = None, label: str | None = None) -> dict:
    """A history entry: plain data, enough to show the job again or make it again. Its
    files are handles (no server path reaches the browser)."""
    seed = result.used.get("seed")
    caption = label or f"{result.used['backend']} · seed {seed if seed is not None else '-'}"
    return {
        "id": uuid.uuid4().hex[:12], "video": outputs.ref(result.video), "gif": outputs.ref(result.gif),
        "poster": outputs.ref(poster), "photo": outputs.ref(result.photo),
        "used": result.used, "sent": result.sent, "caption": caption,
    }


def file(item: dict | None, key: str) -> Path | None:
    """The server file an entry's handle names, while it is there; None otherwise (a
    path, an edited handle, a removed file)."""
    return outputs.from_ref(item.get(key)) if isinstance(item, dict) else None


def available(item: dict) -> bool:
    """The entry's video is still one of this server's files."""
    return file(item, "video") is not None


def gallery_items(entries: list[dict]) -> list[tuple[str, str]]:
    shown = []
    for item in reversed(entries):
        video = file(item, "video")
        if video is None:
            shown.append((str(_gone_picture()), f"{item['caption']} (file removed)"))
        else:
            shown.append((str(file(item, "poster") or video), item["caption"]))
    return shown


def photo(item: dict) -> str | None:
    """The photo the entry's video was made from, while the server still has it."""
    kept = file(item, "photo")
    return str(kept) if kept else None


def find(past: list[dict], entry_id: str | None) -> dict | None:
    return next((item for item in past or [] if item.get("id") == entry_id), None)


_GONE_PICTURE: Path | None = None


def _gone_picture() -> Path:
    """One grey card for entries whose file was removed (made once, in the output folder)."""
    global _GONE_PICTURE
    if _GONE_PICTURE is None or not _GONE_PICTURE.exists():
        card = Image.new("RGB", (320, 180), (64, 64, 72))
        ImageDraw.Draw(card).text((96, 82), "file removed", fill=(220, 220, 220))
        _GONE_PICTURE = outputs.run_dir() / "file-removed.png"
        card.save(_GONE_PICTURE)
    return _GONE_PICTURE

