"""The run panel: the large Generate button, and Cancel beside it while a job runs."""

from __future__ import annotations

import gradio as gr


def build() -> tuple[gr.Button, gr.Button]:
    with gr.Row(elem_id="run-row"):
        go = gr.Button("Generate", variant="primary", size="lg", scale=3, elem_id="generate")
        stop = gr.Button("Cancel", variant="stop", size="lg", scale=1, visible=False, elem_id="cancel")
    return go, stop
