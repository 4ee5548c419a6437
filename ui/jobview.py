"""A job on the page: its progress, preview, result or error as page updates, and a finished
video shown in the player and added to the history.

Every event that makes a video (Generate, Again, Resume, finishing, extending) drives its
job through ``drive``; a sweep and the history show videos with ``show``. The handlers
share this module and never call one another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

from backends.base import Result
from orchestration import service
from studio import outputs, secrets
from studio.errors import Cancelled, StudioError
from ui import views
from ui.entries import MAX_ENTRIES, available, entry, file, gallery_items
from ui.errors import page_errors, user_error
from ui.jobs import Preview, Task

if TYPE_CHECKING:
    from ui.state import Studio

log = logging.getLogger("svd_studio")


def show(s: Studio, item: dict) -> dict:
    """Updates that put a finished job (a history entry) in the player.

    The entry's files are handles from the browser: only those that name one of this
    server's outputs are shown, so an edited entry never serves anything else.
    """
    o = s.output
    video = file(item, "video")
    if video is None:
        return {o.status: "That video is no longer on the server."}
    gif = file(item, "gif")
    seed = item["used"].get("seed")
    return {
        o.video: str(video),
        o.preview: gr.update(visible=False, value=None),
        o.mp4: gr.update(value=str(video), visible=True),
        o.gif: gr.update(value=str(gif) if gif else None, visible=gif is not None),
        o.box: gr.update(visible=True),
        o.used: views.parameters_table(item["used"]),
        o.seed: gr.update(value="" if seed is None else str(seed), visible=seed is not None),
        o.used_json: item["used"],
        o.sent: gr.update(value=item["sent"], visible=item["sent"] is not None),
    }


def add(s: Studio, past: list[dict], *items: dict) -> dict:
    """The history with ``items`` added (the oldest leave past ``MAX_ENTRIES``)."""
    entries = [*(past or []), *items][-MAX_ENTRIES:]
    return {s.history.entries: entries, s.history.gallery: gallery_items(entries),
            s.history.box: gr.update(visible=bool(entries), label=f"Your videos ({len(entries)})")}


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
        except StudioError as exc:  # said under the player too, where the video would have been
            error = user_error(exc)
            yield {status: f"**Not made.** {error.message}", s.output.preview: gr.update(visible=False)}
            raise error from None
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
        **show(s, item),
        **add(s, past, item),
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
        return gr.skip()
    try:
        gif = await asyncio.to_thread(service.gif_for, file(item, "video"), item["used"])
    except StudioError as exc:
        log.warning("No GIF for %s: %s", item["video"], secrets.redact(str(exc)))
        return gr.skip()
    return {s.output.gif: gr.update(value=str(gif), visible=True),
            **add(s, past[:-1], {**item, "gif": outputs.ref(gif)})}


def gif_outputs(s: Studio) -> list[gr.Component]:
    return [s.output.gif, s.history.entries, s.history.gallery, s.history.box]


def job_outputs(s: Studio) -> list[gr.Component]:
    return [*s.output.components(), s.params.controls["seed"], s.history.entries, s.history.gallery, s.history.box,
            s.history.selected, s.finish.current]
