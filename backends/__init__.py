"""The backend registry: adding a backend is one module and one line here."""

from __future__ import annotations

from backends.base import Backend, Choice, Flag, Job, Limit, Option, Range, Result, Text
from backends.local import LocalBackend
from backends.modelslab import ModelsLabBackend
from backends.novita import NovitaBackend

_REGISTRY: dict[str, type[Backend]] = {
    LocalBackend.name: LocalBackend,
    ModelsLabBackend.name: ModelsLabBackend,
    NovitaBackend.name: NovitaBackend,
}
_INSTANCES: dict[str, Backend] = {}


def names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The shared instance of backend ``name``; an unknown name lists the known ones."""
    if name not in _REGISTRY:
        known = ", ".join(f"'{n}'" for n in _REGISTRY)
        from studio.errors import InvalidParameter

        raise InvalidParameter("backend", name, f"one of {known}", "this studio")
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


__all__ = [
    "Backend", "Choice", "Flag", "Job", "Limit", "Option", "Range", "Result", "Text", "all_options", "get_backend",
    "names",
]
