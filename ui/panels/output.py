"""The output panel: the player, the status line, downloads and the parameters used."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

READY = "Your video will appear here. Add a photo, set the motion and press **Generate**."


@dataclass
class OutputPanel:
    video: gr.Video
    preview: gr.Image
    status: gr.Markdown
    mp4: gr.DownloadButton
    gif: gr.DownloadButton
    box: gr.Accordion  # the parameters used: hidden until there is a video
    used: gr.HTML
    seed: gr.Textbox
    used_json: gr.JSON
    sent: gr.JSON

    @classmethod
    def build(cls) -> OutputPanel:
        video = gr.Video(label="Your video", autoplay=True, loop=True, interactive=False, height=400,
                         elem_id="video")
        status = gr.Markdown(READY, elem_id="status")
        preview = gr.Image(label="Live preview (a rough look at the frames so far)", visible=False, interactive=False,
                           type="filepath", height=180, elem_id="live-preview",
                           alt_text="A rough preview of the video's frames so far")
        with gr.Row():
            mp4 = gr.DownloadButton("Download MP4", visible=False, elem_id="download-mp4")
            gif = gr.DownloadButton("Download GIF", visible=False, elem_id="download-gif")
        with gr.Accordion("Parameters used", open=False, visible=False, elem_id="used-box") as box:
            seed = gr.Textbox(label="seed used", interactive=False, buttons=["copy"], max_lines=1,
                              elem_id="seed-used", info="The same seed and settings make the same video again.")
            used = gr.HTML(elem_id="used")
            with gr.Accordion("Raw JSON (and what was sent to the service)", open=False, elem_id="used-raw"):
                used_json = gr.JSON(label="parameters used (under diffusers' names)", elem_id="used-json")
                sent = gr.JSON(label="sent to the service (key removed)", visible=False, elem_id="sent")
        return cls(video, preview, status, mp4, gif, box, used, seed, used_json, sent)

    def components(self) -> list[gr.Component]:
        return [self.video, self.preview, self.status, self.mp4, self.gif, self.box, self.used, self.seed,
                self.used_json, self.sent]
