"""Presets are data: every shipped file loads and resolves; broken files name file and field."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

import backends
from orchestration import presets
from studio.errors import PresetError
from orchestration.service import build_request


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


# ---- saved presets -----------------------------------------------------------------------

BUILTIN_NAMES = list(presets.load_presets())  # read, not listed: others add built-ins
PAGE = {  # what the page sends: SVD's fields and backend options by name, empty ones included
    "model": "svd-xt", "motion_bucket_id": 90, "noise_aug_strength": 0.05, "seed": 42, "fast_mode": False,
    "num_frames": None, "fps": "", "negative_prompt": "blurry, watermark", "clip_skip": 2.0, "track_id": "",
}
SAVED = {
    "model": "svd-xt", "motion_bucket_id": 90, "noise_aug_strength": 0.05, "seed": 42, "fast_mode": False,
    "negative_prompt": "blurry, watermark", "clip_skip": 2,
}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The user folder, named but not yet created (a save creates it)."""
    user = tmp_path / "user"
    monkeypatch.setenv("USER_PRESETS_DIR", str(user))
    return user


def upload(tmp_path, data, name="upload.json"):
    """A file as a browser upload leaves it: somewhere outside the user folder."""
    path = tmp_path / "uploads" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def refused(call, *args) -> str:
    with pytest.raises(PresetError) as info:
        call(*args)
    return str(info.value)


def test_a_saved_preset_loads_after_the_built_ins_with_the_same_values(folder):
    saved = presets.save("  My look  ", PAGE, "Slow pan")
    assert saved.name == "My look"
    table = presets.load_all()
    assert list(table) == [*BUILTIN_NAMES, "My look"]
    assert table["My look"].values() == SAVED
    assert table["My look"].description == "Slow pan"
    assert presets.is_user("My look") and presets.is_user("my look ")
    assert not presets.is_user("Balanced")
    assert presets.problems() == []


def test_the_file_on_disk_is_the_preset_and_nothing_else(folder):
    presets.save("My look", PAGE, "Slow pan")
    (path,) = folder.iterdir()  # one file: no temp file left behind
    assert path.suffix == ".json" and path.name.startswith("my-look-")
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "name": "My look", "description": "Slow pan",
        "parameters": {
            "model": "svd-xt", "motion_bucket_id": 90, "noise_aug_strength": 0.05, "seed": 42, "fast_mode": False,
            "options": {"negative_prompt": "blurry, watermark", "clip_skip": 2},
        },
    }
    assert presets.file_for("My look") == path
    text = path.read_text(encoding="utf-8").lower()
    assert not any(word in text for word in ("key", "token", "secret", "password", "/", "\\", "~"))


def test_reading_never_creates_the_folder(folder):
    assert list(presets.load_all()) == BUILTIN_NAMES
    assert not folder.exists()
    presets.save("Mine", {"seed": 1})
    assert folder.is_dir()


def test_names_that_slug_alike_get_their_own_files_inside_the_folder(folder):
    for name in ("A+B", "A&B", "..", "Café (v2)"):
        presets.save(name, {"seed": 1})
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 4
    assert all(p.parent == folder for p in folder.iterdir())
    assert sum(f.startswith("a-b-") for f in files) == 2
    assert any(f.startswith("preset-") for f in files)  # ".." has no letters to slug
    assert {"A+B", "A&B", "..", "Café (v2)"} <= set(presets.load_all())


ALLOWED = "letters, digits, spaces and - _ . ( ) ' + & ,"
SECRET = "looks like a secret; presets never hold keys, tokens or passwords."


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "The preset name is empty; use 1-60 characters."),
        ("   ", "The preset name is empty; use 1-60 characters."),
        ("x" * 61, "The preset name is 61 characters long; use at most 60."),
        ("../../etc/passwd", f"The preset name may only use {ALLOWED} (not '/')."),
        ('a\\b"c<d>', f"The preset name may only use {ALLOWED} (not '\\\\', '\"', '<', '>')."),
        ("semi;colon;", f"The preset name may only use {ALLOWED} (not ';')."),
    ],
)
def test_a_bad_name_is_refused_with_the_rule(folder, name, message):
    assert refused(presets.save, name, {"seed": 1}) == message
    assert not folder.exists()


