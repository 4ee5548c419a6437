"""The restore panel: drop a studio video (or a settings JSON) to get its settings back."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


FILE_TYPES = [".mp4", ".webm", ".mov", ".mkv", ".gif", ".json"]


@dataclass
class RestorePanel:
    file: gr.File
    note: gr.Markdown

    @classmethod
    def build(cls) -> RestorePanel:
        with gr.Accordion("Restore settings from a video", open=False, elem_id="restore-box"):
            file = gr.File(label="Drop a video made here, or a settings JSON", file_types=FILE_TYPES,
                           type="filepath", height=120, elem_id="restore-file")
            note = gr.Markdown(elem_id="restore-note")
        return cls(file, note)
