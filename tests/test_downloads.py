"""A provider's video is streamed to disk under a size cap (MAX_VIDEO_MB), and neither the
download nor the check that it is a whole video holds the file in memory.

The fake providers (real HTTP on 127.0.0.1) serve oversized videos with a Content-Length;
a small server here streams without one (chunked), announces a size it never sends, and
streams 200 MB of padding without ever holding it.
"""

from __future__ import annotations

import base64
import resource
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from backends import http, media
from backends.base import Job
from backends.modelslab import ModelsLabBackend
from backends.novita import NovitaBackend
from studio.errors import BadSetting, VideoTooLarge
from studio.images import load_image
from studio.request import PARAMETERS, GenerationRequest
from studio.video import probe
from tests.fakes import FakeModelsLab, FakeNovita, Reply
from tests.fakes.media import make_mp4_bytes

KEY = "test-key"
FAST = dict(poll_interval=0.01, max_poll_interval=0.05, deadline=5.0, backoff=0.01, max_backoff=0.05, retries=3)
MB = 1024 * 1024
ZEROS = bytes(64 * 1024)


def padded_mp4(total: int) -> bytes:
    """A real 4-frame MP4 grown to ``total`` bytes by a trailing ``free`` box: a valid,
    decodable file of any size."""
    head = make_mp4_bytes()
    pad = total - len(head)
    assert pad >= 8
    return head + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8)


def padded_mp4_pieces(total: int) -> Iterator[bytes]:
    """``padded_mp4(total)`` as it would be sent, without ever holding it: the same 64 KB
    of zeros again and again."""
    head = make_mp4_bytes()
    pad = total - len(head)
    yield head + pad.to_bytes(4, "big") + b"free"
    left = pad - 8
    while left >= len(ZEROS):
        yield ZEROS
        left -= len(ZEROS)
    if left:
        yield ZEROS[:left]


class Streamer(ThreadingHTTPServer):
    """GET /video?size=N[&chunked=1] streams ``padded_mp4(N)``; GET /promise?size=N announces
    N bytes and sends none. ``sent`` counts body bytes that went out; ``gave_up`` is set
    when the client closed the connection before the end."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StreamHandler)
        self.sent = 0
        self.gave_up = threading.Event()
        self.finished = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _StreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Streamer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        size, chunked = int(query["size"]), query.get("chunked") == "1"
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(size))
        self.end_headers()
        if urlsplit(self.path).path == "/promise":
            self.server.finished.wait(30)  # never sends the body: a client that waits for it hangs
            return
        try:
            for piece in padded_mp4_pieces(size):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(piece))
                self.wfile.write(piece)
                if chunked:
                    self.wfile.write(b"\r\n")
                self.server.sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client hung up
            self.server.gave_up.set()
            self.close_connection = True


@pytest.fixture
def streamer() -> Iterator[Streamer]:
    server = Streamer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.finished.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def client():
    with http.default_client() as c:
        yield c


def save(client, url: str, folder: Path, task: str = "abc123", provider: str = "Novita") -> Path:
    """Through the hosted backends' own download function, as ``HostedBackend`` calls it."""
    return media.save_video(client, url, folder / f"novita-{task}", job_id=task, provider=provider,
                            timeouts=http.Timeouts())


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def too_large(provider: str, cap: str, task: str, happened: str = "the download was stopped") -> str:
    return (f"The video from {provider} is larger than the {cap} MB limit (MAX_VIDEO_MB); {happened}. "
            f"(task id {task})")


# --- through the providers' fakes (Content-Length given) ------------------------------


