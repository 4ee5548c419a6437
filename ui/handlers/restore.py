"""Restore's event: drop a studio video (or a settings JSON) to get its settings back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from studio import recipe
from studio.errors import NotARecipe

from ui import layout

if TYPE_CHECKING:
    from ui.state import Studio

def on_file(s: Studio, data: dict) -> dict:
    path = data[s.restorer.file]
    if not path:
        return gr.skip()
    try:
        backend, values = recipe.settings(recipe.read(path))
    except NotARecipe as exc:
        return {s.restorer.note: str(exc)}
    updates, said = layout.restore(s, backend, values, data)
    return updates | {s.restorer.note: said}
