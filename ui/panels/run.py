"""The run panel: Generate and Cancel, and the handlers that drive one job on the page.

A job's progress, result or error becomes page updates here; the work itself runs in
``ui.jobs.Runner``, and errors become ``gr.Error`` in ``ui.errors``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

import backends
from backends.base import Result
from studio import outputs, recipe, secrets
from orchestration import service
from studio.errors import Cancelled, StudioError
from ui import controls
from ui.errors import need, page_errors
from ui.jobs import Preview, Task
from ui.panels.history import available, entry, file, find, photo, resolved
from ui.visitor import visitor

if TYPE_CHECKING:
    from ui.studio import Studio

log = logging.getLogger("svd_studio")


def build() -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        go = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
    return go, stop


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


async def drive(s: Studio, data: dict, task: Task, session: str, progress: Any, *,
                label: Callable[[Result], str] | None = None, source: str | None = None) -> AsyncIterator[dict]:
    """Run one job and turn its progress, result or error into page updates.

    A video made from another one (finished, extended) gets its own ``label`` and names
    its ``source`` entry; it leaves the seed control alone, which belongs to new runs.
    """
    status = s.output.status
    result: Result | None = None
    with page_errors():
        try:
            async for item in s.runner.run(task, session, on_progress=lambda f, text: progress(f, desc=text)):
                if isinstance(item, Result):
                    result = item
                elif isinstance(item, Preview):
                    yield {s.output.preview: gr.update(value=str(item.path), visible=True)}
                else:
                    yield {status: item}
        except Cancelled as exc:
            yield {status: f"**Stopped.** {exc}"}
            return
    if result is None:  # nobody is watching any more
        return
    try:
        poster = await asyncio.to_thread(service.make_poster, result)
    except StudioError as exc:  # a thumbnail is a nicety: the video itself is what matters
        log.warning("No thumbnail for %s: %s", result.video, secrets.redact(str(exc)))
        poster = None
    item = entry(result, poster, label=label(result) if label else None) | ({"source": source} if source else {})
    seed = result.used.get("seed")
    past = data[s.history.entries]
    done = f"Done: {item['caption']}" if label else (
        f"Done in {result.used['elapsed_seconds']} s · seed {seed if seed is not None else '-'}"
        + (f" · task id `{result.job_id}`" if result.job_id else ""))
    yield {
        **s.output.show(resolved(item)),
        **s.history.add(past, item),
        s.history.selected: item["id"],  # the current video: what the finishing panel acts on
        s.finish.current: f"Finishing: **{item['caption']}**",
        s.params.controls["seed"]: seed if seed is not None and label is None else data[s.params.controls["seed"]],
        status: done,
    }


async def on_gif(s: Studio, past: list[dict]) -> dict:
    """The GIF of the video just made, as a step of its own after the video is on screen:
    it takes several times longer to encode than the MP4, Generate must be free again at
    once, and API callers never need it."""
    past = list(past or [])
    item = past[-1] if past else None
    if item is None or item.get("gif") or not available(item):
        return {s.output.gif: gr.update()}
    try:
        gif = await asyncio.to_thread(service.gif_for, file(item, "video"), item["used"])
    except StudioError as exc:
        log.warning("No GIF for %s: %s", item["video"], secrets.redact(str(exc)))
        return {s.output.gif: gr.update()}
    return {s.output.gif: gr.update(value=str(gif), visible=True),
            **s.history.add(past[:-1], {**item, "gif": outputs.ref(gif)})}


def gif_outputs(s: Studio) -> list[gr.Component]:
    return [s.output.gif, s.history.entries, s.history.gallery]


def job_outputs(s: Studio) -> list[gr.Component]:
    return [*s.output.components(), s.params.controls["seed"], s.history.entries, s.history.gallery,
            s.history.selected, s.finish.current]


async def on_again(s: Studio, data: dict, request: gr.Request,
                   progress: gr.Progress = gr.Progress()) -> AsyncIterator[dict]:  # noqa: B008 - Gradio's way
    """The selected history video's settings back on the page, then a run with a new seed."""
    item = find(data[s.history.entries], data[s.history.selected])
    need(item is not None, "Click a video in the history first.")
    image = photo(item) or data[s.input.image]
    need(image, "Please add the photo again first: the server no longer has the one this video was made from.")
    backend, values = recipe.settings(item["used"])
    updates, said = s.restore(backend, {**values, "seed": None}, data)
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
