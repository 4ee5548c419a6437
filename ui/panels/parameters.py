"""The parameters panel: presets and one control per parameter, grouped as the request
model and the backends' options say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

import backends
from orchestration import presets
from ui import controls

if TYPE_CHECKING:
    from ui.studio import Studio

NO_PRESET = "(none)"


@dataclass
class ParametersPanel:
    preset: gr.Dropdown
    controls: dict[str, gr.Component]
    groups: dict[str, gr.Accordion]
    randomize: gr.Checkbox
    table: dict[str, controls.Spec]

    @classmethod
    def build_preset(cls) -> gr.Dropdown:
        return gr.Dropdown(
            choices=choices(), value=NO_PRESET, label="preset", elem_id="preset",
            info="Ready-made settings; you can still adjust every control afterwards.",
        )

    @classmethod
    def build(cls, preset: gr.Dropdown) -> ParametersPanel:
        table = controls.specs()
        made: dict[str, gr.Component] = {}
        accordions: dict[str, gr.Accordion] = {}
        randomize = None
        for group in controls.groups(table):
            with gr.Accordion(group, open=group in ("Frames and size", "Motion")) as accordion:
                for name, spec in table.items():
                    if spec.group == group:
                        made[name] = controls.make_control(spec)
                if "seed" in made and randomize is None:
                    randomize = gr.Checkbox(value=True, label="Randomize seed", elem_id="randomize",
                                            info="Pick a new seed each run; the seed used is written back above.")
            accordions[group] = accordion
        assert randomize is not None, "the request model has a seed"
        return cls(preset, made, accordions, randomize, table)

    def values(self, data: dict) -> dict[str, Any]:
        """The controls' values by parameter name, from an event's input dict."""
        return {name: data[c] for name, c in self.controls.items() if c in data}

    def inputs(self) -> set[gr.Component]:
        return set(self.controls.values())


def choices(mine: list | None = None) -> list[str]:
    """The preset dropdown's entries: none, the built-in presets, then saved ones (this
    browser's own included, when presets are kept per browser)."""
    return [NO_PRESET, *presets.load_all(mine)]


def on_preset(s: Studio, data: dict) -> dict:
    """Apply a preset's values over what is on the page; what it does not set stays."""
    # Saved presets included, as of now, and this browser's own.
    chosen = presets.load_all(data.get(s.presets.mine)).get(data[s.params.preset])
    if chosen is None:
        return {s.input.model: gr.update()}  # Gradio reads an empty dict as one value, not "no updates"
    updates, skipped = s.apply(data[s.input.backend], chosen.values(), data)
    if skipped:
        label = backends.get_backend(data[s.input.backend]).label
        gr.Info(f"Preset '{chosen.name}': {', '.join(skipped)} not used by {label}; left as they were.")
    return updates
