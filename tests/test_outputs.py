"""The output folder stays bounded: the sweeper removes old job folders, oldest first, by
age and by total size, and never a busy one, a symlink's target or anything that is not a
job folder. Everything is checked on a real folder with files of known sizes and times.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import pytest

from studio import outputs
from orchestration import service
from studio.errors import BadSetting
from studio.video import probe

KB = 1024
NOW = time.time()


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OUTPUT_DIR is a fresh folder with nothing to remove until a test sets a limit."""
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "owner"))
    monkeypatch.delenv("OUTPUT_MAX_MB", raising=False)
    monkeypatch.delenv("OUTPUT_MAX_AGE_MINUTES", raising=False)
    folder = outputs.run_dir()
    assert folder == (tmp_path / "owner").resolve() / "svd-studio" and folder.is_dir()
    return folder


def old_job(root: Path, name: str, size: int, age_s: float) -> Path:
    """A job folder as an earlier run left it: one file of ``size`` random bytes, last
    touched ``age_s`` seconds ago."""
    folder = root / f"20240101-000000-{name}"
    folder.mkdir()
    video = folder / "video.mp4"
    video.write_bytes(os.urandom(size))
    touch(video, age_s)
    touch(folder, age_s)
    return folder


def touch(path: Path, age_s: float) -> None:
    os.utime(path, (NOW - age_s, NOW - age_s), follow_symlinks=False)


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_output_dir_is_a_subfolder_of_the_owners_folder_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "a" / "b"))
    assert outputs.run_dir() == (tmp_path / "a" / "b" / "svd-studio").resolve()
    assert (tmp_path / "a" / "b" / "svd-studio").is_dir()
    monkeypatch.delenv("OUTPUT_DIR")
    temp = outputs.run_dir()  # no OUTPUT_DIR: this run's own temp folder (removed at exit)
    assert temp.name.startswith("svd-studio-") and temp.parent == Path(tempfile.gettempdir()).resolve()


