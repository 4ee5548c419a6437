"""Named parameter presets: built-ins in ``presets/`` and the ones people save, one JSON file each.

A preset is data, validated into the same request model the API uses, so it cannot carry
anything the API would refuse (no unknown fields). A saved or uploaded preset is checked
harder than a built-in: no parameter named like a key, token or password, no value that
looks like a local file path, every service option within the limit its backend declares.
A broken file's error names the file and the field.

Built-ins are part of the app: a broken one raises. A user preset is a stranger's file: a
broken or colliding one is skipped with one warning, so the page keeps serving.

Where saved presets live (``SHARED_PRESETS``): ``1`` (the default off a Space) keeps them
in one folder for the whole studio, as on the owner's own machine. ``0`` (the default on a
Space, where ``SPACE_ID`` is set) keeps them in each visitor's browser: the page holds
them (``gr.BrowserState``) and hands them to every call here as ``mine``, a list of plain
preset dicts. Nothing a visitor saves then reaches the server's disk or another visitor,
and two browsers behind one address are two visitors. Built-ins and the owner's folder
(``USER_PRESETS_DIR``, when set) stay shared and read-only then. A browser keeps at most
``BROWSER_MAX`` presets of at most ``BROWSER_FILE_LIMIT`` bytes each; what comes back from
a browser is checked like an uploaded file every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Any, Collection

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import backends
from studio.errors import BadSetting, PresetError
from studio.request import PARAMETERS, GenerationRequest

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
NAME_MAX = 60
NAME_PUNCTUATION = "-_.()'+&,"
FILE_LIMIT = 64 * 1024  # a preset is a few hundred bytes; anything near this is not one
SECRET_WORDS = ("key", "token", "secret", "password")
# Local paths, POSIX and Windows: "/x", "~x", "./x", "../x", ".\x", "file:...", "C:\x", "\\server".
_PATH = re.compile(r"^(?:/|~|\.{1,2}[/\\]|file:|[a-z]:[/\\]|\\\\)", re.IGNORECASE)

SHARED_ENV = "SHARED_PRESETS"
BROWSER_MAX = 50  # presets one browser may keep
BROWSER_FILE_LIMIT = 20 * 1024  # bytes of JSON per preset kept in a browser
Mine = list[dict[str, Any]]  # a browser's own presets, as the page keeps them

log = logging.getLogger(__name__)
_lock = threading.Lock()  # one save or delete at a time, so two saves cannot both pass the name check
_problems: list[str] = []


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field(max_length=400)
    parameters: GenerationRequest

    def values(self) -> dict:
        """Only the parameters the preset sets, options by their own names; the rest stay."""
        values = self.parameters.model_dump(exclude_unset=True)
        return values | values.pop("options", {})


# ---- reading files ---------------------------------------------------------------------


def _read_json(path: Path, limit: int | None = None) -> Any:
    """The parsed file; errors name the file by its base name only, never the full path."""
    try:
        with path.open("rb") as f:
            raw = f.read() if limit is None else f.read(limit + 1)
    except OSError as exc:
        raise PresetError(f"Preset file {path.name} could not be read: {exc.strerror or type(exc).__name__}") from exc
    if limit is not None and len(raw) > limit:
        raise PresetError(f"Preset file {path.name} is larger than {limit // 1024} KB, too large for a preset.")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"Preset file {path.name} is not valid JSON: {exc}") from exc


def _parse(data: Any, label: str) -> Preset:
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise PresetError(f"{label}: field '{where}': {err['msg']}") from exc


def load_preset(path: Path) -> Preset:
    return _parse(_read_json(path), f"Preset file {path.name}")


def _load_folder(folder: Path) -> dict[str, tuple[Preset, Path]]:
    found: dict[str, tuple[Preset, Path]] = {}
    for path in sorted(folder.glob("*.json")):
        preset = load_preset(path)
        if preset.name in found:
            raise PresetError(f"Preset file {path.name}: the name '{preset.name}' is used twice")
        found[preset.name] = (preset, path)
    return found


def load_presets(folder: Path = PRESET_DIR) -> dict[str, Preset]:
    """Every preset in ``folder`` by name, in file-name order; any broken file raises."""
    return {name: preset for name, (preset, _) in _load_folder(folder).items()}


# ---- the user folder -------------------------------------------------------------------


def shared() -> bool:
    """True when saved presets go to one folder for the whole studio (see the module)."""
    raw = os.environ.get(SHARED_ENV, "").strip()
    if not raw:
        return not os.environ.get("SPACE_ID", "").strip()
    if raw in ("0", "1"):
        return raw == "1"
    raise BadSetting(f"{SHARED_ENV} must be 0 (saved presets stay in each browser) or 1 (one folder for the "
                     f"whole studio), got {raw!r}.")


def user_presets_dir() -> Path:
    """Where saved presets live: ``USER_PRESETS_DIR``, else a temp folder on a Hugging Face
    Space, else ``~/.svd-studio/presets``. Not created here: only a save creates it."""
    chosen = os.environ.get("USER_PRESETS_DIR")
    if chosen:
        return Path(chosen).expanduser()
    if os.environ.get("SPACE_ID"):
        # On a public Space anyone can press Save: their files must not fill the owner's
        # persistent storage (or outlive a restart), so they go where the system cleans up.
        return Path(tempfile.gettempdir()) / "svd-studio-presets"
    return Path.home() / ".svd-studio" / "presets"


def _key(name: str) -> str:
    """Two names are the same preset when they differ only in case or surrounding spaces."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def file_name(name: str) -> str:
    """A file name made only of [a-z0-9-], so it can never leave the folder; the hash keeps
    names that slug alike ("A+B", "A&B") in separate files."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "preset"
    return f"{slug}-{hashlib.sha256(_key(name).encode()).hexdigest()[:8]}.json"


def _scan_user(taken: Collection[str]) -> tuple[dict[str, tuple[Preset, Path]], list[str]]:
    """The valid user presets after the names in ``taken``, and one line per skipped file.
    With presets kept in browsers, only a folder the owner named (``USER_PRESETS_DIR``)."""
    folder = user_presets_dir()
    found: dict[str, tuple[Preset, Path]] = {}
    skipped: list[str] = []
    names = {_key(n): n for n in taken}
    if not folder.is_dir() or (not shared() and not os.environ.get("USER_PRESETS_DIR")):
        return found, skipped
    for path in sorted(folder.glob("*.json")):
        label = f"Preset file {path.name}"
        try:
            preset = _validate(_read_json(path, FILE_LIMIT), label)
            if _key(preset.name) in names:
                raise PresetError(f"{label}: a preset named '{names[_key(preset.name)]}' already exists")
        except PresetError as exc:
            log.warning("Skipped a saved preset: %s", exc)
            skipped.append(str(exc))
            continue
        names[_key(preset.name)] = preset.name
        found[preset.name] = (preset, path)
    return found, skipped


def _catalog() -> tuple[dict[str, tuple[Preset, Path]], dict[str, tuple[Preset, Path]], list[str]]:
    builtin = _load_folder(PRESET_DIR)
    user, skipped = _scan_user(builtin)
    return builtin, user, skipped


def _find(table: dict[str, tuple[Preset, Path]], name: str) -> tuple[Preset, Path] | None:
    return next((entry for n, entry in table.items() if _key(n) == _key(name)), None)


def load_all(mine: Mine | None = None) -> dict[str, Preset]:
    """Built-ins (a broken one raises), then saved presets in file-name order (a broken or
    colliding one is skipped and logged; see ``problems``), then the browser's own."""
    global _problems
    builtin, user, _problems = _catalog()
    found = {name: preset for name, (preset, _) in (builtin | user).items()}
    return found | _browser(mine, found)


