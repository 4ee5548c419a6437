"""The page as a newcomer meets it, in Chromium: where things sit, the keyboard, axe-core.

Issue 18's tests. One app per module, launched in-process with the tiny local pipeline
and every backend offered (local, ModelsLab, Novita; no hosted key, so nothing leaves
this machine); a fresh page (its own Gradio session) per test, at the viewport the test
names: a 1366x768 laptop, a 1920x1080 desktop and a 390x844 phone.

The keyboard tests use no click at all between loading the page and the end of the run:
they focus a control (as Tab would) and press keys. Each test leaves a screenshot in
test-artifacts/. ``UPDATE_SCREENSHOTS=1`` makes the README's screenshots test write
into docs/screenshots/ instead of test-artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - depends on the machine
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

from studio import video  # noqa: E402
from tests.browser_helpers import ARTIFACTS, settle, upload  # noqa: E402
from tests.conftest import EXAMPLES, ROOT, launched_studio  # noqa: E402

LOCAL, NOVITA = "Local GPU (diffusers)", "Novita AI"
LAPTOP, DESKTOP, PHONE = (1366, 768), (1920, 1080), (390, 844)
VIEWPORTS = {"laptop": LAPTOP, "desktop": DESKTOP, "phone": PHONE}
SCREENSHOTS = ROOT / "docs" / "screenshots"
RUN_TIMEOUT_MS = 180_000  # a shared 2-core machine can be slow; nothing here asserts on time


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_url(tiny_model) -> Iterator[str]:
    """The studio with every backend offered; local runs the tiny pipeline. No hosted key
    is set, so the hosted backends can be picked and shaped but never called."""
    env = {"BACKENDS": None, "LOCAL_SVD_MODEL": str(tiny_model),
           "MODELSLAB_API_KEY": None, "NOVITA_API_KEY": None}
    with launched_studio(env) as url:
        yield url


@contextlib.contextmanager
def fresh_page(browser, url: str, name: str, size: tuple[int, int] = LAPTOP, theme: str | None = None
               ) -> Iterator[Page]:
    """A fresh page at ``size`` (and ``theme``), loaded and shaped for the local backend;
    fails on any uncaught error in the page; leaves a full-page screenshot in test-artifacts/."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url + (f"?__theme={theme}" if theme else ""))
        # demo.load shapes the page for the first backend: its help line is the sign.
        expect(page.locator("#blurb")).to_contain_text("diffusers", timeout=60_000)
        expect(page.locator("#model input[role=combobox]")).to_have_value(re.compile("LOCAL_SVD_MODEL"))
        settle(page, timeout=60_000)
        yield page
        assert not errors, f"uncaught errors in the page: {errors}"
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            safe = re.sub(r"[^\w.-]+", "_", name)
            page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)
        finally:
            context.close()


def box(page: Page, selector: str) -> dict:
    found = page.locator(selector).bounding_box()
    assert found, f"{selector} is not on the page"
    return found


def in_viewport(page: Page, selector: str) -> bool:
    """Whether the whole of ``selector`` is inside the visible part of the page now (to a
    pixel: scrollIntoView can leave a box a fraction of a pixel above the top)."""
    return page.locator(selector).evaluate(
        """e => { const r = e.getBoundingClientRect();
                  return r.width > 0 && r.height > 0 && r.top >= -1 && r.left >= -1
                         && r.bottom <= window.innerHeight + 1 && r.right <= window.innerWidth + 1; }""")


def focus(page: Page, selector: str) -> None:
    """Put the keyboard focus on ``selector`` (what Tab reaches), without a click."""
    page.locator(selector).focus()
    assert page.evaluate("s => document.activeElement === document.querySelector(s)", selector), selector


def key_pick(page: Page, elem_id: str, label: str) -> None:
    """Pick ``label`` in the dropdown ``#elem_id`` with the keyboard alone: focus its input,
    type the label, press Enter; then wait for the page to be reshaped."""
    combobox = f"#{elem_id} input[role=combobox]"
    focus(page, combobox)
    page.keyboard.press("Control+a")
    page.keyboard.type(label)
    page.keyboard.press("Enter")
    expect(page.locator(combobox)).to_have_value(label)
    settle(page, timeout=60_000)


def options(page: Page, elem_id: str) -> list[str]:
    """The labels the dropdown ``#elem_id`` offers (its list opens on focus; Escape closes it)."""
    focus(page, f"#{elem_id} input[role=combobox]")
    listed = page.locator(f"#{elem_id} li[role=option]")
    expect(listed.first).to_be_attached()
    labels = [o.get_attribute("aria-label") or "" for o in listed.all()]
    page.keyboard.press("Escape")
    return labels


