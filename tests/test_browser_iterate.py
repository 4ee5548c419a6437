"""Iterating on a video in a real browser: restore a video's settings, sweep a parameter,
reuse a history entry, preview the framing and save a preset.

One studio per module on the tiny local pipeline (real, noisy videos in seconds on the
CPU), one chromium per module and a fresh page (a fresh Gradio session and a fresh
browser storage) per test. Each flow is what a newcomer would do with the page; the
checks read exact texts, decode the files and compare values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - depends on the machine
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

import backends  # noqa: E402
from studio import recipe, video  # noqa: E402
from orchestration import sweep
from tests.browser_helpers import (  # noqa: E402
    ADVANCED, GENERATION_TIMEOUT_MS, download, generate, history_count, json_text, number_box, open_group, select,
    set_number, studio_page, upload, wait_ready,
)
from tests.conftest import EXAMPLES, launched_studio  # noqa: E402
from ui.panels.parameters import NO_PRESET_LABEL  # noqa: E402

EXPECT_MS = 20_000  # for every page answer: the machine may be busy making a video meanwhile
LOCAL = "Local GPU (diffusers)"
SWEEP_BOX = "Try several values side by side"
FINISH_BOX = "Finish: smooth, loop, extend"
RESTORE_BOX = "Restore settings from a video"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def presets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("user-presets")


@pytest.fixture(scope="module")
def app_url(tiny_model, presets_dir):
    """The studio on the tiny local pipeline; saved presets go to a temp folder, and the
    hosted backends have no key (nothing here reaches them)."""
    env = {"USER_PRESETS_DIR": str(presets_dir), "MODELSLAB_API_KEY": None, "NOVITA_API_KEY": None}
    with launched_studio(env) as url:
        yield url


# Every error toast the page shows, as it appears (toasts close by themselves, so a look
# at the end of a flow could miss one).
RECORD_ERRORS = """
window.__studioErrors = [];
new MutationObserver(() => {
    for (const toast of document.querySelectorAll('.toast-body.error')) {
        const text = toast.innerText.trim();
        if (text && !window.__studioErrors.includes(text)) window.__studioErrors.push(text);
    }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture
def page(browser, app_url, request):
    """A fresh page in a fresh browser context; a full-page screenshot at the end, and no
    error toast nor uncaught error allowed during the flow."""
    expect.set_options(timeout=EXPECT_MS)
    toasts: list[str] = []
    try:
        with studio_page(browser, app_url, request.node.name, RECORD_ERRORS) as (pg, errors):
            wait_ready(pg)
            yield pg
            toasts = pg.evaluate("window.__studioErrors")
    finally:
        expect.set_options(timeout=None)  # back to Playwright's default for other modules
    assert not errors, f"uncaught errors in the page: {errors}"
    assert not toasts, f"the page showed errors: {toasts}"


# --- helpers ----------------------------------------------------------------------------------


def quick_settings(page: Page) -> None:
    """Settings that make the tiny local pipeline quick: 128x64, 4 frames, 2 steps."""
    set_number(page, "width", 128)
    set_number(page, "height", 64)
    set_number(page, "num_frames", 4)
    open_group(page, "Guidance and steps")
    set_number(page, "num_inference_steps", 2)


def add_photo(page: Page, name: str = "rocket.jpg") -> None:
    upload(page, EXAMPLES / name)
    expect(page.locator("#image img")).to_be_visible()


def randomize_box(page: Page):
    open_group(page, "Guidance and steps")
    return page.locator("#randomize input[type=checkbox]")


def fix_seed(page: Page, seed: int) -> None:
    """Turn 'Randomize seed' off and type a seed, as a person wanting a repeatable video does."""
    box = randomize_box(page)
    box.uncheck()
    expect(box).not_to_be_checked()
    set_number(page, "seed", seed)


def number(page: Page, name: str) -> float:
    return float(number_box(page, name).input_value())


def open_visible_groups(page: Page) -> None:
    """Open every parameter group the current backend shows (a closed one has no controls in the DOM)."""
    open_group(page, ADVANCED)  # every group of settings is inside it


def control_value(page: Page, name: str) -> object:
    """What the control for ``name`` shows: a number, a dropdown's text, a checkbox's state or a text."""
    control = page.locator(f"#param-{name}")
    expect(control).to_be_visible()
    if control.locator("input[type=number]").count():
        text = control.locator("input[type=number]").input_value()
        return float(text) if text != "" else None
    if control.locator("input[role=combobox]").count():
        return control.locator("input[role=combobox]").input_value()
    if control.locator("input[type=checkbox]").count():
        return control.locator("input[type=checkbox]").is_checked()
    return control.locator("textarea, input").first.input_value()


def shown_controls(page: Page) -> dict[str, object]:
    """Every visible control's value, with the backend, the model and the seed switch."""
    open_visible_groups(page)
    ids = page.locator("[id^=param-]").evaluate_all("els => els.filter(e => e.offsetParent !== null).map(e => e.id)")
    shown: dict[str, object] = {i.removeprefix("param-"): control_value(page, i.removeprefix("param-")) for i in ids}
    shown["(backend)"] = page.locator("#backend input[role=combobox]").input_value()
    shown["(model)"] = page.locator("#model input[role=combobox]").input_value()
    shown["(randomize)"] = randomize_box(page).is_checked()
    return shown


def same(shown: object, wanted: object) -> bool:
    if isinstance(wanted, bool) or not isinstance(wanted, (int, float)):
        return shown == wanted
    return isinstance(shown, float) and abs(shown - wanted) < 1e-9


def restore_from(page: Page, path: Path) -> None:
    """Drop a file on the restore box; a file already there is cleared first, as a person would."""
    open_group(page, RESTORE_BOX)
    box = page.locator("#restore-file")
    box.scroll_into_view_if_needed()
    clear = box.locator("button[aria-label=Clear]")
    if clear.count():
        clear.click()
    expect(box.locator("input[type=file]")).to_have_count(1)
    page.set_input_files("#restore-file input[type=file]", str(path))


def videos_state(page: Page, selector: str) -> list[dict]:
    """src, paused, currentTime, duration and readiness of each video under ``selector``, read at one instant."""
    return page.evaluate(
        """sel => [...document.querySelectorAll(sel)].map(v => ({
            src: v.currentSrc, paused: v.paused, time: v.currentTime, duration: v.duration,
            ready: v.readyState, muted: v.muted, loop: v.loop}))""",
        selector,
    )


def history_thumbnail(page: Page, index: int):
    """The history gallery's item ``index``, newest first."""
    return page.locator("#history .thumbnail-item").nth(index)


def used_values(page: Page) -> dict[str, str]:
    """The `Parameters used` JSON as name -> compact JSON text of its value."""
    return dict(re.findall(r'"(\w+)":("[^"]*"|[^,{}"]+)', json_text(page, "used-json")))


# --- flows ------------------------------------------------------------------------------------


def test_dropping_a_video_restores_its_settings(page: Page, tmp_path: Path):
    add_photo(page)
    quick_settings(page)
    set_number(page, "motion_bucket_id", 33)
    set_number(page, "noise_aug_strength", 0.07)
    set_number(page, "fps", 5)
    fix_seed(page, 1234)
    status = generate(page)
    assert status.startswith("Done") and "seed 1234" in status, status
    made = download(page, "download-mp4", tmp_path)
    stored = recipe.read(made)
    assert (stored["motion_bucket_id"], stored["noise_aug_strength"], stored["seed"]) == (33, 0.07, 1234), stored
    assert (stored["fps"], stored["width"], stored["height"], stored["num_frames"]) == (5, 128, 64, 4), stored
    backend, values = recipe.settings(stored)
    assert backend == "local"

    page.reload()  # a new session: every control back at its default
    wait_ready(page)
    assert number(page, "motion_bucket_id") == 127 and number(page, "fps") == 7
    assert randomize_box(page).is_checked()
    assert number_box(page, "seed").input_value() == ""

    restore_from(page, made)
    note = page.locator("#restore-note")
    expect(note).to_have_text(f"Restored {len(values)} settings for {LOCAL} (model {values['model']}, seed 1234).",
                              timeout=60_000)
    shown = shown_controls(page)
    wrong = {n: (shown.get(n), v) for n, v in values.items() if n != "model" and not same(shown.get(n), v)}
    assert not wrong, f"controls that do not show the video's settings (shown, stored): {wrong}"
    assert shown["(randomize)"] is False, "a restored seed must be repeated: 'Randomize seed' should be off"
    assert shown["(backend)"] == LOCAL
    assert values["model"] == "custom" and "LOCAL_SVD_MODEL" in str(shown["(model)"]), shown["(model)"]

    foreign = tmp_path / "holiday.mp4"
    frames = [np.full((64, 64, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    video.write_mp4(frames, foreign, fps=4)
    restore_from(page, foreign)
    expect(note).to_have_text("holiday.mp4 was not made by SVD Studio, so it carries no settings to restore.",
                              timeout=60_000)
    assert shown_controls(page) == shown, "a foreign video must leave every control as it was"


def test_a_sweep_grid_appears_and_plays_together(page: Page, tmp_path: Path):
    add_photo(page)
    quick_settings(page)
    set_number(page, "fps", 2)  # 4 frames last 2 s: time enough to see them play in step
    fix_seed(page, 77)
    history_before = history_count(page)

    open_group(page, SWEEP_BOX)
    select(page, "sweep-parameter", "motion_bucket_id")
    values_box = page.locator("#sweep-values input, #sweep-values textarea").first
    local = backends.get_backend("local")
    suggested = ", ".join(f"{v:g}" for v in sweep.suggest(local, "custom", "motion_bucket_id"))
    expect(values_box).to_have_value(suggested)  # the page suggests values for the parameter picked
    values_box.fill("20, 120, 220")
    page.click("#sweep-run")

    status = page.locator("#sweep-status")
    expect(status).to_contain_text("3 of 3 videos made", timeout=3 * GENERATION_TIMEOUT_MS)
    labels = [f"motion_bucket_id = {v}" for v in (20, 120, 220)]
    cells = page.locator("[id^=sweep-cell-]:visible")
    expect(cells).to_have_count(3)
    assert cells.evaluate_all("els => els.map(e => e.id)") == ["sweep-cell-0", "sweep-cell-1", "sweep-cell-2"]
    for i, label in enumerate(labels):
        expect(page.locator(f"#sweep-caption-{i}")).to_have_text(label)
        expect(page.locator(f"#sweep-open-{i}")).to_be_visible()
    expect(page.locator("#sweep-cell-3")).to_be_hidden()

    grid_videos = "#sweep-grid video"
    page.wait_for_function(
        "sel => { const v = [...document.querySelectorAll(sel)];"
        " return v.length === 3 && v.every(x => x.readyState >= 2 && x.duration > 0 && !x.paused); }",
        arg=grid_videos, timeout=30_000,
    )
    first = videos_state(page, grid_videos)
    assert all(v["src"] and v["muted"] and v["loop"] for v in first), first
    assert len({v["src"] for v in first}) == 3, "three different videos"
    page.wait_for_timeout(400)
    later = videos_state(page, grid_videos)
    assert all(not v["paused"] for v in later), later
    assert all(a["time"] != b["time"] for a, b in zip(first, later, strict=True)), (first, later)

    # Put them out of step (one paused, one ahead), then ask for them together again.
    page.evaluate("sel => { const v = [...document.querySelectorAll(sel)];"
                  " v[0].pause(); v[1].currentTime = v[1].duration / 2; }", grid_videos)
    page.click("#sweep-play")
    page.wait_for_function("sel => [...document.querySelectorAll(sel)].every(v => !v.paused)", arg=grid_videos)
    together = videos_state(page, grid_videos)
    times = [v["time"] for v in together]
    assert max(times) - min(times) < 0.3, f"the grid should restart together: {together}"
    assert max(times) < together[0]["duration"] / 2, f"every video should have restarted: {together}"
    page.wait_for_timeout(300)
    assert all(not v["paused"] for v in videos_state(page, grid_videos))

    page.click("#sweep-open-1")
    expect(page.locator("#status")).to_have_text(f"Showing {labels[1]} from the sweep.")
    main = page.locator("#video video")
    expect(main).to_have_attribute("src", re.compile(r"\.mp4$"))
    assert main.get_attribute("src").rsplit("/", 2)[-2:] == first[1]["src"].rsplit("/", 2)[-2:]
    opened = recipe.read(download(page, "download-mp4", tmp_path))
    assert (opened["motion_bucket_id"], opened["seed"]) == (120, 77), opened
    assert '"motion_bucket_id":120' in json_text(page, "used-json")
    assert history_count(page) == history_before + 3
    captions = page.locator("#history .caption-label").all_inner_texts()
    assert sorted(captions[:3]) == sorted(labels), captions  # newest first, in the order they finished


def test_history_reuse_and_again_with_a_new_seed(page: Page):
    add_photo(page)
    quick_settings(page)
    set_number(page, "motion_bucket_id", 50)
    generate(page)  # the next Generate is taken at once: the GIF is made in a step of its own
    first_seed = int(number_box(page, "seed").input_value())
    assert used_values(page)["seed"] == str(first_seed)
    set_number(page, "motion_bucket_id", 150)
    generate(page)
    second_seed = int(number_box(page, "seed").input_value())
    assert randomize_box(page).is_checked()
    assert history_count(page) == 2

    history_thumbnail(page, 1).click()  # the older one: the gallery shows the newest first
    caption = f"local · seed {first_seed}"
    expect(page.locator("#status")).to_have_text(f"Showing an earlier video: {caption}")
    expect(page.locator("#history-note")).to_have_text(f"Selected: {caption}")
    assert used_values(page)["motion_bucket_id"] == "50"
    expect(page.locator("#history-reuse")).to_be_enabled()
    expect(page.locator("#history-download")).to_be_visible()

    page.click("#history-reuse")
    expect(page.locator("#history-note")).to_contain_text(f"seed {first_seed}).")
    expect(page.locator("#history-note")).to_contain_text("The photo is back too.")
    expect(number_box(page, "motion_bucket_id")).to_have_value("50")
    expect(number_box(page, "seed")).to_have_value(str(first_seed))
    expect(randomize_box(page)).not_to_be_checked()
    assert (number(page, "width"), number(page, "height"), number(page, "num_frames")) == (128, 64, 4)

    page.click("#history-again")
    expect(page.locator("#history .thumbnail-item")).to_have_count(3, timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#status")).to_contain_text("Done", timeout=GENERATION_TIMEOUT_MS)
    used = used_values(page)
    assert used["motion_bucket_id"] == "50", used
    assert int(used["seed"]) not in (first_seed, second_seed), used
    expect(number_box(page, "seed")).to_have_value(used["seed"])
    expect(randomize_box(page)).to_be_checked()

    page.reload()
    wait_ready(page)
    thumbs = page.locator("#history .thumbnail-item")
    expect(thumbs).to_have_count(3)
    captions = page.locator("#history .caption-label").all_inner_texts()
    assert captions == [f"local · seed {s}" for s in (used["seed"], second_seed, first_seed)], captions
    page.locator("#history").scroll_into_view_if_needed()
    images = page.locator("#history .thumbnail-item img")
    expect(images).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#history .thumbnail-item img')]"
        ".every(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)", timeout=30_000,
    )


def test_framing_preview_follows_the_frame_size(page: Page):
    open_group(page, "Size and output")  # the preview sits with the size, in the Advanced box
    caption = page.locator("#framing-caption")
    expect(caption).to_have_text("Add a photo to see how it will be framed.")
    add_photo(page)
    expect(caption).to_have_text(f"{LOCAL} gets this frame: 1024x576 (crop).", timeout=60_000)
    picture = page.locator("#framing img")
    expect(picture).to_be_visible()
    page.wait_for_function("i => i.complete && i.naturalWidth === 1024 && i.naturalHeight === 576",
                           arg=picture.element_handle())

    sizes = page.locator("#frame-size")
    expect(sizes).to_be_visible()
    sizes.locator("label").filter(has_text="portrait 9:16").click()
    expect(number_box(page, "width")).to_have_value("576")
    expect(number_box(page, "height")).to_have_value("1024")
    expect(caption).to_have_text(f"{LOCAL} gets this frame: 576x1024 (crop).", timeout=60_000)
    page.wait_for_function("i => i.complete && i.naturalWidth === 576 && i.naturalHeight === 1024",
                           arg=picture.element_handle())

    set_number(page, "width", 320)  # a size of one's own moves the frame too, once the box is left
    number_box(page, "width").press("Tab")
    expect(caption).to_have_text(f"{LOCAL} gets this frame: 320x1024 (crop).", timeout=60_000)


def test_saving_a_preset_and_applying_it_again(page: Page, presets_dir: Path):
    name = "Slow drift test"
    set_number(page, "motion_bucket_id", 61)
    set_number(page, "noise_aug_strength", 0.11)
    page.click("#preset-open")  # the small action beside the preset picker
    page.locator("#preset-name input, #preset-name textarea").first.fill(name)
    page.click("#preset-save")
    note = page.locator("#preset-note")
    expect(note).to_have_text(re.compile(rf"Saved preset {name} \(\d+ settings\)\. It is in the preset list now, "
                                         r"for this studio's every page\."))
    expect(page.locator("#preset input[role=combobox]")).to_have_value(name)
    saved = list(presets_dir.glob("*.json"))
    assert len(saved) == 1, saved
    stored = json.loads(saved[0].read_text())
    assert stored["name"] == name, stored
    assert (stored["parameters"]["motion_bucket_id"], stored["parameters"]["noise_aug_strength"]) == (61, 0.11)
    assert "seed" not in stored["parameters"], "'Randomize seed' is on: a preset must not pin a seed"

    select(page, "preset", NO_PRESET_LABEL)
    set_number(page, "motion_bucket_id", 200)
    set_number(page, "noise_aug_strength", 0.5)
    select(page, "preset", name)  # the dropdown lists it
    expect(number_box(page, "motion_bucket_id")).to_have_value("61")
    expect(number_box(page, "noise_aug_strength")).to_have_value("0.11")

    page.reload()  # another page of the same studio lists it too
    wait_ready(page)
    select(page, "preset", name)
    expect(number_box(page, "motion_bucket_id")).to_have_value("61")


# --- finishing ----------------------------------------------------------------------------------


def finish_status(page: Page, start: str, timeout: float = GENERATION_TIMEOUT_MS) -> str:
    expect(page.locator("#status")).to_contain_text(start, timeout=timeout)
    return page.locator("#status").inner_text()


def test_finishing_smooths_loops_and_extends_from_the_page(page: Page, tmp_path: Path):
    add_photo(page)
    quick_settings(page)
    fix_seed(page, 321)
    generate(page)
    open_group(page, FINISH_BOX)
    expect(page.locator("#finish-current")).to_contain_text("Finishing: local · seed 321")
    history_before = history_count(page)

    page.get_by_label("ping-pong (forward, then back)").check()
    page.click("#finish-run")
    status = finish_status(page, "Done: finished · 24 fps · ping-pong")
    assert status.endswith("from local · seed 321"), status
    expect(page.locator("#history .thumbnail-item")).to_have_count(history_before + 1)
    finished = download(page, "download-mp4", tmp_path)
    info = recipe.read(finished)["finish"]
    assert (info["input_frames"], info["loop"], info["output_fps"]) == (4, "pingpong", 24)
    assert video.probe(finished)[0] == info["output_frames"]

    history_thumbnail(page, 1).click()  # back to the original clip: extending continues it
    expect(page.locator("#finish-current")).to_contain_text("Finishing: local · seed 321")
    page.get_by_role("tab", name="Extend").click()
    segments = page.locator("#extend-segments input[type=number]")
    segments.fill("2")
    segments.press("Enter")
    # The click must not race the typed value: the range follows the box once the page has it.
    expect(page.locator("#extend-segments input[type=range]")).to_have_value("2")
    page.click("#extend-run")
    finish_status(page, "Done: extended ×2 · local · seed 321")
    extended = download(page, "download-mp4", tmp_path / "extended")
    assert video.probe(extended)[0] == 4 + 3  # the seam frame once
    assert [s["seed"] for s in recipe.read(extended)["segments"]][0] == 321


def test_cancel_stops_a_long_finishing_at_once(page: Page, tmp_path: Path):
    clip = tmp_path / "long.mp4"
    y, x = np.mgrid[0:576, 0:1024]
    frames = [((x + 40 * i) % 256)[..., None].repeat(3, axis=2).astype(np.uint8) ^ (y % 256)[..., None].astype(
        np.uint8) for i in range(25)]
    video.write_mp4(frames, clip, 8)
    open_group(page, FINISH_BOX)
    page.locator("#finish-upload input[type=file]").set_input_files(str(clip))
    expect(page.locator("#finish-upload")).to_contain_text("long.mp4")
    page.locator("#finish-fps input").fill("60")
    page.locator("#finish-fps input").press("Enter")
    page.click("#finish-run")
    expect(page.locator("#status")).to_contain_text("Interpolating", timeout=60_000)
    page.click("#cancel")
    expect(page.locator("#status")).to_contain_text("Stopped", timeout=10_000)
