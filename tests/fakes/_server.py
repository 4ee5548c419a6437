"""Shared plumbing for the fake provider servers.

Why a real server: the app's clients use httpx with timeouts, retries, keep-alive
and concurrent jobs. Mocking httpx would skip exactly the parts that break in
production (timeouts, dropped connections, HTML error pages, slow downloads), so the
fakes listen on 127.0.0.1 with a real ``ThreadingHTTPServer`` and answer over TCP.

A subclass provides two things:

* ``_route(method, path)`` -> a route name (``"submit"``, ``"fetch"``, ...). Route
  names are what tests script faults against.
* ``_default(request)`` -> the ``Reply`` a well-behaved provider would send.

Before the default runs, a FIFO of scripted ``Reply`` objects per route is
consulted (``srv.script("submit", Reply(status=429, ...))``), so a test can inject
any error once and then let the happy path resume.
"""

from __future__ import annotations

import json as _json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

__all__ = ["Reply", "RecordedRequest", "ErrorCase", "FakeServer", "html_error", "s3_error"]


@dataclass
class Reply:
    """One HTTP answer, or a way of not answering.

    status/json/body/content_type/headers: what to send. ``json`` wins over ``body``.
    delay: seconds to wait before answering (simulates a slow server / client timeout;
        the wait is cut short when the server shuts down).
    close: drop the TCP connection without sending anything (after ``delay``).
    passthrough: after ``delay``, answer with the fake's default behaviour instead
        of this reply (e.g. "the job was accepted but the answer came too late").
    after_send: internal hook run after a GET body was fully written.
    """

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False
    passthrough: bool = False
    after_send: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def payload(self) -> tuple[bytes, str]:
        """Encoded body and its content type."""
        if self.json is not None:
            return _json.dumps(self.json).encode(), self.content_type or "application/json"
        if self.body is None:
            return b"", self.content_type or "text/plain; charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return bytes(self.body), self.content_type or "application/octet-stream"


@dataclass
class ErrorCase:
    """One row of a provider error table: script ``reply`` on ``route``.

    ``retryable`` is the client action the contract prescribes (True: back off and
    retry, bounded; False: fail fast / terminal).
    """

    name: str
    route: str
    reply: Reply
    retryable: bool