def test_every_allowed_character_is_accepted(folder):
    name = "Rock & roll (v2), take 1+1 'final'_x.y-z"
    assert len(name) <= 60
    assert presets.save(name, {"seed": 1}).name == name
    assert presets.save("y" * 60, {"seed": 1}).name == "y" * 60


@pytest.mark.parametrize("name, existing", [("Balanced", "Balanced"), ("balanced ", "Balanced"),
                                            (" FAST (cuda)", "Fast (CUDA)")])
def test_a_built_in_name_is_taken(folder, name, existing):
    assert refused(presets.save, name, {"seed": 1}) == f"A preset named '{existing}' already exists; pick another name."


def test_a_saved_name_is_taken(folder):
    presets.save("Mine", {"seed": 1})
    assert refused(presets.save, " MINE", {"seed": 2}) == "A preset named 'Mine' already exists; pick another name."
    assert presets.load_all()["Mine"].values() == {"seed": 1}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"frames": 14}, "Preset 'Mine': unknown parameter 'frames'."),
        ({"image": "photo.png"}, "Preset 'Mine': unknown parameter 'image'."),
        ({"api_key": "sk-123"}, f"Preset 'Mine': 'api_key' {SECRET}"),
        ({"HF_TOKEN": "hf_x"}, f"Preset 'Mine': 'HF_TOKEN' {SECRET}"),
        ({"client_secret": "x"}, f"Preset 'Mine': 'client_secret' {SECRET}"),
        ({"Password": "x"}, f"Preset 'Mine': 'Password' {SECRET}"),
        ({"motion_bucket_id": 999}, "Preset 'Mine': motion_bucket_id: Input should be less than or equal to 255"),
        ({"noise_aug_strength": -0.5},
         "Preset 'Mine': noise_aug_strength: Input should be greater than or equal to 0"),
        ({"num_frames": "lots"},
         "Preset 'Mine': num_frames: Input should be a valid integer, unable to parse string as an integer"),
        ({"memory_mode": "turbo"},
         "Preset 'Mine': memory_mode: Input should be 'auto', 'full_gpu', 'model_offload' or 'sequential_offload'"),
        ({"clip_skip": 5}, "Preset 'Mine': clip_skip must be 1-2 or empty, got 5"),
        ({"output_format": "avi"}, "Preset 'Mine': output_format must be one of 'mp4', 'gif', 'base64', got 'avi'"),
        ({"webhook": "ftp://example.com/hook"},
         "Preset 'Mine': webhook must be an http(s) URL or empty, got 'ftp://example.com/hook'"),
        ({"enhance_prompt": "yes"}, "Preset 'Mine': enhance_prompt must be true or false, got 'yes'"),
    ],
)
def test_a_bad_value_is_refused_naming_the_parameter(folder, values, message):
    assert refused(presets.save, "Mine", {"seed": 1, **values}) == message
    assert not folder.exists()


@pytest.mark.parametrize(
    "name, value, prefix",
    [
        ("negative_prompt", "/etc/passwd", "/"),
        ("negative_prompt", "  ~/secrets.txt", "~"),
        ("negative_prompt", "./notes.txt", "./"),
        ("track_id", "../../x", "../"),
        ("negative_prompt", "file:///etc/passwd", "file:"),
        ("negative_prompt", "C:\\Users\\me\\key.txt", "C:\\"),
        ("track_id", "d:/data", "d:/"),
        ("negative_prompt", "\\\\server\\share", "\\\\"),
        ("model", "/models/svd", "/"),
    ],
)
def test_a_file_path_is_refused(folder, name, value, prefix):
    assert refused(presets.save, "Mine", {name: value}) == (
        f"Preset 'Mine': {name} looks like a file path (it starts with '{prefix}'); presets never hold file paths."
    )
    assert not folder.exists()


