"""Doors a stranger must not pass: the output folder, and uploads beyond a visitor's share.

Both are ASGI middleware (``app.launch`` installs them), so they sit in front of every
Gradio route and need no change to Gradio itself.

- ``OutputsGate``: ``/gradio_api/file=<path>`` serves anything under ``allowed_paths``,
  with no session check. The output folder must be there (Gradio copies a handler's
  files into its cache only from allowed places), but no page ever needs it served: every
  file a page or API answer shows is Gradio's cache copy, named by a keyed hash of its
  content. So any request for a file in the output folder is answered 404, whoever asks,
  even with the exact path. Together with the job folders' random names (``studio.outputs``)
  a visitor reaches only the files their own answers named.
- ``UploadGate``: on a public Space each visitor may send ``UPLOADS_PER_HOUR`` uploads an
  hour (default 60; one request, however many files it carries; ``unlimited`` for none);
  Gradio's own ``/upload`` takes any file up to the size cap, with no job behind it. The
  visitor is ``ui.visitor``'s, read from the request's address and every forwarded header
  line. Elsewhere there is no limit unless the variable sets one. Every file the route
  stores is recorded (``studio.uploads``), so one no job used goes after
  ``UPLOAD_MAX_AGE_MINUTES``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

from orchestration.limits import read_limit
from studio import outputs, uploads
from ui.visitor import visitor

UPLOADS_ENV = "UPLOADS_PER_HOUR"
SPACE_UPLOADS_PER_HOUR = 60
HOUR = 3600.0
MAX_TRACKED = 10_000  # visitors remembered at once; the least recently active are forgotten first
_FILE_ROUTES = ("/file=", "/file/")


def _served_path(path: str) -> str | None:
    """The filesystem path a file route was asked for, else None."""
    for marker in _FILE_ROUTES:
        at = path.find(marker)
        if at >= 0:
            return unquote(path[at + len(marker):])
    return None


def in_output_folder(asked: str) -> bool:
    """``asked`` (as a file route received it) names something in the output folder."""
    if asked.startswith(("http://", "https://")):
        return False
    try:
        return Path(asked).resolve().is_relative_to(outputs.run_dir().resolve())
    except (OSError, ValueError, RuntimeError):
        return True  # cannot tell: refuse


async def _refuse(send: Any, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class OutputsGate:
    """ASGI middleware: no file in the output folder is served directly (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            asked = _served_path(scope.get("path", ""))
            if asked is not None and in_output_folder(asked):
                await _refuse(send, 404, "File not found.")
                return
        await self.app(scope, receive, send)


def uploads_per_hour() -> int | None:
    """The hourly upload allowance per visitor (None: no limit); read at every upload."""
    default = SPACE_UPLOADS_PER_HOUR if os.environ.get("SPACE_ID", "").strip() else None
    return read_limit(UPLOADS_ENV, default)


class UploadCounter:
    """Upload times per visitor over the last hour, bounded in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, who: str, limit: int, now: float | None = None) -> bool:
        """Count one upload for ``who``; False (and nothing counted) when the hour's are used."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(who, None) or deque()
            while times and now - times[0] >= HOUR:
                times.popleft()
            self._seen[who] = times  # most recently active last
            while len(self._seen) > MAX_TRACKED:
                self._seen.popitem(last=False)
            if len(times) >= limit:
                return False
            times.append(now)
            return True


COUNTER = UploadCounter()


class UploadGate:
    """ASGI middleware: a visitor's uploads are limited per hour (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/upload"):
            try:
                limit = uploads_per_hour()
            except Exception as exc:  # a bad setting refuses uploads, naming it: fail closed
                await _refuse(send, 503, str(exc))
                return
            if limit is not None and not COUNTER.take(visitor(_as_request(scope)), limit):
                await _refuse(send, 429, f"Too many uploads: each visitor may upload {limit} times an hour "
                                         f"({UPLOADS_ENV}); try again later.", [(b"retry-after", b"600")])
                return
            await self.app(scope, receive, _recording(send))
            return
        await self.app(scope, receive, send)


def _recording(send: Any) -> Any:
    """``send``, noting the paths in a successful upload's answer (a JSON list of paths)."""
    status: list[int] = []
    body = bytearray()

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message.get("status", 0))
        elif message["type"] == "http.response.body" and status and status[0] == 200:
            if len(body) < 1_000_000:
                body.extend(message.get("body", b""))
            if not message.get("more_body"):
                _note(bytes(body))
        await send(message)

    return wrapped


def _note(body: bytes) -> None:
    try:
        paths = json.loads(body)
    except ValueError:
        return
    if isinstance(paths, list):
        from gradio.utils import get_upload_folder

        uploads.record([p for p in paths if isinstance(p, str)], get_upload_folder())


def _as_request(scope: dict) -> SimpleNamespace:
    """What ``ui.visitor`` reads from a request, built from the ASGI scope (every header
    line kept, so repeated ``x-forwarded-for`` lines all count)."""
    client = scope.get("client") or (None, None)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    return SimpleNamespace(client=SimpleNamespace(host=client[0]), headers=_Lines(headers), session_hash=None)


class _Lines(list):
    """Header lines as (name, value) pairs with ``items()``, as ``ui.visitor`` expects."""

    def items(self) -> list[tuple[str, str]]:
        return list(self)
