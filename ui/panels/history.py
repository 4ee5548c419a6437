"""The history panel: this browser's videos, newest first, each one a thumbnail to act on.

Entries are plain data kept in the browser (``gr.BrowserState``), so the history survives
a reload; the files stay on the server only as long as the output folder keeps them. An
entry whose file is gone keeps its recipe: its settings can still be restored and the
video made again.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass
class HistoryPanel:
    entries: gr.BrowserState
    gallery: gr.Gallery
    selected: gr.State
    note: gr.Markdown
    reuse: gr.Button
    again: gr.Button
    download: gr.DownloadButton
    box: gr.Accordion  # hidden while empty, titled with the count: 'Your videos (3)'

    @classmethod
    def build(cls) -> HistoryPanel:
        entries = gr.BrowserState([], storage_key="svd-studio-history")
        selected = gr.State(None)
        with gr.Accordion("Your videos", open=True, visible=False, elem_id="history-box") as box:
            gallery = gr.Gallery(label="history", columns=5, height=230, allow_preview=False, elem_id="history",
                                 object_fit="cover")
            note = gr.Markdown("Click a video to show it, reuse its settings or make it again with a new seed.",
                               elem_id="history-note")
            with gr.Row():
                reuse = gr.Button("Use these settings", size="sm", interactive=False, elem_id="history-reuse")
                again = gr.Button("Again with a new seed", size="sm", interactive=False, elem_id="history-again")
                download = gr.DownloadButton("Download", size="sm", visible=False, elem_id="history-download")
        return cls(entries, gallery, selected, note, reuse, again, download, box)

    def components(self) -> list[gr.Component]:
        return [self.entries, self.gallery, self.selected, self.note, self.reuse, self.again, self.download]
