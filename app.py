"""SVD Studio: turn a still image into a short video with Stable Video Diffusion.

The only module that imports gradio. The page is built from the backends' declarations
(which parameters, which ranges, which defaults): nothing here branches on a backend's
name. Every error a person can meet is turned into a ``gr.Error`` in ``_user_error``.

Run with ``python app.py``; GRADIO_SERVER_NAME and GRADIO_SERVER_PORT are honoured.
"""


import functools
import inspect
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, get_args, get_origin

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio.data_classes import FileData  # noqa: E402

import backends  # noqa: E402
from backends.base import Choice, Flag, Limit, Range, Result, Text  # noqa: E402
from studio import outputs, presets, secrets, service  # noqa: E402
from studio.errors import Cancelled, StudioError  # noqa: E402
from studio.request import GROUPS, PARAMETERS, GenerationRequest, describe, group_of  # noqa: E402

log = logging.getLogger("svd_studio")
HERE = Path(__file__).resolve().parent
EXAMPLES = [str(HERE / "examples" / name) for name in ("astronaut.png", "rocket.jpg", "chelsea.png", "coffee.png")]
DEFAULT_BACKEND = backends.names()[0]
# Parameters that get their own control; "model" has its dropdown next to the backend.
CONTROLLED = tuple(p for p in PARAMETERS if p != "model")
MAX_UPLOAD = "50mb"  # a 40-megapixel photo fits; a disk-filling upload does not
LAYOUT_HEAD = 4  # layout_updates: model, blurb, key, resume box, then one per control


# --- errors: the one place where studio errors become page errors -------------------------


def _user_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, StudioError):
        return gr.Error(secrets.redact(str(exc)), title="Could not make the video", print_exception=False)
    log.error("Unexpected failure: %s: %s", type(exc).__name__, secrets.redact(str(exc)), exc_info=exc)
    return gr.Error(
        f"Something went wrong inside the studio ({type(exc).__name__}). Your earlier videos "
        "are safe; please try again, and report this if it keeps happening.",
        title="Unexpected error",
        print_exception=False,
    )


