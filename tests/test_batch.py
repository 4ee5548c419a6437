"""Batches: many photos in one go, through /batch and through the engine, against the tiny
local model and the fake Novita server. Each test opens what a person would open: the
ZIP, the manifest, the recipe inside each MP4."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

import backends
from backends.novita import NovitaBackend
from orchestration import batch
from orchestration.batch_intake import BatchRefused, check_template, gather
from studio import recipe, video
from studio.errors import LimitReached
from tests.conftest import EXAMPLES, launched_studio, wait_for
from tests.fakes import FakeNovita

TINY = {"width": 64, "height": 64, "num_frames": 4, "num_inference_steps": 2}
KEY = "nv-batch-canary-51c2"
FAST = dict(poll_interval=0.01, max_poll_interval=0.05, deadline=20.0, backoff=0.01, max_backoff=0.05, retries=3)


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _manifest(zip_path: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    with zipfile.ZipFile(zip_path) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        return rows, json.loads(archive.read("manifest.json")), archive.namelist()


@pytest.fixture(scope="module")
def client(tiny_model):
    with launched_studio() as url:
        yield Client(url, verbose=False)


def test_batch_endpoint_with_good_and_bad_photos(client, tmp_path):
    photos = (EXAMPLES / "chelsea.png").read_bytes()
    album = _zip(tmp_path / "album.zip", {
        "trip/day1/rocket.jpg": (EXAMPLES / "rocket.jpg").read_bytes(),  # folders are flattened
        "__MACOSX/trip/._rocket.jpg": b"resource fork",  # skipped
        "trip/.DS_Store": b"finder",  # skipped
        "trip/readme.txt": b"not a photo",
        "../escape.png": photos,
    })
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    zip_path, summary = client.predict(
        images=[handle_file(str(EXAMPLES / "chelsea.png")), handle_file(str(notes)), handle_file(str(album)),
                handle_file(str(EXAMPLES / "chelsea.png"))],
        backend="local", seed=7, seed_per_photo=False, name_template="{photo}-{seed}", **TINY, api_name="/batch")
    assert [e["name"] for e in summary] == ["chelsea.png", "notes.txt", "rocket.jpg", "readme.txt",
                                            "escape.png", "chelsea.png"]
    assert [e.get("output") for e in summary] == ["chelsea-7.mp4", None, "rocket-7.mp4", None, None,
                                                  "chelsea-7-2.mp4"]
    assert summary[1]["error"] == ("notes.txt: the uploaded file is not an image this studio can read. "
                                   "Please use PNG, JPEG or WebP.")
    assert summary[3]["error"].startswith("readme.txt in album.zip: ")
    assert summary[4]["error"] == "../escape.png in album.zip climbs out of the ZIP (../), so it was not unpacked."
    assert all(e["seed"] == 7 for e in summary if "output" in e)
    rows, listed, names = _manifest(zip_path)
    assert sorted(names) == sorted(["chelsea-7.mp4", "rocket-7.mp4", "chelsea-7-2.mp4", "manifest.csv",
                                    "manifest.json"])
    assert list(rows[0])[:8] == ["index", "photo", "output", "status", "error", "seed", "backend", "task_id"]
    assert {"num_frames", "width", "num_inference_steps", "motion_bucket_id"} <= set(rows[0])
    assert [r["status"] for r in rows] == ["made", "failed", "made", "failed", "failed", "made"]
    assert rows[0]["num_frames"] == "4" and rows[0]["backend"] == "local" and rows[1]["error"].startswith("notes.txt")
    assert listed[2]["output"] == "rocket-7.mp4" and listed[2]["width"] == 64
    with zipfile.ZipFile(zip_path) as archive:
        archive.extract("rocket-7.mp4", tmp_path / "out")
    made = tmp_path / "out" / "rocket-7.mp4"
    assert video.probe(made) == (4, 64, 64)
    stamped = recipe.read(made)
    assert stamped["seed"] == 7 and stamped["backend"] == "local" and stamped["num_inference_steps"] == 2


def test_batch_endpoint_refuses_an_empty_batch_and_a_bad_template(client, tmp_path):
    with pytest.raises(Exception) as info:
        client.predict(images=[handle_file(str(_zip(tmp_path / "empty.zip", {"__MACOSX/._a.png": b"x"})))],
                       backend="local", api_name="/batch")
    assert "The batch is empty" in str(info.value)
    with pytest.raises(Exception) as info:
        client.predict(images=[handle_file(str(EXAMPLES / "chelsea.png"))], backend="local",
                       name_template="{photo}/{seed}", api_name="/batch")
    assert "name_template must not contain a path separator" in str(info.value)


def test_batch_is_served_with_every_generate_parameter(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    generate = [p["parameter_name"] for p in api["/generate"]["parameters"]]
    names = [p["parameter_name"] for p in api["/batch"]["parameters"]]
    assert set(generate) - {"image"} <= set(names)
    assert {"images", "name_template", "seed_per_photo", "preset_b", "gifs"} <= set(names)


def test_templates_name_their_mistake():
    with pytest.raises(BatchRefused) as info:
        check_template("{photo}-{camera}")
    assert str(info.value) == ("name_template may use only {photo}, {seed}, {backend}, {preset}, {index}, {date}, "
                               "got {camera} in '{photo}-{camera}'.")
    with pytest.raises(BatchRefused, match="path separator"):
        check_template("..\\{photo}")
    assert check_template("") == "{photo}-{seed}"


def test_zip_bombs_are_refused_before_anything_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_MAX_UNPACKED_MB", "1")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", b"\0" * (3 * 1024 * 1024))  # 3 MB of zeros: a few kB packed
    staged = tmp_path / "staged"
    photos = gather([bomb], staged)
    assert [p.error for p in photos] == ["bomb.zip would unpack to 3 MB, more than 1 MB (BATCH_MAX_UNPACKED_MB); "
                                         "nothing was unpacked."]
    assert list(staged.iterdir()) == []
    monkeypatch.setenv("BATCH_MAX_PHOTOS", "2")
    many = _zip(tmp_path / "many.zip", {f"p{i}.png": b"x" for i in range(3)})
    assert gather([many], staged)[0].error.startswith("many.zip holds 3 files, more than the 2 photos")
    assert list(staged.iterdir()) == []


def test_absolute_paths_in_a_zip_are_refused_and_nothing_lands_outside(tmp_path):
    picture = (EXAMPLES / "coffee.png").read_bytes()
    evil = _zip(tmp_path / "evil.zip", {"/tmp/abs.png": picture, "a/../../up.png": picture, "ok.png": picture})
    staged = tmp_path / "inside" / "staged"
    photos = gather([evil], staged)
    assert photos[0].error == ("/tmp/abs.png in evil.zip climbs out of the ZIP (an absolute path), "
                               "so it was not unpacked.")
    assert photos[1].error.endswith("climbs out of the ZIP (../), so it was not unpacked.")
    assert photos[2].error == "" and photos[2].path.parent == staged
    assert not (tmp_path / "up.png").exists() and not (tmp_path / "inside" / "up.png").exists()


def test_the_size_cap_is_named_and_smaller_on_a_space(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_MAX_PHOTOS", "2")
    three = [EXAMPLES / "chelsea.png"] * 3
    with pytest.raises(BatchRefused) as info:
        gather(three, tmp_path / "a")
    assert str(info.value) == ("This batch has 3 photos, more than the 2 one batch may hold (BATCH_MAX_PHOTOS); "
                               "split it into smaller batches.")
    monkeypatch.delenv("BATCH_MAX_PHOTOS")
    monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    with pytest.raises(BatchRefused, match="more than the 8 one batch may hold"):
        gather([EXAMPLES / "chelsea.png"] * 9, tmp_path / "b")


# ---- hosted: the fake Novita server --------------------------------------------------


@pytest.fixture
def novita(monkeypatch):
    with FakeNovita(api_key=KEY, queued_polls=0, processing_polls=1) as server:
        monkeypatch.setenv("NOVITA_BASE_URL", server.base_url)
        monkeypatch.setenv("NOVITA_API_KEY", KEY)
        monkeypatch.setitem(backends._INSTANCES, "novita", NovitaBackend(**FAST))  # quick polls, same code
        yield server


def test_the_spend_guard_counts_the_whole_batch_before_anything_starts(novita, monkeypatch):
    monkeypatch.setenv("HOSTED_LIMIT_PER_HOUR", "2")
    manager = batch.BatchManager()
    with pytest.raises(LimitReached) as info:
        manager.create([EXAMPLES / "chelsea.png"] * 3, "novita", {}, visitor="v-spend")
    assert str(info.value) == ("This studio's Novita AI key allows 2 videos an hour per visitor, fewer than the 3 "
                               "these need; make fewer at a time, or paste your own Novita AI API key.")
    assert novita.requests_for("submit") == []


def test_hosted_photos_fail_alone_and_a_retry_makes_them(novita):
    manager = batch.BatchManager()
    novita.fail_reason = "NSFW content detected"
    made = manager.create([EXAMPLES / "chelsea.png", EXAMPLES / "rocket.jpg"], "novita", {}, visitor="v-retry")
    assert made.wait(30)
    assert [i.status for i in made.items] == ["failed", "failed"]
    assert made.items[0].error.startswith("chelsea.png: ") and "NSFW content detected" in made.items[0].error
    novita.fail_reason = None
    assert made.retry_failed() == 2
    assert made.wait(30)
    assert [i.status for i in made.items] == ["made", "made"]
    rows, _, names = _manifest(made.zip_path)
    assert [r["status"] for r in rows] == ["made", "made"] and all(r["task_id"] for r in rows)
    assert KEY not in json.dumps(rows) and KEY not in (made.folder / batch.STATE).read_text()
    assert len([n for n in names if n.endswith(".mp4")]) == 2


def test_cancel_keeps_what_was_made_and_the_hosted_task_ids(novita):
    manager = batch.BatchManager()
    novita.stuck = True  # every job stays processing until we cancel
    made = manager.create([EXAMPLES / "chelsea.png", EXAMPLES / "rocket.jpg"], "novita", {}, visitor="v-cancel")
    wait_for(lambda: all(i.task_id for i in made.items), 20, "both tasks submitted")
    made.cancel()
    assert made.wait(20)
    assert made.state == "cancelled" and [i.status for i in made.items] == ["cancelled", "cancelled"]
    assert all(f"resume it with task id {i.task_id}" in i.error for i in made.items)
    rows, _, _ = _manifest(made.zip_path)
    assert [r["task_id"] for r in rows] == [i.task_id for i in made.items]


# ---- local: cancel, page close, restart ---------------------------------------------


def test_cancel_mid_batch_keeps_what_was_made_locally(tiny_model):
    manager = batch.BatchManager()
    made = manager.create([EXAMPLES / "chelsea.png"] * 6, "local", TINY | {"num_inference_steps": 12},
                          template="{photo}-{index}")
    wait_for(lambda: made.counts()["made"] >= 1, 120, "the first video")
    made.cancel()
    assert made.wait(60)
    counts = made.counts()
    assert counts["made"] >= 1 and counts["cancelled"] >= 1 and counts["made"] + counts["cancelled"] == 6
    rows, _, names = _manifest(made.zip_path)
    kept = [r["output"] for r in rows if r["status"] == "made"]
    assert kept and sorted(kept) == sorted(n for n in names if n.endswith(".mp4"))
    assert rows[0]["output"] == "chelsea-1.mp4"


def test_a_batch_told_to_keep_going_outlives_its_page(tiny_model, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    manager = batch.BatchManager()
    made = manager.create([EXAMPLES / "chelsea.png"] * 2, "local", TINY | {"num_inference_steps": 6},
                          owner="page-1", keep_going=True)
    assert manager.page_closed("page-1") == 0
    assert made.wait(120)
    again = manager.get(made.id)  # the reopened page asks by the id its browser kept
    assert again is made and again.state == "done" and again.counts()["made"] == 2
    assert Path(again.snapshot()["zip"]).is_file()


def test_on_a_space_a_batch_ends_with_its_page(tiny_model, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/svd-studio")
    manager = batch.BatchManager()
    made = manager.create([EXAMPLES / "chelsea.png"] * 4, "local", TINY | {"num_inference_steps": 12},
                          owner="page-2", keep_going=True)
    assert made.keep_going is False
    wait_for(lambda: made.counts()["running"] == 1, 60, "the first photo to start")
    assert manager.page_closed("page-2") == 1
    assert made.wait(60)
    assert made.state == "cancelled" and made.counts()["cancelled"] >= 3


def test_a_restart_marks_unfinished_batches_stopped_with_what_was_made(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "lasting"))
    made = batch.BatchManager().create([EXAMPLES / "chelsea.png", EXAMPLES / "rocket.jpg"], "local", TINY)
    assert made.wait(120)
    state = made.folder / batch.STATE  # as a crash mid-batch leaves it: the second photo still running
    data = json.loads(state.read_text())
    data["state"], data["items"][1]["status"] = "running", "running"
    state.write_text(json.dumps(data))
    restarted = batch.BatchManager()
    assert restarted.recover() == 1
    found = restarted.get(made.id)
    assert found is not None and found.state == "stopped"
    assert [i.status for i in found.items] == ["made", "cancelled"]
    assert found.items[1].error == "The server restarted before this photo was made."
    rows, _, names = _manifest(found.zip_path)
    assert [r["status"] for r in rows] == ["made", "cancelled"] and found.items[0].output in names


def test_preset_b_may_be_one_this_browser_keeps(tiny_model, monkeypatch):
    """On a Space saved presets live in each browser: the batch's second preset may be one."""
    from orchestration import presets
    from orchestration.batch_intake import Photo

    monkeypatch.setenv("SHARED_PRESETS", "0")
    mine = presets.keep([], presets.save("Slow drift B", {"motion_bucket_id": 33}, mine=[]))
    photos = [Photo("chelsea.png", EXAMPLES / "chelsea.png")]
    items = batch.plan(photos, "local", {"motion_bucket_id": 127}, preset_b="Slow drift B", mine=mine,
                       seed_per_photo=False)
    assert [(i.preset, i.params["motion_bucket_id"]) for i in items] == [("settings", 127), ("Slow drift B", 33)]
    with pytest.raises(BatchRefused) as info:  # another browser does not have it
        batch.plan(photos, "local", {}, preset_b="Slow drift B")
    said = str(info.value)
    assert "preset_b must be one of this studio's presets" in said and "got 'Slow drift B'" in said
