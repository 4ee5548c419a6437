"""The Batch panel in Chromium: good and bad photos in, a list, a gallery and a ZIP out,
and a reopened page that finds its batch again by the id its browser kept."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("playwright")

from playwright.sync_api import Page, expect  # noqa: E402

from tests.browser_helpers import open_group, set_number, studio_page, wait_ready  # noqa: E402
from tests.conftest import EXAMPLES, launched_demo  # noqa: E402

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def app_url(tiny_model):
    with launched_demo({"SPACE_ID": None}) as (_, url):
        yield url


def _small(page: Page) -> None:
    set_number(page, "width", 64)
    set_number(page, "height", 64)
    set_number(page, "num_frames", 4)
    open_group(page, "Guidance and steps")
    set_number(page, "num_inference_steps", 2)


def test_a_batch_of_good_and_bad_photos_on_the_page(browser, app_url, tmp_path: Path, request):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with studio_page(browser, app_url, request.node.name) as (page, errors):
        wait_ready(page)
        _small(page)
        page.get_by_role("tab", name="Batch").click()
        page.set_input_files("#batch-files input[type=file]",
                             [str(EXAMPLES / "chelsea.png"), str(notes), str(EXAMPLES / "rocket.jpg")])
        expect(page.locator("#batch-files tbody tr")).to_have_count(3)  # every file kept, the text one too
        page.click("#batch-start")
        status = page.locator("#batch-status")
        expect(status).to_contain_text("Done: 2 of 3 made, 1 failed", timeout=TIMEOUT_MS)
        table = page.locator("#batch-table")
        expect(table).to_contain_text("notes.txt: the uploaded file is not an image")
        expect(page.locator("#batch-gallery video, #batch-gallery img")).not_to_have_count(0)
        with page.expect_download() as info:
            page.locator("#batch-zip a").first.click()
        saved = tmp_path / "batch.zip"
        info.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
            names = archive.namelist()
        assert [r["status"] for r in rows] == ["made", "failed", "made"]
        assert rows[0]["output"] in names and rows[2]["output"].startswith("rocket-")
        # The same browser, reopened: the batch comes back from the id in its local storage.
        page.reload()
        page.get_by_role("tab", name="Batch").click()
        expect(page.locator("#batch-status")).to_contain_text("Done: 2 of 3 made", timeout=30_000)
    assert not errors, f"uncaught errors in the page: {errors}"