def key_number(page: Page, name: str, value: int) -> None:
    """Type ``value`` into the number box of ``#param-<name>`` by keyboard, committed with Enter."""
    number = page.locator(f"#param-{name} input[type=number]")
    number.focus()
    page.keyboard.press("Control+a")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")
    expect(number).to_have_value(str(value))


def key_open(page: Page, title: str) -> None:
    """Open the accordion whose title starts with ``title`` with Enter on its header."""
    header = page.locator("button.label-wrap").filter(has_text=title)
    if "open" not in (header.get_attribute("class") or "").split():
        header.focus()
        page.keyboard.press("Enter")
    expect(header).to_have_class(re.compile(r"\bopen\b"))


def fast_settings(page: Page, steps: int = 2) -> None:
    """Settings that make the tiny pipeline quick (128x64, 4 frames, ``steps`` steps), by keyboard."""
    key_open(page, "Advanced")
    key_number(page, "width", 128)
    key_number(page, "height", 64)
    key_number(page, "num_frames", 4)
    key_number(page, "num_inference_steps", steps)


def add_photo(page: Page, name: str = "rocket.jpg") -> None:
    upload(page, EXAMPLES / name)
    expect(page.locator("#image img")).to_be_visible()


def run_to_done(page: Page, *, click: bool = False) -> str:
    """Press Generate (Enter on it, or a click that does not scroll) and wait for "Done"."""
    if click:
        page.evaluate("document.querySelector('#generate').click()")
    else:
        focus(page, "#generate")
        page.keyboard.press("Enter")
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=RUN_TIMEOUT_MS)
    return status.inner_text()


def seed_of(status: str) -> str:
    found = re.search(r"seed (\d+)", status)
    assert found, f"#status should name the seed used: {status!r}"
    return found.group(1)


def preset_value(name: str, parameter: str):
    for path in sorted((ROOT / "presets").glob("*.json")):
        data = json.loads(path.read_text())
        if data["name"] == name:
            return data["parameters"][parameter]
    raise AssertionError(f"no preset named {name!r}")


# --- 1. the first view ------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", list(VIEWPORTS), ids=list(VIEWPORTS))
def test_first_view_at_each_size(browser, app_url, viewport):
    width, height = VIEWPORTS[viewport]
    with fresh_page(browser, app_url, f"page-first-view-{viewport}", (width, height)) as page:
        assert page.evaluate("window.scrollY") == 0
        geometry = page.evaluate("() => ({scrollHeight: document.documentElement.scrollHeight, "
                                 "scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth})")
        if viewport != "phone":
            must_show = ["#image", "#param-motion_bucket_id", "#generate"]
            if viewport == "desktop":
                must_show.append("#video")
            for selector in must_show:
                assert in_viewport(page, selector), (
                    f"{selector} should be fully in the first view at {width}x{height}: {box(page, selector)}")
        if viewport == "laptop":
            assert geometry["scrollHeight"] <= 2 * height, geometry
        if viewport == "phone":
            assert geometry["scrollHeight"] <= 4 * height, geometry
            assert geometry["scrollWidth"] <= geometry["innerWidth"], f"sideways scrolling on a phone: {geometry}"
        # Nothing that needs a video shows before there is one (the player itself does, with a hint).
        expect(page.locator("#used-box")).to_be_hidden()
        expect(page.locator("#history-box")).to_be_hidden()
        expect(page.locator("#download-mp4")).to_be_hidden()
        expect(page.locator("#cancel")).to_be_hidden()
        expect(page.locator("#video")).to_be_visible()
        expect(page.locator("#length")).to_contain_text("of video")


# --- 2. a keyboard-only run -------------------------------------------------------------------


def test_keyboard_only_run(browser, app_url, tmp_path: Path):
    with fresh_page(browser, app_url, "page-keyboard-only-run") as page:
        model_box = page.locator("#model input[role=combobox]")
        expect(page.locator("#api-key")).to_be_hidden()

        key_pick(page, "backend", NOVITA)
        expect(page.locator("#api-key")).to_be_visible()
        expect(page.locator("#api-key input")).to_have_attribute("type", "password")
        expect(page.locator("#blurb")).to_contain_text("Novita AI")
        expect(model_box).to_have_value(re.compile("SVD-XT"))
        assert options(page, "model") == ["SVD-XT (25 frames)", "SVD (14 frames)"]
        # Reshaped once: one pick, one "no key" warning.
        warnings = page.locator(".toast-body.warning")
        expect(warnings).to_contain_text("NOVITA_API_KEY")
        expect(warnings).to_have_count(1)

        key_pick(page, "backend", LOCAL)
        expect(page.locator("#api-key")).to_be_hidden()
        expect(page.locator("#blurb")).to_contain_text("diffusers")
        expect(model_box).to_have_value(re.compile("LOCAL_SVD_MODEL"))
        assert any("LOCAL_SVD_MODEL" in label for label in options(page, "model"))

        # A photo: Enter on an example thumbnail puts it in the photo box.
        thumbnail = page.locator("#examples button.thumbnail-item").first
        expect(thumbnail).to_be_visible()
        thumbnail.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#image img")).to_be_visible()

        fast_settings(page)
        status = run_to_done(page)
        assert status.startswith("Done"), status
        expect(page.locator("#video video")).to_be_visible()

        # The video, downloaded with the keyboard.
        focus(page, "#download-mp4")
        with page.expect_download() as info:
            page.keyboard.press("Enter")
        target = tmp_path / info.value.suggested_filename
        info.value.save_as(target)
        assert target.read_bytes()[4:8] == b"ftyp"
        assert video.probe(target) == (4, 128, 64)


