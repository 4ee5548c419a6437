"""The parameters panel: presets and one control per parameter, grouped as the request
model and the backends' options say."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from orchestration import presets
from ui import controls


NO_PRESET = "(none)"


# The first view: motion first, then the clip's length (frames and fps, side by side).
FEATURED = ("motion_bucket_id", "num_frames", "fps")


@dataclass
class ParametersPanel:
    preset: gr.Dropdown
    controls: dict[str, gr.Component]
    groups: dict[str, gr.Column]  # the Advanced box's groups, each hidden while it has nothing to show
    randomize: gr.Checkbox
    table: dict[str, controls.Spec]
    length: gr.Markdown  # the clip's length in seconds (and how long it takes to make), beside the sliders

    @classmethod
    def build_preset(cls) -> gr.Dropdown:
        return gr.Dropdown(
            choices=choices(), value=NO_PRESET, label="Preset: ready-made settings, still adjustable",
            show_label=False, elem_id="preset", scale=4, min_width=250,
        )

    @classmethod
    def build_featured(cls, backend: str) -> tuple[dict[str, gr.Component], gr.Markdown]:
        """The controls of the first view (``FEATURED``), shaped for ``backend``, and the
        length line beside them."""
        table = controls.specs()
        _, shown = controls.layout(backend, None, None, table)
        made: dict[str, gr.Component] = {}
        if "motion_bucket_id" in table:
            made["motion_bucket_id"] = controls.make_control(table["motion_bucket_id"], shown["motion_bucket_id"])
        with gr.Row(equal_height=True):  # side by side, or one under the other on a phone
            for name in FEATURED[1:]:
                if name in table:
                    made[name] = controls.make_control(table[name], shown[name] | {"min_width": 220})
        length = gr.Markdown(elem_id="length")
        return made, length

    @classmethod
    def build(cls, backend: str, preset: gr.Dropdown, featured: dict[str, gr.Component], length: gr.Markdown,
              extras: dict[str, Callable[[], None]] | None = None) -> ParametersPanel:
        """Every other control, in a closed Advanced box, one heading per group; ``extras``
        builds more inside a group (the framing preview sits with the size)."""
        table = controls.specs()
        _, shown = controls.layout(backend, None, None, table)
        made = dict(featured)
        columns: dict[str, gr.Column] = {}
        randomize = None
        with gr.Accordion("Advanced: every SVD setting", open=False, elem_id="advanced"):
            for group in controls.groups(table):
                names = [n for n, spec in table.items() if spec.group == group and n not in featured]
                if not names:
                    continue
                visible = any(shown[n].get("visible") for n in names)
                with gr.Column(visible=visible, elem_classes=["param-group"]) as column:
                    gr.Markdown(f"## {group}", elem_classes=["group-title"])
                    for name in names:
                        made[name] = controls.make_control(table[name], shown[name])
                        if name == "seed":
                            randomize = gr.Checkbox(value=True, label="New seed each run", elem_id="randomize",
                                                    info="Pick a new seed each run; the seed used is written back.")
                    if extras and group in extras:
                        extras[group]()
                columns[group] = column
        assert randomize is not None, "the request model has a seed"
        return cls(preset, made, columns, randomize, table, length)

    def values(self, data: dict) -> dict[str, Any]:
        """The controls' values by parameter name, from an event's input dict."""
        return {name: data[c] for name, c in self.controls.items() if c in data}

    def inputs(self) -> set[gr.Component]:
        return set(self.controls.values())


NO_PRESET_LABEL = "No preset: pick ready-made settings"  # the label is hidden, so the empty entry says it


def choices(mine: list | None = None) -> list[tuple[str, str]]:
    """The preset dropdown's entries: none, the built-in presets, then saved ones (this
    browser's own included, when presets are kept per browser)."""
    return [(NO_PRESET_LABEL, NO_PRESET), *((name, name) for name in presets.load_all(mine))]
