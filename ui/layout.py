"""The page shaped for one backend and model, from the backends' declarations.

``reshape`` builds every update a change of backend or model means (the model list, the
key box, each control's range, default and visibility, the groups of the Advanced box,
the size picker, the sweep's parameters); ``apply`` and ``restore`` put given values on
the page over it. Nothing here knows a backend by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

import backends
from orchestration import sweep
from ui import controls
from ui.panels.parameters import FEATURED

if TYPE_CHECKING:
    from ui.state import Studio


def reshape(s: Studio, backend_name: str, model: str | None, current: dict[str, Any] | None, *,
            new_backend: bool | None = None) -> dict:
    """The page for one backend and model, built from its declarations.

    ``current`` None means a new backend with every control at its default; otherwise
    the person's values are kept while still valid. The key box is cleared only for a
    new backend (``new_backend``, by default: ``current`` is None).
    """
    backend = backends.get_backend(backend_name)
    shown_model, updates = controls.layout(backend_name, model, current, s.params.table)
    visible = {name for name, update in updates.items() if update.get("visible")} - set(FEATURED)
    sweepable = sweep.sweepable(backend, shown_model)
    return {
        **_describe_backend(s, backend, shown_model,
                            new_backend=current is None if new_backend is None else new_backend),
        s.shaped: {"backend": backend_name, "model": shown_model, "preset": None,
                   "sweep": sweepable[0] if sweepable else None},
        s.resume.box: gr.update(visible=backend.can_resume),
        s.framing.size: _sizes(backend, shown_model),
        **_sweep_choices(s, backend, shown_model, sweepable),
        **{s.params.controls[name]: update for name, update in updates.items()},
        **{column: gr.update(visible=any(s.params.table[n].group == group for n in visible))
           for group, column in s.params.groups.items()},
    }


def _describe_backend(s: Studio, backend: backends.Backend, model: str, *, new_backend: bool) -> dict:
    """Updates for the model list, the blurb and (for a new backend only) the key box:
    a key typed for one provider means nothing to another, but changing the model or
    the preset keeps it."""
    choices = backend.model_choices()
    updates: dict = {
        s.input.model: gr.update(choices=[(label, mid) for mid, label in choices.items()], value=model,
                                 interactive=len(choices) > 1),
        s.input.blurb: gr.update(value=f"<small>{backend.blurb}</small>"),
    }
    if new_backend:
        label = f"API key (or set {backend.key_env})" if backend.key_env else "API key"
        updates[s.input.api_key] = gr.update(visible=bool(backend.key_env), label=label, value="")
    return updates


def _sizes(backend: backends.Backend, model: str) -> dict:
    """The standard frame sizes this backend accepts, for the size picker."""
    sizes = backend.sizes(model)
    return gr.update(choices=[(f"{label} ({w}x{h})", f"{w}x{h}") for label, w, h in sizes],
                     value=None, visible=bool(sizes))


def _sweep_choices(s: Studio, backend: backends.Backend, model: str, names: list[str]) -> dict:
    """The sweep's parameters for this backend, the first picked, with values worth trying."""
    first = names[0] if names else None
    suggested = sweep.suggest(backend, model, first) if first else []
    return {s.sweep.parameter: gr.update(choices=names, value=first),
            s.sweep.values: ", ".join(f"{v:g}" for v in suggested)}


def apply(s: Studio, backend_name: str, values: dict[str, Any], data: dict) -> tuple[dict, list[str]]:
    """Updates that put ``values`` (by parameter name) on the page under ``backend_name``,
    over what the page holds; and the names that backend does not take, left alone."""
    backend = backends.get_backend(backend_name)
    new_backend = backend_name != data.get(s.input.backend)
    model = values.get("model") or (None if new_backend else data.get(s.input.model))
    target = backend.model_for(model, lenient=True)
    accepted = backend.parameters(target)
    skipped = [n for n in values if n != "model" and n not in accepted]
    if values.get("model") and values["model"] != target:
        skipped.append("model")
    current = ({} if new_backend else s.params.values(data)) | {
        n: v for n, v in values.items() if n not in skipped}
    updates = reshape(s, backend_name, target, current, new_backend=new_backend)
    for name, value in values.items():  # the given values win over model-dependent defaults
        if name in s.params.controls and name not in skipped:
            updates[s.params.controls[name]]["value"] = value
    if new_backend:
        updates[s.input.backend] = backend_name
    return updates, skipped


def restore(s: Studio, backend_name: str | None, values: dict[str, Any], data: dict) -> tuple[dict, str]:
    """Put a recipe's settings back, seed included (the seed switch turns off, so the
    next run repeats it); returns the updates and a sentence saying what was restored."""
    current = data.get(s.input.backend)
    note = ""
    if backend_name not in backends.names():
        note = f" It was made on '{backend_name}', which this studio does not offer here." if backend_name else ""
        backend_name = current
    label = backends.get_backend(backend_name).label
    updates, skipped = apply(s, backend_name, values, data)
    restored = [n for n in values if n not in skipped]
    seed = values.get("seed")
    if seed is not None and "seed" not in skipped:
        updates[s.params.randomize] = False
    said = (f"Restored {len(restored)} settings for {label}"
            + (f" (model {values['model']}, seed {seed})" if values.get("model") and seed is not None else "")
            + "." + note)
    if skipped:
        said += f" Not used by {label}: {', '.join(skipped)}."
    return updates, said
