"""Keeping API keys out of everything a person or a log can see.

Two kinds of key, kept apart on purpose:

- the operator's keys, read from the environment (``MODELSLAB_API_KEY``, any backend's
  ``key_env``): one small set for the process, masked in every message and log line;
- a key a visitor types on the page (or passes as ``api_key``): masked only inside that
  visitor's own job (``job_secret``), held in a context variable for the job's duration
  and gone when it ends. A process-wide list of visitors' keys would keep every key in
  memory for good, and one visitor's "key" that is an ordinary word would mask that word
  in everyone's messages.

``redact`` removes the environment keys and the current job's keys. The logging filter
calls it in the thread that emits the record, so a line logged inside a job loses that
job's key. An error is scrubbed as it leaves its job: it becomes a page message later, on
the event loop, where the job's keys are no longer known. Backends already keep keys out
of their messages (``backends.http.redact``); this is the second line of defence, for a
provider that echoes the key back, say.

A URL can carry a secret too: a webhook's ``?token=…``, a signed download link, a user
name and password before the host. ``redact`` therefore also masks the query string,
fragment and user-info of every URL it sees (``https://example.org/hook?…``), so answers,
logs, histories and recipes never hold them, whichever option the URL came in. The
provider still gets the full URL: only what is shown or kept is masked.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from studio.errors import StudioError

MASK = "***"
HIDDEN = "…"  # stands for a URL's query, fragment or user-info
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s\"'<>`]+")
MIN_LENGTH = 4  # shorter "keys" are not keys, and masking them would garble every message

_lock = threading.Lock()
_known: set[str] = set()  # the operator's keys, from the environment: masked everywhere
_job_keys: ContextVar[frozenset[str]] = ContextVar("studio_job_keys", default=frozenset())


def _usable(secret: str | None) -> str | None:
    value = (secret or "").strip()
    return value if len(value) >= MIN_LENGTH else None


def remember_environment(*names: str) -> None:
    """Mask the values of these environment variables everywhere, from now on."""
    for name in names:
        value = _usable(os.environ.get(name))
        if value:
            with _lock:
                _known.add(value)


def redact(text: str) -> str:
    """``text`` without the environment keys and the keys of the job it is said in."""
    with _lock:
        secrets = _known | _job_keys.get()
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: one key may contain another
        text = text.replace(secret, MASK)
    return mask_urls(text)


def mask_url(url: str) -> str:
    """``url`` without what may be a secret: its query and fragment become ``?…`` and
    ``#…``, a user name and password ``…@``; scheme, host, port and path stay."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    place, tail = rest[:cut], rest[cut:]
    slash = place.find("/")
    authority, path = (place, "") if slash < 0 else (place[:slash], place[slash:])
    if "@" in authority:
        authority = f"{HIDDEN}@{authority.rpartition('@')[2]}"
    masked = f"{scheme}://{authority}{path}"
    if "?" in tail.partition("#")[0] or tail.startswith("?"):
        masked += f"?{HIDDEN}"
    if "#" in tail:
        masked += f"#{HIDDEN}"
    return masked


def mask_urls(text: str) -> str:
    """Every URL in ``text`` passed through ``mask_url``."""
    return _URL.sub(lambda found: mask_url(found.group(0)), text) if "://" in text else text


def is_masked(value: object) -> bool:
    """A URL that ``mask_url`` cut (restoring it would send the provider a useless URL)."""
    return isinstance(value, str) and "://" in value and HIDDEN in value and mask_url(value) == value


def redact_deep(value: Any) -> Any:
    """``value`` with every string in it redacted, at any depth of dicts and lists (a
    ``Result``'s ``used`` and ``sent``). Dict keys are the studio's own names: kept."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_deep(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_deep(v) for v in value)
    return value


@contextmanager
def job_secret(secret: str | None) -> Iterator[None]:
    """Mask ``secret`` in everything said inside the block, in this thread only, and
    scrub an error on its way out. Nothing outlives the block: the key is held by the
    context variable alone, reset on exit."""
    value = _usable(secret)
    token = _job_keys.set(_job_keys.get() | {value}) if value else None
    try:
        yield
    except Exception as exc:
        clean = scrubbed(exc)  # while the job's keys are still known
        if clean is exc:
            raise
        raise clean from None
    finally:
        if token is not None:
            _job_keys.reset(token)


def scrubbed(exc: BaseException) -> BaseException:
    """``exc`` with the keys removed from its message, its notes and those of its causes
    (a logged traceback shows them all). Where that is not enough (a message not made of
    its arguments), the causes are dropped, and at worst a plain copy of the message
    stands in: a ``StudioError`` keeps its sentence for the person, anything else stays
    an unexpected error."""
    chain = _chain(exc)
    for error in chain:
        error.args = tuple(redact(a) if isinstance(a, str) else a for a in error.args)
        if getattr(error, "__notes__", None):
            error.__notes__ = [redact(n) if isinstance(n, str) else n for n in error.__notes__]
    if any(_leaks(error) for error in chain[1:]):
        exc.__cause__, exc.__context__, exc.__suppress_context__ = None, None, True
    if not _leaks(exc):
        return exc
    text = redact(str(exc))
    return StudioError(text) if isinstance(exc, StudioError) else RuntimeError(f"{type(exc).__name__}: {text}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it (causes and contexts), each once."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop()
        if error is None or any(error is seen for seen in found):
            continue
        found.append(error)
        todo += [error.__cause__, error.__context__]
    return found


def _leaks(error: BaseException) -> bool:
    try:
        said = str(error)
    except Exception:  # a broken __str__ shows nothing of its own; its class name is harmless
        return False
    return redact(said) != said


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
