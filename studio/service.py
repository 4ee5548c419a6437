"""One generation from start to finish, independent of any UI.

The page and the ``/generate`` API both call ``generate``: check the backend and the
parameters, read the image, run the backend, and make sure what comes back is a video
that plays in a browser, with a GIF beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

import backends
from backends.base import Job, Result
from studio import images, outputs, video
from studio.errors import InvalidParameter
from studio.request import GenerationRequest


def build_request(params: dict[str, Any], backend: backends.Backend) -> GenerationRequest:
    """The request model from loose values; a type error names the parameter and backend,
    with the backend's own range where it has one for that parameter."""
    backend_label = backend.label
    clean = {k: (None if v == "" else v) for k, v in params.items()}
    try:
        return GenerationRequest(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "parameters"
        if err["type"] == "extra_forbidden":
            raise InvalidParameter(name, clean.get(name), "a known parameter name", backend_label) from None
        model = clean.get("model") if clean.get("model") in backend.model_choices() else backend.default_model()
        limit = backend.limits(model).get(name)
        rule = limit.rule() if limit is not None else _pydantic_rule(GenerationRequest.model_fields.get(name), err)
        raise InvalidParameter(name, clean.get(name), rule, backend_label) from None


def _pydantic_rule(field: Any, err: dict) -> str:
    ctx = err.get("ctx") or {}
    if "ge" in ctx or "le" in ctx or "gt" in ctx or "lt" in ctx:
        lo = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
        hi = next((m.le for m in field.metadata if hasattr(m, "le")), None)
        return f"{lo:g}-{hi:g}" if lo is not None and hi is not None else err["msg"].lower()
    return err["msg"].lower()


def generate(image: str | Path, backend: str, params: dict[str, Any], *, api_key: str | None = None,
             **hooks: Any) -> Result:
    """Make a video. ``hooks``: ``on_progress(fraction, text)``, ``on_job_id(id)`` and
    ``cancel`` (a threading.Event), as on ``backends.base.Job``."""
    chosen = backends.get_backend(backend)
    request = chosen.resolve(build_request(params, chosen))
    picture = images.load_image(image)
    return _finish(chosen, chosen.generate(picture, request, _job(chosen, api_key, hooks)))


def resume(job_id: str, backend: str, *, api_key: str | None = None, **hooks: Any) -> Result:
    """Wait again for a hosted job by its task id (the page was closed, or it timed out)."""
    chosen = backends.get_backend(backend)
    return _finish(chosen, chosen.resume(str(job_id or "").strip(), None, _job(chosen, api_key, hooks)))


def _job(chosen: backends.Backend, api_key: str | None, hooks: dict[str, Any]) -> Job:
    given = {k: v for k, v in hooks.items() if v is not None}
    return Job(workdir=outputs.job_dir(chosen.name), api_key=api_key, **given)


def _finish(chosen: backends.Backend, result: Result) -> Result:
    result.used = {"backend": chosen.name, **result.used}
    return result


def make_gif(result: Result) -> Path:
    """The GIF beside the MP4, made on demand: it costs several times the MP4's encoding."""
    if result.gif is None:
        result.gif = video.mp4_to_gif(result.video, result.video.with_suffix(".gif"))
    return result.gif
