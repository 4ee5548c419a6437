"""The API endpoints, for scripts, other tools and (with MCP on) agents.

- ``/generate(image, backend, <request fields>, <options>, api_key)`` -> (video, parameters used)
- ``/sweep(image, backend, parameter, values, <request fields>, <options>, api_key)``
  -> (videos, parameters used for each), both in the order of ``values``
- ``/read_settings(file)`` -> the settings a studio video or settings JSON carries
- ``/finish(video, target_fps, loop, interpolation)`` -> (finished video, what was done)
- ``/extend(image, backend, segments, same_seed, <request fields>, <options>, api_key)``
  -> (joined video, parameters used for each segment)
- ``/resume(task_id, backend, api_key)`` -> (video, parameters used)
- ``/batch(images, backend, name_template, seed_per_photo, preset_b, gifs, <request fields>, <options>,
  api_key)`` -> (ZIP of the videos and a manifest, one summary entry per video in input order)

The signatures are built from the request model and every option any backend declares,
so the API accepts each of them by name; each defaults to None, meaning "the backend's
default". Docstrings are written for an agent that never reads this code: MCP turns
them into tool descriptions. Jobs run through the same runner as the page, so a client
that disconnects stops its jobs too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from pathlib import Path
from typing import Any, Optional

import gradio as gr
from gradio.data_classes import FileData
from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder

import backends
from backends.base import Flag, Limit, Range, Result
from orchestration import batch, extend, service, sweep
from orchestration.batch_intake import DEFAULT_TEMPLATE, FIELDS
from studio import outputs, recipe, secrets
from studio.request import PARAMETERS, GenerationRequest, describe, title_of
from ui.errors import need, page_errors
from ui.jobs import Runner, Task, client_alive
from ui.visitor import visitor

Answer = tuple[FileData, dict]
KIND = inspect.Parameter.POSITIONAL_OR_KEYWORD


def register(runner: Runner, default_backend: str) -> None:
    """Every endpoint, inside the page's ``gr.Blocks``."""
    gr.api(generate_endpoint(runner, default_backend), api_name="generate", concurrency_limit=None)
    gr.api(sweep_endpoint(runner, default_backend), api_name="sweep", concurrency_limit=None)
    gr.api(read_settings, api_name="read_settings")
    gr.api(finish_endpoint(runner), api_name="finish", concurrency_limit=None)
    gr.api(extend_endpoint(runner, default_backend), api_name="extend", concurrency_limit=None)
    gr.api(batch_endpoint(default_backend), api_name="batch", concurrency_limit=None)
    resume = resume_endpoint(runner)
    resume._mcp_type = "none"  # type: ignore[attr-defined] # scripts only: not one of the agents' tools
    gr.api(resume, api_name="resume", concurrency_limit=None)


async def _run(runner: Runner, task: Task, request: gr.Request) -> Result:
    result: Result | None = None
    with outputs.kept_briefly():  # Gradio copies the answer's file at once; no page makes a GIF of it
        async for item in runner.run(task, f"api-{request.session_hash}", alive=client_alive(request)):
            if isinstance(item, Result):
                result = item
    need(result is not None, "The client went away; the job was stopped.")
    assert result is not None
    return result


def served(path: str | Path) -> FileData:
    """An answer's file as Gradio's cache copy (named by a keyed hash of its content): the
    output folder itself is never served (``ui.gates``), and Gradio copies only the files
    it finds in an answer's components, not those inside a list (``/sweep``)."""
    return FileData(path=save_file_to_cache(path, get_upload_folder()))


def _path(file: Any, name: str, what: str) -> str:
    path = file.get("path") if isinstance(file, dict) else getattr(file, "path", None)
    need(path, f"{name} is required: {what}.")
    return str(path)


def _annotation(limit: Limit) -> Any:
    if isinstance(limit, Flag):
        return Optional[bool]
    if isinstance(limit, Range):
        return Optional[int] if limit.integer else Optional[float]
    return Optional[str]