def test_size_cap_removes_oldest_first_but_never_the_busy_one(root, tmp_path, monkeypatch, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.bin").write_bytes(b"x" * (500 * KB))
    touch(outside / "precious.bin", 50_000)
    busy = old_job(root, "0001-local", 300 * KB, 5000)  # the oldest of all
    b = old_job(root, "0002-local", 300 * KB, 4000)
    c = old_job(root, "0003-novita", 300 * KB, 3000)
    d = old_job(root, "0004-local", 300 * KB, 2000)
    e = old_job(root, "0005-local", 200 * KB, 1000)
    (b / "link").symlink_to(outside / "precious.bin")  # removed with b; its target must not be
    touch(b / "link", 4000)
    touch(b, 4000)
    (root / "20200101-000000-0009-local").symlink_to(outside)  # looks like a very old job; it is a link
    (root / "presets").mkdir()
    (root / "presets" / "calm.json").write_text("{}")
    (root / "file-removed.png").write_bytes(b"png")
    for special in ("presets/calm.json", "presets", "file-removed.png"):
        touch(root / special, 90_000)
    link_size = os.lstat(b / "link").st_size
    caplog.set_level(logging.INFO, logger="studio.outputs")

    with outputs.hold(busy / "video.mp4") as held:
        assert held == busy and outputs.is_busy(busy)
        monkeypatch.setenv("OUTPUT_MAX_MB", "1")  # 1024 KB; all five jobs are 1400 KB
        swept = outputs.sweep()
    assert not outputs.is_busy(busy)

    # 1400 KB - b - c = 800 KB <= 1024 KB: d and e stay; the busy one counts but stays.
    assert swept == outputs.Swept(removed=(b.name, c.name), freed=600 * KB + link_size)
    assert names(root) == sorted([busy.name, d.name, e.name, "20200101-000000-0009-local", "presets",
                                  "file-removed.png"])
    assert (outside / "precious.bin").read_bytes() == b"x" * (500 * KB)
    assert (root / "presets" / "calm.json").read_text() == "{}"
    assert [r.getMessage() for r in caplog.records if r.name == "studio.outputs"] == [
        "Output sweep: removed 2 job folder(s), 0.6 MB freed (limits: 240 minutes, 1 MB)"]

    # Released (and its short grace over), the oldest goes first on the next sweep that needs room.
    monkeypatch.setenv("OUTPUT_MAX_MB", "0.5")
    assert outputs.sweep().removed == (d.name,)  # in its grace, the just-released one still counts but stays
    monkeypatch.setenv("OUTPUT_MAX_MB", "0.25")
    assert outputs.sweep(now=time.time() + outputs.GRACE_S + 1).removed == (busy.name,)
    assert names(root) == sorted([e.name, "20200101-000000-0009-local", "presets", "file-removed.png"])
    caplog.clear()
    assert outputs.sweep() == outputs.Swept()  # 200 KB left, under 256 KB: nothing, and nothing logged
    assert caplog.records == []


def test_age_limit_uses_when_a_job_was_last_touched(root, monkeypatch):
    very_old = old_job(root, "0001-local", 10 * KB, 5 * 3600)
    old = old_job(root, "0002-local", 10 * KB, 2 * 3600)
    recent = old_job(root, "0003-local", 10 * KB, 30 * 60)
    rewritten = old_job(root, "0004-local", 10 * KB, 3 * 3600)
    touch(rewritten / "video.mp4", 60)  # the folder is old, but a file in it changed a minute ago
    held = old_job(root, "0005-local", 10 * KB, 6 * 3600)
    monkeypatch.setenv("OUTPUT_MAX_AGE_MINUTES", "60")
    with outputs.hold(held):
        swept = outputs.sweep(now=NOW)
    assert swept.removed == (very_old.name, old.name) and swept.freed == 20 * KB
    assert names(root) == sorted([recent.name, rewritten.name, held.name])
    # Default age (240 minutes): the 6-hour-old job goes once nobody holds it (and its grace is over).
    monkeypatch.delenv("OUTPUT_MAX_AGE_MINUTES")
    assert outputs.sweep(now=time.time() + outputs.GRACE_S + 1).removed == (held.name,)  # past its grace


def test_a_new_job_folder_is_busy_until_released_then_kept_for_a_grace(root, monkeypatch):
    stale = old_job(root, "0001-local", 10 * KB, 600)
    monkeypatch.setenv("OUTPUT_MAX_MB", "0")
    folder = outputs.job_dir("local")  # sweeps first: the stale job goes
    assert folder.parent == root and folder.is_dir() and not stale.exists()
    assert outputs.is_busy(folder)
    (folder / "video.mp4").write_bytes(os.urandom(KB))
    assert outputs.sweep().removed == ()
    outputs.release(folder)
    assert not outputs.is_busy(folder)
    assert outputs.sweep().removed == ()  # the page still makes its poster and GIF
    assert outputs.sweep(now=time.time() + outputs.GRACE_S + 1).removed == (folder.name,)
    assert names(root) == []


def test_a_new_job_makes_room_for_itself_so_the_folder_ends_under_the_cap(root, monkeypatch):
    jobs = [old_job(root, f"000{i}-novita", 100 * KB, 5000 - i * 1000) for i in range(1, 6)]  # oldest first
    monkeypatch.setenv("OUTPUT_MAX_MB", str(550 / 1024))  # 550 KB; the five take 500 KB
    assert outputs.sweep().removed == ()  # under the cap: nothing goes, but their sizes are known now
    folder = outputs.job_dir("novita")  # a typical job here is 100 KB: 500 + 100 > 550, so the oldest goes
    assert not jobs[0].exists() and all(job.exists() for job in jobs[1:])
    (folder / "video.mp4").write_bytes(os.urandom(100 * KB))
    outputs.release(folder)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total == 500 * KB <= 550 * KB


def test_job_folders_are_unique_and_sort_by_time(root):
    made = [outputs.job_dir("local") for _ in range(3)]
    assert len(set(made)) == 3 and sorted(made) == made
    assert all(outputs.is_busy(f) for f in made)
    for f in made:
        outputs.release(f)
    odd = outputs.job_dir("a/../b")
    # One name part, whatever the backend says, and 128 random bits nobody can guess.
    assert odd.parent == root and re.fullmatch(r"\d{8}-\d{6}-\d{4,}-a_\.\._b-[0-9a-f]{32}", odd.name)
    outputs.release(odd)


def test_the_sweeper_still_finds_and_ages_the_unguessable_folders(root, monkeypatch):
    folder = outputs.job_dir("local")
    (folder / "video.mp4").write_bytes(os.urandom(10 * KB))
    outputs.release(folder)
    monkeypatch.setenv("OUTPUT_MAX_AGE_MINUTES", "1")
    assert outputs.sweep(now=time.time() + 30).removed == ()  # young, and just released
    assert outputs.sweep(now=time.time() + 120).removed == (folder.name,) and not folder.exists()


def test_concurrent_jobs_are_never_swept_while_busy(root, monkeypatch):
    monkeypatch.setenv("OUTPUT_MAX_MB", "0")
    lost: list[Path] = []
    stop = threading.Event()

    def sweeping() -> None:
        while not stop.is_set():
            outputs.sweep()

    def job() -> None:
        for _ in range(20):
            folder = outputs.job_dir("local")
            (folder / "video.mp4").write_bytes(os.urandom(4 * KB))
            time.sleep(0.001)
            if not (folder / "video.mp4").is_file():
                lost.append(folder)
            outputs.release(folder)

    sweeper = threading.Thread(target=sweeping)
    sweeper.start()
    workers = [threading.Thread(target=job) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    sweeper.join()
    assert lost == []
    assert len(list(root.iterdir())) == 120  # all released within the grace: kept for now
    outputs.sweep(now=time.time() + outputs.GRACE_S + 1)
    assert names(root) == []


def test_is_output_refuses_everything_outside_the_folder(root, tmp_path):
    job = old_job(root, "0001-local", KB, 10)
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (root / "escape").symlink_to(tmp_path)
    assert outputs.is_output(job / "video.mp4")
    assert not outputs.is_output(secret)
    assert not outputs.is_output(root / "escape" / "secret.txt")  # a link out of the folder is not ours
    assert not outputs.is_output(root / ".." / "secret.txt")
    assert not outputs.is_output("/etc/passwd")
    with outputs.hold(secret) as held:  # an upload elsewhere holds nothing and is never swept
        assert held is None


def test_bad_limits_are_named(root, monkeypatch):
    monkeypatch.setenv("OUTPUT_MAX_MB", "lots")
    with pytest.raises(BadSetting) as err:
        outputs.sweep()
    assert str(err.value) == "OUTPUT_MAX_MB must be a number, 0 or more, got 'lots'."
    monkeypatch.setenv("OUTPUT_MAX_MB", "2.5")
    monkeypatch.setenv("OUTPUT_MAX_AGE_MINUTES", "-1")
    with pytest.raises(BadSetting) as err:
        outputs.limits()
    assert str(err.value) == "OUTPUT_MAX_AGE_MINUTES must be a number, 0 or more, got '-1'."


def test_gradio_cache_follows_the_output_age(monkeypatch):
    monkeypatch.delenv("OUTPUT_MAX_AGE_MINUTES", raising=False)
    assert outputs.gradio_cache() == (3600, 240 * 60)
    monkeypatch.setenv("OUTPUT_MAX_AGE_MINUTES", "1440")
    assert outputs.gradio_cache() == (3600, 86400)
    monkeypatch.setenv("OUTPUT_MAX_AGE_MINUTES", "5")
    assert outputs.gradio_cache() == (3600, 3600)  # never under an hour: a running job still reads its upload


def test_a_running_job_is_not_swept(tiny_model, photo, root, monkeypatch):
    """A sweep with a cap of 0 at every step of a real local job: everything else goes,
    the job's own folder stays, and the job ends with its video."""
    stale = old_job(root, "0001-local", 20 * KB, 60)
    monkeypatch.setenv("OUTPUT_MAX_MB", "0")
    sweeps: list[tuple[str, outputs.Swept]] = []

    def on_progress(fraction: float | None, text: str) -> None:
        decoy = old_job(root, f"{len(sweeps) + 2:04d}-decoy", KB, 60)  # what the sweep must take instead
        sweeps.append((decoy.name, outputs.sweep()))

    params = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2, "seed": 3}
    result = service.generate(photo, "local", params, on_progress=on_progress)
    folder = result.video.parent
    assert not stale.exists()  # the sweep before the job folder was made took it
    assert len(sweeps) >= 3 and all(swept.removed == (decoy,) for decoy, swept in sweeps)
    assert names(root) == [folder.name]
    assert probe(result.video)[:3] == (4, 128, 64)
    assert result.photo == folder / "photo.png" and result.photo.is_file()
    assert not outputs.is_busy(folder)  # service released it when the job returned
    assert outputs.sweep().removed == ()  # within the grace
    assert outputs.sweep(now=time.time() + outputs.GRACE_S + 1).removed == (folder.name,)


def test_api_jobs_are_kept_briefly_and_page_jobs_for_the_full_grace(root, monkeypatch):
    page = outputs.job_dir("novita")
    outputs.release(page)
    with outputs.kept_briefly():
        api = outputs.job_dir("novita")
        outputs.release(api)
    later = outputs.job_dir("novita")
    outputs.release(later)  # back outside: the full grace again
    for folder in (page, api, later):
        (folder / "video.mp4").write_bytes(os.urandom(KB))
    monkeypatch.setenv("OUTPUT_MAX_MB", "0")
    assert outputs.sweep().removed == ()
    assert outputs.sweep(now=time.time() + outputs.BRIEF_GRACE_S + 1).removed == (api.name,)
    assert names(root) == sorted([page.name, later.name])


def test_many_api_jobs_keep_the_folder_under_a_small_cap(photo, root, monkeypatch):
    """Through the launched app: every /generate answer is a whole video, and after each
    one the output folder is under the cap (each job makes room for itself first)."""
    from gradio_client import Client, handle_file

    from tests.conftest import launched_studio
    from tests.fakes import FakeNovita

    monkeypatch.setattr(outputs, "BRIEF_GRACE_S", 0.3)  # shorter than one job, so each job may sweep the last
    with FakeNovita(api_key="nv-cap", job_seconds=0.6, queued_polls=0, processing_polls=0) as nv, \
            launched_studio({"NOVITA_BASE_URL": nv.base_url, "NOVITA_API_KEY": "nv-cap", "BACKENDS": "novita",
                             "SPACE_ID": None, "HOSTED_LIMIT_PER_HOUR": None}) as url:
        client = Client(url, verbose=False)

        def make(seed: int) -> Path:
            video, used = client.predict(handle_file(str(photo)), "novita", api_name="/generate", seed=seed)
            assert used["seed"] == seed and probe(video)[0] > 0  # a whole video reached the caller
            return Path(video)

        make(1)
        one_job = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        cap = 3.5 * one_job
        monkeypatch.setenv("OUTPUT_MAX_MB", repr(cap / outputs.MB))
        for seed in range(2, 10):
            make(seed)
            total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
            assert total <= cap, f"{total} bytes after job {seed}, over the cap of {cap:.0f}"
        assert len([p for p in root.iterdir() if p.is_dir()]) == 3
        client.close()