def test_text_that_only_mentions_a_path_is_kept(folder):
    saved = presets.save("Mine", {"negative_prompt": "no a/b split screens", "webhook": "https://example.com/hook"})
    assert saved.values() == {"negative_prompt": "no a/b split screens", "webhook": "https://example.com/hook"}


def test_a_long_description_is_refused(folder):
    assert refused(presets.save, "Mine", {"seed": 1}, "d" * 401) == (
        "Preset 'Mine': description: String should have at most 400 characters"
    )


# ---- uploads -------------------------------------------------------------------------------

UPLOAD = {"name": "Shared look", "description": "From a friend",
          "parameters": {"motion_bucket_id": 60, "options": {"negative_prompt": "blurry"}}}


def test_an_uploaded_preset_is_added(tmp_path, folder):
    source = upload(tmp_path, UPLOAD)
    preset = presets.import_file(str(source))
    assert preset.name == "Shared look"
    assert presets.load_all()["Shared look"].values() == {"motion_bucket_id": 60, "negative_prompt": "blurry"}
    stored = presets.file_for("Shared look")
    assert stored.parent == folder
    assert json.loads(stored.read_text(encoding="utf-8")) == UPLOAD
    assert presets.is_user("Shared look")


def with_parameters(parameters):
    return {**UPLOAD, "parameters": parameters}


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "Preset file upload.json is not valid JSON: Expecting property name enclosed in double quotes: "
                      "line 1 column 2 (char 1)"),
        ({**UPLOAD, "author": "me"}, "Preset file upload.json: field 'author': Extra inputs are not permitted"),
        ({"name": "No description", "parameters": {}}, "Preset file upload.json: field 'description': Field required"),
        (with_parameters({"frames": 14}), "Preset file upload.json: unknown parameter 'frames'."),
        (with_parameters({"options": {"wobble": 1}}), "Preset file upload.json: unknown parameter 'wobble'."),
        (with_parameters({"negative_prompt": "x"}),
         "Preset file upload.json: 'negative_prompt' is a service option; put it under 'options'."),
        (with_parameters({"motion_bucket_id": 999}),
         "Preset file upload.json: field 'parameters.motion_bucket_id': Input should be less than or equal to 255"),
        (with_parameters({"api_key": "sk-123"}),
         "Preset file upload.json: 'api_key' looks like a secret; presets never hold keys, tokens or passwords."),
        (with_parameters({"options": {"novita_token": "x"}}),
         "Preset file upload.json: 'novita_token' looks like a secret; presets never hold keys, tokens or passwords."),
        (with_parameters({"options": {"negative_prompt": "/etc/passwd"}}),
         "Preset file upload.json: negative_prompt looks like a file path (it starts with '/'); "
         "presets never hold file paths."),
        (with_parameters({"options": {"clip_skip": 3}}),
         "Preset file upload.json: clip_skip must be 1-2 or empty, got 3"),
        ({**UPLOAD, "name": "a/b"}, f"Preset file upload.json: the preset name may only use {ALLOWED} (not '/')."),
        ({**UPLOAD, "name": "  "}, "Preset file upload.json: the preset name is empty; use 1-60 characters."),
        ({**UPLOAD, "name": "BALANCED"}, "A preset named 'Balanced' already exists; pick another name."),
        ([1, 2],
         "Preset file upload.json: field '(top level)': Input should be a valid dictionary or instance of Preset"),
    ],
)
def test_a_bad_upload_is_refused_naming_the_file_only(tmp_path, folder, data, message):
    text = refused(presets.import_file, upload(tmp_path, data))
    assert text == message
    assert str(tmp_path) not in text
    assert not folder.exists()


def test_an_upload_over_64_kb_is_refused(tmp_path, folder):
    big = {**UPLOAD, "description": "x" * (64 * 1024)}
    assert refused(presets.import_file, upload(tmp_path, big, "big.json")) == (
        "Preset file big.json is larger than 64 KB, too large for a preset."
    )


