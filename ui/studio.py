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
from ui.panels.history import HistoryPanel
from ui.panels.input import InputPanel
from ui.panels.output import OutputPanel
from ui.panels.parameters import ParametersPanel
from ui.panels.resume import ResumePanel


@dataclass
class Studio:
    input: InputPanel
    params: ParametersPanel
    resume: ResumePanel
    output: OutputPanel
    history: HistoryPanel
    go: gr.Button
    stop: gr.Button
    runner: Runner

    def layout_outputs(self) -> list[gr.Component]:
        """Everything a change of backend, model or preset may update."""
        return [self.input.model, self.input.blurb, self.input.api_key, self.resume.box,
                *self.params.controls.values(), *self.params.groups.values()]

    def reshape(self, backend_name: str, model: str | None, current: dict[str, Any] | None) -> dict:
        """The page for one backend and model, built from its declarations.

        ``current`` None means a new backend: every control takes its default and the key
        box is cleared. Otherwise the person's values are kept while still valid.
        """
        backend = backends.get_backend(backend_name)
        shown_model, updates = controls.layout(backend_name, model, current, self.params.table)
        visible = {name for name, update in updates.items() if update.get("visible")}
        return {
            **self.input.describe_backend(backend, shown_model, new_backend=current is None),
            self.resume.box: gr.update(visible=backend.can_resume),
            **{self.params.controls[name]: update for name, update in updates.items()},
            **{accordion: gr.update(visible=any(self.params.table[n].group == group for n in visible))
               for group, accordion in self.params.groups.items()},
        }


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
