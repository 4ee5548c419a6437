"""Finishing's events: smooth the current video to 24-60 fps, loop it, extend it from its
last frame, or export it as WebM; or finish an MP4 of one's own.

"The current video" is the one last made, or picked in the history or a sweep grid.
Each finished version is a new history entry that names its source; the source file is
never changed.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import gradio as gr

import backends
from backends.base import Result
from orchestration import extend, service
from studio import finish, recipe
from ui.entries import available, file, find, photo
from ui.errors import need, page_errors
from ui.jobview import drive
from ui.panels.finish import AS_IT_IS, LOOP_LABELS
from ui.visitor import visitor

if TYPE_CHECKING:
    from ui.state import Studio

def on_current(s: Studio, data: dict) -> dict:
    """Say which video the buttons act on."""
    item = find(data[s.history.entries], data[s.history.selected])
    if item is None:
        return gr.skip()
    return {s.finish.current: f"Finishing: **{item['caption']}**"}


def _target(value: Any) -> float | None:
    if value in (None, "", AS_IT_IS):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # refused by the finishing rules with the value named


async def on_finish(s: Studio, data: dict, request: gr.Request,
                    progress: gr.Progress = gr.Progress()) -> AsyncIterator[dict]:  # noqa: B008 - Gradio's way
    uploaded = data[s.finish.upload]
    item = find(data[s.history.entries], data[s.history.selected])
    source = uploaded or (str(file(item, "video")) if item and available(item) else None)
    need(source, "Make a video first, click one in *Your videos*, or upload a video to finish.")
    task = functools.partial(service.finish_video, source, target_fps=_target(data[s.finish.target_fps]),
                             loop=data[s.finish.loop], interpolation=data[s.finish.interpolation])
    label = None if uploaded else item["caption"]
    async for update in drive(s, data, task, request.session_hash, progress,
                              label=lambda result: _finished_caption(result, label),
                              source=None if uploaded else item["id"]):
        yield update


def _finished_caption(result: Result, source: str | None) -> str:
    info = result.used.get("finish", {})
    done = [f"{info.get('output_fps', '?'):g} fps" if isinstance(info.get("output_fps"), (int, float)) else None,
            LOOP_LABELS.get(info.get("loop", "none"), "").split(" (")[0] if info.get("loop") != "none" else None]
    return "finished · " + " · ".join(x for x in done if x) + (f" · from {source}" if source else "")


async def on_extend(s: Studio, data: dict, request: gr.Request,
                    progress: gr.Progress = gr.Progress()) -> AsyncIterator[dict]:  # noqa: B008 - Gradio's way
    item = find(data[s.history.entries], data[s.history.selected])
    need(item is not None and available(item),
         "Make a video first, or click one in *Your videos*: extending continues the current video.")
    name, values = recipe.settings(item["used"])
    need(name in backends.names(), "This video carries no studio settings to continue with; make one here first.")
    need("finish" not in item["used"], "This video is already finished (its frame rate or loop changed): extend the "
                                       "original clip, then finish the longer one.")
    chosen = backends.get_backend(name)
    accepted = chosen.parameters(chosen.model_for(values.get("model"), lenient=True))
    params = {k: v for k, v in values.items() if k in accepted or k == "model"}
    key = data[s.input.api_key] if name == data[s.input.backend] else None  # a typed key belongs to its backend
    video = file(item, "video")
    first = Result(video=video, used=item["used"], photo=Path(photo(item)) if photo(item) else None)
    count = int(data[s.finish.segments])
    task = functools.partial(extend.extend, photo(item) or str(video), name, params, segments=count,
                             same_seed=bool(data[s.finish.same_seed]), smooth_seams=bool(data[s.finish.smooth]),
                             api_key=key or None, first=first, visitor=visitor(request))
    async for update in drive(s, data, task, request.session_hash, progress,
                              label=lambda result: f"extended ×{count} · {item['caption']}", source=item["id"]):
        yield update


async def on_webm(s: Studio, data: dict) -> dict:
    item = find(data[s.history.entries], data[s.history.selected])
    need(item is not None and available(item), "Make a video first, or click one in *Your videos*.")
    mp4 = file(item, "video")
    need(mp4 is not None, "This video's file was removed from the server to save space.")
    with page_errors():
        webm = await asyncio.to_thread(finish.export_webm, mp4, mp4.with_suffix(".webm"))
    return {s.finish.webm_file: gr.update(value=str(webm), visible=True, label=f"Download WebM ({item['caption']})")}
