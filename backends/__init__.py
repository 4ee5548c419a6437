"""The backend registry: adding a backend is one module and one line here.

The owner chooses what the page and the API offer with BACKENDS, e.g. "novita,modelslab":
those backends only, in that order, the first being the default. Unset or empty: all of
them, in the registry's order. A name the registry does not know stops the app at
start-up (a typo would otherwise quietly offer less than meant). A backend that cannot
work here after all (the local backend's Ray cluster is out of reach at start-up) is
withdrawn (``backends.offer``): the others are offered without it.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable

from backends import offer
from backends.base import Backend, Choice, Flag, Job, Limit, Option, Range, Result, Text
from backends.local import LocalBackend
from backends.modelslab import ModelsLabBackend
from backends.novita import NovitaBackend
from studio.errors import StudioError

_REGISTRY: dict[str, type[Backend]] = {
    LocalBackend.name: LocalBackend,
    ModelsLabBackend.name: ModelsLabBackend,
    NovitaBackend.name: NovitaBackend,
}
_INSTANCES: dict[str, Backend] = {}


BACKENDS_ENV = offer.ENV


def names() -> list[str]:
    """The backends offered, in order; the first is the default (see the module's docstring)."""
    raw = os.environ.get(BACKENDS_ENV, "")
    wanted = offer.requested()
    away = offer.withdrawn()
    if not wanted:
        return [n for n in _REGISTRY if n not in away]
    unknown = [n for n in wanted if n not in _REGISTRY]
    if unknown:
        from studio.errors import BadSetting

        raise BadSetting(
            f"{BACKENDS_ENV} must list backends of this studio, separated by commas ({_quoted(_REGISTRY)}), "
            f"got {raw!r}: {_quoted(unknown)} {'is' if len(unknown) == 1 else 'are'} not one of them."
        )
    return [n for n in wanted if n not in away]


def _quoted(items: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in items)


def get_backend(name: str) -> Backend:
    """The shared instance of backend ``name``; a name not offered lists those that are."""
    offered = names()
    if name in offer.withdrawn():
        from studio.errors import BackendError

        raise BackendError(offer.withdrawn()[name])
    if name not in offered:
        from studio.errors import InvalidParameter

        raise InvalidParameter("backend", name, f"one of {_quoted(offered)}", "this studio")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


def all_options() -> dict[str, Option]:
    """Every option any backend declares, by name (the first declaration of a shared name):
    the API accepts each of them, and the page makes one control for each."""
    found: dict[str, Option] = {}
    for name in names():
        backend = get_backend(name)
        for model in backend.model_choices():
            for option_name, option in backend.options(model).items():
                found.setdefault(option_name, option)
    return found


def start_up() -> None:
    """What must happen before the app launches: BACKENDS is checked, and the local backend
    (when offered) gets where its jobs run ready: on ZeroGPU it registers its GPU function
    and loads its model onto the GPU; with RAY_ADDRESS it joins the cluster and starts its
    first workers.

    A local backend that cannot start (its cluster is out of reach) is withdrawn with its
    sentence, logged, and the hosted backends are offered alone; when it is all BACKENDS
    names, its ``BackendError`` stops the app.
    """
    offered = names()
    if LocalBackend.name not in offered:
        return
    _INSTANCES.pop(LocalBackend.name, None)  # made afresh: where its jobs run is read from the environment now
    local = get_backend(LocalBackend.name)
    assert isinstance(local, LocalBackend)
    try:
        local.warm_up()
    except StudioError as exc:
        if offered == [LocalBackend.name]:
            raise
        offer.withdraw(LocalBackend.name, str(exc))
        _INSTANCES.pop(LocalBackend.name, None)
        logging.getLogger(__name__).warning("%s The studio starts with the hosted backends only.", exc)


__all__ = [
    "Backend", "Choice", "Flag", "Job", "Limit", "Option", "Range", "Result", "Text", "all_options", "get_backend",
    "names", "start_up",
]