def test_a_missing_upload_names_only_the_file(tmp_path, folder):
    assert refused(presets.import_file, tmp_path / "gone" / "lost.json") == (
        "Preset file lost.json could not be read: No such file or directory"
    )


def test_an_upload_with_a_saved_name_is_refused(tmp_path, folder):
    presets.save("Shared look", {"seed": 1})
    assert refused(presets.import_file, upload(tmp_path, {**UPLOAD, "name": "shared LOOK"})) == (
        "A preset named 'Shared look' already exists; pick another name."
    )


# ---- the user folder -----------------------------------------------------------------------


def test_broken_or_colliding_saved_files_are_skipped_with_one_warning_each(folder, caplog):
    presets.save("Good one", {"seed": 1})
    (folder / "a-broken.json").write_text("{not json", encoding="utf-8")
    (folder / "b-balanced.json").write_text(json.dumps({**UPLOAD, "name": "balanced"}), encoding="utf-8")
    (folder / "c-key.json").write_text(json.dumps(with_parameters({"options": {"api_key": "sk"}})), encoding="utf-8")
    (folder / "notes.txt").write_text("not a preset", encoding="utf-8")
    with caplog.at_level("WARNING", logger="orchestration.presets"):
        table = presets.load_all()
    assert list(table) == [*BUILTIN_NAMES, "Good one"]
    skipped = [
        "Preset file a-broken.json is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "Preset file b-balanced.json: a preset named 'Balanced' already exists",
        "Preset file c-key.json: 'api_key' looks like a secret; presets never hold keys, tokens or passwords.",
    ]
    assert presets.problems() == skipped
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"Skipped a saved preset: {line}") for line in skipped
    ]


def test_two_saved_files_with_one_name_keep_the_first(folder):
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({**UPLOAD, "description": "first"}), encoding="utf-8")
    (folder / "b.json").write_text(json.dumps({**UPLOAD, "name": "SHARED LOOK"}), encoding="utf-8")
    assert presets.load_all()["Shared look"].description == "first"
    assert presets.problems() == ["Preset file b.json: a preset named 'Shared look' already exists"]


def test_file_for_gives_built_in_and_saved_files(folder):
    assert presets.file_for("Balanced") == presets.PRESET_DIR / "10-balanced.json"
    assert refused(presets.file_for, "Nope") == "There is no preset named 'Nope'."


def test_only_saved_presets_can_be_deleted(folder):
    presets.save("Mine", {"seed": 1})
    assert refused(presets.delete, "Balanced") == "'Balanced' is a built-in preset; only saved presets can be deleted."
    assert refused(presets.delete, "Yours") == "There is no saved preset named 'Yours'."
    presets.delete("mine")
    assert list(presets.load_all()) == BUILTIN_NAMES
    assert list(folder.iterdir()) == []


