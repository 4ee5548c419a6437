"""Strangers on one public page stay apart: files, handles and uploads.

A visitor makes a video in a real browser (photo, video, poster and GIF end up in a job
folder); a stranger, a second client with its own session, knows only what its own page
and its own answers show. It must not be able to fetch any of the visitor's files, even
with their exact server paths in hand, and nothing it sees names the visitor's folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - depends on the machine
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

from studio import outputs  # noqa: E402
from tests.browser_helpers import generate, select, studio_page, upload  # noqa: E402
from tests.conftest import EXAMPLES, launched_demo  # noqa: E402
from tests.fakes import FakeModelsLab  # noqa: E402

KEY = "sk-strangers-canary-77a1"
WAIT_MS = 60_000  # the machine may be busy: a page event can take seconds


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """A public-Space configuration: SPACE_ID set, hosted jobs on a fake ModelsLab."""
    with FakeModelsLab(api_key=KEY, processing_polls=1, eta=1) as ml:
        env = {"MODELSLAB_BASE_URL": ml.base_url, "MODELSLAB_API_KEY": KEY, "SPACE_ID": "someone/svd-studio",
               "OUTPUT_DIR": str(tmp_path_factory.mktemp("outputs"))}
        with launched_demo(env) as (demo, url):
            yield demo, url


def job_folders() -> set[Path]:
    return {p for p in outputs.run_dir().iterdir() if p.is_dir() and re.match(r"^\d{8}-", p.name)}


def test_a_stranger_cannot_fetch_a_visitors_photo_poster_video_or_gif(space, browser, request):
    _, url = space
    before = job_folders()
    with studio_page(browser, url, request.node.name) as (page, errors):
        select(page, "backend", "ModelsLab")
        upload(page, EXAMPLES / "chelsea.png")
        expect(page.locator("#image img")).to_be_visible(timeout=WAIT_MS)
        assert generate(page).startswith("Done")
        expect(page.locator("#download-gif")).to_be_visible(timeout=60_000)  # the GIF comes just after
        own_src = page.locator("#video video").get_attribute("src")
        page_text = page.content()
        assert not errors

    (folder,) = job_folders() - before
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    suffixes = {p.suffix for p in files.values()}
    assert {"photo.png", "poster.png"} <= set(files) and {".mp4", ".gif"} <= suffixes, sorted(files)
    assert re.fullmatch(r".+-[0-9a-f]{32}", folder.name)  # 128 random bits in the name

    # The visitor's own page plays its video from Gradio's cache copy, which names no server folder.
    assert own_src and httpx.get(url.rstrip("/") + own_src if own_src.startswith("/") else own_src).status_code == 200
    assert str(outputs.run_dir()) not in page_text and folder.name not in page_text

    # A stranger with the exact paths still gets nothing, by any spelling of the file route.
    with httpx.Client(base_url=url) as stranger:
        for path in files.values():
            for asked in (f"gradio_api/file={path}", f"gradio_api/file={quote(str(path))}",
                          f"gradio_api/file/{path}", f"file={path}",
                          f"gradio_api/file={outputs.run_dir()}/../{outputs.run_dir().name}/{folder.name}/{path.name}"):
                answer = stranger.get(asked, follow_redirects=True)
                assert answer.status_code in (403, 404), (asked, answer.status_code)
                assert b"ftyp" not in answer.content[:16] and b"GIF8" not in answer.content[:8]

        # What the stranger's own page and its own job's answer show never name the visitor's folder.
        seen = stranger.get("/").text + stranger.get("config").text
        event = stranger.post("gradio_api/call/read_settings", json={"data": [None]}).json()["event_id"]
        seen += stranger.get(f"gradio_api/call/read_settings/{event}", timeout=60).text
        assert folder.name not in seen and str(outputs.run_dir()) not in seen


def test_a_history_entry_carries_handles_and_the_server_trusts_no_path(space, tmp_path):
    from backends.base import Result
    from ui import entries as history

    folder = outputs.job_dir("local")
    try:
        (folder / "video.mp4").write_bytes(b"\0\0\0\x18ftypisom")
        (folder / "photo.png").write_bytes((EXAMPLES / "chelsea.png").read_bytes())
        item = history.entry(Result(video=folder / "video.mp4", used={"backend": "local", "seed": 1},
                                    photo=folder / "photo.png"))
    finally:
        outputs.release(folder)
    stored = json.dumps(item)
    assert str(outputs.run_dir()) not in stored and item["video"] == f"{folder.name}/video.mp4"
    assert history.file(item, "video") == folder / "video.mp4" and history.photo(item) == str(folder / "photo.png")

    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (folder / "link.mp4").symlink_to(outside)
    neighbour = folder.name[:-1] + ("1" if folder.name.endswith("0") else "0")  # one bit off
    for edited in (str(folder / "video.mp4"), "/etc/passwd", f"{folder.name}/../{folder.name}/video.mp4",
                   f"{folder.name}/link.mp4", f"{neighbour}/video.mp4",
                   f"{folder.name}/",
                   f"../{folder.name}/video.mp4", f"{folder.name}/.hidden", None, 42):
        assert history.file(item | {"video": edited}, "video") is None, edited
        assert not history.available(item | {"video": edited})


def preset_listed(page, name: str) -> bool:
    """Whether the preset dropdown offers ``name`` (the list is open once a built-in shows)."""
    box = page.locator("#preset input[role=combobox]")
    box.click()
    expect(page.get_by_role("option", name="Balanced", exact=True)).to_be_visible(timeout=WAIT_MS)
    listed = page.get_by_role("option", name=name, exact=True).count() > 0
    box.press("Escape")
    return listed


def test_saved_presets_stay_in_their_own_browser(space, browser, request):
    import os

    _, url = space
    owner_folder = Path(os.environ["USER_PRESETS_DIR"])
    before = sorted(owner_folder.glob("*.json")) if owner_folder.is_dir() else []
    name = "Webhook of mine"
    with studio_page(browser, url, request.node.name + "-a") as (mine, errors):
        expect(mine.locator("#param-motion_bucket_id input[type=number]")).to_have_value("127", timeout=WAIT_MS)
        mine.click("#preset-open")  # the small action beside the preset picker
        mine.locator("#preset-name input, #preset-name textarea").first.fill(name)
        mine.click("#preset-save")
        expect(mine.locator("#preset-note")).to_have_text(
            re.compile(rf"Saved preset {name} \(\d+ settings\)\. It is in the preset list now, kept in this "
                       r"browser only\."), timeout=WAIT_MS)
        assert (sorted(owner_folder.glob("*.json")) if owner_folder.is_dir() else []) == before  # not on disk

        with studio_page(browser, url, request.node.name + "-b") as (stranger, _):  # same address, other browser
            expect(stranger.locator("#param-motion_bucket_id input[type=number]")).to_have_value("127", timeout=WAIT_MS)
            assert preset_listed(stranger, "Balanced")  # the built-ins are everyone's
            assert not preset_listed(stranger, name)

        mine.reload()  # the visitor's own browser keeps it
        expect(mine.locator("#param-motion_bucket_id input[type=number]")).to_have_value("127", timeout=WAIT_MS)
        mine.locator("#preset input[role=combobox]").click()
        expect(mine.get_by_role("option", name=name, exact=True)).to_be_visible(timeout=WAIT_MS)  # after the load
        assert not errors


def test_uploads_are_limited_per_visitor_and_unused_ones_go(space, monkeypatch):
    import time

    from studio import uploads

    _, url = space
    monkeypatch.setenv("UPLOADS_PER_HOUR", "3")
    photo = (EXAMPLES / "chelsea.png").read_bytes()

    def send(address: str) -> httpx.Response:
        return httpx.post(f"{url}gradio_api/upload", headers={"x-forwarded-for": address},
                          files={"files": ("photo.png", photo, "image/png")}, timeout=30)

    kept = [send("203.0.113.50") for _ in range(3)]
    assert [a.status_code for a in kept] == [200, 200, 200]
    fourth = send("203.0.113.50")
    assert fourth.status_code == 429 and fourth.json()["detail"] == (
        "Too many uploads: each visitor may upload 3 times an hour (UPLOADS_PER_HOUR); try again later.")
    assert send("2001:db8:5:6::1").status_code == 200 and send("2001:db8:5:6::2").status_code == 200
    assert send("2001:db8:5:6:ffff::3").status_code == 200
    assert send("2001:db8:5:6::4").status_code == 429  # the same /64: the same visitor
    assert send("203.0.113.51").status_code == 200  # someone else

    path = Path(kept[0].json()[0])
    assert path.is_file()
    monkeypatch.setenv("UPLOAD_MAX_AGE_MINUTES", "10")
    assert path not in uploads.sweep(now=time.time() + 9 * 60) and path.is_file()
    assert path.resolve() in uploads.sweep(now=time.time() + 11 * 60) and not path.exists()
    assert httpx.get(f"{url}gradio_api/file={path}").status_code in (403, 404)
