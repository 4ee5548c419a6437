"""Batches: many photos made with the same settings, one video each (or two, A and B).

A batch is planned completely before anything starts (``plan``): every photo read
(``batch_intake``), every name made, every seed drawn, the settings checked once per
preset, the whole batch counted against the spend guard and the disk budget. Then one
thread runs it (``Batch``): its photos go to the backend as the backend allows (hosted
ones side by side up to its declared ``concurrency``, local ones in turn on the local
backend's devices, through the same slots as single jobs), each through
``orchestration.service.generate``, so each video carries its recipe exactly as a single
one does. A failed photo gets its sentence and the batch goes on; Cancel stops the photos
not started and tells those running to stop (a local one between steps, a hosted one stops
waiting and keeps its task id). At the end the batch folder gets one ZIP: the videos, GIFs
if asked for, and ``manifest.csv`` / ``manifest.json``.

``BatchManager`` keeps batches by an unguessable id, so a page can find its batch again. A
batch ends with the page that started it unless it was told to keep going, which only the
owner's own machine allows (never a public Space). Each batch writes ``batch.json`` beside
its videos; with a lasting ``OUTPUT_DIR``, ``recover`` marks those a restart interrupted as
stopped and packs what they had made.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
import secrets as tokens
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import backends
from orchestration import limits, presets, service
from orchestration.batch_intake import BatchRefused, Photo, check_template, render, unique
from studio import outputs, secrets
from studio.errors import Cancelled, StudioError

log = logging.getLogger("svd_studio")
STATE = "batch.json"
FIXED = ("index", "photo", "output", "status", "error", "seed", "backend", "task_id")
NOT_PARAMETERS = {"backend", "task_id", "seed", "elapsed_seconds", "device"}
BYTES_PER_PIXEL_FRAME = 0.15  # H.264 at these sizes, measured with margin; GIFs take about 8 times more
KEEP_FINISHED_S = 24 * 3600.0
MAX_KEPT = 200


@dataclass
class Item:
    """One video of the batch: where it comes from, what it is made with, what became of it."""

    index: int  # 1-based, in input order (A before B)
    photo: str  # the photo's own file name
    path: str | None  # the staged photo; None when intake refused it
    params: dict[str, Any]
    preset: str = ""
    stem: str = ""  # the video's name without .mp4
    seed: int | None = None
    status: str = "waiting"  # waiting, running, made, failed, cancelled
    error: str = ""
    output: str = ""  # the file name inside the ZIP
    video: str | None = None
    task_id: str | None = None
    used: dict[str, Any] = field(default_factory=dict)
    progress: str = ""


def space() -> bool:
    return bool(os.environ.get("SPACE_ID", "").strip())


def plan(photos: list[Photo], backend: str, params: dict[str, Any], *, template: str | None = None,
         seed_per_photo: bool = True, preset_a: str | None = None, preset_b: str | None = None,
         mine: list | None = None) -> list[Item]:
    """One item per photo (two with ``preset_b``), names and seeds decided; refuses the
    whole batch on a bad template, an unknown preset or a value the backend refuses.
    ``mine``: the presets a browser keeps (``orchestration.presets``), which B may name."""
    chosen = backends.get_backend(backend)
    template = check_template(template)
    model = chosen.model_for(params.get("model"))
    takes = chosen.parameters(model)
    base = {k: v for k, v in params.items() if k != "seed"} | {"model": model}
    variants = [(preset_a or "settings", base)]
    if preset_b:
        variants.append((preset_b, base | _preset_values(preset_b, takes, chosen.label, mine)))
        if "{preset}" not in template:
            template += "-{preset}"  # A and B of one photo must not share a name
    fixed = params.get("seed") if params.get("seed") not in (None, "", -1) else random.randint(0, 2**32 - 1)
    for _, values in variants:  # each set of values checked once, now, not after others were paid for
        sample = values | ({"seed": fixed} if "seed" in takes else {})
        chosen.preflight(chosen.resolve(service.build_request(sample, chosen)))
    items: list[Item] = []
    date = time.strftime("%Y%m%d", time.gmtime())
    width = len(str(len(photos) * len(variants)))
    for photo in photos:
        seed = (random.randint(0, 2**32 - 1) if seed_per_photo else fixed) if "seed" in takes else None
        for label, values in variants:
            index = len(items) + 1
            item = Item(index, photo.name, str(photo.path) if photo.path else None,
                        values | ({"seed": seed} if seed is not None else {}), preset=label, seed=seed)
            stem = Path(photo.name).stem
            item.stem = render(template, {"photo": stem, "seed": seed, "backend": chosen.name, "preset": label,
                                          "index": f"{index:0{width}d}", "date": date})
            if photo.path is None:  # refused at intake: nothing will be made, so no seed is recorded
                item.status, item.error, item.seed = "failed", photo.error, None
                item.params.pop("seed", None)
            items.append(item)
    for item, stem in zip(items, unique([i.stem for i in items]), strict=True):
        item.stem = stem
    return items


def _preset_values(name: str, takes: dict, label: str, mine: list | None = None) -> dict[str, Any]:
    found = presets.load_all(mine).get(name)
    if found is None:
        known = ", ".join(f"'{n}'" for n in presets.load_all(mine))
        raise BatchRefused(f"preset_b must be one of this studio's presets ({known}), got {name!r}.")
    return {k: v for k, v in found.values().items() if k in takes}


def check_budget(items: list[Item], backend: str, visitor: str | None, *, typed_key: bool, gifs: bool) -> None:
    """The whole batch on the spend guard and the disk budget, before anything starts."""
    todo = [i for i in items if i.status == "waiting"]
    limits.check(backend, visitor, typed_key=typed_key, jobs=len(todo))
    need = sum(_bytes(i.params, gifs) for i in todo) * 2  # the videos, and the ZIP that holds them again
    cap = outputs.limits().max_bytes
    if need > cap:
        raise BatchRefused(f"This batch needs about {need / outputs.MB:.0f} MB of disk for its videos and its ZIP, "
                           f"more than the output folder may hold (OUTPUT_MAX_MB, {cap / outputs.MB:.0f} MB); "
                           "make fewer photos at a time.")
    outputs.sweep(wait=False, room=int(need))


def _bytes(params: dict[str, Any], gifs: bool) -> float:
    pixels = (params.get("width") or 1024) * (params.get("height") or 576) * (params.get("num_frames") or 25)
    return pixels * BYTES_PER_PIXEL_FRAME * (9 if gifs else 1)


class Batch:
    """A planned batch and its one runner thread; every method may be called from any thread."""

    def __init__(self, batch_id: str, backend: str, items: list[Item], folder: Path, *, api_key: str | None = None,
                 visitor: str | None = None, gifs: bool = False, keep_going: bool = False, owner: str = "",
                 state: str = "waiting", zip_path: str | None = None, created: float | None = None) -> None:
        self.id, self.backend, self.items, self.folder = batch_id, backend, items, folder
        self.gifs, self.keep_going, self.owner, self.visitor = gifs, keep_going, owner, visitor
        self._api_key = api_key  # never written to the state file, never shown
        self.state, self.zip_path = state, zip_path
        self.created = created or time.time()
        self.finished_at: float | None = None
        self._lock = threading.RLock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self.running:
                raise BatchRefused("This batch is still running; wait for it, or cancel it first.")
            self._cancel = threading.Event()
            self.state, self.zip_path = "running", None
            self._save()
            self._thread = threading.Thread(target=self._run, name=f"batch-{self.id[:6]}", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def cancel(self) -> None:
        self._cancel.set()

    def retry_failed(self, *, api_key: str | None = None) -> int:
        """Run again the photos that failed (not those intake refused); returns how many."""
        with self._lock:
            if self.running:
                raise BatchRefused("This batch is still running; retry the failed photos once it is done.")
            again = [i for i in self.items if i.status == "failed" and i.path]
            if not again:
                raise BatchRefused("No photo of this batch failed in a way a retry can fix.")
            limits.check(self.backend, self.visitor, typed_key=bool((api_key or self._api_key or "").strip()),
                         jobs=len(again))
            for item in again:
                item.status, item.error, item.progress, item.task_id = "waiting", "", "", None
            self._api_key = api_key or self._api_key
        self.start()
        return len(again)

    def _run(self) -> None:
        log.info("batch %s start: backend=%s videos=%d", self.id[:6], self.backend, len(self.items))
        with outputs.hold(self.folder):  # the sweeper leaves the batch folder alone while it runs
            self._run_all()

    def _run_all(self) -> None:
        try:
            lanes = max(1, backends.get_backend(self.backend).concurrency)
            todo = [i for i in self.items if i.status == "waiting"]
            with ThreadPoolExecutor(max_workers=min(lanes, max(1, len(todo))),
                                    thread_name_prefix=f"batch-{self.id[:6]}") as pool:
                list(pool.map(self._one, todo))  # submitted in order: photos start in input order
        except Exception:  # a bug must not leave the batch "running" for ever
            log.exception("batch %s failed", self.id[:6])
        finally:
            with self._lock:
                for item in self.items:
                    if item.status in ("waiting", "running"):
                        item.status = "cancelled"
                self.state = "cancelled" if self._cancel.is_set() else "done"
                self.finished_at = time.time()
            try:
                self.pack()
            finally:
                self._save()
                log.info("batch %s end: %s", self.id[:6], self.counts())

    def _one(self, item: Item) -> None:
        if self._cancel.is_set():
            item.status = "cancelled"
            return
        with self._lock:
            item.status, item.progress = "running", "starting"
            self._save()

        def progress(fraction: float | None, text: str) -> None:
            item.progress = secrets.redact(text)

        def job_id(task_id: str) -> None:
            item.task_id = str(task_id)
            self._save()  # a restart can then still say which task to resume

        try:
            assert item.path is not None
            with outputs.kept_briefly():  # the video moves into the batch folder at once
                result = service.generate(item.path, self.backend, item.params, api_key=self._api_key,
                                          visitor=self.visitor, on_progress=progress, on_job_id=job_id,
                                          cancel=self._cancel, entry=f"batch-{self.id}")  # one entry in line
            self._keep(item, result)
        except Cancelled as exc:
            item.status, item.task_id = "cancelled", exc.job_id or item.task_id
            item.error = "Cancelled before it finished" + (f"; resume it with task id {item.task_id}."
                                                            if item.task_id else ".")
        except StudioError as exc:
            item.status, item.error = "failed", f"{item.photo}: {secrets.redact(str(exc))}"
        except Exception as exc:  # a bug: logged, and this photo alone fails
            log.exception("batch %s: photo %s failed unexpectedly", self.id[:6], item.photo)
            item.status = "failed"
            item.error = f"{item.photo}: something went wrong inside the studio ({type(exc).__name__})."
        finally:
            item.progress = ""
            with self._lock:
                self._save()

    def _keep(self, item: Item, result: Any) -> None:
        target = self.folder / f"{item.stem}.mp4"
        shutil.move(str(result.video), target)
        if self.gifs:
            service.gif_for(target, result.used)
        item.used = result.used
        item.seed = result.used.get("seed", item.seed)
        item.task_id = result.job_id or item.task_id
        item.video, item.output, item.status = str(target), target.name, "made"

    # -- the ZIP and the manifest ---------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """The manifest: the fixed columns, then one per parameter used, in first-seen order."""
        names: dict[str, None] = {}
        preset_column = len({i.preset for i in self.items}) > 1
        for item in self.items:
            for name in (item.used or item.params):
                if name not in NOT_PARAMETERS:
                    names[name] = None
        out = []
        for item in self.items:
            values = item.used or item.params
            row: dict[str, Any] = {"index": item.index, "photo": item.photo, "output": item.output,
                                   "status": item.status, "error": item.error, "seed": item.seed,
                                   "backend": self.backend, "task_id": item.task_id or ""}
            if preset_column:
                row["preset"] = item.preset
            row |= {n: values.get(n, "") for n in names}
            out.append(row)
        return out

    def pack(self) -> Path:
        """The batch's ZIP: every video made (and its GIF), manifest.csv and manifest.json."""
        rows = self.rows()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else list(FIXED))
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
        target = self.folder / f"batch-{time.strftime('%Y%m%d', time.gmtime(self.created))}-{self.id[:6]}.zip"
        partial = target.with_suffix(".zip.part")
        with zipfile.ZipFile(partial, "w") as archive:
            for item in self.items:
                if item.status == "made" and item.video and Path(item.video).is_file():
                    archive.write(item.video, item.output, compress_type=zipfile.ZIP_STORED)  # already compressed
                    gif = Path(item.video).with_suffix(".gif")
                    if self.gifs and gif.is_file():
                        archive.write(gif, gif.name, compress_type=zipfile.ZIP_STORED)
            archive.writestr("manifest.csv", text.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr("manifest.json", json.dumps(rows, indent=1, ensure_ascii=False),
                             compress_type=zipfile.ZIP_DEFLATED)
        os.replace(partial, target)
        with self._lock:
            self.zip_path = str(target)
        return target

    # -- what the page and the API read ---------------------------------------------------

    def counts(self) -> dict[str, int]:
        found = {s: 0 for s in ("made", "failed", "cancelled", "running", "waiting")}
        for item in self.items:
            found[item.status] += 1
        return found

    def line(self) -> str:
        """"photo 3 of 12 · Denoising step 7/25" while running; a summary once done."""
        total, counts = len(self.items), self.counts()
        running = [i for i in self.items if i.status == "running"]
        if running and self.state == "running":
            first = running[0]
            more = f" · {len(running) - 1} more running" if len(running) > 1 else ""
            return f"photo {first.index} of {total} · {first.progress or 'starting'}{more}"
        summary = f"{counts['made']} of {total} made, {counts['failed']} failed, {counts['cancelled']} cancelled"
        words = {"running": "Running", "waiting": "Waiting", "done": "Done", "cancelled": "Cancelled",
                 "stopped": "Stopped when the server restarted"}
        return f"{words.get(self.state, self.state)}: {summary}."

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.id, "state": self.state, "backend": self.backend, "line": self.line(),
                    "counts": self.counts(), "zip": self.zip_path, "keep_going": self.keep_going,
                    "items": [{k: getattr(i, k) for k in ("index", "photo", "preset", "status", "output", "error",
                                                          "seed", "task_id", "video", "progress")}
                              for i in self.items]}

    def summary(self) -> list[dict[str, Any]]:
        """One entry per video in input order: name, output or error, seed (the API's answer)."""
        out = []
        for item in self.items:
            entry: dict[str, Any] = {"name": item.photo}
            if item.status == "made":
                entry["output"] = item.output
            else:
                entry["error"] = item.error or f"{item.photo}: it was not made ({item.status})."
            entry["seed"] = item.seed
            out.append(entry)
        return out

    # -- the state file -------------------------------------------------------------------

    def _save(self) -> None:
        """``batch.json``, replaced whole: a crash never leaves half a file."""
        with self._lock:
            data = {"id": self.id, "backend": self.backend, "state": self.state, "created": self.created,
                    "gifs": self.gifs, "keep_going": self.keep_going, "zip": self.zip_path,
                    "items": [asdict(i) for i in self.items]}
            partial = self.folder / (STATE + ".part")
            try:
                partial.write_text(json.dumps(secrets.redact_deep(data)), encoding="utf-8")
                os.replace(partial, self.folder / STATE)
            except OSError as exc:  # the folder was swept or the disk is full: the batch itself goes on
                log.warning("batch %s: could not write its state file: %s", self.id[:6], exc)

    @classmethod
    def load(cls, folder: Path) -> Batch:
        data = json.loads((folder / STATE).read_text(encoding="utf-8"))
        known = {f.name for f in fields(Item)}
        items = [Item(**{k: v for k, v in raw.items() if k in known}) for raw in data["items"]]
        return cls(data["id"], data["backend"], items, folder, gifs=data.get("gifs", False),
                   keep_going=data.get("keep_going", False), state=data["state"], zip_path=data.get("zip"),
                   created=data.get("created"))


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else ("" if value is None else value)


