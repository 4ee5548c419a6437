"""The output panel: the player, the status line, downloads and the parameters used."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio import outputs

READY = "Ready. Add a photo and press **Generate**."


@dataclass
class OutputPanel:
    video: gr.Video
    preview: gr.Image
    status: gr.Markdown
    mp4: gr.DownloadButton
    gif: gr.DownloadButton
    used: gr.JSON
    sent: gr.JSON

    @classmethod
    def build(cls) -> OutputPanel:
        video = gr.Video(label="Video", autoplay=True, loop=True, interactive=False, height=420, elem_id="video")
        preview = gr.Image(label="Live preview (a rough look at the frames so far)", visible=False, interactive=False,
                           type="filepath", height=200, elem_id="live-preview")
        status = gr.Markdown(READY, elem_id="status")
        with gr.Row():
            mp4 = gr.DownloadButton("Download MP4", visible=False, elem_id="download-mp4")
            gif = gr.DownloadButton("Download GIF", visible=False, elem_id="download-gif")
        with gr.Accordion("Parameters used", open=True):
            used = gr.JSON(label="parameters used (under diffusers' names)", elem_id="used")
            sent = gr.JSON(label="sent to the service (key removed)", visible=False, elem_id="sent")
        return cls(video, preview, status, mp4, gif, used, sent)

    def show(self, item: dict) -> dict:
        """Updates that put a finished job (a history entry) in the player.

        Only files this process wrote are shown: an entry is a plain dict, and a path in
        it must never become a way to serve anything else from the disk.
        """
        if not outputs.is_output(item["video"]):
            return {self.status: "That video is not one of this studio's outputs."}
        gif = item.get("gif") if item.get("gif") and outputs.is_output(item["gif"]) else None
        return {
            self.video: item["video"],
            self.preview: gr.update(visible=False, value=None),
            self.mp4: gr.update(value=item["video"], visible=True),
            self.gif: gr.update(value=gif, visible=bool(gif)),
            self.used: item["used"],
            self.sent: gr.update(value=item["sent"], visible=item["sent"] is not None),
        }

    def components(self) -> list[gr.Component]:
        return [self.video, self.preview, self.status, self.mp4, self.gif, self.used, self.sent]
