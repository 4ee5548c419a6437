"""The sweep panel: one photo made several ways, shown side by side.

The controls (which parameter, which values, or "every backend") sit with the other
settings; the grid sits by the player. Every video of a sweep also goes to the history,
and each cell opens its video in the main player.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator

import gradio as gr

import backends
from backends.base import Result
from studio import secrets
from orchestration import service, sweep
from studio.errors import Cancelled
from ui import controls
from ui.errors import need, page_errors
from ui.jobs import Preview
from ui.panels.history import entry, find, resolved
from ui.visitor import visitor

if TYPE_CHECKING:
    from ui.studio import Studio

ONE_PARAMETER, EVERY_BACKEND = "One parameter", "Every backend"
# Restarts every video of the grid together, so the cells can be compared frame by frame.
PLAY_TOGETHER = """() => {
  const videos = [...document.querySelectorAll('#sweep-grid video')];
  videos.forEach(v => { v.muted = true; v.loop = true; v.pause(); v.currentTime = 0; });
  videos.forEach(v => v.play());
}"""


@dataclass
class SweepPanel:
    mode: gr.Radio
    parameter: gr.Dropdown
    values: gr.Textbox
    run: gr.Button
    grid: gr.Column
    status: gr.Markdown
    play: gr.Button
    cells: list[gr.Video]
    captions: list[gr.Markdown]  # under each video: a label on the video would hide the value
    opens: list[gr.Button]
    results: gr.State  # history entry id per cell, in the order of the values

    @classmethod
    def build_controls(cls) -> dict[str, Any]:
        with gr.Accordion("Try several values side by side", open=False, elem_id="sweep-box"):
            gr.Markdown("<small>SVD's motion is hard to predict: make one video per value and compare. "
                        "Everything else, the seed included, stays the same.</small>")
            mode = gr.Radio([ONE_PARAMETER, EVERY_BACKEND], value=ONE_PARAMETER, label="compare",
                            elem_id="sweep-mode",
                            info="Every backend: the same photo and settings on each backend that has a key.")
            with gr.Row():
                parameter = gr.Dropdown(label="parameter", choices=[], elem_id="sweep-parameter", scale=2)
                values = gr.Textbox(label="values (2 to 8)", max_lines=1, elem_id="sweep-values", scale=3,
                                    placeholder="for example 40, 100, 180")
            run = gr.Button("Make them side by side", variant="secondary", elem_id="sweep-run")
        return {"mode": mode, "parameter": parameter, "values": values, "run": run}

    @classmethod
    def build(cls, parts: dict[str, Any]) -> SweepPanel:
        """The grid; call where it should sit, with what ``build_controls`` returned."""
        with gr.Column(visible=False, elem_id="sweep-grid") as grid:
            with gr.Row():
                status = gr.Markdown(elem_id="sweep-status")
                play = gr.Button("Play all from the start", size="sm", scale=0, elem_id="sweep-play")
            cells, captions, opens = [], [], []
            for row in range(2):
                with gr.Row():
                    for col in range(sweep.MAX_VALUES // 2):
                        i = row * sweep.MAX_VALUES // 2 + col
                        with gr.Column(min_width=160):
                            cells.append(gr.Video(visible=False, autoplay=True, loop=True, interactive=False,
                                                  height=180, show_label=False, elem_id=f"sweep-cell-{i}"))
                            captions.append(gr.Markdown(visible=False, elem_id=f"sweep-caption-{i}"))
                            opens.append(gr.Button("Open in the player", size="sm", visible=False,
                                                   elem_id=f"sweep-open-{i}"))
        return cls(parts["mode"], parts["parameter"], parts["values"], parts["run"], grid, status, play,
                   cells, captions, opens, gr.State([]))

    def describe(self, backend: backends.Backend, model: str) -> dict:
        names = sweep.sweepable(backend, model)
        first = names[0] if names else None
        suggested = sweep.suggest(backend, model, first) if first else []
        return {self.parameter: gr.update(choices=names, value=first),
                self.values: ", ".join(f"{v:g}" for v in suggested)}

    def layout_outputs(self) -> list[gr.Component]:
        return [self.parameter, self.values]

    def outputs(self) -> list[gr.Component]:
        return [self.grid, self.status, *self.cells, *self.captions, *self.opens, self.results]


def on_parameter(s: Studio, data: dict) -> dict:
    """Suggest values worth trying for the parameter just picked."""
    backend = backends.get_backend(data[s.input.backend])
    found = sweep.suggest(backend, data[s.input.model], data[s.sweep.parameter] or "")
    return {s.sweep.values: ", ".join(f"{v:g}" for v in found)}


def on_mode(s: Studio, mode: str) -> dict:
    one = mode == ONE_PARAMETER
    return {s.sweep.parameter: gr.update(visible=one), s.sweep.values: gr.update(visible=one)}


def plan(s: Studio, data: dict, who: str | None = None) -> list[sweep.Cell]:
    need(data[s.input.image], "Please add a photo first: drop an image on the left or pick an example.")
    name = data[s.input.backend]
    params = controls.collect(s.params.values(data), name, data[s.input.model], data[s.params.randomize])
    key = data[s.input.api_key] or None
    if data[s.sweep.mode] == EVERY_BACKEND:
        cells = sweep.compare(params, name, key)
        need(len(cells) >= 2, "Only one backend can run now: set another backend's API key in the environment "
                              "(or pick that backend and paste its key) to compare backends.")
    else:
        planned = sweep.plan(name, data[s.sweep.parameter] or "", data[s.sweep.values] or "", params)
        cells = [sweep.Cell(c.backend, c.params, c.label, api_key=key) for c in planned]
    sweep.check_allowance(cells, who)  # all of it fits on the owner's keys, or nothing starts
    return cells


async def on_sweep(s: Studio, data: dict, request: gr.Request) -> AsyncIterator[dict]:
    who = visitor(request)
    with page_errors():
        cells = plan(s, data, who)
    n = len(cells)
    tasks = [(functools.partial(service.generate, data[s.input.image], c.backend, c.params, api_key=c.api_key,
                                visitor=who), c.backend) for c in cells]
    lanes = {c.backend: backends.get_backend(c.backend).concurrency for c in cells}
    texts: dict[int, str] = {}
    finished: list[str | None] = [None] * n
    past = list(data[s.history.entries] or [])
    yield {
        s.sweep.grid: gr.update(visible=True),
        s.sweep.status: f"Starting {n} videos…",
        **{cell: gr.update(visible=i < n, value=None) for i, cell in enumerate(s.sweep.cells)},
        **{caption: gr.update(visible=i < n, value=f"**{cells[i].label}**" if i < n else "")
           for i, caption in enumerate(s.sweep.captions)},
        **{button: gr.update(visible=False) for button in s.sweep.opens},
        s.sweep.results: finished,
    }
    async for i, item in s.runner.run_many(tasks, request.session_hash, lanes):
        if isinstance(item, Preview):
            continue
        if isinstance(item, str):
            texts[i] = item
            yield {s.sweep.status: _status(texts, finished, n)}
            continue
        texts.pop(i, None)
        if isinstance(item, Result):
            poster = await asyncio.to_thread(service.make_poster, item)
            made = entry(item, poster, label=cells[i].label)
            past = [*past, made]
            finished[i] = made["id"]
            yield {
                s.sweep.cells[i]: gr.update(value=str(item.video)),
                s.sweep.opens[i]: gr.update(visible=True),
                s.sweep.results: list(finished),
                s.sweep.status: _status(texts, finished, n),
                **s.history.add(past),
            }
        else:
            finished[i] = ""
            why = "stopped" if isinstance(item, Cancelled) else secrets.redact(str(item))
            yield {s.sweep.captions[i]: f"**{cells[i].label}** · failed: {why}",
                   s.sweep.status: _status(texts, finished, n)}
    made = sum(1 for f in finished if f)
    yield {s.sweep.status: f"**{made} of {n} videos made.** They play together; click **Open in the player** "
                           "under one to keep working with it."}


def _status(texts: dict[int, str], finished: list[str | None], n: int) -> str:
    done = sum(1 for f in finished if f is not None)
    running = [f"value {i + 1} of {n} · {text}" for i, text in sorted(texts.items())]
    return " \n".join([f"{done} of {n} done", *running])


def on_open(s: Studio, index: int, data: dict) -> dict:
    ids = data[s.sweep.results] or []
    item = find(data[s.history.entries], ids[index] if index < len(ids) else None)
    if item is None:
        return {s.output.status: "That video is not ready yet."}
    return s.output.show(resolved(item)) | {s.output.status: f"Showing {item['caption']} from the sweep.",
                                  s.history.selected: item["id"], s.finish.current: f"Finishing: **{item['caption']}**"}
