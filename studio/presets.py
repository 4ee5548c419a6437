"""Named parameter presets, one JSON file each in ``presets/``.

A preset is data, validated into the same request model the API uses, so it cannot carry
anything the API would refuse (no keys, no file paths, no unknown fields). A broken file's
error names the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studio.errors import PresetError
from studio.request import GenerationRequest

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60)
    description: str = Field(max_length=400)
    parameters: GenerationRequest

    def values(self) -> dict:
        """Only the parameters the preset sets, options by their own names; the rest stay."""
        values = self.parameters.model_dump(exclude_unset=True)
        return values | values.pop("options", {})


def load_preset(path: Path) -> Preset:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"Preset file {path.name} is not valid JSON: {exc}") from exc
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise PresetError(f"Preset file {path.name}: field '{where}': {err['msg']}") from exc


def load_presets(folder: Path = PRESET_DIR) -> dict[str, Preset]:
    """Every preset in ``folder`` by name, in file-name order."""
    presets: dict[str, Preset] = {}
    for path in sorted(folder.glob("*.json")):
        preset = load_preset(path)
        if preset.name in presets:
            raise PresetError(f"Preset file {path.name}: the name '{preset.name}' is used twice")
        presets[preset.name] = preset
    return presets