def test_the_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("USER_PRESETS_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    assert presets.user_presets_dir() == tmp_path / "mine"


def test_on_a_space_the_folder_is_under_the_temp_dir(monkeypatch):
    monkeypatch.delenv("USER_PRESETS_DIR", raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    folder = presets.user_presets_dir()
    assert folder.is_relative_to(tempfile.gettempdir())
    assert folder == Path(tempfile.gettempdir()) / "svd-studio-presets"


def test_elsewhere_the_folder_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("USER_PRESETS_DIR", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert presets.user_presets_dir() == tmp_path / ".svd-studio" / "presets"
    assert list(presets.load_all()) == BUILTIN_NAMES
    assert not (tmp_path / ".svd-studio").exists()


# ---- presets kept per browser (a public Space, or SHARED_PRESETS=0) -------------------------


@pytest.fixture
def per_browser(folder, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    monkeypatch.delenv("SHARED_PRESETS", raising=False)
    return folder


@pytest.mark.parametrize("space, value, shared", [
    (False, None, True), (True, None, False), (True, "1", True), (False, "0", False)])
def test_shared_presets_default_to_off_on_a_space_only(monkeypatch, space, value, shared):
    if space:
        monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    else:
        monkeypatch.delenv("SPACE_ID", raising=False)
    if value is None:
        monkeypatch.delenv("SHARED_PRESETS", raising=False)
    else:
        monkeypatch.setenv("SHARED_PRESETS", value)
    assert presets.shared() is shared


def test_a_bad_shared_presets_value_is_named(monkeypatch):
    from studio.errors import BadSetting

    monkeypatch.setenv("SHARED_PRESETS", "yes")
    with pytest.raises(BadSetting) as info:
        presets.shared()
    assert str(info.value) == ("SHARED_PRESETS must be 0 (saved presets stay in each browser) or 1 (one folder for "
                               "the whole studio), got 'yes'.")


def test_a_browser_keeps_its_own_presets_and_the_server_keeps_none(per_browser, tmp_path):
    saved = presets.save("Mine", {"motion_bucket_id": 30, "webhook": "https://example.org/hook?token=t"})
    mine = presets.keep([], saved)
    assert not per_browser.exists()  # nothing written on the server
    assert presets.load_all(mine)["Mine"].values()["motion_bucket_id"] == 30
    assert "Mine" not in presets.load_all([])  # another browser
    assert refused(presets.save, "mine", {"motion_bucket_id": 1}, "", mine).startswith(
        "A preset named 'Mine' already exists")
    assert refused(presets.save, "Balanced", {"motion_bucket_id": 1}, "", mine).startswith(
        "A preset named 'Balanced' already exists")
    added = presets.import_file(upload(tmp_path, {**GOOD, "name": "Theirs"}), mine)
    assert set(presets.load_all(presets.keep(mine, added))) >= {"Mine", "Theirs"}
    assert isinstance(presets.file_for("Mine", mine), presets.Preset)
    assert json.loads(presets.to_json(presets.file_for("Mine", mine)))["name"] == "Mine"


def test_the_owners_folder_stays_shared_and_read_only(per_browser):
    per_browser.mkdir()
    (per_browser / "owner.json").write_text(json.dumps({**GOOD, "name": "Owner's"}))
    assert "Owner's" in presets.load_all([])
    presets.save("Visitor's", {"motion_bucket_id": 5})
    assert [p.name for p in per_browser.iterdir()] == ["owner.json"]


def test_a_browser_keeps_at_most_50_presets_of_20_kb(per_browser, monkeypatch):
    mine = [presets.as_data(presets.save(f"P{i}", {"motion_bucket_id": i + 1})) for i in range(50)]
    assert len(presets.load_all(mine)) == len(presets.load_presets()) + 50
    assert refused(presets.save, "One more", {"motion_bucket_id": 1}, "", mine) == (
        "This browser already keeps 50 presets, the most one browser may keep (50), so 'One more' was not saved.")
    assert len(presets.load_all([*mine, presets.as_data(presets.save("Extra", {"fps": 7}))])) == len(
        presets.load_presets()) + 50  # one pushed in by hand past the limit is not offered
    # No preset the fields allow comes near 20 KB today, so the limit is shown with a smaller one.
    monkeypatch.setattr(presets, "BROWSER_FILE_LIMIT", 200)
    size = len(json.dumps(presets.as_data(presets.Preset(
        name="Long", description="d" * 150, parameters={"motion_bucket_id": 1})), ensure_ascii=False).encode())
    assert refused(presets.save, "Long", {"motion_bucket_id": 1}, "d" * 150, []) == (
        f"Preset 'Long' takes {size} bytes; a preset kept in a browser may take at most 200 bytes.")


def test_an_edited_browser_preset_is_never_offered(per_browser):
    good = presets.as_data(presets.save("Good", {"motion_bucket_id": 3}))
    edited = [good, {**GOOD, "name": "Path", "parameters": {"options": {"webhook": "/etc/passwd"}}},
              {**GOOD, "name": "Keyed", "parameters": {"api_key": "sk"}}, "not a preset",
              {**GOOD, "name": "Huge", "description": "x" * 21000}]
    offered = presets.load_all(edited)
    assert "Good" in offered and not {"Path", "Keyed", "Huge"} & set(offered)