def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` that hands over the uploaded file untouched.

    Gradio's own preprocessing opens the file with PIL and fails with a raw exception on a
    non-image; ours (``studio.images.load_image``) answers every bad upload with one clear
    sentence instead. (Overridden on the instance: a subclass would make Gradio write a
    .pyi stub next to this file at import.)
    """
    component = gr.Image(type="filepath", **kwargs)
    original = component.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        return original(payload)

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


# --- controls built from declarations ------------------------------------------------------


def _nullable_number(name: str) -> bool:
    """Fields whose empty value means 'automatic' get a number box, not a slider."""
    return name in ("seed", "decode_chunk_size", "clip_skip")


def _make_control(name: str) -> gr.Component:
    annotation = GenerationRequest.model_fields[name].annotation
    kinds = {a for a in get_args(annotation) if a is not type(None)}
    base = next(iter(kinds)) if len(kinds) == 1 else annotation
    common = {"label": name, "info": describe(name), "visible": False, "elem_id": f"param-{name}"}
    if _nullable_number(name):
        return gr.Number(precision=0, **common)
    if get_origin(base) is not None and "Literal" in str(get_origin(base)):
        return gr.Dropdown(choices=list(get_args(base)), **common)
    if base is bool:
        return gr.Checkbox(**common)
    if base in (int, float):
        return gr.Slider(**common)
    return gr.Textbox(max_lines=1, **common)


def _control_update(name: str, limit: Limit | None, value: Any, backend_label: str) -> dict:
    """How one control looks under one backend: hidden if unsupported, else ranged."""
    if limit is None:
        return gr.update(visible=False, value=None)
    if isinstance(limit, Range):
        fixed = limit.lo == limit.hi
        info = describe(name) + (f" Fixed at {limit.lo:g} by {backend_label}." if fixed else "")
        # Gradio refuses a slider whose minimum equals its maximum: a fixed value is shown
        # as a locked slider with one step of room.
        return gr.update(
            visible=True, minimum=limit.lo, maximum=limit.hi + (limit.step if fixed else 0), step=limit.step,
            value=value, interactive=not fixed, info=info,
        )
    if isinstance(limit, Choice):
        return gr.update(visible=True, choices=list(limit.options), value=value, interactive=len(limit.options) > 1)
    return gr.update(visible=True, value=value)


def _value_for(name: str, limit: Limit, current: Any, keep: bool) -> Any:
    if isinstance(limit, (Flag, Text)) and current is None:
        return limit.default
    if keep and current is not None and limit.ok(current):
        return current
    return limit.default


def _model_dependent(backend: backends.Backend) -> set[str]:
    """Parameters whose default changes with the model (frames: 14 for SVD, 25 for XT)."""
    tables = [backend.limits(m) for m in backend.model_choices()]
    return {n for n in CONTROLLED if len({repr(getattr(t.get(n), "default", None)) for t in tables}) > 1}


def layout_updates(backend_name: str, model: str | None, current: dict[str, Any] | None) -> list:
    """Updates for [model, blurb, key, resume box, *controls, *groups] for a backend and model.

    ``current`` None applies every default (a new backend); otherwise values that are still
    valid are kept, except those whose default depends on the model.
    """
    backend = backends.get_backend(backend_name)
    choices = backend.model_choices()
    model = model if model in choices else backend.default_model()
    limits = backend.limits(model)
    dependent = _model_dependent(backend)
    controls = []
    for name in CONTROLLED:
        limit = limits.get(name)
        if limit is None:
            controls.append(_control_update(name, None, None, backend.label))
            continue
        keep = current is not None and name not in dependent
        value = _value_for(name, limit, (current or {}).get(name), keep)
        if name == "seed" and value is None:
            value = (current or {}).get("seed")
        controls.append(_control_update(name, limit, value, backend.label))
    groups = [gr.update(visible=any(n in limits for n in CONTROLLED if group_of(n) == g)) for g in GROUPS]
    key_label = f"API key (or set {backend.key_env})" if backend.key_env else "API key"
    return [
        gr.update(choices=[(label, mid) for mid, label in choices.items()], value=model, interactive=len(choices) > 1),
        gr.update(value=f"<small>{backend.blurb}</small>"),
        gr.update(visible=bool(backend.key_env), label=key_label, value=""),
        gr.update(visible=backend.can_resume),
        *controls,
        *groups,
    ]


# --- generation -----------------------------------------------------------------------------

_cancels: dict[str, set[threading.Event]] = {}
_cancels_lock = threading.Lock()


def _collect(values: dict[str, Any], backend_name: str, model: str | None, randomize: bool) -> dict:
    """The request's fields from the page: hidden controls are sent as 'not set'."""
    backend = backends.get_backend(backend_name)
    limits = backend.limits(model if model in backend.model_choices() else backend.default_model())
    params = {name: values.get(name) for name in CONTROLLED if name in limits}
    params["model"] = model
    if randomize:
        params["seed"] = None
    return params


def run_job(task: Callable[..., Result], session: str, progress: Any):
    """Run ``task(cancel=, on_progress=, on_job_id=)`` in a worker thread; yield status
    lines while it runs and finally its Result. Cancel sets the session's event and the
    worker stops at its next step or poll."""
    cancel = threading.Event()
    with _cancels_lock:
        _cancels.setdefault(session, set()).add(cancel)
    events: queue.Queue = queue.Queue()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = task(
                cancel=cancel,
                on_progress=lambda f, text: events.put(("progress", f, text)),
                on_job_id=lambda job_id: events.put(("job", job_id, None)),
            )
        except BaseException as exc:  # handed to the page's thread, translated there
            box["error"] = exc
        finally:
            events.put(("done", None, None))

    started = time.monotonic()
    threading.Thread(target=work, daemon=True, name=f"job-{session[:8]}").start()
    job_id = None
    try:
        while True:
            kind, a, b = events.get()
            if kind == "done":
                break
            if kind == "job":
                job_id = a
                yield f"Submitted. Provider task id: `{job_id}` (keep it to resume if you close the page)."
            else:
                progress(a, desc=b)
                yield f"{b}" + (f" · task id `{job_id}`" if job_id and job_id not in b else "")
    finally:
        with _cancels_lock:
            _cancels.get(session, set()).discard(cancel)
    if "error" in box:
        raise box["error"]
    box["result"].used["elapsed_seconds"] = round(time.monotonic() - started, 1)
    yield box["result"]


def _history_items(history: list[dict]) -> list[tuple[str, str]]:
    return [(h["video"], h["caption"]) for h in reversed(history)]


# --- the page -------------------------------------------------------------------------------

CSS = """
#title h1 {margin-bottom: 0}
#title p {margin-top: 4px; color: var(--body-text-color-subdued)}
#status {min-height: 2.2em}
.gradio-container {max-width: 1400px !important}
"""


def build_demo() -> gr.Blocks:
    preset_table = presets.load_presets()
    first = backends.get_backend(DEFAULT_BACKEND)
    secrets.remember_environment(*(b.key_env for b in map(backends.get_backend, backends.names()) if b.key_env))

    with gr.Blocks(title="SVD Studio: image to video") as demo:
        gr.Markdown(
            "# SVD Studio\nTurn a still photo into a short video with Stable Video Diffusion. "
            "Drop in an image, pick where it runs, adjust the motion, press **Generate**.",
            elem_id="title",
        )
        history = gr.State([])
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                image = photo_input(label="Your photo", sources=["upload", "clipboard"], height=340, elem_id="image")
                gr.Examples(examples=[[p] for p in EXAMPLES], inputs=[image], label="Or try one of these photos")
                with gr.Row():
                    backend = gr.Dropdown(
                        choices=[(backends.get_backend(n).label, n) for n in backends.names()],
                        value=DEFAULT_BACKEND, label="backend", info="Where the video is made.", elem_id="backend",
                    )
                    model = gr.Dropdown(label="model", info=describe("model"), elem_id="model")
                blurb = gr.Markdown(elem_id="blurb")
                api_key = gr.Textbox(type="password", label="API key", visible=False, max_lines=1, elem_id="api-key",
                                     info="Used only for your requests; never stored or shown. Overrides the environment variable.")
                preset = gr.Dropdown(
                    choices=["(none)", *preset_table], value="(none)", label="preset",
                    info="Ready-made settings; you can still adjust every control afterwards.", elem_id="preset",
                )
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Accordion("Resume a hosted job", open=False, visible=False) as resume_box:
                    task_id = gr.Textbox(label="task id", max_lines=1, elem_id="task-id",
                                         info="Paste the task id of a job whose page was closed or that timed out; the studio waits for it again without paying twice.")
                    resume_btn = gr.Button("Resume waiting", elem_id="resume")
                controls: dict[str, gr.Component] = {}
                groups: list[gr.Accordion] = []
                for g in GROUPS:
                    with gr.Accordion(g, open=g in ("Frames and size", "Motion")) as acc:
                        for name in CONTROLLED:
                            if group_of(name) == g:
                                controls[name] = _make_control(name)
                        if g == "Sampling":
                            randomize = gr.Checkbox(value=True, label="Randomize seed", info="Pick a new seed each run; the seed used is written back above.", elem_id="randomize")
                    groups.append(acc)
            with gr.Column(scale=6):
                out_video = gr.Video(label="Video", autoplay=True, loop=True, interactive=False, height=420, elem_id="video")
                status = gr.Markdown("Ready. Add a photo and press **Generate**.", elem_id="status")
                with gr.Row():
                    dl_mp4 = gr.DownloadButton("Download MP4", visible=False, elem_id="download-mp4")
                    dl_gif = gr.DownloadButton("Download GIF", visible=False, elem_id="download-gif")
                with gr.Accordion("Parameters used", open=True):
                    used_json = gr.JSON(label="parameters used (under diffusers' names)", elem_id="used")
                    sent_json = gr.JSON(label="sent to the service (key removed)", visible=False, elem_id="sent")
                with gr.Accordion("This session's videos", open=True):
                    gallery = gr.Gallery(label="history", columns=4, height=220, allow_preview=False, elem_id="history")

        layout_outputs = [model, blurb, api_key, resume_box, *controls.values(), *groups]

        def on_backend(name: str):
            chosen = backends.get_backend(name)
            if chosen.key_env and not os.environ.get(chosen.key_env):
                gr.Warning(f"{chosen.label} needs an API key: set {chosen.key_env} in the environment or paste a key in the API key field.")
            return layout_updates(name, None, None)

        def on_model(data: dict):
            current = {n: data[c] for n, c in controls.items()}
            return layout_updates(data[backend], data[model], current)

        def on_preset(data: dict):
            chosen = preset_table.get(data[preset])
            if chosen is None:
                return [gr.update()] * len(layout_outputs)
            values = chosen.values()
            current = {n: data[c] for n, c in controls.items()} | values
            be = backends.get_backend(data[backend])
            target_model = values.get("model", data[model])
            skipped = [n for n in values if n != "model" and n not in be.limits(
                target_model if target_model in be.model_choices() else be.default_model())]
            if "model" in values and values["model"] not in be.model_choices():
                skipped.append("model")
            updates = layout_updates(data[backend], target_model, current)
            # The preset's own values win over model-dependent defaults.
            for i, name in enumerate(CONTROLLED):
                if name in values and name not in skipped:
                    updates[LAYOUT_HEAD + i]["value"] = values[name]
            if skipped:
                gr.Info(f"Preset '{chosen.name}': {', '.join(skipped)} not used by {be.label}; left as they were.")
            return updates

        def drive(data: dict, task: Callable[..., Result], session: str, progress: Any):
            """Run one job and turn its progress, result or error into page updates."""
            try:
                for item in run_job(task, session, progress):
                    if isinstance(item, str):
                        yield {status: item}
                    else:
                        result = item
            except Cancelled as exc:
                yield {status: f"**Stopped.** {exc}"}
                return
            except gr.Error:
                raise
            except BaseException as exc:
                raise _user_error(exc) from None
            seed = result.used.get("seed")
            caption = f"{result.used['backend']} · seed {seed if seed is not None else '-'}"
            gif = str(result.gif) if result.gif else None
            item = {"video": str(result.video), "gif": gif, "used": result.used, "sent": result.sent, "caption": caption}
            new_history = [*data[history], item]
            yield {
                **show(item),
                controls["seed"]: seed if seed is not None else data[controls["seed"]],
                status: f"Done in {result.used['elapsed_seconds']} s · seed {seed if seed is not None else '-'}"
                + (f" · task id `{result.job_id}`" if result.job_id else ""),
                history: new_history,
                gallery: _history_items(new_history),
            }
            if gif is None:
                # The GIF comes after the video is on screen: it takes several times longer
                # to encode than the MP4, and API callers never need it.
                try:
                    item = {**item, "gif": str(service.make_gif(result))}
                except StudioError as exc:
                    log.warning("No GIF for %s: %s", result.video, secrets.redact(str(exc)))
                    return
                new_history = [*new_history[:-1], item]
                yield {dl_gif: gr.update(value=item["gif"], visible=True), history: new_history}

        def show(item: dict) -> dict:
            return {
                out_video: item["video"],
                dl_mp4: gr.update(value=item["video"], visible=True),
                dl_gif: gr.update(value=item["gif"], visible=bool(item["gif"])),
                used_json: item["used"],
                sent_json: gr.update(value=item["sent"], visible=item["sent"] is not None),
            }

        def on_generate(data: dict, request: gr.Request, progress=gr.Progress()):
            if not data[image]:
                raise gr.Error("Please add a photo first: drop an image on the left or pick an example.", print_exception=False)
            params = _collect({n: data[c] for n, c in controls.items()}, data[backend], data[model], data[randomize])
            task = functools.partial(service.generate, data[image], data[backend], params, api_key=data[api_key] or None)
            yield from drive(data, task, request.session_hash, progress)

        def on_resume(data: dict, request: gr.Request, progress=gr.Progress()):
            if not (data[task_id] or "").strip():
                raise gr.Error("Paste a task id first: the id the page showed while the job was running.", print_exception=False)
            task = functools.partial(service.resume, data[task_id], data[backend], api_key=data[api_key] or None)
            yield from drive(data, task, request.session_hash, progress)

        def on_cancel(request: gr.Request):
            with _cancels_lock:
                running = list(_cancels.get(request.session_hash, ()))
            for event in running:
                event.set()
            return "Cancelling… the job stops at the next step." if running else "Nothing is running."

        def on_pick(evt: gr.SelectData, past: list[dict]):
            item = list(reversed(past))[evt.index]
            return {**show(item), status: f"Showing an earlier video: {item['caption']}"}

        # .change, not .input: Gradio 6 fires .input twice for a mouse pick in a dropdown, and
        # nothing but the person sets these two.
        backend.change(on_backend, backend, layout_outputs, api_visibility="private")
        model.input(on_model, {backend, model, *controls.values()}, layout_outputs, api_visibility="private")
        preset.change(on_preset, {backend, model, preset, *controls.values()}, layout_outputs, api_visibility="private")
        job_outputs = [out_video, dl_mp4, dl_gif, used_json, sent_json, controls["seed"], status, history, gallery]
        go.click(
            on_generate,
            {image, backend, model, api_key, randomize, history, *controls.values()},
            job_outputs, api_visibility="private", concurrency_limit=8, concurrency_id="generate",
        )
        resume_btn.click(
            on_resume, {backend, api_key, task_id, history, controls["seed"]},
            job_outputs, api_visibility="private", concurrency_limit=8, concurrency_id="generate",
        )
        stop.click(on_cancel, None, status, api_visibility="private", queue=False)
        gallery.select(on_pick, history, [out_video, dl_mp4, dl_gif, used_json, sent_json, status], api_visibility="private")
        demo.load(lambda: layout_updates(DEFAULT_BACKEND, first.default_model(), None), None, layout_outputs, api_visibility="private")

        gr.api(_api_generate(), api_name="generate", concurrency_limit=8, concurrency_id="generate")
        gr.api(api_resume, api_name="resume", concurrency_limit=8, concurrency_id="generate")
    return demo


def _api_generate():
    """``/generate(image, backend, <request fields>..., api_key)`` -> (video, parameters used).

    Built from the request model so the API always matches it: every field defaults to
    None, meaning "the backend's default".
    """

    def generate(image: FileData, backend: str = DEFAULT_BACKEND, **kwargs: Any) -> tuple[FileData, dict]:
        path = image.get("path") if isinstance(image, dict) else getattr(image, "path", None)
        api_key = kwargs.pop("api_key", None)
        try:
            if not path:
                raise gr.Error("image is required: upload a photo (PNG, JPEG or WebP).", print_exception=False)
            result = service.generate(path, backend, kwargs, api_key=api_key)
        except gr.Error:
            raise
        except BaseException as exc:
            raise _user_error(exc) from None
        used = dict(result.used)
        if result.job_id:
            used["task_id"] = result.job_id
        return FileData(path=str(result.video)), used

    params = [
        inspect.Parameter("image", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=FileData),
        inspect.Parameter("backend", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=DEFAULT_BACKEND, annotation=str),
    ]
    annotations: dict[str, Any] = {"image": FileData, "backend": str, "return": tuple[FileData, dict]}
    for name, field in GenerationRequest.model_fields.items():
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=field.annotation))
        annotations[name] = field.annotation
    params.append(inspect.Parameter("api_key", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Optional[str]))
    annotations["api_key"] = Optional[str]

    def endpoint(*args: Any, **kwargs: Any) -> tuple[FileData, dict]:
        bound = endpoint.__signature__.bind(*args, **kwargs)  # type: ignore[attr-defined]
        bound.apply_defaults()
        values = dict(bound.arguments)
        return generate(values.pop("image"), values.pop("backend"), **values)

    endpoint.__signature__ = inspect.Signature(params, return_annotation=tuple[FileData, dict])  # type: ignore[attr-defined]
    endpoint.__annotations__ = annotations
    endpoint.__doc__ = "Turn an image into a video. Every parameter left empty takes the backend's default."
    return endpoint


def api_resume(task_id: str, backend: str, api_key: Optional[str] = None) -> tuple[FileData, dict]:
    """Wait again for a hosted job by its task id; returns (video, parameters used)."""
    try:
        result = service.resume(task_id, backend, api_key=api_key)
    except BaseException as exc:
        raise _user_error(exc) from None
    return FileData(path=str(result.video)), {**result.used, "task_id": result.job_id}


def launch(demo: gr.Blocks, **overrides: Any) -> tuple:
    """Queue and launch with the studio's settings; tests pass ``prevent_thread_lock`` etc."""
    settings: dict[str, Any] = dict(
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
        allowed_paths=[str(outputs.run_dir())],  # outputs only; nothing else on disk is served
        max_file_size=MAX_UPLOAD,
        show_error=True,  # our errors are sentences; Gradio's own (a refused URL) are too
    )
    return demo.queue(default_concurrency_limit=8).launch(**(settings | overrides))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    secrets.install_log_filter()
    launch(build_demo())


if __name__ == "__main__":
    main()