def _browser(mine: Mine | None, taken: Collection[str]) -> dict[str, Preset]:
    """The valid presets a browser sent back, after the names in ``taken``; in shared mode none."""
    if not mine or shared() or not isinstance(mine, list):
        return {}
    names = {_key(n) for n in taken}
    found: dict[str, Preset] = {}
    for data in mine[:BROWSER_MAX]:
        try:
            if len(json.dumps(data, ensure_ascii=False).encode()) > BROWSER_FILE_LIMIT:
                continue
            preset = _validate(data, "A preset kept in this browser")
        except (PresetError, TypeError, ValueError):
            continue  # edited in the browser: not one of ours, so not offered
        if _key(preset.name) not in names:
            names.add(_key(preset.name))
            found[preset.name] = preset
    return found


def as_data(preset: Preset) -> dict[str, Any]:
    """A preset as a browser keeps it (and as its JSON file holds it)."""
    return preset.model_dump(mode="json", exclude_unset=True)


def keep(mine: Mine | None, preset: Preset) -> Mine:
    """The browser's list with ``preset`` added (``save`` and ``import_file`` checked it)."""
    return [*(mine or []), as_data(preset)]


def problems() -> list[str]:
    """One sentence per saved preset file the latest ``load_all`` skipped, naming the file."""
    return list(_problems)


