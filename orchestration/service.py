"""One generation from start to finish, independent of any UI.

The page and the ``/generate`` API both call ``generate``: check the backend and the
parameters, read the image, wait for one of the backend's slots, run it, and give back a
``Result`` whose ``used`` is built here and nowhere else, so the page and the API report
the same fields for the same job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import ValidationError

import backends
from backends.base import Job, Result, Slots
from studio import images, outputs, recipe, secrets, video
from orchestration import limits
from studio.errors import BadSetting, InvalidParameter, StudioError
from studio.request import PARAMETERS, GenerationRequest


def build_request(params: dict[str, Any], backend: backends.Backend) -> GenerationRequest:
    """The request model from loose values by name: SVD's parameters become fields, any
    backend's declared option goes to ``options``. A type error names the parameter and
    the backend, with the backend's own range where it has one for that parameter."""
    clean = {k: (None if v == "" else v) for k, v in params.items()}
    known_options = backends.all_options()
    unknown = next((k for k in clean if k not in PARAMETERS and k not in known_options), None)
    if unknown is not None:
        raise InvalidParameter(unknown, clean[unknown], "a known parameter name", backend.label)
    fields = {k: v for k, v in clean.items() if k in PARAMETERS}
    options = {k: v for k, v in clean.items() if k in known_options and v is not None}
    try:
        return GenerationRequest(**fields, options=options)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "parameters"
        limit = backend.limits(backend.model_for(clean.get("model"), lenient=True)).get(name)
        rule = limit.rule() if limit is not None else _pydantic_rule(GenerationRequest.model_fields.get(name), err)
        raise InvalidParameter(name, clean.get(name), rule, backend.label) from None


def _pydantic_rule(field: Any, err: dict) -> str:
    ctx = err.get("ctx") or {}
    if "ge" in ctx or "le" in ctx or "gt" in ctx or "lt" in ctx:
        lo = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
        hi = next((m.le for m in field.metadata if hasattr(m, "le")), None)
        return f"{lo:g}-{hi:g}" if lo is not None and hi is not None else err["msg"].lower()
    return err["msg"].lower()


def generate(image: str | Path, backend: str, params: dict[str, Any], *, api_key: str | None = None,
             visitor: str | None = None, **hooks: Any) -> Result:
    """Make a video. ``hooks``: ``on_progress(fraction, text)``, ``on_job_id(id)`` and
    ``cancel`` (a threading.Event), as on ``backends.base.Job``.

    Everything that can be refused is refused before the job waits for a slot: the
    values, the machine's abilities (``preflight``) and the image. Only then is the job
    counted against ``visitor``'s allowance on the owner's key (``orchestration.limits``).
    """
    started = time.monotonic()
    chosen = backends.get_backend(backend)
    request = chosen.resolve(build_request(params, chosen))
    chosen.preflight(request)
    picture = images.load_image(image)
    limits.charge(chosen.name, visitor, typed_key=bool((api_key or "").strip()))
    job = _job(chosen, api_key, hooks | {"visitor": visitor})
    try:
        # Kept first: the upload itself may go while the job waits or runs (studio.uploads).
        photo = _keep_photo(image, job.workdir)
        result = _keeping_key_private(chosen, job, lambda: chosen.generate(picture, request, job))
        result.photo = photo
        return _finish(chosen, result, started, request)
    finally:
        outputs.release(job.workdir)  # job_dir made it busy; now the sweeper may have it (after a grace)


def _keep_photo(image: str | Path, workdir: Path) -> Path | None:
    """The photo beside its video: "again with a new seed" and extending need it after
    the upload itself is gone. A plain copy of the file: no decoding, no re-encoding."""
    if not isinstance(image, (str, Path)):
        return None
    source = Path(image)
    kept = workdir / f"photo{source.suffix.lower() or '.png'}"
    shutil.copyfile(source, kept)
    return kept


def resume(job_id: str, backend: str, *, api_key: str | None = None, **hooks: Any) -> Result:
    """Wait again for a hosted job by its task id (the page was closed, or it timed out)."""
    started = time.monotonic()
    chosen = backends.get_backend(backend)
    job = _job(chosen, api_key, hooks)
    try:
        result = _keeping_key_private(chosen, job, lambda: chosen.resume(str(job_id or "").strip(), job))
        return _finish(chosen, result, started, None)
    finally:
        outputs.release(job.workdir)


def _job(chosen: backends.Backend, api_key: str | None, hooks: dict[str, Any]) -> Job:
    given = {k: v for k, v in hooks.items() if v is not None}
    return Job(workdir=outputs.job_dir(chosen.name), api_key=api_key, **given)


def _finish(chosen: backends.Backend, result: Result, started: float, request: GenerationRequest | None) -> Result:
    """Build ``result.used``, the one account of the job: the backend, the request as
    resolved (options an API caller alone sees are left out), what the backend learned
    (the real size, a provider's seed...), the task id and the time it took."""
    used: dict[str, Any] = {"backend": chosen.name}
    if request is not None:
        shown = {n for n, o in chosen.options(request.model or chosen.default_model()).items() if o.shown}
        used |= request.model_dump(exclude={"options"}, exclude_none=True)
        used |= {n: v for n, v in request.options.items() if n in shown}
    used |= result.used
    if result.job_id:
        used["task_id"] = result.job_id
    used["elapsed_seconds"] = round(time.monotonic() - started, 1)
    # The request's options went to the provider whole; what is shown and kept masks any
    # URL's query and user-info (a webhook's token) and any key.
    result.used = used = secrets.redact_deep(used)
    recipe.stamp(result.video, recipe.make(used))  # every video carries how it was made
    return result


