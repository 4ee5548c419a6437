"""Shared fixtures: a tiny real SVD pipeline on disk and the launched app.

Everything runs offline: HF_HUB_OFFLINE makes any hub id fail fast instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Saved presets go to a throwaway folder, never to the home folder of whoever runs the tests.
os.environ.setdefault("USER_PRESETS_DIR", tempfile.mkdtemp(prefix="svd-studio-test-presets-"))

ROOT = Path(__file__).resolve().parent.parent  # importable through pytest's pythonpath (pyproject.toml)

import pytest  # noqa: E402

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny SVD pipeline saved to disk and named by LOCAL_SVD_MODEL for the whole run
    (the variable is put back as it was afterwards)."""
    from tests.tiny_svd import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path_factory.mktemp("tiny-svd") / "model")
    mp = pytest.MonkeyPatch()
    mp.setenv("LOCAL_SVD_MODEL", str(folder))
    yield folder
    mp.undo()


CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser), one per module."""
    pytest.importorskip("playwright")
    if not Path("/usr/bin/chromium").exists():  # pragma: no cover - depends on the machine
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def photo() -> Path:
    return EXAMPLES / "chelsea.png"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def launched_studio(env: dict[str, str | None] | None = None) -> Iterator[str]:
    """The app launched in this process with ``env`` set (None removes a variable) for as
    long as it runs, exactly as ``python app.py`` launches it; yields its URL."""
    with launched_demo(env) as (_, url):
        yield url


@contextlib.contextmanager
def launched_demo(env: dict[str, str | None] | None = None) -> Iterator[tuple[Any, str]]:
    """``launched_studio``, yielding the running ``gr.Blocks`` too, for tests that look inside."""
    mp = pytest.MonkeyPatch()
    for name, value in (env or {}).items():
        if value is None:
            mp.delenv(name, raising=False)
        else:
            mp.setenv(name, value)
    import app

    demo = app.build_demo()
    try:
        _, url, _ = app.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        yield demo, url
    finally:
        demo.close()
        mp.undo()
