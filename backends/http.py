"""HTTP plumbing shared by the hosted backends: the client, keys, defensive JSON, downloads.

The default ``httpx.Client`` is built here and nowhere else (STYLE.md lesson 7), with
explicit timeouts and our user agent. Foreign exceptions from httpx and from decoding a
download are translated into the studio's error tree here, once, keeping the task id so
a person can always find their job again.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from backends.base import Job
from backends.polling import Transient
from studio import secrets, video
from studio.errors import GenerationFailed, InvalidParameter, MissingKey, ProviderError

USER_AGENT = "svd-studio/0.1"


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait. Submits may be held open by the server while it works (ModelsLab
    answers ``success`` at once for short jobs, api-contracts §1.4), so they get longer."""

    connect: float = 10.0
    submit: float = 60.0
    poll: float = 30.0
    download: float = 120.0

    def for_submit(self) -> httpx.Timeout:
        return httpx.Timeout(self.submit, connect=self.connect)

    def for_poll(self) -> httpx.Timeout:
        return httpx.Timeout(self.poll, connect=self.connect)

    def for_download(self) -> httpx.Timeout:
        return httpx.Timeout(self.download, connect=self.connect)


def default_client(timeouts: Timeouts | None = None) -> httpx.Client:
    """The one place the production client is configured."""
    t = timeouts or Timeouts()
    return httpx.Client(
        timeout=t.for_submit(),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=True,  # CDN / proxy links redirect to the bucket
    )


def api_key(job: Job, env: str, label: str) -> str:
    """The key pasted on the page wins over the environment; none at all is a clear
    ``MissingKey`` raised before any network call."""
    key = (job.api_key or "").strip() or os.environ.get(env, "").strip()
    secrets.remember(key)  # from now on it is masked in every message and log line
    if not key:
        raise MissingKey(f"{label} needs an API key: set {env} or paste a key into the API key field.")
    return key


def resume_start(backend: Any, job: Job, job_id: str, seconds: float) -> tuple[str, str, float]:
    """What resuming a hosted job needs first: the key, a non-empty task id (shown to the
    person at once) and the deadline."""
    key = api_key(job, backend.key_env or "", backend.label)
    task_id = str(job_id or "").strip()
    if not task_id:
        raise InvalidParameter("task id", job_id, f"the id {backend.label} gave the job", backend.label)
    job.on_job_id(task_id)
    return key, task_id, time.monotonic() + seconds


def send(client: httpx.Client, method: str, url: str, *, provider: str, timeout: httpx.Timeout,
         repeatable: bool, **kwargs: Any) -> httpx.Response:
    """One request, with httpx's transport errors translated.

    Failing to connect never reached the server, so it is always worth another try
    (``Transient``). A read timeout or a dropped connection after sending is only
    ``Transient`` for ``repeatable`` requests (polls): a submit may have created a job,
    and sending it again could charge the person twice (api-contracts §3.5).
    """
    try:
        return client.request(method, url, timeout=timeout, **kwargs)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ProviderError(f"The {provider} address {url!r} is not a valid http(s) URL; check its base URL "
                            "setting.") from exc
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Transient(f"Could not reach {provider} ({type(exc).__name__}).") from exc
    except httpx.RequestError as exc:
        if repeatable:
            raise Transient(f"{provider} did not answer in time ({type(exc).__name__}).") from exc
        raise not_resubmitted(provider, type(exc).__name__) from exc


def not_resubmitted(provider: str, why: str) -> ProviderError:
    return ProviderError(
        f"{provider} did not answer the submit request ({why}). The job may have been created anyway, "
        "so it was not sent again (that could charge you twice). Check your jobs on "
        f"{provider}'s dashboard before trying again."
    )


