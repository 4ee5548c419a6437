"""The parameters panel: presets and one control per parameter, grouped as the request
model and the backends' options say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

import backends
from studio.presets import Preset
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
    presets: dict[str, Preset]

    @classmethod
    def build_preset(cls, presets: dict[str, Preset]) -> gr.Dropdown:
        return gr.Dropdown(
            choices=[NO_PRESET, *presets], value=NO_PRESET, label="preset", elem_id="preset",
            info="Ready-made settings; you can still adjust every control afterwards.",
        )

    @classmethod
    def build(cls, preset: gr.Dropdown, presets: dict[str, Preset]) -> ParametersPanel:
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
        return cls(preset, made, accordions, randomize, table, presets)

    def values(self, data: dict) -> dict[str, Any]:
        """The controls' values by parameter name, from an event's input dict."""
        return {name: data[c] for name, c in self.controls.items() if c in data}

    def inputs(self) -> set[gr.Component]:
        return set(self.controls.values())


def on_preset(s: Studio, data: dict) -> dict:
    """Apply a preset's values over what is on the page; what it does not set stays."""
    chosen = s.params.presets.get(data[s.params.preset])
    if chosen is None:
        return {}
    values = chosen.values()
    backend = backends.get_backend(data[s.input.backend])
    model = values.get("model", data[s.input.model])
    target = backend.model_for(model, lenient=True)
    accepted = backend.parameters(target)
    skipped = [n for n in values if n != "model" and n not in accepted]
    if "model" in values and values["model"] != target:
        skipped.append("model")
    current = s.params.values(data) | values
    updates = s.reshape(data[s.input.backend], target, current)
    # The preset's own values win over model-dependent defaults.
    for name, value in values.items():
        if name in s.params.controls and name not in skipped:
            updates[s.params.controls[name]]["value"] = value
    if skipped:
        gr.Info(f"Preset '{chosen.name}': {', '.join(skipped)} not used by {backend.label}; left as they were.")
    return updates