@dataclass(frozen=True)
class RecordedRequest:
    """What the fake received. ``headers`` keys are lower-cased; ``path`` includes the query."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    route: str
    time: float  # time.monotonic() when the request was read

    @property
    def raw(self) -> bytes:
        """Alias of ``body`` (the raw request bytes)."""
        return self.body

    @property
    def path_only(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}


def html_error(status: int = 502, title: str = "Bad Gateway") -> Reply:
    """A non-JSON gateway/CDN error page, as seen on 5xx in the wild (contract §1.7, §3.1)."""
    page = (
        "<!DOCTYPE html>\n<html><head><title>%d %s</title></head>"
        "<body><center><h1>%d %s</h1></center><hr><center>nginx</center></body></html>\n"
    ) % (status, title, status, title)
    return Reply(status=status, body=page, content_type="text/html; charset=utf-8")


def s3_error(status: int = 403, code: str = "AccessDenied", message: str = "Request has expired") -> Reply:
    """An S3-style XML error, e.g. an expired presigned URL (contract §2.6)."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>FAKE0000</RequestId><HostId>fake</HostId></Error>"
    )
    return Reply(status=status, body=xml, content_type="application/xml")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a long delay must not block interpreter exit
    request_queue_size = 128  # concurrency tests open many connections at once
    allow_reuse_address = True
    block_on_close = False  # stop() already unblocks handlers; never wait on a slow client

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection resets from clients that gave up are expected; stay quiet."""

    def drop_all(self) -> None:
        """Unblock keep-alive handler threads so shutdown is quick."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    timeout = 60  # idle keep-alive connections die eventually
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log."""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every keep-alive request (skews benchmarks).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, head: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.fake._handle(self.command, self.path, headers, raw)
        if reply is None:  # scripted close, or shutdown during a delay
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        body, ctype = reply.payload()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                if name.lower() not in ("content-type", "content-length"):  # use Reply.content_type
                    self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # client went away (e.g. it timed out); nothing to do
            self.close_connection = True
            return
        if reply.after_send is not None and not head:
            reply.after_send()


class FakeServer:
    """Base class: lifecycle, request log, fault scripting and shared job timing.

    Public, thread-safe state (read it after the client is done, or under ``lock``):

    requests: every request, in arrival order (``RecordedRequest``).
    ready_at[job_id]: ``time.monotonic()`` when the job became ready (finished).
    downloaded_at[job_id]: ``time.monotonic()`` when its video was first fully served.
    download_counts[job_id]: how many good video downloads were served.

    Fault switches (read live on every request, so they can be flipped mid-test):

    stuck: jobs never finish (status stays processing forever).
    fail_reason: when a job finishes, it fails with this text instead.
    expire_downloads: video URLs answer 403 with an S3 ``AccessDenied`` XML body.
    truncate_downloads: video URLs serve only the first half of the file.
    download_not_video: video URLs answer 200 with an HTML page.
    """

    ROUTES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, api_key: str, *, job_seconds: float | None) -> None:
        self.api_key = api_key
        self.job_seconds = job_seconds
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.ready_at: dict[str, float] = {}
        self.downloaded_at: dict[str, float] = {}
        self.download_counts: dict[str, int] = {}
        self.stuck = False
        self.fail_reason: str | None = None
        self.expire_downloads = False
        self.truncate_downloads = False
        self.download_not_video = False
        self._scripts: dict[str, deque[Reply]] = {r: deque() for r in self.ROUTES}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -------------------------------------------------------------
    def start(self) -> FakeServer:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},  # bounds stop() latency
                name=f"{type(self).__name__}-server", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wake handlers sleeping in a scripted delay
        httpd.shutdown()
        httpd.drop_all()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("server not started; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ----- scripting and inspection ------------------------------------------
    def script(self, route: str, *replies: Reply) -> None:
        """Queue replies for ``route``; each matching request consumes one (FIFO)."""
        if route not in self._scripts:
            raise ValueError(f"unknown route {route!r}; expected one of {self.ROUTES}")
        with self.lock:
            self._scripts[route].extend(replies)

    def pending_scripts(self, route: str) -> int:
        with self.lock:
            return len(self._scripts[route])

    def requests_for(self, route: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.route == route]

    # ----- request handling ----------------------------------------------------
    def _route(self, method: str, path: str) -> str:
        raise NotImplementedError

    def _default(self, req: RecordedRequest) -> Reply:
        raise NotImplementedError

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply | None:
        try:
            parsed: Any = _json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        route = self._route(method, urlsplit(target).path)
        req = RecordedRequest(method, target, headers, parsed, raw, route, time.monotonic())
        with self.lock:
            self.requests.append(req)
            queue = self._scripts.get(route)
            scripted = queue.popleft() if queue else None
        if scripted is not None:
            if scripted.delay > 0 and self._stopping.wait(scripted.delay):
                return None
            if scripted.close:
                return None
            if not scripted.passthrough:
                return scripted
        try:
            return self._default(req)
        except Exception as exc:  # a bug in the fake should be loud, not a hang
            return Reply(status=599, json={"fake_server_bug": repr(exc)})

    # ----- shared job timing -----------------------------------------------------
    def _is_done(self, job_id: str, created: float, polls_seen: int, polls_needed: int) -> bool:
        """Whether a job has finished (successfully or not); records ``ready_at``.

        Poll mode: done once ``polls_seen`` status answers were given. Time mode
        (``job_seconds``): done ``job_seconds`` after submit, polled or not.
        """
        if self.stuck:
            return False
        now = time.monotonic()
        if self.job_seconds is not None:
            ready = created + self.job_seconds
            done = now >= ready
        else:
            ready = now
            done = polls_seen >= polls_needed
        if done:
            with self.lock:
                self.ready_at.setdefault(job_id, ready)
        return done

    def _serve_video(self, job_id: str, data: bytes, content_type: str, *, ready: bool,
                     pending: Reply, encode: Callable[[bytes], bytes] | None = None,
                     text_type: str | None = None) -> Reply:
        """Apply the download fault switches, then serve ``data`` (optionally encoded)."""
        if self.expire_downloads:
            return s3_error(403, "AccessDenied", "Request has expired")
        if self.download_not_video:
            return html_error(200, "Service Temporarily Unavailable")
        if not ready:
            return pending
        truncated = self.truncate_downloads
        if truncated:
            data = data[: len(data) // 2]
        if encode is not None:
            data = encode(data)
            content_type = text_type or "text/plain; charset=utf-8"

        def mark() -> None:
            if truncated:
                return
            with self.lock:
                self.downloaded_at.setdefault(job_id, time.monotonic())
                self.download_counts[job_id] = self.download_counts.get(job_id, 0) + 1

        return Reply(status=200, body=data, content_type=content_type, after_send=mark)