def image_base64(image: Image.Image, max_bytes: int | None = None) -> tuple[str, str]:
    """(base64 text, format) of ``image``: PNG when it fits in ``max_bytes`` of base64,
    otherwise JPEG at falling quality (api-contracts §2.1: Novita takes at most 30 MB)."""
    attempts: list[tuple[str, dict[str, Any]]] = [("PNG", {})]
    if max_bytes is not None:
        attempts += [("JPEG", {"quality": q}) for q in (95, 85, 70, 50)]
    text, fmt = "", "PNG"
    for fmt, options in attempts:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        text = base64.b64encode(buffer.getvalue()).decode("ascii")
        if max_bytes is None or len(text) <= max_bytes:
            break
    return text, fmt


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The body as a dict, or ``{}`` when it is not a JSON object (an HTML error page
    from a gateway on 5xx, an empty body, a bare string: api-contracts §3.1)."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def body_snippet(response: httpx.Response, limit: int = 120) -> str:
    """A short, readable description of a non-JSON body: an HTML page's title, or its
    first words, so an error message says "502 Bad Gateway" rather than dumping markup."""
    text = response.text or ""
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        text = title.group(1)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def retry_after(response: httpx.Response, body: dict[str, Any]) -> float | None:
    """Seconds the server asked us to wait: ``retry_after`` in a ModelsLab body
    (api-contracts §1.7) or the standard ``Retry-After`` header (Novita may send it, §2.7)."""
    for raw in (body.get("retry_after"), response.headers.get("Retry-After")):
        try:
            if raw is not None and float(raw) >= 0:
                return float(raw)
        except (TypeError, ValueError):
            continue  # an HTTP-date Retry-After: fall back to our own backoff
    return None


def number(value: Any) -> float | None:
    """A number that may arrive as int, float or string ("3600", 12.5); None otherwise.
    api-contracts §2.2: TTLs, seeds and times drift between strings and numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(str(value).strip())
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``{}``: nested fields may be missing or odd."""
    return value if isinstance(value, dict) else {}


def redact(text: str, secret: str | None) -> str:
    """Remove an API key from text that came from a provider before it reaches a person."""
    return secrets.redact(text.replace(secret, "***") if secret else text)


def base64_placeholder(data: str, kind: str) -> str:
    """What ``Result.sent`` shows instead of a megabyte of base64."""
    return f"<base64 {kind}, {len(data)} bytes>"


# --- downloads ----------------------------------------------------------------------


def download(client: httpx.Client, url: str, dest_stem: Path, *, job_id: str, provider: str,
             timeouts: Timeouts) -> Path:
    """Stream ``url`` next to ``dest_stem`` and make sure it is a complete, decodable video.

    Output links expire (ModelsLab 24 h, Novita about 1 h: api-contracts §1.8, §2.6), so
    this runs as soon as a job is done; every failure names the task id. The file gets
    the suffix its content calls for (.mp4, .gif), whatever the URL says.
    """
    raw = dest_stem.with_suffix(".download")
    _stream_to(client, url, raw, job_id=job_id, provider=provider, timeouts=timeouts)
    dest = dest_stem.with_suffix(_suffix(raw))
    raw.replace(dest)
    return check_video(dest, job_id=job_id, provider=provider)


def download_base64(client: httpx.Client, url: str, dest_stem: Path, *, job_id: str, provider: str,
                    timeouts: Timeouts) -> Path:
    """A ``.base64`` text file holding the video (api-contracts §1.4), decoded."""
    raw = dest_stem.with_suffix(".base64")
    _stream_to(client, url, raw, job_id=job_id, provider=provider, timeouts=timeouts)
    return decode_base64_video(raw.read_text("ascii", errors="replace"), dest_stem, job_id=job_id,
                               provider=provider)


def _stream_to(client: httpx.Client, url: str, dest: Path, *, job_id: str, provider: str,
               timeouts: Timeouts) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with client.stream("GET", url, timeout=timeouts.for_download()) as response:
            if response.status_code >= 400:
                response.read()
                raise GenerationFailed(_http_problem(response, provider), job_id=job_id)
            ctype = response.headers.get("Content-Type", "")
            with dest.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        # A connection dropped mid-body is httpx's RemoteProtocolError: an incomplete file.
        raise GenerationFailed(
            f"The video download from {provider} broke off ({type(exc).__name__}); the file is incomplete. "
            "Try again later: resume with the task id.",
            job_id=job_id,
        ) from exc
    # api-contracts §1.4: a not-ready future_link serves an HTML placeholder, sometimes with 200.
    if ctype.startswith("text/html") or _looks_like_html(dest):
        raise GenerationFailed(
            f"The video link from {provider} returned a web page instead of a video "
            "(the file may not be ready yet, or the link is wrong).",
            job_id=job_id,
        )


