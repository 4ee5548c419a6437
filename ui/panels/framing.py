"""The framing panel: the exact frame a backend will be sent, before anything is spent,
and the standard frame sizes that backend accepts (portrait ones included)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

import backends
from orchestration import service
from studio.errors import StudioError
from ui import controls

if TYPE_CHECKING:
    from ui.studio import Studio

# The parameters that decide the frame; the preview follows each of them.
FRAMING = ("width", "height", "resize_mode")


@dataclass
class FramingPanel:
    size: gr.Radio
    picture: gr.Image
    caption: gr.Markdown

    @classmethod
    def build(cls) -> FramingPanel:
        with gr.Accordion("Framing: what will be sent", open=True):
            size = gr.Radio(label="frame size", choices=[], visible=False, elem_id="frame-size",
                            info="Standard sizes this backend accepts; the width and height sliders follow.")
            picture = gr.Image(label="the frame sent", type="pil", interactive=False, height=200,
                               show_label=True, elem_id="framing")
            caption = gr.Markdown("Add a photo to see how it will be framed.", elem_id="framing-caption")
        return cls(size, picture, caption)

    def describe(self, backend: backends.Backend, model: str) -> dict:
        sizes = backend.sizes(model)
        return {self.size: gr.update(choices=[(f"{label} ({w}x{h})", f"{w}x{h}") for label, w, h in sizes],
                                     value=None, visible=bool(sizes))}

    def layout_outputs(self) -> list[gr.Component]:
        return [self.size]


def on_size(s: Studio, value: str | None) -> dict:
    if not value:  # Gradio reads an empty dict as one value, not as "no updates"
        return {s.params.controls["width"]: gr.update()}
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
