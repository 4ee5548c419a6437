"""The history panel: this session's videos, newest first; a click brings one back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from backends.base import Result

if TYPE_CHECKING:
    from ui.studio import Studio


@dataclass
class HistoryPanel:
    entries: gr.State
    gallery: gr.Gallery

    @classmethod
    def build(cls) -> HistoryPanel:
        entries = gr.State([])
        with gr.Accordion("This session's videos", open=True):
            gallery = gr.Gallery(label="history", columns=4, height=220, allow_preview=False, elem_id="history")
        return cls(entries, gallery)

    def add(self, past: list[dict], item: dict) -> dict:
        entries = [*past, item]
        return {self.entries: entries, self.gallery: items(entries)}


def entry(result: Result) -> dict:
    """A history entry: plain data, enough to show the job again."""
    seed = result.used.get("seed")
    return {
        "video": str(result.video), "gif": str(result.gif) if result.gif else None, "used": result.used,
        "sent": result.sent, "caption": f"{result.used['backend']} · seed {seed if seed is not None else '-'}",
    }


def items(entries: list[dict]) -> list[tuple[str, str]]:
    return [(e["video"], e["caption"]) for e in reversed(entries)]


def on_pick(s: Studio, evt: gr.SelectData, past: list[dict]) -> dict:
    item = list(reversed(past))[evt.index]
    return s.output.show(item) | {s.output.status: f"Showing an earlier video: {item['caption']}"}
