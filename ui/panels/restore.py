"""The restore panel: drop a studio video (or a settings JSON) to get its settings back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr

from studio import recipe
from studio.errors import NotARecipe

if TYPE_CHECKING:
    from ui.studio import Studio

FILE_TYPES = [".mp4", ".webm", ".mov", ".mkv", ".gif", ".json"]


@dataclass
class RestorePanel:
    file: gr.File
    note: gr.Markdown

    @classmethod
    def build(cls) -> RestorePanel:
        file = gr.File(label="Restore settings: drop a video made here, or a settings JSON", file_types=FILE_TYPES,
                       type="filepath", height=140, elem_id="restore-file")
        note = gr.Markdown(elem_id="restore-note")
        return cls(file, note)


def on_file(s: Studio, data: dict) -> dict:
    path = data[s.restorer.file]
    if not path:  # Gradio reads an empty dict as one value, not as "no updates"
        return {s.restorer.note: gr.update()}
    try:
        backend, values = recipe.settings(recipe.read(path))
    except NotARecipe as exc:
        return {s.restorer.note: str(exc)}
    updates, said = s.restore(backend, values, data)
    return updates | {s.restorer.note: said}
