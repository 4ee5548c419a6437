"""The sweep's events: one photo made several ways, shown side by side.

The controls (which parameter, which values, or "every backend") and the grid sit
together in a closed section under the player. Every video of a sweep also goes to the history,
and each cell opens its video in the main player.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, AsyncIterator

import gradio as gr

import backends
from backends.base import Result
from orchestration import service, sweep
from studio import secrets
from studio.errors import Cancelled
from ui import controls
from ui.entries import entry, find
from ui.errors import need, page_errors
from ui.jobs import Preview
from ui.jobview import add, show
from ui.panels.sweep import EVERY_BACKEND, ONE_PARAMETER
from ui.visitor import visitor

if TYPE_CHECKING:
    from ui.state import Studio

def on_parameter(s: Studio, data: dict) -> dict:
    """Suggest values worth trying for the parameter just picked (not for one set by a
    reshape, nor for the same one again: tabbing through must keep typed values)."""
    shaped = dict(data[s.shaped] or {})
    name = data[s.sweep.parameter]
    if not name or name == shaped.get("sweep"):
        return gr.skip()
    backend = backends.get_backend(data[s.input.backend])
    found = sweep.suggest(backend, data[s.input.model], name)
    return {s.sweep.values: ", ".join(f"{v:g}" for v in found), s.shaped: {**shaped, "sweep": name}}


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
                **add(s, past),
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
    return show(s, item) | {s.output.status: f"Showing {item['caption']} from the sweep.",
                                  s.history.selected: item["id"], s.finish.current: f"Finishing: **{item['caption']}**"}