def is_user(name: str) -> bool:
    """True for a saved preset (which can be deleted), False for a built-in or unknown name."""
    return _find(_catalog()[1], name) is not None


def file_for(name: str, mine: Mine | None = None) -> Path | Preset:
    """The JSON file of a built-in or saved preset, for download; a browser's own preset
    has no file on the server, so it comes back as the preset to write one from."""
    builtin, user, _ = _catalog()
    entry = _find(builtin, name) or _find(user, name)
    if entry is not None:
        return entry[1]
    own = next((p for n, p in _browser(mine, {*builtin, *user}).items() if _key(n) == _key(name)), None)
    if own is None:
        raise PresetError(f"There is no preset named '{name}'.")
    return own


def to_json(preset: Preset) -> str:
    """The preset's file, as ``save`` writes it."""
    return json.dumps(as_data(preset), indent=2, ensure_ascii=False) + "\n"


def delete(name: str) -> None:
    """Remove a saved preset; built-ins are part of the app and stay."""
    with _lock:
        builtin, user, _ = _catalog()
        if _find(builtin, name):
            raise PresetError(f"'{name}' is a built-in preset; only saved presets can be deleted.")
        entry = _find(user, name)
        if entry is None:
            raise PresetError(f"There is no saved preset named '{name}'.")
        try:
            entry[1].unlink(missing_ok=True)
        except OSError as exc:
            raise PresetError(f"Preset '{entry[0].name}' could not be deleted: {exc.strerror}.") from exc


# ---- checks every saved or uploaded preset passes -----------------------------------------


def _name_problem(name: object) -> str | None:
    """What is wrong with a preset name, as the end of a sentence; None when it is fine."""
    text = unicodedata.normalize("NFC", name).strip() if isinstance(name, str) else ""
    if not text:
        return f"the preset name is empty; use 1-{NAME_MAX} characters."
    if len(text) > NAME_MAX:
        return f"the preset name is {len(text)} characters long; use at most {NAME_MAX}."
    bad = dict.fromkeys(c for c in text if not (c.isalnum() or c == " " or c in NAME_PUNCTUATION))
    if bad:
        return ("the preset name may only use letters, digits, spaces and " + " ".join(NAME_PUNCTUATION)
                + f" (not {', '.join(repr(c) for c in bad)}).")
    return None


def _check_key(name: str, label: str, known: Collection[str]) -> None:
    if any(word in name.lower() for word in SECRET_WORDS):
        raise PresetError(f"{label}: '{name}' looks like a secret; presets never hold keys, tokens or passwords.")
    if name not in known:
        if name in backends.all_options():
            raise PresetError(f"{label}: '{name}' is a service option; put it under 'options'.")
        raise PresetError(f"{label}: unknown parameter '{name}'.")


def _check_request(request: GenerationRequest, label: str) -> None:
    """No file paths anywhere, and every option known and within its declared limit."""
    known = backends.all_options()
    for name in request.options:
        _check_key(name, label, known)
    fields = request.model_dump(exclude_unset=True, exclude={"options"})
    for name, value in (fields | request.options).items():
        match = _PATH.match(value.lstrip()) if isinstance(value, str) else None
        if match:
            raise PresetError(f"{label}: {name} looks like a file path (it starts with '{match.group(0)}'); "
                              "presets never hold file paths.")
    for name, value in request.options.items():
        if not known[name].limit.ok(value):
            raise PresetError(f"{label}: {name} must be {known[name].limit.rule()}, got {value!r}")


