"""The Batch panel: many photos (or ZIPs of them) made with the page's settings, one ZIP back.

Self-contained: ``build`` makes its components inside whatever container the caller has
open and wires them, reading the page's parameter controls, backend, model, preset and key
boxes as inputs. The batch itself runs in ``orchestration.batch``, not in an event, so the
panel only starts, cancels and retries it, and a timer reads its snapshot while it runs.
The batch's id lives in the browser (``gr.BrowserState``): a reopened page shows the
batch again, running or done, with its ZIP. Closing the page stops the batch unless
"keep going" was ticked, which only the owner's own machine offers (never a public Space).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import gradio as gr

from orchestration import batch, presets
from orchestration.batch_intake import DEFAULT_TEMPLATE, FIELDS
from ui import controls
from ui.errors import need, page_errors
from ui.visitor import visitor

NO_PRESET = "(none)"
NEW_SEEDS, ONE_SEED = "A new seed for each photo", "One seed for all (the seed control's value)"
TICK_S = 1.0
STATUS_WORD = {"waiting": "waiting", "running": "running", "made": "made", "failed": "failed",
               "cancelled": "cancelled"}


@dataclass
class BatchPanel:
    files: gr.File
    template: gr.Textbox
    seeds: gr.Radio
    preset_b: gr.Dropdown
    gifs: gr.Checkbox
    keep_going: gr.Checkbox
    start: gr.Button
    cancel: gr.Button
    retry: gr.Button
    status: gr.Markdown
    table: gr.Markdown
    gallery: gr.Gallery
    zip_file: gr.File
    batch_id: gr.BrowserState
    shown: gr.State
    timer: gr.Timer

    def view(self) -> list[gr.Component]:
        return [self.status, self.table, self.gallery, self.zip_file, self.shown, self.timer]


def build(params: dict[str, gr.Component], backend: gr.Component, model: gr.Component, preset: gr.Component,
          api_key: gr.Component, demo: gr.Blocks, manager: batch.BatchManager | None = None,
          revealed: tuple = (), mine: gr.Component | None = None) -> BatchPanel:
    """The panel, wired; ``params`` is the page's parameter controls by name; ``revealed``
    the events that bring the panel on screen (its tab's select); ``mine`` the presets this
    browser keeps (on a Space), offered as preset B beside the shared ones."""
    manager = manager or batch.MANAGER
    manager.recover()  # batches a restart interrupted show as stopped, with what they made
    fields = ", ".join("{" + f + "}" for f in FIELDS)
    gr.Markdown("Drop in many photos, or ZIPs of photos: each becomes a video with the settings of the "
                "*Make a video* tab (or a preset), "
                "named from the template, all in one ZIP with a manifest.")
    # No file_types filter: the browser would drop other files silently, and each deserves its sentence.
    files = gr.File(file_count="multiple", label="Photos or ZIPs", elem_id="batch-files")
    with gr.Row():
        template = gr.Textbox(DEFAULT_TEMPLATE, label="File names", max_lines=1, elem_id="batch-template",
                              info=f"Fields: {fields}. Repeated names get -2, -3.")
        seeds = gr.Radio([NEW_SEEDS, ONE_SEED], value=NEW_SEEDS, label="Seeds", elem_id="batch-seeds")
    with gr.Row():
        preset_b = gr.Dropdown([NO_PRESET, *presets.load_all()], value=NO_PRESET, label="Preset B (optional)",
                               info="Each photo is made twice: with the settings above (A) and with this preset.",
                               elem_id="batch-preset-b")
        gifs = gr.Checkbox(False, label="Also make GIFs", elem_id="batch-gifs")
        keep_going = gr.Checkbox(False, label="Keep going if this page closes", visible=not batch.space(),
                                 info="The batch goes on without the page; reopen it to find the ZIP.",
                                 elem_id="batch-keep-going")
    with gr.Row():
        start = gr.Button("Start the batch", variant="primary", elem_id="batch-start")
        cancel = gr.Button("Cancel the batch", variant="stop", elem_id="batch-cancel")
        retry = gr.Button("Retry the failed ones", elem_id="batch-retry")
    status = gr.Markdown(elem_id="batch-status")
    table = gr.Markdown(elem_id="batch-table")
    gallery = gr.Gallery(label="Made so far", columns=4, height="auto", elem_id="batch-gallery")
    zip_file = gr.File(label="The batch's ZIP", interactive=False, elem_id="batch-zip")
    panel = BatchPanel(files, template, seeds, preset_b, gifs, keep_going, start, cancel, retry, status, table,
                       gallery, zip_file, gr.BrowserState(None, storage_key="svd-studio-batch"), gr.State(-1),
                       gr.Timer(TICK_S, active=False))
    _wire(panel, params, backend, model, preset, api_key, demo, manager, revealed, mine)
    return panel


def _wire(p: BatchPanel, params: dict[str, gr.Component], backend: gr.Component, model: gr.Component,
          preset: gr.Component, api_key: gr.Component, demo: gr.Blocks, manager: batch.BatchManager,
          revealed: tuple = (), mine: gr.Component | None = None) -> None:
    private = {"api_visibility": "private"}
    inputs = {p.files, p.template, p.seeds, p.preset_b, p.gifs, p.keep_going, backend, model, preset, api_key,
              *params.values(), *([mine] if mine is not None else [])}

    async def on_start(data: dict, request: gr.Request) -> list:
        files = data[p.files]
        need(files, "Add photos first: drop several images, or a ZIP of them, on the Batch panel.")
        paths = [getattr(f, "path", f) for f in files]
        values = {name: data[c] for name, c in params.items()}
        preset_a, preset_b = data[preset], data[p.preset_b]
        with page_errors():
            chosen = controls.collect(values, data[backend], data[model], False)
            made = await asyncio.to_thread(
                manager.create, paths, data[backend], chosen, template=data[p.template],
                seed_per_photo=data[p.seeds] != ONE_SEED,
                preset_a=None if preset_a in (None, NO_PRESET) else preset_a,
                preset_b=None if preset_b in (None, NO_PRESET) else preset_b, gifs=bool(data[p.gifs]),
                api_key=data[api_key] or None, visitor=visitor(request), owner=request.session_hash,
                keep_going=bool(data[p.keep_going]), mine=data.get(mine) if mine is not None else None)
        return [made.id, *render(made.snapshot(), -1)]

    def on_tick(batch_id: str | None, shown: int) -> list:
        found = manager.get(batch_id)
        if found is None:
            return [gr.skip()] * 5 + [gr.Timer(active=False)]
        return render(found.snapshot(), shown)

    def on_cancel(batch_id: str | None) -> str:
        found = manager.get(batch_id)
        if found is None or not found.running:
            return "No batch is running."
        found.cancel()
        return "Cancelling… photos not started are skipped, the running ones stop at their next step or poll."

    def on_retry(batch_id: str | None, key: str | None) -> list:
        found = manager.get(batch_id)
        need(found is not None, "There is no batch on this page to retry.")
        with page_errors():
            found.retry_failed(api_key=key or None)
        return render(found.snapshot(), -1)

    def on_closed(request: gr.Request) -> None:
        manager.page_closed(request.session_hash)

    p.start.click(on_start, inputs, [p.batch_id, *p.view()], concurrency_limit=None, **private)
    p.timer.tick(on_tick, [p.batch_id, p.shown], p.view(), show_progress="hidden", **private)
    p.cancel.click(on_cancel, p.batch_id, p.status, queue=False, **private)
    p.retry.click(on_retry, [p.batch_id, api_key], p.view(), **private)
    # A reopened page finds its batch: at load, and when its tab is opened (the batch id is
    # read from the browser once the tab is on screen).
    for shown in (demo.load, *revealed):
        shown(on_tick, [p.batch_id, p.shown], p.view(), **private)
        if mine is not None:  # this browser's own presets, saved since, are offered as B too
            shown(lambda kept, chosen: gr.update(choices=[NO_PRESET, *presets.load_all(kept)], value=chosen),
                  [mine, p.preset_b], p.preset_b, **private)
    demo.unload(on_closed)


def render(snap: dict[str, Any], shown: int) -> list:
    """Status, table, gallery, ZIP, how many videos the gallery shows, and the timer."""
    items = snap["items"]
    made = [i for i in items if i["status"] == "made" and i["video"]]
    running = snap["state"] == "running"
    rows = ["| # | photo | status | file or reason | seed |", "| --- | --- | --- | --- | --- |"]
    for i in items:
        what = i["output"] if i["status"] == "made" else (i["error"] or i["progress"] or "")
        photo = i["photo"] + (f" ({i['preset']})" if len({x["preset"] for x in items}) > 1 else "")
        rows.append(f"| {i['index']} | {_cell(photo)} | {STATUS_WORD.get(i['status'], i['status'])} | "
                    f"{_cell(what)} | {i['seed'] if i['seed'] is not None else '-'} |")
    changed = len(made) != shown or not running
    gallery = [(i["video"], i["output"]) for i in made] if changed else gr.skip()
    zipped = snap["zip"] if snap["zip"] and not running else None
    return [f"**{snap['line']}**", "\n".join(rows), gallery, zipped if changed else gr.skip(), len(made),
            gr.Timer(active=running)]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
