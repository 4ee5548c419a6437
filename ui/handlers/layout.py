"""Events that reshape the page: a backend, model or preset picked, the page opened, and the
length line beside the frames and fps sliders.

A pick by keyboard (arrows or typing, then Enter) fires ``.change`` but not ``.select``,
and a pick by mouse fires both; so these run on ``.change``. Code that sets a value
(restoring settings sets the backend) fires ``.change`` too, and ``.input`` fires on every
blur: so each handler first compares the pick with what the page is shaped for
(``Studio.shaped``, written by every reshape) and does nothing when they agree.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import gradio as gr

import backends
from orchestration import presets, service
from ui import controls, layout, views
from ui.panels.parameters import NO_PRESET

if TYPE_CHECKING:
    from ui.state import Studio


def default_backend() -> str:
    return backends.names()[0]


def key_variables() -> list[str]:
    """The environment variables that hold the offered backends' keys."""
    return [b.key_env for b in map(backends.get_backend, backends.names()) if b.key_env]


def on_backend(s: Studio, data: dict) -> dict:
    name = data[s.input.backend]
    if name == (data[s.shaped] or {}).get("backend"):
        return gr.skip()
    chosen = backends.get_backend(name)
    if chosen.key_env and not os.environ.get(chosen.key_env):
        gr.Warning(f"{chosen.label} needs an API key: set {chosen.key_env} in the environment or paste a key "
                   "in the API key field.")
    return layout.reshape(s, name, None, None)


def on_model(s: Studio, data: dict) -> dict:
    shaped = data[s.shaped] or {}
    if (data[s.input.backend], data[s.input.model]) == (shaped.get("backend"), shaped.get("model")):
        return gr.skip()
    return layout.reshape(s, data[s.input.backend], data[s.input.model], s.params.values(data))


def on_load(s: Studio) -> dict:
    return layout.reshape(s, default_backend(), None, None)


def on_preset(s: Studio, data: dict) -> dict:
    """Apply a preset's values over what is on the page; what it does not set stays."""
    name = data[s.params.preset]
    shaped = dict(data[s.shaped] or {})
    if name in (None, NO_PRESET):  # the page keeps its values; the same preset picked next applies again
        return {s.shaped: {**shaped, "preset": None}} if shaped.get("preset") else gr.skip()
    if name == shaped.get("preset"):
        return gr.skip()
    chosen = presets.load_all(data.get(s.presets.mine)).get(name)  # saved ones included, this browser's too
    if chosen is None:
        return gr.skip()
    updates, skipped = layout.apply(s, data[s.input.backend], chosen.values(), data)
    if skipped:
        label = backends.get_backend(data[s.input.backend]).label
        gr.Info(f"Preset '{chosen.name}': {', '.join(skipped)} not used by {label}; left as they were.")
    updates[s.shaped] = {**updates.get(s.shaped, shaped), "preset": name}
    return updates


def on_length(s: Studio, data: dict) -> str:
    """'3.6 s of video (25 frames at 7 fps) · about 2 min to make on this machine's CPU'."""
    values = s.params.values(data)
    name = data[s.input.backend]
    params = controls.collect(values, name, data[s.input.model], randomize=True)
    return views.length_line(values.get("num_frames"), values.get("fps"), service.estimate(name, params))