def _validate(data: Any, label: str) -> Preset:
    """A preset from a file's data, with every check a saved preset passes."""
    parameters = data.get("parameters") if isinstance(data, dict) else None
    if isinstance(parameters, dict):  # before pydantic, so an 'api_key' is called a secret, not just extra
        for name in parameters:
            _check_key(name, label, (*PARAMETERS, "options"))
    preset = _parse(data, label)
    problem = _name_problem(preset.name)
    if problem:
        raise PresetError(f"{label}: {problem}")
    _check_request(preset.parameters, label)
    return preset.model_copy(update={"name": unicodedata.normalize("NFC", preset.name).strip()})


# ---- saving ----------------------------------------------------------------------------


def save(name: str, values: dict[str, Any], description: str = "", mine: Mine | None = None) -> Preset:
    """Store the page's controls (by parameter name; None and "" are "not set" and left
    out) as a preset in the user folder, or, when presets stay in browsers, check it
    against the browser's own ``mine`` and return it for the page to keep (``keep``).
    Raises ``PresetError`` with one sentence."""
    problem = _name_problem(name)
    if problem:
        raise PresetError(problem[0].upper() + problem[1:])
    name = unicodedata.normalize("NFC", name).strip()
    label = f"Preset '{name}'"
    options = backends.all_options()
    fields: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        _check_key(key, label, (*PARAMETERS, *options))
        if key in PARAMETERS:
            fields[key] = value
        else:  # a slider gives 2.0 for an integer option; store what the backend means
            integer = getattr(options[key].limit, "integer", False)
            whole = integer and isinstance(value, float) and value.is_integer()
            chosen[key] = int(value) if whole else value
    try:
        request = GenerationRequest(**fields, **({"options": chosen} if chosen else {}))
        preset = Preset(name=name, description=description or "", parameters=request)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PresetError(f"{label}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    _check_request(preset.parameters, label)
    return _store(preset, mine)


def import_file(path: str | Path, mine: Mine | None = None) -> Preset:
    """Add an uploaded preset JSON (the shape of the built-ins) to the user folder (or, with
    presets in browsers, return it for the page to keep), after the same checks as
    ``save``; messages name the file by its base name only."""
    path = Path(path)
    label = f"Preset file {path.name}"
    return _store(_validate(_read_json(path, FILE_LIMIT), label), mine)


def _store(preset: Preset, mine: Mine | None = None) -> Preset:
    if not shared():
        return _browser_store(preset, mine)
    with _lock:
        builtin, user, _ = _catalog()
        existing = _find(builtin, preset.name) or _find(user, preset.name)
        if existing:
            raise PresetError(f"A preset named '{existing[0].name}' already exists; pick another name.")
        try:
            _write(user_presets_dir(), preset)
        except OSError as exc:
            raise PresetError(f"Preset '{preset.name}' could not be saved: {exc.strerror}.") from exc
    return preset


def _browser_store(preset: Preset, mine: Mine | None) -> Preset:
    """Check a preset a browser is about to keep: its name free, the browser's count and
    the preset's size within their limits. Nothing is written on the server."""
    builtin, user, _ = _catalog()
    taken = {name: p for name, (p, _) in (builtin | user).items()} | _browser(mine, {*builtin, *user})
    existing = next((n for n in taken if _key(n) == _key(preset.name)), None)
    if existing:
        raise PresetError(f"A preset named '{existing}' already exists; pick another name.")
    if len(mine or []) >= BROWSER_MAX:
        raise PresetError(f"This browser already keeps {len(mine or [])} presets, the most one browser may keep "
                          f"({BROWSER_MAX}), so '{preset.name}' was not saved.")
    size = len(json.dumps(as_data(preset), ensure_ascii=False).encode())
    if size > BROWSER_FILE_LIMIT:
        raise PresetError(f"Preset '{preset.name}' takes {size} bytes; a preset kept in a browser may take at most "
                          f"{BROWSER_FILE_LIMIT} bytes.")
    return preset


def _write(folder: Path, preset: Preset) -> Path:
    """Write atomically: a reader sees the old folder or the whole new file, never half of it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(preset.name)
    text = json.dumps(preset.model_dump(mode="json", exclude_unset=True), indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")  # not *.json: never listed
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
