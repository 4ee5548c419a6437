"""The finishing panel: smooth the current video to 24-60 fps, loop it, extend it from its
last frame, or export it as WebM; or finish an MP4 of one's own.

"The current video" is the one last made, or picked in the history or a sweep grid.
Each finished version is a new history entry that names its source; the source file is
never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from orchestration import extend
from studio import finish


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
        with gr.Accordion("Finish: smooth, loop, extend", open=False, elem_id="finish-box"):
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