def _request_parameters() -> list[tuple[inspect.Parameter, str]]:
    """Every request field and option, each with its help text."""
    found = [(inspect.Parameter(n, KIND, default=None, annotation=GenerationRequest.model_fields[n].annotation),
              f"{title_of(n)}: {describe(n)}") for n in PARAMETERS]
    for name, option in backends.all_options().items():
        found.append((inspect.Parameter(name, KIND, default=None, annotation=_annotation(option.limit)),
                      option.description))
    return found


def _endpoint(name: str, summary: str, head: list[tuple[inspect.Parameter, str]], returns: Any, returns_doc: str,
              call: Any) -> Any:
    """A function whose signature lists ``head``, every request parameter, then
    ``api_key``; ``call(values, api_key, request)`` does the work."""
    request_params = _request_parameters()
    tail = [(inspect.Parameter("api_key", KIND, default=None, annotation=Optional[str]),
             "The hosted provider's API key; leave empty to use the key set on the server.")]
    listed = [*head, *request_params, *tail]
    params = [p for p, _ in listed] + [inspect.Parameter("request", KIND, default=None, annotation=gr.Request)]
    signature = inspect.Signature(params, return_annotation=returns)

    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        api_key, request = values.pop("api_key"), values.pop("request")
        with page_errors():
            return await call(values, api_key, request)

    endpoint.__name__ = endpoint.__qualname__ = name  # MCP names the tool after the function
    endpoint.__signature__ = signature  # type: ignore[attr-defined]
    endpoint.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    args = "\n".join(f"    {p.name}: {' '.join(doc.split())}" for p, doc in listed)
    endpoint.__doc__ = f"{summary}\n\nArgs:\n{args}\n\nReturns:\n    {returns_doc}"
    return endpoint


def _backend_doc() -> str:
    return ("Where the video is made: " + "; ".join(
        f"'{n}' ({backends.get_backend(n).label})" for n in backends.names()) + ".")


def generate_endpoint(runner: Runner, default_backend: str) -> Any:
    head = [(inspect.Parameter("image", KIND, annotation=FileData), "The photo to animate (PNG, JPEG or WebP)."),
            (inspect.Parameter("backend", KIND, default=default_backend, annotation=str), _backend_doc())]

    async def call(values: dict, api_key: str | None, request: gr.Request) -> Answer:
        image = _path(values.pop("image"), "image", "upload a photo (PNG, JPEG or WebP)")
        backend = values.pop("backend")
        task = functools.partial(service.generate, image, backend, values, api_key=api_key, visitor=visitor(request))
        result = await _run(runner, task, request)
        return served(result.video), result.used

    return _endpoint(
        "generate", "Turn a still image into a short video with Stable Video Diffusion. Every parameter left empty "
        "takes the backend's default; a value outside the backend's range is refused with the allowed range.",
        head, Answer, "The MP4 video (its settings are stored in its comment tag) and the parameters used.", call)


