"""The sweep panel: one photo made several ways, shown side by side.

The controls (which parameter, which values, or "every backend") and the grid sit
together in a closed section under the player. Every video of a sweep also goes to the history,
and each cell opens its video in the main player.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from orchestration import sweep


ONE_PARAMETER, EVERY_BACKEND = "One parameter", "Every backend"


# Restarts every video of the grid together, so the cells can be compared frame by frame.
PLAY_TOGETHER = """() => {
  const videos = [...document.querySelectorAll('#sweep-grid video')];
  videos.forEach(v => { v.muted = true; v.loop = true; v.pause(); v.currentTime = 0; });
  videos.forEach(v => v.play());
}"""


@dataclass
class SweepPanel:
    mode: gr.Radio
    parameter: gr.Dropdown
    values: gr.Textbox
    run: gr.Button
    grid: gr.Column
    status: gr.Markdown
    play: gr.Button
    cells: list[gr.Video]
    captions: list[gr.Markdown]  # under each video: a label on the video would hide the value
    opens: list[gr.Button]
    results: gr.State  # history entry id per cell, in the order of the values

    @classmethod
    def build_controls(cls) -> dict[str, Any]:
        with gr.Accordion("Try several values side by side", open=False, elem_id="sweep-box"):
            gr.Markdown("<small>SVD's motion is hard to predict: make one video per value and compare. "
                        "Everything else, the seed included, stays the same.</small>")
            mode = gr.Radio([ONE_PARAMETER, EVERY_BACKEND], value=ONE_PARAMETER, label="compare",
                            elem_id="sweep-mode",
                            info="Every backend: the same photo and settings on each backend that has a key.")
            with gr.Row():
                parameter = gr.Dropdown(label="parameter", choices=[], elem_id="sweep-parameter", scale=2)
                values = gr.Textbox(label="values (2 to 8)", max_lines=1, elem_id="sweep-values", scale=3,
                                    placeholder="for example 40, 100, 180")
            run = gr.Button("Make them side by side", variant="secondary", elem_id="sweep-run")
        return {"mode": mode, "parameter": parameter, "values": values, "run": run}

    @classmethod
    def build(cls, parts: dict[str, Any]) -> SweepPanel:
        """The grid; call where it should sit, with what ``build_controls`` returned."""
        with gr.Column(visible=False, elem_id="sweep-grid") as grid:
            with gr.Row():
                status = gr.Markdown(elem_id="sweep-status")
                play = gr.Button("Play all from the start", size="sm", scale=0, elem_id="sweep-play")
            cells, captions, opens = [], [], []
            for row in range(2):
                with gr.Row():
                    for col in range(sweep.MAX_VALUES // 2):
                        i = row * sweep.MAX_VALUES // 2 + col
                        with gr.Column(min_width=160):
                            cells.append(gr.Video(visible=False, autoplay=True, loop=True, interactive=False,
                                                  height=180, show_label=False, elem_id=f"sweep-cell-{i}"))
                            captions.append(gr.Markdown(visible=False, elem_id=f"sweep-caption-{i}"))
                            opens.append(gr.Button("Open in the player", size="sm", visible=False,
                                                   elem_id=f"sweep-open-{i}"))
        return cls(parts["mode"], parts["parameter"], parts["values"], parts["run"], grid, status, play,
                   cells, captions, opens, gr.State([]))

    def layout_outputs(self) -> list[gr.Component]:
        return [self.parameter, self.values]

    def outputs(self) -> list[gr.Component]:
        return [self.grid, self.status, *self.cells, *self.captions, *self.opens, self.results]
