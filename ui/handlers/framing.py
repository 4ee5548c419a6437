"""The framing preview's events: the exact frame a backend will be sent, before anything is
spent, and a standard size picked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

import backends
from orchestration import service
from studio.errors import StudioError
from ui import controls
from ui.panels.framing import FRAMING

if TYPE_CHECKING:
    from ui.state import Studio

# The parameters that decide the frame; the preview follows each of them.
def on_size(s: Studio, value: str | None) -> dict:
    if not value:
        return gr.skip()
    width, height = (int(v) for v in value.split("x"))
    return {s.params.controls["width"]: width, s.params.controls["height"]: height}


def on_change(s: Studio, data: dict) -> dict:
    """The frame as it will be sent; a value out of range is said here, not raised."""
    image = data[s.input.image]
    if not image:
        return {s.framing.picture: None, s.framing.caption: "Add a photo to see how it will be framed."}
    name = data[s.input.backend]
    params = controls.collect(s.params.values(data), name, data[s.input.model], randomize=True)
    params = {k: v for k, v in params.items() if k in (*FRAMING, "model")}
    try:
        framed = service.framing(image, name, params)
    except StudioError as exc:
        return {s.framing.caption: f"Cannot frame it yet: {exc}"}
    backend = backends.get_backend(name)
    label = backend.label
    mode = params.get("resize_mode") or "crop"
    asked = f"{params.get('width')}x{params.get('height')}"
    standard = {f"{w}x{h}" for _, w, h in backend.sizes(params["model"])}
    text = f"{label} gets this frame: **{framed.width}x{framed.height}**" + (
        f" ({mode})" if "resize_mode" in params else "") + "."
    return {s.framing.picture: framed.image, s.framing.caption: text + (f" {framed.note}" if framed.note else ""),
            s.framing.size: asked if asked in standard else None}  # the radio names the size the page has


def inputs(s: Studio) -> set[gr.Component]:
    return {s.input.image, s.input.backend, s.input.model,
            *(s.params.controls[n] for n in FRAMING if n in s.params.controls)}


def triggers(s: Studio) -> list:
    """The person's own changes that move the frame (programmatic ones chain a refresh)."""
    found = [s.input.image.change]
    for name in FRAMING:
        control = s.params.controls.get(name)
        if control is not None:
            found.append(control.input)  # a drag, a typed value, a pick: the person's own change
    return found
