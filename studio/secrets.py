"""Keeping API keys out of everything a person or a log can see.

Every key the studio uses is remembered here the moment it is read (environment or the
page's password field); ``redact`` removes all of them from any text, and a logging filter
does the same for every log line. Backends already keep keys out of their messages; this
is the second line of defence, for a provider that echoes the key back, say.
"""

from __future__ import annotations

import logging
import os
import threading

_lock = threading.Lock()
_known: set[str] = set()
MASK = "***"


def remember(secret: str | None) -> None:
    if secret and len(secret.strip()) >= 4:
        with _lock:
            _known.add(secret.strip())


def remember_environment(*names: str) -> None:
    for name in names:
        remember(os.environ.get(name))


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)  # longest first: one key may contain another
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message (arguments and exception text included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message), None
        return True


def install_log_filter() -> None:
    """Attach the filter to every handler of the root logger (call after logging is set up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
