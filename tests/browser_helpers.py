"""Small Playwright helpers for tests/test_browser.py: how Gradio 6 renders this page.

Observed DOM (Gradio 6.x): a dropdown is ``<input role=combobox>`` inside the element
with our elem_id, and its options are ``<li role=option aria-label=LABEL>`` in a listbox
that appears once the input is clicked; a slider has ``input[type=number]`` (the box)
and ``input[type=range]``, both carrying min/max; an accordion's title is
``button.label-wrap`` (class ``open`` when open), and a closed accordion's children are
not in the DOM at all; toasts are ``.toast-body`` with a class for their kind
(``error``, ``warning``, ``info``); the JSON view spreads keys and values over many
spans, so its text is compared with whitespace removed.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

from playwright.sync_api import Locator, Page, expect

GENERATION_TIMEOUT_MS = 120_000
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@contextlib.contextmanager
def studio_page(browser: Any, url: str, test_name: str, init_script: str | None = None
                ) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page (its own browser context, so its own Gradio session) at ``url``, with
    the uncaught errors it throws collected; a full-page screenshot named after the test
    is left in test-artifacts/ when the block ends, however it ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url)
        yield page, errors
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", test_name)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)
        finally:
            context.close()


def number_box(page: Page, name: str) -> Locator:
    """The number box of the control for parameter ``name`` (slider or gr.Number)."""
    return page.locator(f"#param-{name} input[type=number]")


def set_number(page: Page, name: str, value: float) -> None:
    """Type ``value`` into a slider's number box and commit it with Enter (opening the
    Advanced box first when the control lives there)."""
    if not page.locator(f"#param-{name}").count():
        open_group(page, ADVANCED)
    box = number_box(page, name)
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value))


def slider_max(page: Page, name: str) -> str:
    """The maximum the slider for ``name`` offers (the range input's max attribute)."""
    return page.locator(f"#param-{name} input[type=range]").get_attribute("max") or ""


_IDLE_JS = """() => {
    const busy = [...document.querySelectorAll('#model [data-testid=status-tracker]')]
        .some(e => !e.classList.contains('hide') && !e.querySelector('.error'));
    const now = performance.now();
    if (busy) { window.__studioIdleSince = null; return false; }
    if (window.__studioIdleSince == null) window.__studioIdleSince = now;
    return now - window.__studioIdleSince >= 200;
}"""


def settle(page: Page, timeout: float = 30_000) -> None:
    """Wait until the layout handlers (backend / model / preset) have answered.

    Every layout event updates #model, whose status tracker loses its ``hide`` class
    while an event is pending; idle for 200 ms means the page has caught up. (A mouse
    pick in a Gradio 6 dropdown fires ``.input`` twice; without this, the second answer
    could land after the test has typed into a control and overwrite it.)
    """
    page.evaluate("window.__studioIdleSince = null")
    page.wait_for_function(_IDLE_JS, polling=50, timeout=timeout)


def select(page: Page, elem_id: str, label: str) -> None:
    """Pick ``label`` in the Gradio dropdown ``#elem_id`` the way a person does."""
    box = page.locator(f"#{elem_id} input[role=combobox]")
    box.click()
    page.get_by_role("option", name=label, exact=True).click()
    expect(box).to_have_value(label)
    settle(page)
    # A handler that raised leaves an "Error" badge on every control it was to update.
    expect(page.locator("#model [data-testid=status-tracker] .error"),
           f"the page shows 'Error' on its controls after picking {label!r} in #{elem_id}").to_have_count(0)


ADVANCED = "Advanced: every SVD setting"
# The groups of settings inside the Advanced box (headings, not accordions of their own).
SETTING_GROUPS = ("Conditioning", "Guidance and steps", "Size and output", "Memory and speed", "Service options")


def open_group(page: Page, title: str) -> None:
    """Open the accordion titled ``title`` (no-op when it is already open); a group of
    settings opens the Advanced box that holds it."""
    if title in SETTING_GROUPS:
        title = ADVANCED
    button = page.locator("button.label-wrap").filter(has=page.locator(f"span:text-is('{title}')"))
    expect(button).to_be_visible()
    if "open" not in (button.get_attribute("class") or "").split():
        button.click()
    expect(button).to_have_class(re.compile(r"\bopen\b"))


def upload(page: Page, path: Path | str) -> None:
    """Put a file in the photo box, as dropping it there would."""
    page.set_input_files("#image input[type=file]", str(path))


def history_count(page: Page) -> int:
    return page.locator("#history .thumbnail-item").count()


def generate(page: Page, *, timeout: float = GENERATION_TIMEOUT_MS) -> str:
    """Press Generate and wait until the run is finished and in the history; returns #status."""
    before = history_count(page)
    page.click("#generate")
    expect(page.locator("#history .thumbnail-item")).to_have_count(before + 1, timeout=timeout)
    status = page.locator("#status")
    expect(status).to_contain_text("Done", timeout=timeout)
    return status.inner_text()


def json_text(page: Page, elem_id: str) -> str:
    """The JSON view's text with all whitespace removed: '{"seed":42,...}'. The parameters
    used and what was sent sit in the raw view of the "Parameters used" box: opened here."""
    if elem_id in ("used-json", "sent"):
        open_group(page, "Parameters used")
        open_group(page, "Raw JSON (and what was sent to the service)")
    return re.sub(r"\s+", "", page.locator(f"#{elem_id} .json-holder").inner_text())


def toast_texts(page: Page, kind: str | None = None) -> list[str]:
    selector = ".toast-body" + (f".{kind}" if kind else "")
    return [t.inner_text() for t in page.locator(selector).all()]


def assert_video_plays(page: Page) -> dict:
    """Wait for ``#video video`` to have data, play it from the start and see time advance."""
    video = page.locator("#video video")
    expect(video).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    handle = video.element_handle()
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=handle, timeout=30_000)
    state = handle.evaluate(
        """async v => {
            v.pause(); v.currentTime = 0;
            let error = null;
            try { await v.play(); } catch (e) { error = String(e); }
            return {readyState: v.readyState, duration: v.duration, error: error,
                    width: v.videoWidth, height: v.videoHeight, src: v.currentSrc};
        }"""
    )
    assert state["error"] is None, f"video.play() was refused: {state['error']}"
    assert state["duration"] > 0 and state["width"] > 0 and state["height"] > 0, state
    page.wait_for_function("v => !v.paused && v.currentTime > 0", arg=handle, timeout=15_000)
    return state


def download(page: Page, button_id: str, folder: Path) -> Path:
    """Click a DownloadButton and save what the browser receives into ``folder``."""
    button = page.locator(f"#{button_id}")
    expect(button).to_be_visible()
    with page.expect_download() as info:
        button.click()
    dl = info.value
    target = folder / dl.suggested_filename
    dl.save_as(target)
    return target


def wait_ready(page: Page) -> None:
    """The page has loaded and its load events have answered (the model list is filled)."""
    expect(number_box(page, "motion_bucket_id")).to_have_value("127")
    expect(page.locator("#model input[role=combobox]")).not_to_have_value("")
    settle(page)