def test_cancel_a_run_by_keyboard(browser, app_url):
    with fresh_page(browser, app_url, "page-cancel-by-keyboard") as page:
        thumbnail = page.locator("#examples button.thumbnail-item").nth(1)
        thumbnail.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#image img")).to_be_visible()
        fast_settings(page, steps=100)  # slow enough to be cancelled mid-run

        focus(page, "#generate")
        page.keyboard.press("Enter")
        status, cancel = page.locator("#status"), page.locator("#cancel")
        expect(status).to_contain_text("Denoising step", timeout=RUN_TIMEOUT_MS)
        expect(cancel, "Cancel should show beside Generate while the job runs").to_be_visible(timeout=10_000)
        focus(page, "#cancel")
        page.keyboard.press("Enter")
        expect(status).to_contain_text(re.compile("Stopped|Cancelling|Cancelled"), timeout=60_000)
        expect(cancel, "Cancel should go once the job has stopped").to_be_hidden(timeout=60_000)
        expect(page.locator("#generate")).to_be_enabled()
        page.wait_for_timeout(2_000)
        expect(cancel, "Cancel should stay hidden after the job").to_be_hidden()


# --- 3. presets and the sweep parameter by keyboard -------------------------------------------


def test_preset_and_sweep_parameter_by_keyboard(browser, app_url):
    with fresh_page(browser, app_url, "page-preset-and-sweep-by-keyboard") as page:
        motion = page.locator("#param-motion_bucket_id input[type=number]")
        subtle = preset_value("Subtle motion", "motion_bucket_id")
        assert motion.input_value() != str(subtle), "the default must differ for this test to prove anything"
        key_pick(page, "preset", "Subtle motion")
        expect(motion).to_have_value(str(subtle))

        key_open(page, "Try several values")
        values = page.locator("#sweep-values input, #sweep-values textarea").first
        parameter = page.locator("#sweep-parameter input[role=combobox]")
        suggested = values.input_value()
        assert suggested, "the sweep should start with values for its first parameter"
        key_pick(page, "sweep-parameter", "fps")
        expect(values).not_to_have_value(suggested)
        expect(values).to_have_value(re.compile(r"^\d+(, \d+)+$"))

        values.focus()
        page.keyboard.press("Control+a")
        page.keyboard.type("5, 7, 8")
        focus(page, "#sweep-parameter input[role=combobox]")  # into the picker (as Shift+Tab)...
        page.keyboard.press("Tab")  # ...and away
        page.keyboard.press("Tab")
        settle(page)
        page.wait_for_timeout(500)
        expect(parameter).to_have_value("fps")
        expect(values).to_have_value("5, 7, 8")


# --- 4. axe-core ------------------------------------------------------------------------------


