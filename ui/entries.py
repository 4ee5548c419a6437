"""History entries: plain data kept in the browser, one per video made on the page.

An entry is enough to show its video again or make it again. Entries live in the
browser (``gr.BrowserState``), so every path in one is checked against this server's
outputs before it is used: an entry is never a way to serve anything else from the disk.
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


def entry(result: Result, poster: Path | None = None, label: str | None = None) -> dict:
    """A history entry: plain data, enough to show the job again or make it again."""
    seed = result.used.get("seed")
    caption = label or f"{result.used['backend']} · seed {seed if seed is not None else '-'}"
    return {
        "id": uuid.uuid4().hex[:12], "video": str(result.video), "gif": str(result.gif) if result.gif else None,
        "poster": str(poster) if poster else None, "photo": str(result.photo) if result.photo else None,
        "used": result.used, "sent": result.sent, "caption": caption,
    }


def available(item: dict) -> bool:
    """The entry's video is still one of this server's files."""
    return outputs.is_output(item["video"]) and Path(item["video"]).is_file()


def gallery_items(entries: list[dict]) -> list[tuple[str, str]]:
    shown = []
    for item in reversed(entries):
        poster = item.get("poster")
        if not available(item):
            shown.append((str(_gone_picture()), f"{item['caption']} (file removed)"))
        else:
            shown.append((poster if poster and outputs.is_output(poster) else item["video"], item["caption"]))
    return shown


def photo(item: dict) -> str | None:
    """The photo the entry's video was made from, while the server still has it."""
    kept = item.get("photo")
    return kept if kept and outputs.is_output(kept) and Path(kept).is_file() else None


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