def browser_video(path: Path) -> tuple[Path, Path | None]:
    """(browser-playable MP4, the provider's GIF if it sent one). An H.264 MP4 is kept as
    it came; a GIF or any other container is re-encoded with ``studio.video``."""
    if path.suffix == ".mp4":
        return path, None
    mp4 = video.to_browser_mp4(path, path.with_name(path.stem + "-browser.mp4"))
    return mp4, path if path.suffix == ".gif" else None


def _suffix(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(12)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if head[4:8] == b"ftyp":
        return ".mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    return ".video"


def decode_base64_video(text: str, dest_stem: Path, *, job_id: str, provider: str) -> Path:
    """Decode a base64 video, with or without a ``data:video/mp4;base64,`` prefix
    (api-contracts §1.4), to a file named after what it contains."""
    text = text.strip()
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GenerationFailed(
            f"{provider} sent base64 output that cannot be decoded (it may be cut short).", job_id=job_id
        ) from exc
    raw = dest_stem.with_suffix(".decoded")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(data)
    dest = dest_stem.with_suffix(_suffix(raw))
    raw.replace(dest)
    return check_video(dest, job_id=job_id, provider=provider)


def check_video(path: Path, *, job_id: str, provider: str) -> Path:
    """Raise unless ``path`` is a whole video: structurally complete and decodable.

    The structural check matters because ffmpeg decodes half a GIF without complaint
    (it even reports more frames than the whole file has).
    """
    if not _complete(path):
        raise GenerationFailed(
            f"The video from {provider} is truncated or not a video file ({path.stat().st_size} bytes); "
            "the download was incomplete. Try again: resume with the task id.",
            job_id=job_id,
        )
    try:
        video.probe(path)
    except GenerationFailed as exc:  # its message carries ffmpeg's whole log; keep ours short
        raise GenerationFailed(
            f"The file from {provider} is not a video that can be decoded ({path.stat().st_size} bytes).",
            job_id=job_id,
        ) from exc
    return path


def _http_problem(response: httpx.Response, provider: str) -> str:
    code = response.status_code
    text = response.text or ""
    # api-contracts §2.6: presigned S3 links answer 403 with an XML "Request has expired".
    if "Request has expired" in text or "ExpiredToken" in text:
        return (f"The video link from {provider} has expired (HTTP {code}); outputs are only kept for a "
                "short time. Run the job again.")
    if code in (403, 404):
        return (f"The video from {provider} could not be downloaded (HTTP {code}: the link has expired "
                "or the file is gone).")
    return f"The video from {provider} could not be downloaded (HTTP {code}: {body_snippet(response)})."


def _looks_like_html(path: Path) -> bool:
    # api-contracts §1.4: not-ready future_links serve an HTML placeholder, sometimes with 200.
    with path.open("rb") as fh:
        head = fh.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml"))


def _complete(path: Path) -> bool:
    """Whether a file is a complete MP4/MOV (every top-level box fits) or GIF (has its
    trailer). Other containers (WebM...) are left to the decoder."""
    data = path.read_bytes()
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return data.rstrip(b"\x00").endswith(b"\x3b")
    if len(data) >= 8 and data[4:8] == b"ftyp":
        return _boxes_fit(data)
    return len(data) > 0 and not data.lstrip().startswith((b"<", b"{"))


def _boxes_fit(data: bytes) -> bool:
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            return False
        size = int.from_bytes(data[pos:pos + 4], "big")
        if size == 1:  # 64-bit size follows the type
            if end - pos < 16:
                return False
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        elif size == 0:  # box runs to the end of the file
            return True
        if size < 8 or pos + size > end:
            return False
        pos += size
    return True
