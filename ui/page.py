"""Composes the page: where each panel sits, and which event runs which handler.

Each panel builds its own components; this module only places them and wires them.
A new feature is a new panel module and a few lines here.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

import backends
from studio import outputs, secrets
from ui import api
from ui.jobs import Runner
from ui.panels import batch, finish, framing, history, parameters, restore, run, sweep
from ui.panels import presets as saved_presets
from ui.panels.finish import FinishPanel
from ui.panels.framing import FramingPanel
from ui.panels.history import HistoryPanel
from ui.panels.input import InputPanel
from ui.panels.output import OutputPanel
from ui.panels.parameters import ParametersPanel
from ui.panels.presets import PresetsPanel
from ui.panels.restore import RestorePanel
from ui.panels.resume import ResumePanel
from ui.panels.sweep import SweepPanel
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
    gr.Markdown(
        "# SVD Studio\nTurn a still photo into a short video with Stable Video Diffusion. "
        "Drop in an image, pick where it runs, adjust the motion, press **Generate**. "
        "Every video remembers its settings: drop one back in to get them again.",
        elem_id="title",
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            inputs = InputPanel.build(default_backend())
            framing = FramingPanel.build()
            preset = ParametersPanel.build_preset()
            restorer = RestorePanel.build()
            go, stop = run.build()
            sweep_controls = SweepPanel.build_controls()
            resume = ResumePanel.build()
            params = ParametersPanel.build(preset)
            saved = PresetsPanel.build()
        with gr.Column(scale=6):
            output = OutputPanel.build()
            sweeps = SweepPanel.build(sweep_controls)
            finishing = FinishPanel.build()
            past = HistoryPanel.build()
    return Studio(inputs, framing, params, saved, restorer, resume, sweeps, output, finishing, past, go, stop,
                  runner or Runner())


def wire(s: Studio, demo: gr.Blocks) -> None:
    layout = s.layout_outputs()
    private = {"api_visibility": "private"}
    reframe = _framing(s)
    # Only the person's own pick reshapes the page (.select): restoring settings sets the
    # backend too, and must not have its values reset by a change event; and .input fires
    # twice for one pick in a dropdown, the second time with values the first has outdated. Whatever
    # reshapes the page is followed by the framing preview (.then), so the preview reads
    # the page once it is consistent, never halfway through an update.
    reframe(s.input.backend.select(bind(on_backend, s), s.input.backend, layout, **private))
    reframe(s.input.model.select(bind(on_model, s), {s.input.backend, s.input.model, *s.params.inputs()}, layout,
                                 **private))
    reframe(s.params.preset.change(bind(parameters.on_preset, s),
                                   {s.input.backend, s.input.model, s.params.preset, s.presets.mine,
                                    *s.params.inputs()}, layout, **private))
    s.params.preset.change(bind(saved_presets.on_chosen, s), [s.params.preset, s.presets.mine], s.presets.download,
                           **private)
    everything = {s.input.image, s.input.backend, s.input.model, s.input.api_key, s.params.randomize,
                  s.history.entries, s.history.selected, *s.params.inputs()}
    outputs = run.job_outputs(s)
    gif = bind(run.on_gif, s)
    s.go.click(bind(run.on_generate, s), everything, outputs, concurrency_limit=None, **private
               ).success(gif, s.history.entries, run.gif_outputs(s), **private)
    s.resume.button.click(bind(run.on_resume, s),
                          {s.input.backend, s.input.api_key, s.resume.task_id, s.history.entries,
                           s.params.controls["seed"]},
                          outputs, concurrency_limit=None, **private
                          ).success(gif, s.history.entries, run.gif_outputs(s), **private)
    s.stop.click(bind(run.on_cancel, s), None, s.output.status, queue=False, **private)
    if {"width", "height"} <= set(s.params.controls):  # no backend offered may take a size
        reframe(s.framing.size.input(bind(framing.on_size, s), s.framing.size,
                                     [s.params.controls["width"], s.params.controls["height"]], **private))
    for trigger in framing.triggers(s):  # the person's own changes to the photo and the frame
        reframe(trigger)
    _wire_restore(s, everything, outputs, reframe)
    _wire_sweep(s, everything)
    _wire_presets(s, everything)
    _wire_finish(s, everything, outputs)
    reframe(demo.load(bind(on_load, s), None, layout, **private))
    demo.load(bind(history.on_load, s), s.history.entries, s.history.gallery, **private)
    demo.load(bind(saved_presets.on_load, s), s.presets.mine, s.params.preset, **private)
    demo.unload(bind(run.on_unload, s))
    api.register(s.runner, default_backend())


def _framing(s: Studio):
    """``reframe(event)``: refresh the framing preview after ``event``."""
    handler = bind(framing.on_change, s)

    def reframe(event: Any) -> None:
        then = event.then if hasattr(event, "then") else event  # a dependency, or a trigger such as .upload
        then(handler, framing.inputs(s), [s.framing.picture, s.framing.caption, s.framing.size],
             trigger_mode="always_last",
             show_progress="hidden", api_visibility="private")

    return reframe


def _wire_restore(s: Studio, everything: set, outputs: list, reframe: Any) -> None:
    private = {"api_visibility": "private"}
    restored = [*s.restore_outputs(), s.history.note, s.input.image]
    reframe(s.restorer.file.upload(bind(restore.on_file, s), {s.restorer.file, *everything},
                                   [*s.restore_outputs(), s.restorer.note], **private))
    s.history.gallery.select(bind(history.on_pick, s), s.history.entries,
                             [*s.output.components(), *s.history.components(), s.finish.current], **private)
    reframe(s.history.reuse.click(bind(history.on_reuse, s), everything, restored, **private))
    s.history.again.click(bind(run.on_again, s), everything, [*outputs, *restored], concurrency_limit=None,
                          **private).success(bind(run.on_gif, s), s.history.entries, run.gif_outputs(s), **private)


def _wire_sweep(s: Studio, everything: set) -> None:
    private = {"api_visibility": "private"}
    s.sweep.mode.change(bind(sweep.on_mode, s), s.sweep.mode, [s.sweep.parameter, s.sweep.values], **private)
    s.sweep.parameter.input(bind(sweep.on_parameter, s), {s.input.backend, s.input.model, s.sweep.parameter},
                            s.sweep.values, **private)
    s.sweep.run.click(
        bind(sweep.on_sweep, s), {*everything, s.sweep.mode, s.sweep.parameter, s.sweep.values},
        [*s.sweep.outputs(), s.history.entries, s.history.gallery], concurrency_limit=None, **private,
    ).then(None, js=sweep.PLAY_TOGETHER)
    s.sweep.play.click(None, js=sweep.PLAY_TOGETHER)
    for i, button in enumerate(s.sweep.opens):
        button.click(bind(sweep.on_open, s, i), {s.sweep.results, s.history.entries},
                     [*s.output.components(), s.history.selected, s.finish.current], **private)


def _wire_finish(s: Studio, everything: set, outputs: list) -> None:
    private = {"api_visibility": "private"}
    gif = bind(run.on_gif, s)
    for button, handler in ((s.finish.run, finish.on_finish), (s.finish.extend, finish.on_extend)):
        button.click(bind(handler, s), {*everything, *s.finish.inputs()}, outputs, concurrency_limit=None, **private
                     ).success(gif, s.history.entries, run.gif_outputs(s), **private)
    s.finish.webm.click(bind(finish.on_webm, s), {s.history.entries, s.history.selected}, s.finish.webm_file,
                        **private)


def _wire_presets(s: Studio, everything: set) -> None:
    private = {"api_visibility": "private"}
    s.presets.save.click(bind(saved_presets.on_save, s),
                         {*everything, s.presets.name, s.presets.description, s.presets.mine},
                         [s.params.preset, s.presets.note, s.presets.name, s.presets.mine], **private)
    s.presets.upload.upload(bind(saved_presets.on_upload, s), [s.presets.upload, s.presets.mine],
                            [s.params.preset, s.presets.note, s.presets.mine], **private)


def build_demo() -> gr.Blocks:
    secrets.remember_environment(*(b.key_env for b in map(backends.get_backend, backends.names()) if b.key_env))
    with gr.Blocks(title="SVD Studio: image to video", delete_cache=outputs.gradio_cache()) as demo:
        s = build_studio()
        wire(s, demo)
        with gr.Tab("Batch"):  # placed here for now; the panel builds and wires itself
            batch.build(s.params.controls, s.input.backend, s.input.model, s.params.preset, s.input.api_key, demo)
    return demo
