"""Composes the page: where each panel sits, and which event runs which handler.

Each panel builds its own components; this module only places them and wires them.
A new feature is a new panel module and a few lines here.
"""

from __future__ import annotations

import os

import gradio as gr

import backends
from studio import presets, secrets
from ui import api
from ui.jobs import Runner
from ui.panels import history, parameters, run
from ui.panels.history import HistoryPanel
from ui.panels.input import InputPanel
from ui.panels.output import OutputPanel
from ui.panels.parameters import ParametersPanel
from ui.panels.resume import ResumePanel
from ui.studio import Studio, bind

CSS = """
#title h1 {margin-bottom: 0}
#title p {margin-top: 4px; color: var(--body-text-color-subdued)}
#status {min-height: 2.2em}
.gradio-container {max-width: 1400px !important}
"""
# Layout events are quick; jobs have no Gradio limit because each backend keeps its own
# line (backends.base.Slots): people waiting for the GPU never hold up a hosted job.
LAYOUT_CONCURRENCY = 8


def default_backend() -> str:
    return backends.names()[0]


def on_backend(s: Studio, name: str) -> dict:
    chosen = backends.get_backend(name)
    if chosen.key_env and not os.environ.get(chosen.key_env):
        gr.Warning(f"{chosen.label} needs an API key: set {chosen.key_env} in the environment or paste a key "
                   "in the API key field.")
    return s.reshape(name, None, None)


def on_model(s: Studio, data: dict) -> dict:
    return s.reshape(data[s.input.backend], data[s.input.model], s.params.values(data))


def on_load(s: Studio) -> dict:
    return s.reshape(default_backend(), None, None)


def build_studio(runner: Runner | None = None) -> Studio:
    """Every panel, placed; call inside a ``gr.Blocks``."""
    table = presets.load_presets()
    gr.Markdown(
        "# SVD Studio\nTurn a still photo into a short video with Stable Video Diffusion. "
        "Drop in an image, pick where it runs, adjust the motion, press **Generate**.",
        elem_id="title",
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            inputs = InputPanel.build(default_backend())
            preset = ParametersPanel.build_preset(table)
            go, stop = run.build()
            resume = ResumePanel.build()
            params = ParametersPanel.build(preset, table)
        with gr.Column(scale=6):
            output = OutputPanel.build()
            past = HistoryPanel.build()
    return Studio(inputs, params, resume, output, past, go, stop, runner or Runner())


def wire(s: Studio, demo: gr.Blocks) -> None:
    layout = s.layout_outputs()
    private = {"api_visibility": "private"}
    # .change, not .input: Gradio 6 fires .input twice for a mouse pick in a dropdown, and
    # nothing but the person sets these two.
    s.input.backend.change(bind(on_backend, s), s.input.backend, layout, **private)
    s.input.model.input(bind(on_model, s), {s.input.backend, s.input.model, *s.params.inputs()}, layout, **private)
    s.params.preset.change(bind(parameters.on_preset, s),
                           {s.input.backend, s.input.model, s.params.preset, *s.params.inputs()}, layout, **private)
    outputs = run.job_outputs(s)
    s.go.click(bind(run.on_generate, s),
               {s.input.image, s.input.backend, s.input.model, s.input.api_key, s.params.randomize,
                s.history.entries, *s.params.inputs()},
               outputs, concurrency_limit=None, **private)
    s.resume.button.click(bind(run.on_resume, s),
                          {s.input.backend, s.input.api_key, s.resume.task_id, s.history.entries,
                           s.params.controls["seed"]},
                          outputs, concurrency_limit=None, **private)
    s.stop.click(bind(run.on_cancel, s), None, s.output.status, queue=False, **private)
    s.history.gallery.select(bind(history.on_pick, s), s.history.entries, s.output.components(), **private)
    demo.load(bind(on_load, s), None, layout, **private)
    demo.unload(bind(run.on_unload, s))
    gr.api(api.generate_endpoint(s.runner, default_backend()), api_name="generate", concurrency_limit=None)
    gr.api(api.resume_endpoint(s.runner), api_name="resume", concurrency_limit=None)


def build_demo() -> gr.Blocks:
    secrets.remember_environment(*(b.key_env for b in map(backends.get_backend, backends.names()) if b.key_env))
    with gr.Blocks(title="SVD Studio: image to video") as demo:
        wire(build_studio(), demo)
    return demo
