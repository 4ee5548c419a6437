"""Composes the page: where each panel sits, and which event runs which handler.

Panels build their components; handlers (``ui.handlers``) answer events; this module
only places the one and wires the other. The first view holds what a newcomer needs
(the photo, where it runs, motion and length, presets and Generate on the left; the
video and its progress on the right); every other setting is in the closed Advanced
box, and every tool that acts on a video in a closed section under the player.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio import outputs, secrets
from ui import api, jobview, theme
from ui.handlers import finish, framing, history, layout, presets, restore, run, sweep
from ui.jobs import Runner
from ui.panels import batch
from ui.panels import run as run_panel
from ui.panels import sweep as sweep_panel
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
from ui.state import Studio, bind

CSS = theme.CSS
# Layout events are quick; jobs have no Gradio limit because each backend keeps its own
# line (backends.base.Slots): people waiting for the GPU never hold up a hosted job.
LAYOUT_CONCURRENCY = 8
PRIVATE = {"api_visibility": "private"}
# After a job: bring the player into view if the person scrolled away (on a phone it is
# under the settings), without moving a page that already shows it.
SHOW_VIDEO = """() => {
  const box = document.querySelector('#video');
  if (!box) return;
  const r = box.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) box.scrollIntoView({behavior: 'smooth', block: 'start'});
}"""


def build_studio(runner: Runner | None = None) -> Studio:
    """Every panel of the "Make a video" tab, placed; call inside a ``gr.Blocks``."""
    with gr.Row(equal_height=False, elem_id="studio"):
        with gr.Column(scale=6, elem_id="left"):
            first = layout.default_backend()
            inputs = InputPanel.build(first)
            featured, length = ParametersPanel.build_featured(first)
            with gr.Row(equal_height=True, elem_id="preset-row"):
                preset = ParametersPanel.build_preset()
                toggle = PresetsPanel.build_toggle()
            saved = PresetsPanel.build(toggle)
            go, stop = run_panel.build()
            framing_box: list[FramingPanel] = []
            params = ParametersPanel.build(first, preset, featured, length,
                                           extras={"Size and output": lambda: framing_box.append(FramingPanel.build())})
        with gr.Column(scale=5, elem_id="right"):
            output = OutputPanel.build()
            past = HistoryPanel.build()
            finishing = FinishPanel.build()
            sweeps = SweepPanel.build(SweepPanel.build_controls())
            restorer = RestorePanel.build()
            resume = ResumePanel.build()
    return Studio(inputs, framing_box[0], params, saved, restorer, resume, sweeps, output, finishing, past, go, stop,
                  runner or Runner(), gr.State({}))


def wire(s: Studio, demo: gr.Blocks) -> None:
    shaping = s.layout_outputs()
    reframe = _framing(s)
    # Backend, model and preset reshape the page on .change, which a keyboard pick and a
    # mouse pick both fire; the handlers skip a value the page is already shaped for
    # (ui.handlers.layout). What reshapes the page is followed by the framing preview
    # and the length line (.then), which read the page once it is consistent.
    after_shaping = _after_shaping(s, reframe)
    after_shaping(s.input.backend.change(bind(layout.on_backend, s), {s.input.backend, s.shaped}, shaping, **PRIVATE))
    after_shaping(s.input.model.change(bind(layout.on_model, s),
                                       {s.input.backend, s.input.model, s.shaped, *s.params.inputs()}, shaping,
                                       **PRIVATE))
    after_shaping(s.params.preset.change(bind(layout.on_preset, s),
                                         {s.input.backend, s.input.model, s.params.preset, s.shaped, s.presets.mine,
                                          *s.params.inputs()}, shaping, **PRIVATE))
    s.params.preset.change(bind(presets.on_chosen, s), [s.params.preset, s.presets.mine], s.presets.download,
                           **PRIVATE)
    s.input.examples.select(_pick_example, None, s.input.image, **PRIVATE)
    for name in ("num_frames", "fps", "num_inference_steps", "width", "height", "cache_interval", "guidance_stop"):
        if name in s.params.controls:
            s.params.controls[name].input(bind(layout.on_length, s), _length_inputs(s), s.params.length,
                                          trigger_mode="always_last", show_progress="hidden", **PRIVATE)

    everything = {s.input.image, s.input.backend, s.input.model, s.input.api_key, s.params.randomize,
                  s.history.entries, s.history.selected, *s.params.inputs()}
    outputs_ = jobview.job_outputs(s)
    _job(s, s.go, bind(run.on_generate, s), everything, outputs_)
    _job(s, s.resume.button, bind(run.on_resume, s),
         {s.input.backend, s.input.api_key, s.resume.task_id, s.history.entries, s.params.controls["seed"]}, outputs_)
    s.stop.click(bind(run.on_cancel, s), None, s.output.status, queue=False, **PRIVATE)
    if {"width", "height"} <= set(s.params.controls):  # no backend offered may take a size
        reframe(s.framing.size.input(bind(framing.on_size, s), s.framing.size,
                                     [s.params.controls["width"], s.params.controls["height"]], **PRIVATE))
    for trigger in framing.triggers(s):  # the person's own changes to the photo and the frame
        reframe(trigger)
    _wire_restore(s, everything, outputs_, reframe)
    _wire_sweep(s, everything)
    _wire_presets(s, everything)
    _wire_finish(s, everything, outputs_)
    after_shaping(demo.load(bind(layout.on_load, s), None, shaping, **PRIVATE))
    demo.load(bind(history.on_load, s), s.history.entries, [s.history.gallery, s.history.box], **PRIVATE)
    demo.load(bind(presets.on_load, s), s.presets.mine, s.params.preset, **PRIVATE)
    demo.unload(bind(run.on_unload, s))
    api.register(s.runner, layout.default_backend())


def _pick_example(evt: gr.SelectData) -> str:
    """The example photo whose thumbnail was clicked (or chosen with Enter)."""
    return InputPanel.example_path(evt.index)


def _length_inputs(s: Studio) -> set[gr.Component]:
    return {s.input.backend, s.input.model, *s.params.inputs()}


def _after_shaping(s: Studio, reframe: Any):
    """``after_shaping(event)``: the framing preview and the length line follow ``event``."""
    length = bind(layout.on_length, s)

    def follow(event: Any) -> None:
        reframe(event)
        event.then(length, _length_inputs(s), s.params.length, show_progress="hidden", **PRIVATE)

    return follow


def _job(s: Studio, button: gr.Button, handler: Any, inputs: Any, outputs: list) -> Any:
    """A job's event on ``button``: Cancel shows beside Generate while it runs; afterwards the
    GIF is made (a step of its own, so Generate is free at once) and the video brought
    into view. Returns the job's event."""
    # Listed first: the page runs a trigger's listeners in order, so showing Cancel after
    # the job's own listener would wait for the job to end.
    button.click(lambda: gr.update(visible=True), None, s.stop, queue=False, show_progress="hidden", **PRIVATE)
    event = button.click(handler, inputs, outputs, concurrency_limit=None, **PRIVATE)
    ended = event.then(lambda: gr.update(visible=False), None, s.stop, queue=False, show_progress="hidden",
                       **PRIVATE)
    ended.then(None, js=SHOW_VIDEO)
    event.success(bind(jobview.on_gif, s), s.history.entries, jobview.gif_outputs(s), **PRIVATE)
    return event


