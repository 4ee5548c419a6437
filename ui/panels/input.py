"""The input panel: the photo, where it runs (backend and model) and the API key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import backends
from studio.request import describe

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


@dataclass
class InputPanel:
    image: gr.Image
    backend: gr.Dropdown
    model: gr.Dropdown
    blurb: gr.Markdown
    api_key: gr.Textbox

    @classmethod
    def build(cls, default_backend: str) -> InputPanel:
        image = photo_input(label="Your photo", sources=["upload", "clipboard"], height=340, elem_id="image")
        gr.Examples(examples=[[p] for p in EXAMPLE_PHOTOS], inputs=[image], label="Or try one of these photos")
        with gr.Row():
            backend = gr.Dropdown(
                choices=[(backends.get_backend(n).label, n) for n in backends.names()],
                value=default_backend, label="backend", info="Where the video is made.", elem_id="backend",
            )
            model = gr.Dropdown(label="model", info=describe("model"), elem_id="model")
        blurb = gr.Markdown(elem_id="blurb")
        api_key = gr.Textbox(
            type="password", label="API key", visible=False, max_lines=1, elem_id="api-key",
            info="Used only for your requests; never stored or shown. Overrides the environment variable.",
        )
        return cls(image, backend, model, blurb, api_key)

    def describe_backend(self, backend: backends.Backend, model: str, *, new_backend: bool) -> dict:
        """Updates for the model list, the blurb and (for a new backend only) the key box:
        a key typed for one provider means nothing to another, but changing the model or
        the preset keeps it."""
        choices = backend.model_choices()
        updates: dict = {
            self.model: gr.update(choices=[(label, mid) for mid, label in choices.items()], value=model,
                                  interactive=len(choices) > 1),
            self.blurb: gr.update(value=f"<small>{backend.blurb}</small>"),
        }
        if new_backend:
            label = f"API key (or set {backend.key_env})" if backend.key_env else "API key"
            updates[self.api_key] = gr.update(visible=bool(backend.key_env), label=label, value="")
        return updates
