"""The parameter controls, built from the backends' declarations.

One control per name that any backend takes: SVD's parameters from the request model,
then each backend's own options. Its kind follows the declared limit (a slider for a
range, a number box for a range that may be left empty, a dropdown for a choice...), and
``layout`` shows, hides, ranges and fills each control for one backend and model. Nothing
here knows a backend by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import gradio as gr

import backends
from backends.base import Choice, Flag, Limit, Range, Text
from studio.request import GROUPS, PARAMETERS, describe, group_of, title_of


@dataclass(frozen=True)
class Spec:
    """What the page needs to build one control."""

    name: str
    description: str
    group: str
    limit: Limit  # the first declaration found: it decides the kind of control
    title: str = ""  # the everyday name; the label shows it beside diffusers' name

    @property
    def label(self) -> str:
        """'Motion amount (motion_bucket_id)': plain words first, the documented name kept."""
        return f"{self.title} ({self.name})" if self.title and self.title != self.name else self.name


def specs() -> dict[str, Spec]:
    """Every control the page has, SVD's parameters first, in declaration order."""
    found: dict[str, Spec] = {}
    for backend in map(backends.get_backend, backends.names()):
        for model in backend.model_choices():
            for name, limit in backend.limits(model).items():
                if name in PARAMETERS and name != "model" and name not in found:
                    found[name] = Spec(name, describe(name), group_of(name), limit, title_of(name))
    ordered = {name: found[name] for name in PARAMETERS if name in found}
    for name, option in backends.all_options().items():
        if option.shown:
            ordered[name] = Spec(name, option.description, option.group, option.limit,
                                 name.replace("_", " ").capitalize())
    return ordered


def groups(table: dict[str, Spec]) -> list[str]:
    """The page's groups: the request model's, then any a backend's options bring."""
    extra = [s.group for s in table.values() if s.group not in GROUPS]
    return [g for g in (*GROUPS, *dict.fromkeys(extra)) if any(s.group == g for s in table.values())]


def make_control(spec: Spec, shown: dict[str, Any] | None = None) -> gr.Component:
    """The control for ``spec``, already as ``shown`` (its ``control_update`` for the backend
    the page opens with): the first paint is the real page, and no event ever reads a
    control still holding a placeholder value outside its range."""
    common = {"label": spec.label, "info": spec.description, "visible": False, "elem_id": f"param-{spec.name}"}
    common |= {k: v for k, v in (shown or {}).items() if k != "__type__"}
    limit = spec.limit
    if isinstance(limit, Range) and limit.optional:  # empty means automatic: a box, not a slider
        return gr.Number(precision=0 if limit.integer else None, elem_classes=[UNCHECKED], **common)
    if isinstance(limit, Range):
        return gr.Slider(elem_classes=[UNCHECKED], **common)
    if isinstance(limit, Choice):
        return gr.Dropdown(**({"choices": list(limit.options)} | common))
    if isinstance(limit, Flag):
        return gr.Checkbox(**common)
    return gr.Textbox(max_lines=1, **common)


# The class that marks parameter controls whose numbers reach the handler as typed (``_preprocess``).
UNCHECKED = "svd-param"


def _preprocess(original: Callable) -> Callable:
    """Gradio's own range check, skipped for the parameter controls.

    That check answers a bare "Value 1024 is greater than maximum value 512." with no
    parameter and no backend, where the request model and the backend check every value
    and say both. And in a layout event (a new backend picked) it judges a value the event
    is about to replace against the new backend's range. Gradio rebuilds a component from
    its arguments when an event updates it, so the mark is a class (which survives that),
    and the check is skipped here rather than on an instance or in a subclass (Gradio writes
    a .pyi stub next to the module of any subclass of a component at import).
    """
    def preprocess(self: Any, payload: Any) -> Any:
        if UNCHECKED in (self.elem_classes or []) and isinstance(payload, (int, float)):
            return gr.Number.round_to_precision(payload, self.precision)
        return original(self, payload)

    return preprocess


gr.Slider.preprocess = _preprocess(gr.Slider.preprocess)  # type: ignore[method-assign]
gr.Number.preprocess = _preprocess(gr.Number.preprocess)  # type: ignore[method-assign]


def control_update(limit: Limit | None, value: Any, backend_label: str, description: str) -> dict:
    """How one control looks under one backend: hidden if unsupported, else ranged."""
    if limit is None:
        return gr.update(visible=False, value=None)
    if isinstance(limit, Range):
        fixed = limit.lo == limit.hi
        info = description + (f" Fixed at {limit.lo:g} by {backend_label}." if fixed else "")
        # Gradio refuses a slider whose minimum equals its maximum: a fixed value is shown
        # as a locked slider with one step of room.
        return gr.update(
            visible=True, minimum=limit.lo, maximum=limit.hi + (limit.step if fixed else 0), step=limit.step,
            value=value, interactive=not fixed, info=info,
        )
    if isinstance(limit, Choice):
        return gr.update(visible=True, choices=list(limit.options), value=value,
                         interactive=len(limit.options) > 1, info=description)
    return gr.update(visible=True, value=value, info=description)


def value_for(limit: Limit, current: Any, keep: bool) -> Any:
    """The value a control shows: the person's, while the new limit still allows it."""
    if isinstance(limit, Text) and current not in (None, ""):
        return current if limit.ok(current) else limit.default
    if isinstance(limit, (Flag, Text)) and current is None:
        return limit.default
    if keep and current is not None and limit.ok(current):
        return current
    return limit.default


def model_dependent(backend: backends.Backend) -> set[str]:
    """Parameters whose default changes with the model (frames: 14 for SVD, 25 for XT)."""
    tables = [backend.parameters(m) for m in backend.model_choices()]
    names = {n for t in tables for n in t}
    return {n for n in names if len({repr(getattr(t.get(n), "default", None)) for t in tables}) > 1}


def layout(backend_name: str, model: str | None, current: dict[str, Any] | None,
           table: dict[str, Spec]) -> tuple[str, dict[str, dict]]:
    """(the model shown, an update per control name) for a backend and model.

    ``current`` None applies every default (a new backend); otherwise each value the
    person set is kept while it is still valid, except those whose default depends on
    the model (frames follow the model). The seed is always kept.
    """
    backend = backends.get_backend(backend_name)
    model = backend.model_for(model, lenient=True)
    limits = backend.parameters(model)
    options = backend.options(model)
    dependent = model_dependent(backend)
    updates: dict[str, dict] = {}
    for name, spec in table.items():
        limit = limits.get(name)
        old = (current or {}).get(name)
        value = None
        if limit is not None:
            value = value_for(limit, old, keep=current is not None and name not in dependent)
            if name == "seed" and value is None:
                value = old
        description = options[name].description if name in options else spec.description
        updates[name] = control_update(limit, value, backend.label, description)
    return model, updates


def collect(values: dict[str, Any], backend_name: str, model: str | None, randomize: bool) -> dict[str, Any]:
    """The request's values from the page, by name: hidden controls are 'not set'."""
    backend = backends.get_backend(backend_name)
    model = backend.model_for(model, lenient=True)
    limits = backend.parameters(model)
    params = {name: value for name, value in values.items() if name in limits}
    params["model"] = model
    if randomize:
        params["seed"] = None
    return params
