"""SVD Studio: turn a still image into a short video with Stable Video Diffusion.

Run with ``python app.py``; GRADIO_SERVER_NAME and GRADIO_SERVER_PORT are honoured. The
page itself lives in ``ui/``.
"""

import logging
import os
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

import ui  # noqa: E402
from studio import heap, outputs, secrets  # noqa: E402
from ui import build_demo, gates, sessions  # noqa: E402

MAX_UPLOAD = "50mb"
SESSION_CAPACITY = 2000  # bounds sessions that never close (raw HTTP callers); ui.sessions slims them to ~20 kB

__all__ = ["build_demo", "launch", "main"]


def launch(demo: gr.Blocks, **overrides: Any) -> tuple:
    """Queue and launch with the studio's settings; tests pass ``prevent_thread_lock`` etc."""
    settings: dict[str, Any] = dict(
        theme=ui.theme.make(),
        css=ui.CSS,
        # Outputs only (OUTPUT_DIR/svd-studio, or a temp folder), so Gradio may copy them into its
        # cache for a page; ui.gates serves none of them directly. Using the folder starts its
        # sweeper (OUTPUT_MAX_AGE_MINUTES, OUTPUT_MAX_MB).
        allowed_paths=[str(outputs.run_dir())],
        max_file_size=MAX_UPLOAD,
        show_error=True,  # our errors are sentences; Gradio's own (a refused URL) are too
        # Gradio keeps every session's state; ui.sessions slims idle ones and forgets closed
        # ones, and this bounds those that never close (Gradio's default is 10,000).
        state_session_capacity=SESSION_CAPACITY,
        # ui.sessions forgets a session only while no heartbeat of it is open; this watches them.
        # ui.gates: no output file is served by its path, and uploads are limited per visitor.
        app_kwargs={"middleware": [Middleware(sessions.HeartbeatWatch), Middleware(gates.OutputsGate),
                                   Middleware(gates.UploadGate)]},
    )
    if mcp_wanted():
        settings["mcp_server"] = True  # the API endpoints (ui.api) as MCP tools, /batch included

    settings |= overrides
    block = not settings.pop("prevent_thread_lock", False)
    launched = demo.queue(default_concurrency_limit=ui.LAYOUT_CONCURRENCY).launch(prevent_thread_lock=True, **settings)
    sessions.start(demo)
    if block:
        demo.block_thread()
    return launched


def mcp_wanted() -> bool:
    """MCP_SERVER=1 serves the API as MCP tools too (Gradio's own GRADIO_MCP_SERVER also works)."""
    return os.environ.get("MCP_SERVER", "").strip().lower() in ("1", "true", "yes", "on")


def main() -> None:
    heap.limit_arenas()  # before any thread starts (studio.heap says why)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    secrets.install_log_filter()
    import backends  # BACKENDS is checked here; on ZeroGPU the model loads now, before launch, as it must
    from studio.errors import StudioError

    try:
        backends.start_up()  # with RAY_ADDRESS, the local backend joins its cluster here
    except StudioError as exc:
        raise SystemExit(str(exc)) from None  # one sentence on stderr, not a traceback
    launch(build_demo())


if __name__ == "__main__":
    main()