def _axe(page: Page, where: str, report: list[str]) -> list[dict]:
    """Run axe-core on the page; return the violations that must not exist (critical ones
    and any contrast failure), and add every other violation to ``report``."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    bad = [v for v in violations if v["impact"] == "critical" or v["id"] == "color-contrast"]
    for v in violations:
        if v not in bad:
            targets = "; ".join(str(n["target"]) for n in v["nodes"])
            report.append(f"{where}: {v['id']} ({v['impact']}) x{len(v['nodes'])}: {targets}")
    return bad


def _describe(bad: list[dict]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {n['target']} {n.get('failureSummary', '')}"
                     for v in bad for n in v["nodes"])


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_axe_finds_no_critical_or_contrast_violation(browser, app_url, theme):
    pytest.importorskip("axe_playwright_python")
    report: list[str] = []
    with fresh_page(browser, app_url, f"page-axe-{theme}", theme=None if theme == "light" else "dark") as page:
        if theme == "dark":
            assert page.evaluate("document.body.classList.contains('dark')"), "?__theme=dark should apply"
        bad = _axe(page, f"{theme}, on load", report)
        assert not bad, f"{theme} theme, on load:\n{_describe(bad)}"

        key_open(page, "Advanced")
        expect(page.locator("#param-num_inference_steps")).to_be_visible()
        bad = _axe(page, f"{theme}, Advanced open", report)
        assert not bad, f"{theme} theme, Advanced open:\n{_describe(bad)}"

        add_photo(page)
        fast_settings(page)
        run_to_done(page)
        expect(page.locator("#used-box")).to_be_visible()
        key_open(page, "Parameters used")
        expect(page.locator("#used table")).to_be_visible()
        bad = _axe(page, f"{theme}, after a run", report)
        assert not bad, f"{theme} theme, after a run:\n{_describe(bad)}"
    print(f"\naxe-core, {theme} theme: violations left (none critical, none contrast; see docs/accessibility.md):")
    print("\n".join(report) or "none")


# --- 5. the video in view after a run ---------------------------------------------------------


@pytest.mark.parametrize("viewport", list(VIEWPORTS), ids=list(VIEWPORTS))
def test_the_video_is_in_view_after_a_run(browser, app_url, viewport):
    with fresh_page(browser, app_url, f"page-video-in-view-{viewport}", VIEWPORTS[viewport]) as page:
        add_photo(page, "chelsea.png")
        fast_settings(page)
        page.locator("button.label-wrap").filter(has_text="Advanced").click()  # closed again, as people leave it
        expect(page.locator("#param-width")).to_be_hidden()
        if viewport == "phone":
            # On a phone the player is under all the settings: at the top of the page it is out of view.
            page.evaluate("window.scrollTo(0, 0)")
            assert not in_viewport(page, "#video"), "at the top, the phone should not show the player yet"
        else:  # on a wider screen, from the bottom of the page
            page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
            page.wait_for_function("() => window.scrollY > 0 || document.documentElement.scrollHeight <= innerHeight")
        status = run_to_done(page, click=True)  # a click that does not scroll the page itself
        expect(page.locator("#video video")).to_be_visible()
        page.wait_for_function(
            """() => { const r = document.querySelector('#video').getBoundingClientRect();
                       return r.top >= -1 && r.bottom <= innerHeight + 1; }""", timeout=30_000)
        assert in_viewport(page, "#video"), box(page, "#video")

        seed = seed_of(status)
        expect(page.locator("#used-box")).to_be_visible()
        key_open(page, "Parameters used")
        expect(page.locator("#seed-used input, #seed-used textarea").first).to_have_value(seed)
        seed_cell = page.locator("#used tr").filter(has=page.locator("th code", has_text=re.compile("^seed$")))
        expect(seed_cell.locator("td").first).to_have_text(seed)


# --- 6. focus is visible ----------------------------------------------------------------------


def test_focus_on_generate_is_visible(browser, app_url):
    with fresh_page(browser, app_url, "page-focus-visible") as page:
        focus(page, "#preset-open")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement && document.activeElement.id") == "generate", (
            "Tab from 'Save preset…' should reach Generate (the tab order follows the page)")
        style = page.evaluate("""() => { const c = getComputedStyle(document.activeElement);
            return {outline: c.outlineStyle, width: parseFloat(c.outlineWidth), shadow: c.boxShadow}; }""")
        assert (style["outline"] != "none" and style["width"] > 0) or style["shadow"] != "none", style


# --- 7. the README's screenshots --------------------------------------------------------------


def test_readme_screenshots(browser, app_url):
    """docs/screenshots/{desktop,phone}-{before,after}.png, taken here (UPDATE_SCREENSHOTS=1)."""
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for name, size, full in (("desktop", LAPTOP, False), ("phone", PHONE, True)):
        with fresh_page(browser, app_url, f"page-screenshots-{name}", size) as page:
            page.screenshot(path=str(folder / f"{name}-before.png"), full_page=full)
            add_photo(page, "astronaut.png")
            fast_settings(page)
            page.locator("button.label-wrap").filter(has_text="Advanced").click()  # closed again, as people leave it
            run_to_done(page, click=True)
            expect(page.locator("#video video")).to_be_visible()
            page.locator("#video video").evaluate("v => new Promise(r => v.readyState >= 2 ? r() : "
                                                  "v.addEventListener('loadeddata', () => r(), {once: true}))")
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(500)
            page.screenshot(path=str(folder / f"{name}-after.png"), full_page=full)
        for when in ("before", "after"):
            shot = folder / f"{name}-{when}.png"
            assert shot.stat().st_size > 10_000, shot
