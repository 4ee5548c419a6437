"""Presets are data: every shipped file loads and resolves; broken files name file and field."""

from __future__ import annotations

import json

import pytest

import backends
from studio import presets
from studio.errors import PresetError
from studio.service import build_request


def test_every_shipped_preset_loads_and_resolves_on_the_local_backend():
    table = presets.load_presets()
    assert len(table) >= 5
    assert {"Balanced", "Subtle motion", "Dynamic", "SVD 14-frame", "Low memory"} <= set(table)
    local = backends.get_backend("local")
    for preset in table.values():
        assert preset.description
        resolved = local.resolve(build_request({"model": "svd-xt", **preset.values()}, local))
        for name, value in preset.values().items():
            assert getattr(resolved, name) == value, (preset.name, name)


def test_a_preset_only_sets_what_it_names():
    table = presets.load_presets()
    assert table["SVD 14-frame"].values() == {"model": "svd", "num_frames": 14, "fps": 7}


def write(tmp_path, name, data):
    (tmp_path / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return tmp_path


GOOD = {"name": "Mine", "description": "x", "parameters": {"motion_bucket_id": 30}}


@pytest.mark.parametrize(
    "data, message",
    [
        ({**GOOD, "parameters": {"motion_bucket_id": 999}},
         "Preset file broken.json: field 'parameters.motion_bucket_id': Input should be less than or equal to 255"),
        ({**GOOD, "parameters": {"num_frames": "lots"}},
         "Preset file broken.json: field 'parameters.num_frames': Input should be a valid integer"),
        ({**GOOD, "parameters": {"api_key": "sk-123"}},
         "Preset file broken.json: field 'parameters.api_key': Extra inputs are not permitted"),
        ({**GOOD, "parameters": {"image": "/etc/passwd"}},
         "Preset file broken.json: field 'parameters.image': Extra inputs are not permitted"),
        ({"name": "No description", "parameters": {}},
         "Preset file broken.json: field 'description': Field required"),
        ("{not json", "Preset file broken.json is not valid JSON"),
    ],
)
def test_a_broken_preset_names_the_file_and_the_field(tmp_path, data, message):
    folder = write(tmp_path, "broken.json", data)
    with pytest.raises(PresetError) as info:
        presets.load_presets(folder)
    assert str(info.value).startswith(message)


def test_two_presets_with_one_name_are_refused(tmp_path):
    write(tmp_path, "a.json", GOOD)
    write(tmp_path, "b.json", GOOD)
    with pytest.raises(PresetError, match="b.json: the name 'Mine' is used twice"):
        presets.load_presets(tmp_path)
