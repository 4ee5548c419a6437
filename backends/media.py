"""Getting a hosted video onto disk and making sure it is one.

Output links expire (ModelsLab 24 h, Novita about 1 h: docs/hosted-apis.md §1.8, §2.6),
so a job's video is fetched as soon as it is done: streamed from a URL, read from a
``.base64`` text file, or decoded from inline base64, then checked (not an HTML page,
structurally complete, decodable). Every failure is a ``GenerationFailed`` that names the
task id, so a person can always find their job again.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from backends.http import Timeouts, body_snippet
from studio import video
from studio.errors import GenerationFailed


def safe_name(text: str, limit: int = 64) -> str:
    """``text`` (a provider's task id, perhaps pasted by a person) as one harmless file-name
    part: letters, digits, '-' and '_' only, so "../x" or "a/b" cannot leave the job folder."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:limit]


def save_video(client: httpx.Client, link: str, dest_stem: Path, *, job_id: str, provider: str,
               timeouts: Timeouts) -> Path:
    """One output link as a checked video next to ``dest_stem``. A link may be inline
    base64 data, a URL of a ``.base64`` text file, or a plain video URL (§1.4)."""
    if not link.startswith(("http://", "https://")):
        return decode_base64_video(link, dest_stem, job_id=job_id, provider=provider)
    fetch = download_base64 if urlsplit(link).path.endswith(".base64") else download
    return fetch(client, link, dest_stem, job_id=job_id, provider=provider, timeouts=timeouts)


def download(client: httpx.Client, url: str, dest_stem: Path, *, job_id: str, provider: str,
             timeouts: Timeouts) -> Path:
    """Stream ``url`` next to ``dest_stem`` and make sure it is a complete, decodable video.
    The file gets the suffix its content calls for (.mp4, .gif), whatever the URL says."""
    raw = dest_stem.with_suffix(".download")
    _stream_to(client, url, raw, job_id=job_id, provider=provider, timeouts=timeouts)
    dest = dest_stem.with_suffix(_suffix(raw))
    raw.replace(dest)
    return check_video(dest, job_id=job_id, provider=provider)


def download_base64(client: httpx.Client, url: str, dest_stem: Path, *, job_id: str, provider: str,
                    timeouts: Timeouts) -> Path:
    """A ``.base64`` text file holding the video (docs/hosted-apis.md §1.4), decoded."""
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
    # docs/hosted-apis.md §1.4: a not-ready future_link serves an HTML placeholder, sometimes with 200.
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
    (docs/hosted-apis.md §1.4), to a file named after what it contains."""
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
    # docs/hosted-apis.md §2.6: presigned S3 links answer 403 with an XML "Request has expired".
    if "Request has expired" in text or "ExpiredToken" in text:
        return (f"The video link from {provider} has expired (HTTP {code}); outputs are only kept for a "
                "short time. Run the job again.")
    if code in (403, 404):
        return (f"The video from {provider} could not be downloaded (HTTP {code}: the link has expired "
                "or the file is gone).")
    return f"The video from {provider} could not be downloaded (HTTP {code}: {body_snippet(response)})."


def _looks_like_html(path: Path) -> bool:
    # docs/hosted-apis.md §1.4: not-ready future_links serve an HTML placeholder, sometimes with 200.
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