class BatchManager:
    """Every batch of this process by id, and which page started it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}

    def create(self, files: list[str | Path], backend: str, params: dict[str, Any], *, template: str | None = None,
               seed_per_photo: bool = True, preset_a: str | None = None, preset_b: str | None = None,
               gifs: bool = False, api_key: str | None = None, visitor: str | None = None, owner: str = "",
               keep_going: bool = False, mine: list | None = None) -> Batch:
        """Read, plan and check a batch, then start it. ``keep_going`` (carry on when the
        page closes) is honoured only off a public Space."""
        from orchestration.batch_intake import gather

        backends.get_backend(backend)  # an unknown backend is refused before any file is read
        check_template(template)
        folder = outputs.job_dir("batch")  # busy (never swept) while it is planned and run
        try:
            photos = gather(files, folder / "photos")
            items = plan(photos, backend, params, template=template, seed_per_photo=seed_per_photo,
                         preset_a=preset_a, preset_b=preset_b, mine=mine)
            check_budget(items, backend, visitor, typed_key=bool((api_key or "").strip()), gifs=gifs)
        except BaseException:
            outputs.release(folder)
            raise
        batch = Batch(tokens.token_urlsafe(16), backend, items, folder, api_key=api_key, visitor=visitor,
                      gifs=gifs, keep_going=keep_going and not space(), owner=owner)
        with self._lock:
            self._forget_old()
            self._batches[batch.id] = batch
        batch.start()
        outputs.release(folder)  # the runner thread holds it now; released, it ages like any job folder
        return batch

    def get(self, batch_id: str | None) -> Batch | None:
        with self._lock:
            return self._batches.get(str(batch_id or ""))

    def page_closed(self, owner: str) -> int:
        """The page ``owner`` closed: its batches stop, except those told to keep going."""
        with self._lock:
            mine = [b for b in self._batches.values() if b.owner == owner and b.running]
        stopped = 0
        for batch in mine:
            if not batch.keep_going or space():
                batch.cancel()
                stopped += 1
        return stopped

    def recover(self) -> int:
        """With a lasting OUTPUT_DIR: batches a restart interrupted are marked stopped and
        packed with what they had made; finished ones can be found again by id."""
        if not os.environ.get("OUTPUT_DIR", "").strip():
            return 0
        stopped = 0
        for state in sorted(outputs.run_dir().glob(f"*/{STATE}")):
            try:
                batch = Batch.load(state.parent)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("Could not read batch state %s: %s", state.parent.name, exc)
                continue
            with self._lock:
                if batch.id in self._batches:
                    continue
                self._batches[batch.id] = batch
            if batch.state in ("running", "waiting"):
                for item in batch.items:
                    if item.status in ("waiting", "running"):
                        item.status = "cancelled"
                        item.error = "The server restarted before this photo was made" + (
                            f"; resume it with task id {item.task_id}." if item.task_id else ".")
                batch.state = "stopped"
                batch.pack()
                batch._save()
                stopped += 1
        return stopped

    def _forget_old(self) -> None:
        now = time.time()
        for batch_id, batch in list(self._batches.items()):
            old = batch.finished_at is not None and now - batch.finished_at > KEEP_FINISHED_S
            if old or (len(self._batches) > MAX_KEPT and not batch.running):
                del self._batches[batch_id]


MANAGER = BatchManager()  # the one the page and the API share
