"""Saved presets' events: save the page's settings under a name, download a preset, add one
from a file, open the save box. Applying a preset is ``ui.handlers.layout``'s."""

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
    mine = data.get(s.presets.mine) or []
    saved = presets.save(data[s.presets.name] or "", values, data[s.presets.description] or "", mine=mine)
    where = "for this studio's every page" if presets.shared() else "kept in this browser only"
    mine = mine if presets.shared() else presets.keep(mine, saved)
    return {
        s.params.preset: gr.update(choices=choices(mine), value=saved.name),
        s.presets.note: f"Saved preset **{saved.name}** ({len(saved.values())} settings). It is in the preset "
                        f"list now, {where}.",
        s.presets.name: "",
        s.presets.mine: mine,
    }


def on_upload(s: Studio, path: str | None, mine: list | None = None) -> dict:
    if not path:
        return gr.skip()
    mine = mine or []
    added = presets.import_file(path, mine=mine)
    mine = mine if presets.shared() else presets.keep(mine, added)
    return {
        s.params.preset: gr.update(choices=choices(mine), value=added.name),
        s.presets.note: f"Added preset **{added.name}** and applied it.",
        s.presets.mine: mine,
    }


def on_chosen(s: Studio, name: str, mine: list | None = None) -> dict:
    """Offer the chosen preset as a file: a copy in a job folder of its own (swept like
    any), from which Gradio serves its own copy."""
    if not name or name == NO_PRESET:
        return {s.presets.download: gr.update(visible=False)}
    source = presets.file_for(name, mine)
    folder = outputs.job_dir("preset")
    try:
        if isinstance(source, presets.Preset):  # a browser's own: it has no file on the server
            copy = folder / presets.file_name(source.name)
            copy.write_text(presets.to_json(source), encoding="utf-8")
        else:
            copy = folder / source.name
            shutil.copyfile(source, copy)
    finally:
        outputs.release(folder)
    return {s.presets.download: gr.update(value=str(copy), visible=True, label=f"Download '{name}' (JSON)")}


def on_load(s: Studio, mine: list | None = None) -> dict:
    """Presets saved since the page was built (by anyone, or in this browser) are in the list."""
    return {s.params.preset: gr.update(choices=choices(mine))}


def on_toggle(s: Studio, opened: bool) -> dict:
    """Open or close the save box under the preset picker."""
    now = not opened
    return {s.presets.opened: now, s.presets.box: gr.update(visible=now),
            s.presets.toggle: gr.update(value="Close" if now else "Save preset…")}
