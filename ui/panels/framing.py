"""The framing panel: the exact frame a backend will be sent, before anything is spent,
and the standard frame sizes that backend accepts (portrait ones included)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr



# The parameters that decide the frame; the preview follows each of them.
# The parameters that decide the frame; the preview follows each of them.
FRAMING = ("width", "height", "resize_mode")


@dataclass
class FramingPanel:
    size: gr.Radio
    picture: gr.Image
    caption: gr.Markdown

    @classmethod
    def build(cls) -> FramingPanel:
        with gr.Accordion("Framing: what will be sent", open=True):
            size = gr.Radio(label="frame size", choices=[], visible=False, elem_id="frame-size",
                            info="Standard sizes this backend accepts; the width and height sliders follow.")
            picture = gr.Image(label="the frame sent", type="pil", interactive=False, height=200,
                               show_label=True, elem_id="framing",
                               alt_text="Your photo as it will be sent: cropped or fitted to the video size")
            caption = gr.Markdown("Add a photo to see how it will be framed.", elem_id="framing-caption")
        return cls(size, picture, caption)

    def layout_outputs(self) -> list[gr.Component]:
        return [self.size]