def _framing(s: Studio):
    """``reframe(event)``: refresh the framing preview after ``event``."""
    handler = bind(framing.on_change, s)

    def reframe(event: Any) -> None:
        then = event.then if hasattr(event, "then") else event  # a dependency, or a trigger such as .upload
        then(handler, framing.inputs(s), [s.framing.picture, s.framing.caption, s.framing.size],
             trigger_mode="always_last", show_progress="hidden", **PRIVATE)

    return reframe


def _wire_restore(s: Studio, everything: set, outputs_: list, reframe: Any) -> None:
    restored = [*s.restore_outputs(), s.history.note, s.input.image]
    reframe(s.restorer.file.upload(bind(restore.on_file, s), {s.restorer.file, s.shaped, *everything},
                                   [*s.restore_outputs(), s.restorer.note], **PRIVATE))
    s.history.gallery.select(bind(history.on_pick, s), s.history.entries,
                             [*s.output.components(), *s.history.components(), s.finish.current], **PRIVATE)
    reframe(s.history.reuse.click(bind(history.on_reuse, s), {s.shaped, *everything}, restored, **PRIVATE))
    _job(s, s.history.again, bind(run.on_again, s), {s.shaped, *everything}, [*outputs_, *restored])


def _wire_sweep(s: Studio, everything: set) -> None:
    s.sweep.mode.change(bind(sweep.on_mode, s), s.sweep.mode, [s.sweep.parameter, s.sweep.values], **PRIVATE)
    s.sweep.parameter.change(bind(sweep.on_parameter, s),
                             {s.input.backend, s.input.model, s.sweep.parameter, s.shaped},
                             [s.sweep.values, s.shaped], **PRIVATE)
    s.sweep.run.click(lambda: gr.update(visible=True), None, s.stop, queue=False, show_progress="hidden", **PRIVATE)
    started = s.sweep.run.click(
        bind(sweep.on_sweep, s), {*everything, s.sweep.mode, s.sweep.parameter, s.sweep.values},
        [*s.sweep.outputs(), s.history.entries, s.history.gallery, s.history.box], concurrency_limit=None,
        **PRIVATE,
    )
    started.then(lambda: gr.update(visible=False), None, s.stop, queue=False, show_progress="hidden", **PRIVATE)
    started.then(None, js=sweep_panel.PLAY_TOGETHER)
    s.sweep.play.click(None, js=sweep_panel.PLAY_TOGETHER)
    for i, button in enumerate(s.sweep.opens):
        button.click(bind(sweep.on_open, s, i), {s.sweep.results, s.history.entries},
                     [*s.output.components(), s.history.selected, s.finish.current], **PRIVATE
                     ).then(None, js=SHOW_VIDEO)


