"""Sweeps: one photo made several ways, to compare side by side.

A *parameter sweep* makes one video per value of one numeric parameter; a *backend
comparison* makes the same photo with the same settings on every backend that can run.
Both are planned here, completely, before anything starts: each value is checked against
the backend's declared range, and the whole request is resolved for each one, so a bad
value refuses the sweep at once instead of failing after other videos were paid for.

Unless the seed itself is swept, every video of a sweep shares one seed: otherwise a
difference between two cells could come from the seed rather than from the value.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import backends
from backends.base import Range
from orchestration import limits as spend  # not `limits`: the functions here use that name for ranges
from studio.errors import InvalidParameter
from orchestration.service import build_request

MIN_VALUES, MAX_VALUES = 2, 8
# The parameters people sweep most, offered first; any other numeric one follows.
FIRST = ("seed", "motion_bucket_id", "noise_aug_strength", "fps", "max_guidance_scale", "num_inference_steps")
# Machinery of this machine, not of the video: never reported as missing on another backend.
MACHINERY = ("decode_chunk_size", "memory_mode", "fast_mode")


@dataclass(frozen=True)
class Cell:
    """One video of a sweep: where it runs, with what, and how the grid labels it."""

    backend: str
    params: dict[str, Any]
    label: str
    api_key: str | None = field(default=None, repr=False)


def sweepable(backend: backends.Backend, model: str) -> list[str]:
    """The numeric parameters ``backend`` lets a person change for ``model``."""
    limits = backend.parameters(backend.model_for(model, lenient=True))
    names = [n for n, limit in limits.items()
             if isinstance(limit, Range) and limit.lo < limit.hi and n not in MACHINERY]
    order = list(limits)
    return sorted(names, key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), order.index(n)))


def suggest(backend: backends.Backend, model: str, parameter: str, count: int = 4) -> list[float]:
    """A spread of values worth trying, for the values box: random seeds, or points
    spread over the parameter's range around its default."""
    limit = backend.parameters(backend.model_for(model, lenient=True)).get(parameter)
    if not isinstance(limit, Range):
        return []
    if parameter == "seed":
        return [random.randint(0, 99_999) for _ in range(count)]
    lo, hi = limit.lo, limit.hi
    if parameter in ("num_inference_steps", "fps", "num_frames", "width", "height"):  # useful near the default
        hi = min(hi, max(lo, (limit.default or lo) * 2))
    points = [lo + (hi - lo) * (i + 1) / (count + 1) for i in range(count)]
    step = limit.multiple or limit.step
    rounded = [round(round(p / step) * step, 6) for p in points]
    return list(dict.fromkeys(int(v) if limit.integer else v for v in rounded))


def parse_values(values: Any, parameter: str, label: str) -> list[float]:
    """Numbers from a list, or from text such as "40, 100, 180"."""
    items = re.split(r"[,;\s]+", values.strip()) if isinstance(values, str) else list(values or [])
    numbers: list[float] = []
    for item in items:
        if item in ("", None):
            continue
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise InvalidParameter(f"values of {parameter}", item, "numbers separated by commas", label) from None
        numbers.append(int(number) if number.is_integer() else number)
    return numbers


def plan(backend_name: str, parameter: str, values: Any, params: dict[str, Any]) -> list[Cell]:
    """One cell per value, in the order given; refuses the whole sweep on any bad value."""
    chosen = backends.get_backend(backend_name)
    model = chosen.model_for(params.get("model"))
    allowed = sweepable(chosen, model)
    if parameter not in allowed:
        rule = "one of " + ", ".join(f"'{n}'" for n in allowed) if allowed else "a numeric parameter (it has none)"
        raise InvalidParameter("sweep parameter", parameter, rule, chosen.label)
    numbers = parse_values(values, parameter, chosen.label)
    if not MIN_VALUES <= len(numbers) <= MAX_VALUES:
        raise InvalidParameter(f"values of {parameter}", numbers, f"{MIN_VALUES} to {MAX_VALUES} values",
                               chosen.label)
    if len(set(numbers)) < len(numbers):
        raise InvalidParameter(f"values of {parameter}", numbers, "different from each other", chosen.label)
    limit = chosen.parameters(model)[parameter]
    for number in numbers:
        if not limit.ok(number):
            raise InvalidParameter(parameter, number, limit.rule(), chosen.label)
    shared = _shared_seed(params, parameter)
    cells = []
    for number in numbers:
        cell = {**params, "model": model, **shared, parameter: number}
        chosen.preflight(chosen.resolve(build_request(cell, chosen)))  # refuses now, not after others ran
        cells.append(Cell(backend_name, cell, f"{parameter} = {number:g}"))
    return cells


def compare(params: dict[str, Any], current: str, api_key: str | None) -> list[Cell]:
    """The same photo and settings on every backend that can run now: those that need no
    key, those whose key is in the environment, and the current one with a typed key.

    A setting a backend does not have, or whose value it does not allow, is left at that
    backend's default and named in the cell's label.
    """
    shared = {**params, **_shared_seed(params, "")}
    cells = []
    for name in backends.names():
        backend = backends.get_backend(name)
        key = api_key if name == current and api_key else None
        if backend.key_env and not key and not os.environ.get(backend.key_env):
            continue
        model = backend.model_for(shared.get("model"), lenient=True)
        limits = backend.parameters(model)
        values: dict[str, Any] = {"model": model}
        missing, changed = [], []
        for pname, value in shared.items():
            if pname == "model" or value in (None, ""):
                continue
            limit = limits.get(pname)
            if limit is None:
                if pname not in MACHINERY:
                    missing.append(pname)
            elif limit.ok(value):
                values[pname] = value
            else:
                changed.append(f"{pname} {_show(limit.default)} ({_show(value)} not allowed)")
        notes = (["no " + ", ".join(missing)] if missing else []) + changed
        backend.resolve(build_request(values, backend))
        cells.append(Cell(name, values, " · ".join([backend.label, *notes]), api_key=key))
    return cells


def check_allowance(cells: list[Cell], visitor: str | None, api_key: str | None = None) -> None:
    """Refuse the whole sweep at once, before anything starts, when the owner's keys would
    not cover every video of it; a cell with a typed key (its own, or ``api_key`` for
    all) costs the owner nothing. Each video is then counted as it starts."""
    needed = Counter(c.backend for c in cells if not (c.api_key or api_key or "").strip())
    for name, count in needed.items():
        spend.check(name, visitor, typed_key=False, jobs=count)


def _shared_seed(params: dict[str, Any], parameter: str) -> dict[str, Any]:
    if parameter == "seed" or params.get("seed") not in (None, "", -1):
        return {}
    return {"seed": random.randint(0, 2**32 - 1)}


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