def make_gif(result: Result) -> Path:
    """The GIF beside the MP4, made on demand: it costs several times the MP4's encoding."""
    if result.gif is None:
        result.gif = gif_for(result.video, result.used)
    return result.gif


def gif_for(mp4: Path, used: dict[str, Any]) -> Path:
    """The GIF of a studio MP4, carrying the same recipe."""
    gif = video.mp4_to_gif(mp4, mp4.with_suffix(".gif"))
    return recipe.stamp_gif(gif, recipe.make(used))


def make_poster(result: Result) -> Path:
    """The thumbnail the history shows for this video."""
    return video.poster(result.video, result.video.with_name("poster.png"))


def estimate(backend: str, params: dict[str, Any]) -> str | None:
    """How long ``generate`` would take with these values, in words, where the backend can
    tell; None otherwise, and for values it would refuse (Generate says why)."""
    chosen = backends.get_backend(backend)
    try:
        return chosen.estimate(chosen.resolve(build_request(params, chosen)))
    except StudioError:
        return None


def framing(image: str | Path, backend: str, params: dict[str, Any]) -> backends.base.Framed:
    """The picture ``generate`` would start the video from with these values, at once:
    the page shows it on every change, before anything is spent.

    The same checks as ``generate`` (a bad value is the same ``InvalidParameter``), the
    same image reading and the backend's own ``frame``, which its ``generate`` uses too;
    no ``preflight``, slot, network or torch, so it answers in a moment.
    """
    chosen = backends.get_backend(backend)
    request = chosen.resolve(build_request(params, chosen))  # a random seed may be drawn: it does not matter here
    return chosen.frame(images.load_image(image), request)


FINISH_ENV = "FINISH_CONCURRENCY"
_finish_lock = threading.Lock()
_finish_line: Slots | None = None


def finish_slots() -> Slots:
    """The one line for finishing and for joining extended clips (ffmpeg and frames in
    memory, on this machine's CPU): ``FINISH_CONCURRENCY`` at once (default 1), read once."""
    global _finish_line
    with _finish_lock:
        if _finish_line is None:
            raw = os.environ.get(FINISH_ENV, "").strip() or "1"
            if not raw.isdigit() or int(raw) < 1:
                raise BadSetting(f"{FINISH_ENV} must be a whole number, 1 or more, got {raw!r}.")
            _finish_line = Slots(int(raw), "a free finishing slot")
        return _finish_line


@contextlib.contextmanager
def finishing_slot(hooks: dict[str, Any], visitor: str | None = None) -> Iterator[None]:
    """Wait in the finishing line (telling ``on_progress`` the place; ``cancel`` leaves it)."""
    job = Job(workdir=Path("."), on_progress=hooks.get("on_progress") or (lambda f, t: None),
              cancel=hooks.get("cancel") or threading.Event(), visitor=visitor)
    with finish_slots().hold(job):
        yield


def finish_video(source: str | Path, *, target_fps: float | None = None, loop: str = "none",
                 interpolation: str = "motion", **hooks: Any) -> Result:
    """Finish any video (interpolate, loop) into a new job folder; the source is never
    touched. ``used`` is the finished file's recipe: the source's own settings when it was
    made here, plus ``finish``, what was done."""
    from studio import finish  # ffmpeg work only: loaded when someone finishes a clip

    folder = outputs.job_dir("finish")
    try:
        # One line for the machine's finishing work; the source may be another job's video:
        # the sweeper leaves it while it is read.
        with finishing_slot(hooks), outputs.hold(source):
            done = finish.finish(source, folder, target_fps=target_fps, loop=loop, interpolation=interpolation,
                                 on_progress=hooks.get("on_progress") or (lambda f, t: None),
                                 cancel=hooks.get("cancel"))
        return Result(video=done.video, used=recipe.read(done.video))  # always stamped, at least with "finish"
    finally:
        outputs.release(folder)


def _keeping_key_private(chosen: backends.Backend, job: Job, work: Callable[[], Result]) -> Result:
    """Run ``work`` in ``chosen``'s line with the job's own key masked in all it says: log
    lines, progress, an error (scrubbed before it leaves) and what it reports (``used``,
    ``sent``). A key typed on the page is its visitor's alone: masked here and nowhere
    else, and forgotten when the job ends (``studio.secrets``)."""
    # One line per backend, first come first served, for every place that waits (page,
    # API, sweeps, extends, batches); a visitor's waiting jobs are capped on a Space.
    with secrets.job_secret(job.api_key), chosen.slots.hold(job, cap=limits.queue_cap(chosen)):
        result = work()
        result.used, result.sent = secrets.redact_deep(result.used), secrets.redact_deep(result.sent)
        return result
