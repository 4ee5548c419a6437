"""The presets panel: save the page's settings under a name, download a preset, add one
from a file. A small button beside the preset picker opens it; the picker itself is the
parameters panel's. Saved presets are shared data files, or, on a public Space, kept in
each browser (``mine``, see ``orchestration.presets``)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr



@dataclass
class PresetsPanel:
    name: gr.Textbox
    description: gr.Textbox
    save: gr.Button
    download: gr.DownloadButton
    upload: gr.UploadButton
    note: gr.Markdown
    toggle: gr.Button  # beside the picker: opens and closes the box
    box: gr.Column
    opened: gr.State
    mine: gr.BrowserState  # this browser's own presets, when they are not shared (SHARED_PRESETS=0)

    @classmethod
    def build_toggle(cls) -> gr.Button:
        return gr.Button("Save preset…", size="md", scale=1, min_width=130, elem_id="preset-open")

    @classmethod
    def build(cls, toggle: gr.Button) -> PresetsPanel:
        with gr.Column(visible=False, elem_id="preset-box", elem_classes=["tool-box"]) as box:
            with gr.Row():
                name = gr.Textbox(label="preset name", max_lines=1, scale=2, elem_id="preset-name",
                                  info="Letters, digits, spaces and - _ . ( ) ' + & , (up to 60).")
                description = gr.Textbox(label="description (optional)", max_lines=1, scale=3,
                                         elem_id="preset-description")
            with gr.Row():
                save = gr.Button("Save these settings as a preset", size="sm", elem_id="preset-save")
                download = gr.DownloadButton("Download the chosen preset", size="sm", visible=False,
                                             elem_id="preset-download")
                upload = gr.UploadButton("Add a preset from a JSON file", size="sm", file_types=[".json"],
                                         elem_id="preset-upload")
            note = gr.Markdown(elem_id="preset-note")
        mine = gr.BrowserState([], storage_key="svd-studio-presets")
        return cls(name, description, save, download, upload, note, toggle, box, gr.State(False), mine)