def _wire_finish(s: Studio, everything: set, outputs_: list) -> None:
    for button, handler in ((s.finish.run, finish.on_finish), (s.finish.extend, finish.on_extend)):
        _job(s, button, bind(handler, s), {*everything, *s.finish.inputs()}, outputs_)
    s.finish.webm.click(bind(finish.on_webm, s), {s.history.entries, s.history.selected}, s.finish.webm_file,
                        **PRIVATE)


def _wire_presets(s: Studio, everything: set) -> None:
    s.presets.toggle.click(bind(presets.on_toggle, s), s.presets.opened,
                           [s.presets.opened, s.presets.box, s.presets.toggle], queue=False, **PRIVATE)
    s.presets.save.click(bind(presets.on_save, s),
                         {*everything, s.presets.name, s.presets.description, s.presets.mine},
                         [s.params.preset, s.presets.note, s.presets.name, s.presets.mine], **PRIVATE)
    s.presets.upload.upload(bind(presets.on_upload, s), [s.presets.upload, s.presets.mine],
                            [s.params.preset, s.presets.note, s.presets.mine], **PRIVATE)


def build_demo() -> gr.Blocks:
    secrets.remember_environment(*layout.key_variables())
    with gr.Blocks(title="SVD Studio: image to video", delete_cache=outputs.gradio_cache()) as demo:
        gr.Markdown("# SVD Studio\n&nbsp; Turn a still photo into a short video with Stable Video Diffusion: add a "
                    "photo, set the motion, press **Generate**.", elem_id="title")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Make a video", id="make", elem_id="tab-make"):
                s = build_studio()
                wire(s, demo)
            with gr.Tab("Batch: many photos", id="batch", elem_id="tab-batch") as batch_tab:
                # The panel builds and wires itself over the first tab's settings.
                batch.build(s.params.controls, s.input.backend, s.input.model, s.params.preset, s.input.api_key, demo,
                            revealed=(batch_tab.select,), mine=s.presets.mine)
    return demo