def sweep_endpoint(runner: Runner, default_backend: str) -> Any:
    head = [(inspect.Parameter("image", KIND, annotation=FileData), "The photo to animate (PNG, JPEG or WebP)."),
            (inspect.Parameter("backend", KIND, default=default_backend, annotation=str), _backend_doc()),
            (inspect.Parameter("parameter", KIND, default="motion_bucket_id", annotation=str),
             "The numeric parameter to vary, for example 'motion_bucket_id', 'seed', 'noise_aug_strength', 'fps', "
             "'max_guidance_scale' or 'num_inference_steps'."),
            (inspect.Parameter("values", KIND, default=None, annotation=list[float]),
             f"{sweep.MIN_VALUES} to {sweep.MAX_VALUES} values for that parameter, each within the backend's "
             "range. Unless the seed is swept, every video uses the same seed.")]

    async def call(values: dict, api_key: str | None, request: gr.Request) -> tuple[list[FileData | None], list]:
        image = _path(values.pop("image"), "image", "upload a photo (PNG, JPEG or WebP)")
        backend, parameter, chosen = values.pop("backend"), values.pop("parameter"), values.pop("values")
        cells = sweep.plan(backend, parameter, chosen, values)
        who = visitor(request)
        sweep.check_allowance(cells, who, api_key)  # all of it fits on the owner's key, or nothing starts
        tasks = [(functools.partial(service.generate, image, c.backend, c.params, api_key=api_key, visitor=who),
                  c.backend) for c in cells]
        lanes = {backend: backends.get_backend(backend).concurrency}
        videos: list[FileData | None] = [None] * len(cells)
        used: list[dict] = [{} for _ in cells]
        failures: list[Exception] = []
        session = f"api-{request.session_hash}"
        with outputs.kept_briefly():  # as in _run
            async for i, item in runner.run_many(tasks, session, lanes, alive=client_alive(request)):
                if isinstance(item, Result):
                    videos[i], used[i] = served(item.video), item.used
                elif isinstance(item, Exception):
                    failures.append(item)
                    used[i] = {"backend": backend, parameter: cells[i].params[parameter],
                               "error": secrets.redact(str(item))}
        if failures and len(failures) == len(cells):
            raise failures[0]  # nothing was made: the first reason, as /generate would give it
        return videos, used

    return _endpoint(
        "sweep", "Make one video per value of one parameter, everything else (the seed included) unchanged, to "
        "compare them. Hosted backends make the videos side by side; the local GPU makes them in turn.",
        head, tuple[list[Optional[FileData]], list[dict]],
        "Two lists in the order of values: the MP4 videos (None where one failed), and the parameters used for "
        "each (with 'error' where one failed).", call)


def finish_endpoint(runner: Runner) -> Any:
    async def finish(video: FileData, request: gr.Request, target_fps: Optional[float] = None, loop: str = "none",
                     interpolation: str = "motion") -> tuple[FileData, dict]:
        """Smooth a video to a higher frame rate and/or make it loop, keeping its length. Works on any MP4,
        WebM or MOV (at most 600 frames), not only this studio's; the original is never changed.

        Args:
            video: The video to finish.
            target_fps: The frame rate to reach, 12 to 60 (24 or 30 are usual); empty keeps the video's rate.
            loop: 'none'; 'pingpong' (forward then backward, the turning frames shown once); or 'crossfade' (the
                end fades into the start, so it loops with no jump and about the same length).
            interpolation: How in-between frames are made: 'motion' (motion-compensated, follows movement, slower)
                or 'blend' (cross-fades, fast).

        Returns:
            The finished MP4, and what was done: input frames and fps, output frames and fps, method, loop.
        """
        source = _path(video, "video", "upload the video to finish")
        with page_errors():
            task = functools.partial(service.finish_video, source, target_fps=target_fps, loop=loop,
                                     interpolation=interpolation)
            result = await _run(runner, task, request)
            return served(result.video), result.used.get("finish", {})

    return finish


def extend_endpoint(runner: Runner, default_backend: str) -> Any:
    head = [(inspect.Parameter("image", KIND, annotation=FileData), "The photo the first segment starts from."),
            (inspect.Parameter("backend", KIND, default=default_backend, annotation=str), _backend_doc()),
            (inspect.Parameter("segments", KIND, default=3, annotation=int),
             f"How many clips to chain, {extend.MIN_SEGMENTS} to {extend.MAX_SEGMENTS}: each next one starts from "
             "the last frame of the one before."),
            (inspect.Parameter("same_seed", KIND, default=False, annotation=bool),
             "True: every segment uses the same seed; False: a new seed for each segment after the first.")]

    async def call(values: dict, api_key: str | None, request: gr.Request) -> tuple[FileData, list]:
        image = _path(values.pop("image"), "image", "upload a photo (PNG, JPEG or WebP)")
        backend, segments, same_seed = values.pop("backend"), values.pop("segments"), values.pop("same_seed")
        task = functools.partial(extend.extend, image, backend, values, segments=segments,
                                 same_seed=bool(same_seed), api_key=api_key, visitor=visitor(request))
        result = await _run(runner, task, request)
        return served(result.video), result.used["segments"]

    return _endpoint(
        "extend", "Make a longer video: several clips chained from each one's last frame on one backend with the "
        "same settings, joined into one MP4 without repeating the seam frames.",
        head, tuple[FileData, list[dict]],
        "The joined MP4 (its settings, every segment's included, are stored in its comment tag) and the parameters "
        "used for each segment, in order.", call)


