"""The finishing panel: smooth the current video to 24-60 fps, loop it, extend it from its
last frame, or export it as WebM; or finish an MP4 of one's own.

"The current video" is the one last made, or picked in the history or a sweep grid.
Each finished version is a new history entry that names its source; the source file is
never changed.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

import gradio as gr

import backends
from backends.base import Result
from studio import finish, recipe
from orchestration import extend, service
from ui.errors import need, page_errors
from ui.panels.history import available, file, find, photo
from ui.panels.run import drive
from ui.visitor import visitor

if TYPE_CHECKING:
    from ui.studio import Studio

AS_IT_IS = "as it is"
LOOP_LABELS = {"none": "no loop", "pingpong": "ping-pong (forward, then back)",
               "crossfade": "crossfade (the end fades into the start)"}
METHOD_LABELS = {"motion": "motion (follows movement; slower)", "blend": "blend (cross-fades; fast)"}


@dataclass
class FinishPanel:
    current: gr.Markdown
    upload: gr.File
    target_fps: gr.Dropdown
    interpolation: gr.Radio
    loop: gr.Radio
    run: gr.Button
    webm: gr.Button
    webm_file: gr.DownloadButton
    segments: gr.Slider
    same_seed: gr.Checkbox
    smooth: gr.Checkbox
    extend: gr.Button

    @classmethod
    def build(cls) -> FinishPanel:
        with gr.Accordion("Finish: smooth, loop, extend", open=True, elem_id="finish-box"):
            current = gr.Markdown("Make a video, or click one in *Your videos*, to finish it here.",
                                  elem_id="finish-current")
            with gr.Tab("Smooth and loop"):
                with gr.Row():
                    target_fps = gr.Dropdown([AS_IT_IS, *finish.OFFERED_FPS], value=24, label="frame rate",
                                             elem_id="finish-fps", allow_custom_value=True,
                                             info=f"In-between frames are added; the clip keeps its length "
                                                  f"({finish.MIN_FPS}-{finish.MAX_FPS} fps).")
                    interpolation = gr.Radio([(label, name) for name, label in METHOD_LABELS.items()
                                              if name in finish.METHODS], value="motion",
                                             label="in-between frames", elem_id="finish-method")
                loop = gr.Radio([(label, name) for name, label in LOOP_LABELS.items()], value="none",
                                label="loop", elem_id="finish-loop")
                upload = gr.File(label="or finish a video of your own (MP4, WebM, MOV)", type="filepath",
                                 file_types=[".mp4", ".webm", ".mov", ".mkv"], height=120, elem_id="finish-upload")
                with gr.Row():
                    run = gr.Button("Finish", variant="secondary", elem_id="finish-run")
                    webm = gr.Button("Make a WebM (VP9) for the web", size="sm", elem_id="finish-webm")
                    webm_file = gr.DownloadButton("Download WebM", size="sm", visible=False,
                                                  elem_id="finish-webm-file")
            with gr.Tab("Extend"):
                segments = gr.Slider(extend.MIN_SEGMENTS, extend.MAX_SEGMENTS, value=3, step=1,
                                     label="segments in all", elem_id="extend-segments",
                                     info="The current video is the first; each next one starts from the last "
                                          "frame of the one before, on the same backend with the same settings.")
                with gr.Row():
                    same_seed = gr.Checkbox(value=False, label="same seed for every segment",
                                            elem_id="extend-same-seed")
                    smooth = gr.Checkbox(value=True, label="soften the seams", elem_id="extend-smooth")
                extend_button = gr.Button("Extend", variant="secondary", elem_id="extend-run")
        return cls(current, upload, target_fps, interpolation, loop, run, webm, webm_file, segments, same_seed,
                   smooth, extend_button)

    def inputs(self) -> set[gr.Component]:
        return {self.upload, self.target_fps, self.interpolation, self.loop, self.segments, self.same_seed,
                self.smooth}


def on_current(s: Studio, data: dict) -> dict:
    """Say which video the buttons act on."""
    item = find(data[s.history.entries], data[s.history.selected])
    if item is None:
        return {s.finish.current: gr.update()}
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
