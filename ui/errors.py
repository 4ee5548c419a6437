"""The one place where studio errors become page errors.

Everything a person can cause is a ``StudioError`` with a sentence written for them;
anything else is a bug, logged once (keys masked) and shown as a calm apology. Both
the page's handlers and the API endpoints go through ``page_errors``.

This runs on the event loop, outside the job: ``redact`` here masks the environment's
keys only. A key typed for a job was already scrubbed from its error as the error left
the job (``studio.secrets.job_secret``), and is deliberately unknown here, so one
visitor's key never changes what another visitor reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from studio import secrets
from studio.errors import StudioError

log = logging.getLogger("svd_studio")


def user_error(exc: Exception) -> gr.Error:
    if isinstance(exc, StudioError):
        return gr.Error(secrets.redact(str(exc)), title="Could not make the video", print_exception=False)
    log.error("Unexpected failure: %s: %s", type(exc).__name__, secrets.redact(str(exc)), exc_info=exc)
    return gr.Error(
        f"Something went wrong inside the studio ({type(exc).__name__}). Your earlier videos "
        "are safe; please try again, and report this if it keeps happening.",
        title="Unexpected error",
        print_exception=False,
    )


@contextmanager
def page_errors() -> Iterator[None]:
    """Let ``gr.Error`` through and turn every other ``Exception`` into one. Never
    ``BaseException``: a closed page's ``GeneratorExit`` is not a failure."""
    try:
        yield
    except gr.Error:
        raise
    except Exception as exc:
        raise user_error(exc) from None


def need(condition: object, message: str) -> None:
    """Refuse a request with ``message`` unless ``condition`` holds."""
    if not condition:
        raise gr.Error(message, print_exception=False)
