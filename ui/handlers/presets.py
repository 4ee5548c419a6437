"""The presets panel: save the page's settings under a name, download a preset, add one
from a file. Presets are shared data files (``orchestration.presets``); the dropdown that applies
them lives in the parameters panel."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import gradio as gr

from orchestration import presets
from studio import outputs
from ui import controls
from ui.panels.parameters import NO_PRESET, choices

if TYPE_CHECKING:
    from ui.state import Studio


def on_save(s: Studio, data: dict) -> dict:
    """Store the controls the current backend uses (never the key, never the photo)."""
    values = controls.collect(s.params.values(data), data[s.input.backend], data[s.input.model],
                              data[s.params.randomize])
    saved = presets.save(data[s.presets.name] or "", values, data[s.presets.description] or "")
    return {
        s.params.preset: gr.update(choices=choices(), value=saved.name),
        s.presets.note: f"Saved preset **{saved.name}** ({len(saved.values())} settings). It is in the preset "
                        "list now, for this studio's every page.",
        s.presets.name: "",
    }


def on_upload(s: Studio, path: str | None) -> dict:
    if not path:
        return gr.skip()
    added = presets.import_file(path)
    return {
        s.params.preset: gr.update(choices=choices(), value=added.name),
        s.presets.note: f"Added preset **{added.name}** and applied it.",
    }


def on_chosen(s: Studio, name: str) -> dict:
    """Offer the chosen preset as a file: a copy in the output folder, the only folder the
    page serves files from."""
    if not name or name == NO_PRESET:
        return {s.presets.download: gr.update(visible=False)}
    source = presets.file_for(name)
    folder = outputs.run_dir() / "presets"
    folder.mkdir(exist_ok=True)
    copy = folder / source.name
    shutil.copyfile(source, copy)
    return {s.presets.download: gr.update(value=str(copy), visible=True, label=f"Download '{name}' (JSON)")}


def on_load(s: Studio) -> dict:
    """Presets saved since the page was built (by anyone) are in the list."""
    return {s.params.preset: gr.update(choices=choices())}


def on_toggle(s: Studio, opened: bool) -> dict:
    """Open or close the save box under the preset picker."""
    now = not opened
    return {s.presets.opened: now, s.presets.box: gr.update(visible=now),
            s.presets.toggle: gr.update(value="Close" if now else "Save preset…")}
