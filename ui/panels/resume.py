"""The resume panel: wait again for a hosted job by its task id, without paying twice."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass
class ResumePanel:
    box: gr.Accordion
    task_id: gr.Textbox
    button: gr.Button

    @classmethod
    def build(cls) -> ResumePanel:
        with gr.Accordion("Resume a hosted job", open=False, visible=False) as box:
            task_id = gr.Textbox(
                label="task id", max_lines=1, elem_id="task-id",
                info="Paste the task id of a job whose page was closed or that timed out; the studio waits "
                     "for it again without paying twice.",
            )
            button = gr.Button("Resume waiting", elem_id="resume")
        return cls(box, task_id, button)
