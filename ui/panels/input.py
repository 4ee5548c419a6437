"""The input panel: the photo, where it runs (backend and model) and the API key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import backends

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_PHOTOS = [str(EXAMPLES / name) for name in ("astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png")]


def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` that hands over the uploaded file untouched.

    Gradio's own preprocessing opens the file with PIL and fails with a raw exception on a
    non-image; ours (``studio.images.load_image``) answers every bad upload with one clear
    sentence instead. (Overridden on the instance: a subclass would make Gradio write a
    .pyi stub next to this file at import.)
    """
    component = gr.Image(type="filepath", **kwargs)
    original = component.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return original(payload)

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


EXAMPLE_NAMES = ("Astronaut", "Rocket", "Cat", "Coffee")


@dataclass
class InputPanel:
    image: gr.Image
    examples: gr.Gallery
    backend: gr.Dropdown
    model: gr.Dropdown
    blurb: gr.Markdown
    api_key: gr.Textbox

    @classmethod
    def build(cls, default_backend: str) -> InputPanel:
        with gr.Row(equal_height=True, elem_id="photo-row"):
            image = photo_input(label="Your photo", sources=["upload", "clipboard"], height=170, scale=2,
                                elem_id="image")
            # A gallery rather than gr.Examples: its thumbnails are buttons with names (a screen
            # reader says "Astronaut"), and Enter on one picks it as a click does.
            examples = gr.Gallery(value=[(p, n) for p, n in zip(EXAMPLE_PHOTOS, EXAMPLE_NAMES, strict=True)],
                                  label="Or try one", columns=2, rows=2, height=170, scale=1, min_width=180,
                                  allow_preview=False, object_fit="cover", interactive=False, buttons=[],
                                  elem_id="examples")
        with gr.Row(equal_height=True):
            backend = gr.Dropdown(
                choices=[(backends.get_backend(n).label, n) for n in backends.names()],
                value=default_backend, label="Where it runs (backend)", elem_id="backend", min_width=220,
            )
            model = gr.Dropdown(label="Model", elem_id="model", min_width=220)  # one under the other on a phone
        blurb = gr.Markdown(elem_id="blurb")
        api_key = gr.Textbox(
            type="password", label="API key", visible=False, max_lines=1, elem_id="api-key",
            info="Used only for your requests; never stored or shown. Overrides the environment variable.",
        )
        return cls(image, examples, backend, model, blurb, api_key)

    @staticmethod
    def example_path(index: int) -> str:
        return EXAMPLE_PHOTOS[index]

