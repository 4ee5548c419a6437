"""The history panel: this browser's videos, newest first, each one a thumbnail to act on.

Entries are plain data kept in the browser (``gr.BrowserState``), so the history survives
a reload; the files stay on the server only as long as the output folder keeps them. An
entry whose file is gone keeps its recipe: its settings can still be restored and the
video made again.

An entry names its files by handle (``studio.outputs.ref``: the job folder's secret name
and the file's), never by server path, and what comes back from a browser is only ever
looked up as a handle (``file``): an edited entry reaches nothing but files whose secret
folder name its browser was given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image, ImageDraw

from backends.base import Result
from studio import outputs, recipe

if TYPE_CHECKING:
    from ui.studio import Studio

MAX_ENTRIES = 60  # the oldest entries leave the list; their files follow the output folder's rules
GONE = ("This video's file was removed from the server to save space; its settings are kept: press "
        "**Use these settings**, then **Generate**, to make it again.")


@dataclass
class HistoryPanel:
    entries: gr.BrowserState
    gallery: gr.Gallery
    selected: gr.State
    note: gr.Markdown
    reuse: gr.Button
    again: gr.Button
    download: gr.DownloadButton

    @classmethod
    def build(cls) -> HistoryPanel:
        entries = gr.BrowserState([], storage_key="svd-studio-history")
        selected = gr.State(None)
        with gr.Accordion("Your videos", open=True):
            gallery = gr.Gallery(label="history", columns=5, height=230, allow_preview=False, elem_id="history",
                                 object_fit="cover")
            note = gr.Markdown("Click a video to show it, reuse its settings or make it again with a new seed.",
                               elem_id="history-note")
            with gr.Row():
                reuse = gr.Button("Use these settings", size="sm", interactive=False, elem_id="history-reuse")
                again = gr.Button("Again with a new seed", size="sm", interactive=False, elem_id="history-again")
                download = gr.DownloadButton("Download", size="sm", visible=False, elem_id="history-download")
        return cls(entries, gallery, selected, note, reuse, again, download)

    def add(self, past: list[dict], *items: dict) -> dict:
        entries = [*(past or []), *items][-MAX_ENTRIES:]
        return {self.entries: entries, self.gallery: gallery_items(entries)}

    def components(self) -> list[gr.Component]:
        return [self.entries, self.gallery, self.selected, self.note, self.reuse, self.again, self.download]


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


def resolved(item: dict) -> dict:
    """The entry with its files as server paths (None where gone), for this server's own
    use: never handed back to the browser's history."""
    return item | {key: (str(found) if (found := file(item, key)) else None) for key in FILES}


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


def on_load(s: Studio, past: list[dict]) -> dict:
    """The history kept in this browser, shown again after a reload."""
    return {s.history.gallery: gallery_items(past or [])}


def on_pick(s: Studio, evt: gr.SelectData, past: list[dict]) -> dict:
    item = list(reversed(past or []))[evt.index]
    actions = {
        s.history.selected: item["id"],
        s.finish.current: f"Finishing: **{item['caption']}**",
        s.history.reuse: gr.update(interactive=True),
        s.history.again: gr.update(interactive=True),
    }
    if not available(item):
        return actions | {s.history.note: GONE, s.history.download: gr.update(visible=False)}
    return actions | s.output.show(resolved(item)) | {
        s.output.status: f"Showing an earlier video: {item['caption']}",
        s.history.note: f"Selected: {item['caption']}",
        s.history.download: gr.update(value=str(file(item, "video")), visible=True),
    }


def on_reuse(s: Studio, data: dict) -> dict:
    """Put the selected video's settings back on every control."""
    item = find(data[s.history.entries], data[s.history.selected])
    if item is None:
        return {s.history.note: "Click a video in the history first."}
    backend, values = recipe.settings(item["used"])
    updates, said = s.restore(backend, values, data)
    if photo(item):
        updates[s.input.image] = photo(item)
        said += " The photo is back too."
    return updates | {s.history.note: said}


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
