"""The page's shared state, at the bottom of ``ui``: every panel's components and the job runner.

Handlers get a ``Studio`` as their first argument (``bind`` fixes it), so each one is a
plain module-level function that a test can call with a built ``Studio`` and a dict of
values, no browser needed. Panels only build components; handlers (``ui.handlers``)
depend on this module and on the shared helpers beside it, never on one another.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

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
    # What the page is shaped for ({"backend", "model", "preset", "sweep"}): keyboard and
    # mouse picks both fire .change, and so does code setting a value, so a pick reshapes
    # the page only when it differs from this (see ui.handlers.layout).
    shaped: gr.State

    def layout_outputs(self) -> list[gr.Component]:
        """Everything a change of backend, model or preset may update."""
        return [self.shaped, self.input.model, self.input.blurb, self.input.api_key, self.resume.box,
                *self.framing.layout_outputs(), *self.sweep.layout_outputs(),
                *self.params.controls.values(), *self.params.groups.values()]

    def restore_outputs(self) -> list[gr.Component]:
        """Everything restoring settings may update: the layout, the backend and the seed switch."""
        return [self.input.backend, self.params.randomize, *self.layout_outputs()]


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
