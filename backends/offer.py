"""What the owner asked to offer (BACKENDS), and what could not be offered after all.

A module of its own below the registry (``backends/__init__``), so that a backend can ask
"is anything else offered?" without importing the registry that imports it.
"""

from __future__ import annotations

import os

ENV = "BACKENDS"
_withdrawn: dict[str, str] = {}  # name -> the sentence that says why it is not offered now


def requested() -> list[str] | None:
    """The names in BACKENDS, lower case, first occurrence kept, unchecked; None when unset
    or empty, meaning every backend of the registry."""
    raw = os.environ.get(ENV, "")
    wanted = list(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    return wanted or None


def withdraw(name: str, reason: str) -> None:
    """Stop offering ``name`` (its cluster could not be reached at start-up, say)."""
    _withdrawn[name] = reason


def restore(name: str) -> None:
    _withdrawn.pop(name, None)


def withdrawn() -> dict[str, str]:
    return dict(_withdrawn)


def others_offered(name: str) -> bool:
    """Whether a backend other than ``name`` is offered; unset BACKENDS offers the whole
    registry, which always holds hosted backends besides the local one."""
    wanted = requested()
    return wanted is None or any(n != name and n not in _withdrawn for n in wanted)
