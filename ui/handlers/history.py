"""The history's events: show an earlier video, put its settings back, list it after a reload."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from studio import recipe
from ui.entries import GONE, available, file, find, gallery_items, photo
from ui.jobview import show

from ui import layout

if TYPE_CHECKING:
    from ui.state import Studio


def on_load(s: Studio, past: list[dict]) -> dict:
    """The history kept in this browser, shown again after a reload (hidden while empty)."""
    past = past or []
    return {s.history.gallery: gallery_items(past),
            s.history.box: gr.update(visible=bool(past), label=f"Your videos ({len(past)})")}


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
    return actions | show(s, item) | {
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
    updates, said = layout.restore(s, backend, values, data)
    if photo(item):
        updates[s.input.image] = photo(item)
        said += " The photo is back too."
    return updates | {s.history.note: said}
