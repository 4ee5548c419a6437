"""The API endpoints: ``/generate`` and ``/resume``, for scripts and other tools.

``/generate``'s signature is built from the request model and every option any backend
declares, so the API always accepts each of them by name; each defaults to None, meaning
"the backend's default". Both run through the same job runner as the page, so a client
that disconnects stops its job too.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Optional

import gradio as gr
from gradio.data_classes import FileData

import backends
from backends.base import Choice, Flag, Limit, Range, Result
from studio import service
from studio.request import PARAMETERS, GenerationRequest
from ui.errors import need, page_errors
from ui.jobs import Runner, Task, client_alive

Answer = tuple[FileData, dict]


async def _run(runner: Runner, task: Task, request: gr.Request) -> Answer:
    with page_errors():
        result: Result | None = None
        async for item in runner.run(task, f"api-{request.session_hash}", alive=client_alive(request)):
            if isinstance(item, Result):
                result = item
        need(result is not None, "The client went away; the job was stopped.")
        assert result is not None
        return FileData(path=str(result.video)), result.used


def _annotation(limit: Limit) -> Any:
    if isinstance(limit, Flag):
        return Optional[bool]
    if isinstance(limit, Range):
        return Optional[int] if limit.integer else Optional[float]
    if isinstance(limit, Choice):
        return Optional[str]
    return Optional[str]


def generate_endpoint(runner: Runner, default_backend: str):
    """``/generate(image, backend, <request fields>..., <options>..., api_key)`` ->
    (video, parameters used)."""

    async def generate(image: FileData, backend: str, values: dict[str, Any], api_key: str | None,
                       request: gr.Request) -> Answer:
        path = image.get("path") if isinstance(image, dict) else getattr(image, "path", None)
        need(path, "image is required: upload a photo (PNG, JPEG or WebP).")
        task = functools.partial(service.generate, path, backend, values, api_key=api_key)
        return await _run(runner, task, request)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("image", kind, annotation=FileData),
              inspect.Parameter("backend", kind, default=default_backend, annotation=str)]
    for name in PARAMETERS:
        params.append(inspect.Parameter(name, kind, default=None,
                                        annotation=GenerationRequest.model_fields[name].annotation))
    for name, option in backends.all_options().items():
        params.append(inspect.Parameter(name, kind, default=None, annotation=_annotation(option.limit)))
    params += [inspect.Parameter("api_key", kind, default=None, annotation=Optional[str]),
               inspect.Parameter("request", kind, default=None, annotation=gr.Request)]
    signature = inspect.Signature(params, return_annotation=Answer)

    async def endpoint(*args: Any, **kwargs: Any) -> Answer:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        image, backend, api_key, request = (values.pop(k) for k in ("image", "backend", "api_key", "request"))
        return await generate(image, backend, values, api_key, request)

    endpoint.__signature__ = signature  # type: ignore[attr-defined]
    endpoint.__annotations__ = {p.name: p.annotation for p in params} | {"return": Answer}
    endpoint.__doc__ = "Turn an image into a video. Every parameter left empty takes the backend's default."
    return endpoint


def resume_endpoint(runner: Runner):
    async def resume(task_id: str, backend: str, request: gr.Request, api_key: Optional[str] = None) -> Answer:
        """Wait again for a hosted job by its task id; returns (video, parameters used)."""
        task = functools.partial(service.resume, task_id, backend, api_key=api_key)
        return await _run(runner, task, request)

    return resume
