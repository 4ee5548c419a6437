"""Generate, Again, Resume and Cancel: the events that start and stop one job on the page.

A job's progress, result or error becomes page updates in ``ui.jobview``; the work itself
runs in ``ui.jobs.Runner``, and errors become ``gr.Error`` in ``ui.errors``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import gradio as gr

import backends
from orchestration import service
from studio import recipe
from ui import controls
from ui.entries import find, photo
from ui import layout
from ui.errors import need
from ui.jobview import drive
from ui.visitor import visitor

if TYPE_CHECKING:
    from ui.state import Studio

log = logging.getLogger("svd_studio")


async def on_generate(s: Studio, data: dict, request: gr.Request,
                      progress: gr.Progress = gr.Progress()) -> AsyncIterator[dict]:  # noqa: B008 - Gradio's way
    need(data[s.input.image], "Please add a photo first: drop an image on the left or pick an example.")
    params = controls.collect(s.params.values(data), data[s.input.backend], data[s.input.model],
                              data[s.params.randomize])
    task = functools.partial(service.generate, data[s.input.image], data[s.input.backend], params,
                             api_key=data[s.input.api_key] or None, visitor=visitor(request))
    async for update in drive(s, data, task, request.session_hash, progress):
        yield update


async def on_resume(s: Studio, data: dict, request: gr.Request,
                    progress: gr.Progress = gr.Progress()) -> AsyncIterator[dict]:  # noqa: B008 - Gradio's way
    need((data[s.resume.task_id] or "").strip(),
         "Paste a task id first: the id the page showed while the job was running.")
    task = functools.partial(service.resume, data[s.resume.task_id], data[s.input.backend],
                             api_key=data[s.input.api_key] or None)
    async for update in drive(s, data, task, request.session_hash, progress):
        yield update


def on_cancel(s: Studio, request: gr.Request) -> str:
    stopped = s.runner.cancel_session(request.session_hash)
    return "Cancelling… the job stops at the next step." if stopped else "Nothing is running."


def on_unload(s: Studio, request: gr.Request) -> None:
    """The page was closed: its jobs stop at their next step or poll."""
    s.runner.leave_session(request.session_hash)


async def on_again(s: Studio, data: dict, request: gr.Request,
                   progress: gr.Progress = gr.Progress()) -> AsyncIterator[dict]:  # noqa: B008 - Gradio's way
    """The selected history video's settings back on the page, then a run with a new seed."""
    item = find(data[s.history.entries], data[s.history.selected])
    need(item is not None, "Click a video in the history first.")
    image = photo(item) or data[s.input.image]
    need(image, "Please add the photo again first: the server no longer has the one this video was made from.")
    backend, values = recipe.settings(item["used"])
    updates, said = layout.restore(s, backend, {**values, "seed": None}, data)
    updates[s.params.randomize] = True
    yield updates | {s.history.note: said, s.input.image: image}
    name = backend if backend in backends.names() else data[s.input.backend]
    key = data[s.input.api_key] if name == data[s.input.backend] else None  # a typed key belongs to its backend
    chosen = backends.get_backend(name)
    accepted = chosen.parameters(chosen.model_for(values.get("model"), lenient=True))
    params = {k: v for k, v in values.items() if k in accepted and k != "seed"} | {"model": values.get("model")}
    task = functools.partial(service.generate, image, name, params, api_key=key or None, visitor=visitor(request))
    async for update in drive(s, data, task, request.session_hash, progress):
        yield update