def batch_endpoint(default_backend: str, manager: batch.BatchManager | None = None) -> Any:
    manager = manager or batch.MANAGER
    fields = ", ".join("{" + f + "}" for f in FIELDS)
    head = [(inspect.Parameter("images", KIND, annotation=list[FileData]),
             "The photos (PNG, JPEG or WebP), and/or ZIP files of photos (folders inside are flattened)."),
            (inspect.Parameter("backend", KIND, default=default_backend, annotation=str), _backend_doc()),
            (inspect.Parameter("name_template", KIND, default=DEFAULT_TEMPLATE, annotation=str),
             f"How each video is named, from {fields}; names are made file-safe and a repeated one gets -2, -3."),
            (inspect.Parameter("seed_per_photo", KIND, default=True, annotation=bool),
             "True: a new random seed for each photo; False: every photo uses `seed`."),
            (inspect.Parameter("preset_b", KIND, default=None, annotation=Optional[str]),
             "A preset's name: each photo is made twice, with these settings (A) and with the preset over them (B)."),
            (inspect.Parameter("gifs", KIND, default=False, annotation=bool),
             "Also put a GIF of each video in the ZIP (slower).")]

    async def call(values: dict, api_key: str | None, request: gr.Request) -> tuple[FileData, list]:
        files = values.pop("images") or []
        paths = [_path(f, "images", "upload photos, or a ZIP of photos") for f in files]
        options = {k: values.pop(k) for k in ("backend", "name_template", "seed_per_photo", "preset_b", "gifs")}
        made = await asyncio.to_thread(
            manager.create, paths, options["backend"], values, template=options["name_template"],
            seed_per_photo=options["seed_per_photo"] is not False, preset_b=options["preset_b"] or None,
            gifs=bool(options["gifs"]), api_key=api_key, visitor=visitor(request), owner=f"api-{request.session_hash}")
        alive = client_alive(request)
        with outputs.kept_briefly():
            while not await asyncio.to_thread(made.wait, 0.5):
                if not alive():  # the client went away: as with any job, its batch stops
                    made.cancel()
        need(made.zip_path, "The batch stopped before its ZIP was written.")
        return served(made.zip_path), made.summary()

    return _endpoint(
        "batch", "Make one video from each of many photos with the same settings (or two, A and B, with "
        "preset_b), named from a template, and get them in one ZIP with manifest.csv and manifest.json. A photo "
        "that cannot be used, or fails, gets one sentence and the others go on.",
        head, tuple[FileData, list[dict]],
        "The ZIP's path, and a list with one entry per video in input order: {name: the photo's file name, "
        "output: the video's file name in the ZIP, or error: one sentence naming the photo, seed}.", call)


def read_settings(file: FileData) -> dict:
    """Read the settings a video made by this studio carries (or a settings JSON file), to make it again.

    Args:
        file: An MP4, WebM or GIF made by this studio, or a settings JSON file.

    Returns:
        The settings: 'backend', 'model', 'seed' and every parameter used, under diffusers' names.
    """
    with page_errors():
        return recipe.read(_path(file, "file", "upload a video made by this studio, or a settings JSON file"))


def resume_endpoint(runner: Runner) -> Any:
    async def resume(task_id: str, backend: str, request: gr.Request, api_key: Optional[str] = None) -> Answer:
        """Wait again for a hosted job by its task id; returns (video, parameters used)."""
        with page_errors():
            result = await _run(runner, functools.partial(service.resume, task_id, backend, api_key=api_key),
                                request)
            return served(result.video), result.used

    return resume