@pytest.fixture
def image(photo: Path) -> Image.Image:
    picture = load_image(photo)
    return picture.resize((picture.width // 4, picture.height // 4))


def request(**params) -> GenerationRequest:
    return GenerationRequest(**{k: v for k, v in params.items() if k in PARAMETERS},
                             options={k: v for k, v in params.items() if k not in PARAMETERS})


def test_novita_video_over_the_cap_is_refused_with_the_task_id(client, image, tmp_path, monkeypatch):
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    backend = NovitaBackend(client, **FAST)
    with FakeNovita(KEY, queued_polls=0, processing_polls=0, video_bytes=padded_mp4(100 * 1024)) as nv:
        monkeypatch.setenv("NOVITA_BASE_URL", nv.base_url)
        monkeypatch.setenv("MAX_VIDEO_MB", "0.05")  # 51.2 KB
        job = Job(workdir=tmp_path / "job", api_key=KEY)
        with pytest.raises(VideoTooLarge) as err:
            backend.generate(image, backend.resolve(request()), job)
        task = next(iter(nv.tasks))
        assert str(err.value) == too_large("Novita", "0.05", task) and err.value.job_id == task
        assert files(tmp_path / "job") == []  # no partial file
        # The same video under a cap above it: downloaded whole, and a real video.
        monkeypatch.setenv("MAX_VIDEO_MB", "0.1")
        result = backend.generate(image, backend.resolve(request()), Job(workdir=tmp_path / "ok", api_key=KEY))
        assert result.video.stat().st_size == 100 * 1024 and probe(result.video)[0] == 4


@pytest.mark.parametrize("output_format, happened", [
    ("mp4", "the download was stopped"),
    ("base64", "the download was stopped"),  # a URL of a .base64 text file
    ("inline", "it was not saved"),  # base64 inside the JSON answer
])
def test_modelslab_video_over_the_cap_is_refused_once(client, image, tmp_path, monkeypatch, output_format, happened):
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    backend = ModelsLabBackend(client, **FAST)
    fake = FakeModelsLab(KEY, processing_polls=1, inline_base64=output_format == "inline",
                         video_bytes=padded_mp4(100 * 1024))
    with fake as ml:
        monkeypatch.setenv("MODELSLAB_BASE_URL", ml.base_url)
        monkeypatch.setenv("MAX_VIDEO_MB", "0.05")
        wire = "mp4" if output_format == "mp4" else "base64"
        job = Job(workdir=tmp_path / "job", api_key=KEY)
        with pytest.raises(VideoTooLarge) as err:
            backend.generate(image, backend.resolve(request(width=128, height=128, num_frames=4,
                                                            output_format=wire)), job)
        assert str(err.value) == too_large("ModelsLab", "0.05", "4711", happened)
        assert files(tmp_path / "job") == []
        # The other links (proxy, future) are the same video: not tried after this.
        assert len(ml.requests_for("download")) == (0 if output_format == "inline" else 1)


def test_a_poll_answer_past_the_cap_is_refused_with_the_task_id(client, image, tmp_path, monkeypatch):
    """A status answer is read up to the largest video allowed, as base64 (an answer may
    carry the video inline), and no further: a broken server cannot fill the memory."""
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    monkeypatch.setenv("MAX_VIDEO_MB", "0.05")  # answers up to 0.05 * 4/3 + 1 MB
    backend = NovitaBackend(client, **FAST)
    with FakeNovita(KEY, queued_polls=0, processing_polls=0) as nv:
        monkeypatch.setenv("NOVITA_BASE_URL", nv.base_url)
        nv.script("poll", Reply(json={"task": {"status": "TASK_STATUS_QUEUED"}, "extra": "x" * (2 * MB)}))
        with pytest.raises(http.AnswerTooLarge) as err:
            backend.generate(image, backend.resolve(request()), Job(workdir=tmp_path / "job", api_key=KEY))
        task = next(iter(nv.tasks))
        assert str(err.value) == (f"Novita sent an answer larger than {(0.05 * 4 / 3 * MB + MB) / MB:g} MB "
                                  f"(HTTP 200); it was not read. (task id {task})")
        assert err.value.job_id == task and len(nv.requests_for("poll")) == 1  # not asked again
        assert files(tmp_path / "job") == []


def test_an_answer_without_a_length_is_cut_off_at_the_limit(client, streamer):
    url = streamer.url(f"/video?size={20 * MB}&chunked=1")
    with pytest.raises(http.AnswerTooLarge) as err:
        http.send(client, "GET", url, provider="Novita AI", timeout=http.Timeouts().for_poll(), repeatable=True,
                  limit=MB)
    assert str(err.value) == "Novita AI sent an answer larger than 1 MB (HTTP 200); it was not read."
    assert streamer.gave_up.wait(10) and streamer.sent < 10 * MB  # it stopped reading, the server noticed
    answer = http.send(client, "GET", streamer.url(f"/video?size={MB}&chunked=1"), provider="Novita AI",
                       timeout=http.Timeouts().for_poll(), repeatable=True, limit=MB)
    assert answer.content == padded_mp4(MB)  # exactly at the limit: read whole


# --- streamed without Content-Length, announced and never sent, exactly at the cap -----


def test_chunked_download_is_cut_off_at_the_cap(client, streamer, tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_VIDEO_MB", "0.05")
    started = time.monotonic()
    with pytest.raises(VideoTooLarge) as err:
        save(client, streamer.url(f"/video?size={50 * MB}&chunked=1"), tmp_path)
    assert str(err.value) == too_large("Novita", "0.05", "abc123")
    assert files(tmp_path) == []
    assert streamer.gave_up.wait(5)  # we hung up mid-body...
    assert streamer.sent < 50 * MB and time.monotonic() - started < 5  # ...long before the end


def test_a_declared_size_over_the_cap_is_refused_before_reading(client, streamer, tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_VIDEO_MB", "500")
    started = time.monotonic()
    with pytest.raises(VideoTooLarge) as err:
        save(client, streamer.url(f"/promise?size={10 * 1024 * MB}"), tmp_path, task="t-9")
    assert time.monotonic() - started < 5  # the server never sends a byte: reading would hang 30 s
    assert str(err.value) == too_large("Novita", "500", "t-9")
    assert files(tmp_path) == []


@pytest.mark.parametrize("chunked", ["0", "1"], ids=["content-length", "chunked"])
def test_exactly_at_the_cap_is_fine_one_byte_more_is_not(client, streamer, tmp_path, monkeypatch, chunked):
    size = 300_001
    monkeypatch.setenv("MAX_VIDEO_MB", repr(size / MB))  # exact: size / 2**20 is a binary fraction
    video = save(client, streamer.url(f"/video?size={size}&chunked={chunked}"), tmp_path / "a")
    assert video.stat().st_size == size and probe(video)[0] == 4 and files(tmp_path / "a") == ["novita-abc123.mp4"]
    monkeypatch.setenv("MAX_VIDEO_MB", repr((size - 1) / MB))
    with pytest.raises(VideoTooLarge):
        save(client, streamer.url(f"/video?size={size}&chunked={chunked}"), tmp_path / "b")
    assert files(tmp_path / "b") == []


def test_inline_base64_is_measured_before_decoding(tmp_path, monkeypatch):
    data = padded_mp4(30_000)
    text = "data:video/mp4;base64," + "\n".join(base64.b64encode(data).decode()[i:i + 76]
                                                for i in range(0, 40_000, 76))
    monkeypatch.setenv("MAX_VIDEO_MB", repr(len(data) / MB))
    video = media.decode_base64_video(text, tmp_path / "a" / "v", job_id="7", provider="ModelsLab")
    assert video.read_bytes() == data and files(tmp_path / "a") == ["v.mp4"]
    monkeypatch.setenv("MAX_VIDEO_MB", repr((len(data) - 1) / MB))
    with pytest.raises(VideoTooLarge) as err:
        media.decode_base64_video(text, tmp_path / "b" / "v", job_id="7", provider="ModelsLab")
    assert str(err.value) == too_large("ModelsLab", "0.0286093", "7", "it was not saved")  # the cap, to 6 digits
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_a_bad_cap_is_named(client, streamer, tmp_path, monkeypatch):
    monkeypatch.setenv("MAX_VIDEO_MB", "big")
    with pytest.raises(BadSetting) as err:
        save(client, streamer.url("/video?size=5000"), tmp_path)
    assert str(err.value) == "MAX_VIDEO_MB must be a number, 0 or more, got 'big'."


# --- memory -------------------------------------------------------------------------


def test_memory_does_not_grow_with_the_file(client, streamer, tmp_path, monkeypatch):
    """200 MB through the download, the completeness check and the decode check: Python
    never holds more than a few chunks of it."""
    size = 200 * MB
    monkeypatch.setenv("MAX_VIDEO_MB", "300")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the peak so far
    tracemalloc.start()
    try:
        started = time.monotonic()
        video = save(client, streamer.url(f"/video?size={size}&chunked=1"), tmp_path)
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    said = f"{seconds:.1f} s, Python peak {peak / MB:.2f} MB, peak RSS growth {rss_growth / 1024:.1f} MB"
    assert video.stat().st_size == size and probe(video)[0] == 4
    assert peak < 20 * MB, said  # measured: 0.32 MB (the code before this streamed check: the whole file)
    assert rss_growth < 50 * 1024, said
