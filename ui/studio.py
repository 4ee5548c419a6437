"""The whole page as one object: every panel, the job runner, and what spans panels.

Handlers get a ``Studio`` as their first argument (``bind`` fixes it), so each one is a
plain module-level function that a test can call with a built ``Studio`` and a dict of
values, no browser needed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

import backends
from ui import controls
from ui.jobs import Runner
from ui.panels.finish import FinishPanel
from ui.panels.framing import FramingPanel
from ui.panels.history import HistoryPanel
from ui.panels.input import InputPanel
from ui.panels.output import OutputPanel
from ui.panels.parameters import ParametersPanel
from ui.panels.presets import PresetsPanel
from ui.panels.restore import RestorePanel
from ui.panels.resume import ResumePanel
from ui.panels.sweep import SweepPanel


@dataclass
class Studio:
    input: InputPanel
    framing: FramingPanel
    params: ParametersPanel
    presets: PresetsPanel
    restorer: RestorePanel
    resume: ResumePanel
    sweep: SweepPanel
    output: OutputPanel
    finish: FinishPanel
    history: HistoryPanel
    go: gr.Button
    stop: gr.Button
    runner: Runner

    def layout_outputs(self) -> list[gr.Component]:
        """Everything a change of backend, model or preset may update."""
        return [self.input.model, self.input.blurb, self.input.api_key, self.resume.box,
                *self.framing.layout_outputs(), *self.sweep.layout_outputs(),
                *self.params.controls.values(), *self.params.groups.values()]

    def restore_outputs(self) -> list[gr.Component]:
        """Everything restoring settings may update: the layout, the backend and the seed switch."""
        return [self.input.backend, self.params.randomize, *self.layout_outputs()]

    def reshape(self, backend_name: str, model: str | None, current: dict[str, Any] | None, *,
                new_backend: bool | None = None) -> dict:
        """The page for one backend and model, built from its declarations.

        ``current`` None means a new backend with every control at its default; otherwise
        the person's values are kept while still valid. The key box is cleared only for a
        new backend (``new_backend``, by default: ``current`` is None).
        """
        backend = backends.get_backend(backend_name)
        shown_model, updates = controls.layout(backend_name, model, current, self.params.table)
        visible = {name for name, update in updates.items() if update.get("visible")}
        return {
            **self.input.describe_backend(backend, shown_model,
                                          new_backend=current is None if new_backend is None else new_backend),
            self.resume.box: gr.update(visible=backend.can_resume),
            **self.framing.describe(backend, shown_model),
            **self.sweep.describe(backend, shown_model),
            **{self.params.controls[name]: update for name, update in updates.items()},
            **{accordion: gr.update(visible=any(self.params.table[n].group == group for n in visible))
               for group, accordion in self.params.groups.items()},
        }

    def apply(self, backend_name: str, values: dict[str, Any], data: dict) -> tuple[dict, list[str]]:
        """Updates that put ``values`` (by parameter name) on the page under ``backend_name``,
        over what the page holds; and the names that backend does not take, left alone."""
        backend = backends.get_backend(backend_name)
        new_backend = backend_name != data.get(self.input.backend)
        model = values.get("model") or (None if new_backend else data.get(self.input.model))
        target = backend.model_for(model, lenient=True)
        accepted = backend.parameters(target)
        skipped = [n for n in values if n != "model" and n not in accepted]
        if values.get("model") and values["model"] != target:
            skipped.append("model")
        current = ({} if new_backend else self.params.values(data)) | {
            n: v for n, v in values.items() if n not in skipped}
        updates = self.reshape(backend_name, target, current, new_backend=new_backend)
        for name, value in values.items():  # the given values win over model-dependent defaults
            if name in self.params.controls and name not in skipped:
                updates[self.params.controls[name]]["value"] = value
        if new_backend:
            updates[self.input.backend] = backend_name
        return updates, skipped

    def restore(self, backend_name: str | None, values: dict[str, Any], data: dict) -> tuple[dict, str]:
        """Put a recipe's settings back, seed included (the seed switch turns off, so the
        next run repeats it); returns the updates and a sentence saying what was restored."""
        current = data.get(self.input.backend)
        note = ""
        if backend_name not in backends.names():
            note = f" It was made on '{backend_name}', which this studio does not offer here." if backend_name else ""
            backend_name = current
        label = backends.get_backend(backend_name).label
        updates, skipped = self.apply(backend_name, values, data)
        restored = [n for n in values if n not in skipped]
        seed = values.get("seed")
        if seed is not None and "seed" not in skipped:
            updates[self.params.randomize] = False
        said = (f"Restored {len(restored)} settings for {label}"
                + (f" (model {values['model']}, seed {seed})" if values.get("model") and seed is not None else "")
                + "." + note)
        if skipped:
            said += f" Not used by {label}: {', '.join(skipped)}."
        return updates, said


def bind(handler: Callable, *fixed: Any) -> Callable:
    """``handler`` with its first arguments fixed, as a real function of the same kind.

    ``functools.partial`` would do, except that Gradio reads type hints (``gr.Request``,
    ``gr.SelectData``) and the kind of function (async, generator) from what it is given.
    """
    signature = inspect.signature(handler)
    rest = list(signature.parameters.values())[len(fixed):]
    if inspect.isasyncgenfunction(handler):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async for item in handler(*fixed, *args, **kwargs):
                yield item
    elif inspect.iscoroutinefunction(handler):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return await handler(*fixed, *args, **kwargs)
    else:
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return handler(*fixed, *args, **kwargs)
    functools.update_wrapper(wrapper, handler)
    del wrapper.__wrapped__  # Gradio must see the wrapper's own signature and kind
    wrapper.__signature__ = signature.replace(parameters=rest)  # type: ignore[attr-defined]
    hints = {}
    for p in rest:
        if isinstance(p.annotation, str):
            try:
                hints[p.name] = eval(p.annotation, handler.__globals__)  # noqa: S307 - our own annotations
            except NameError:
                continue
        elif p.annotation is not inspect.Parameter.empty:
            hints[p.name] = p.annotation
    wrapper.__annotations__ = hints
    return wrapper
