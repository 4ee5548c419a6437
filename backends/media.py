"""Getting a hosted video onto disk and making sure it is one.

Output links expire (ModelsLab 24 h, Novita about 1 h: docs/hosted-apis.md §1.8, §2.6),
so a job's video is fetched as soon as it is done: streamed from a URL, read from a
``.base64`` text file, or decoded from inline base64, then checked (not an HTML page,
structurally complete, decodable). Every failure is a ``GenerationFailed`` that names the
task id, so a person can always find their job again.

A video is never held in memory whole: downloads are written in the chunks they arrive
in, base64 is decoded piece by piece, and the completeness check seeks through the file.
Every video is capped at ``MAX_VIDEO_MB`` (default 500, fractions allowed; MB is 2**20
bytes): a declared ``Content-Length`` over it is refused before any byte is read, and a
body that passes it while streaming is cut off at once, its partial file deleted.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator
from urllib.parse import urlsplit

import httpx

from backends.http import Timeouts, body_snippet
from studio import outputs, video
from studio.errors import GenerationFailed, VideoTooLarge

DEFAULT_MAX_VIDEO_MB = 500.0
CHUNK = 1024 * 1024  # base64 text decoded, and file tails read, this much at a time
_DATA_PREFIX = re.compile(r"\s*data:[^,]{0,200},")  # data:video/mp4;base64, (docs/hosted-apis.md §1.4)


def max_video_bytes() -> int:
    """The cap on one video, read at every download so a changed ``MAX_VIDEO_MB`` counts at once."""
    return int(outputs.env_number("MAX_VIDEO_MB", DEFAULT_MAX_VIDEO_MB) * outputs.MB)


def too_large(provider: str, job_id: str, what_happened: str = "the download was stopped") -> VideoTooLarge:
    mb = outputs.env_number("MAX_VIDEO_MB", DEFAULT_MAX_VIDEO_MB)
    return VideoTooLarge(f"The video from {provider} is larger than the {mb:g} MB limit (MAX_VIDEO_MB); "
                         f"{what_happened}.", job_id=job_id)


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
    _stream_to(client, url, raw, job_id=job_id, provider=provider, timeouts=timeouts, limit=max_video_bytes())
    dest = dest_stem.with_suffix(_suffix(raw))
    raw.replace(dest)
    return check_video(dest, job_id=job_id, provider=provider)


def download_base64(client: httpx.Client, url: str, dest_stem: Path, *, job_id: str, provider: str,
                    timeouts: Timeouts) -> Path:
    """A ``.base64`` text file holding the video (docs/hosted-apis.md §1.4), decoded piece by
    piece; the text itself is only kept until it is decoded."""
    raw = dest_stem.with_suffix(".base64")
    limit = max_video_bytes()
    # Base64 is 4 characters per 3 bytes; line breaks and a data: prefix add a little more.
    _stream_to(client, url, raw, job_id=job_id, provider=provider, timeouts=timeouts,
               limit=(limit // 3 + 1) * 4 * 80 // 76 + 1024)
    try:
        return _decode_to_video(_file_pieces(raw), dest_stem, limit, job_id=job_id, provider=provider)
    finally:
        raw.unlink(missing_ok=True)


def _stream_to(client: httpx.Client, url: str, dest: Path, *, job_id: str, provider: str,
               timeouts: Timeouts, limit: int) -> None:
    """Write the body to ``dest`` as it arrives, never more than ``limit`` bytes of it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with client.stream("GET", url, timeout=timeouts.for_download()) as response:
            if response.status_code >= 400:
                response.read()  # an error page: small, and its text is the message
                raise GenerationFailed(_http_problem(response, provider), job_id=job_id)
            ctype = response.headers.get("Content-Type", "")
            declared = _declared_length(response)
            if declared is not None and declared > limit:
                raise too_large(provider, job_id)  # leaving the block closes the connection: nothing is read
            written = 0
            with dest.open("wb") as fh:
                for chunk in response.iter_bytes():  # decoded bytes, as they arrive: a gzip bomb is capped too
                    written += len(chunk)
                    if written > limit:
                        raise too_large(provider, job_id)
                    fh.write(chunk)
    except VideoTooLarge:
        dest.unlink(missing_ok=True)
        raise
    except (httpx.RequestError, httpx.InvalidURL) as exc:
        dest.unlink(missing_ok=True)
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


def _declared_length(response: httpx.Response) -> int | None:
    """The body's size as the server states it, where that is the size we will write: not
    for a compressed body, whose Content-Length is the compressed size."""
    if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return None
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


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
    """Decode a base64 video sent inside a JSON answer, with or without a
    ``data:video/mp4;base64,`` prefix (docs/hosted-apis.md §1.4), to a file named after
    what it contains. Its decoded size is known from its length, so an oversized one is
    refused before anything is decoded."""
    limit = max_video_bytes()
    prefix = _DATA_PREFIX.match(text)
    start = prefix.end() if prefix else 0
    spaces = sum(text.count(c, start) for c in " \t\r\n\f\v")
    padding = len(text[-8:].rstrip()) - len(text[-8:].rstrip().rstrip("="))
    if (len(text) - start - spaces) // 4 * 3 - padding > limit:
        raise too_large(provider, job_id, "it was not saved")
    pieces = (text[i:i + CHUNK] for i in range(start, len(text), CHUNK))
    return _decode_to_video(pieces, dest_stem, limit, job_id=job_id, provider=provider)


def _file_pieces(path: Path) -> Iterator[str]:
    """A ``.base64`` file's text in pieces, without its ``data:`` prefix."""
    with path.open("r", encoding="ascii", errors="replace") as fh:  # a stray byte fails the decoding
        first = fh.read(CHUNK)
        prefix = _DATA_PREFIX.match(first)
        yield first[prefix.end():] if prefix else first
        while piece := fh.read(CHUNK):
            yield piece


def _decode_to_video(pieces: Iterable[str], dest_stem: Path, limit: int, *, job_id: str, provider: str) -> Path:
    raw = dest_stem.with_suffix(".decoded")
    raw.parent.mkdir(parents=True, exist_ok=True)
    try:
        with raw.open("wb") as fh:
            _decode_base64(pieces, fh, limit, provider=provider, job_id=job_id)
    except (binascii.Error, ValueError) as exc:
        raw.unlink(missing_ok=True)
        raise GenerationFailed(
            f"{provider} sent base64 output that cannot be decoded (it may be cut short).", job_id=job_id
        ) from exc
    except VideoTooLarge:
        raw.unlink(missing_ok=True)
        raise
    dest = dest_stem.with_suffix(_suffix(raw))
    raw.replace(dest)
    return check_video(dest, job_id=job_id, provider=provider)


def _decode_base64(pieces: Iterable[str], out: BinaryIO, limit: int, *, provider: str, job_id: str) -> None:
    """Strict base64 (as ``b64decode(validate=True)`` on the whole text, whitespace aside)
    decoded in 4-character-aligned blocks, so only one piece is in memory at a time."""
    carry, written, ended = "", 0, False
    for piece in pieces:
        text = carry + "".join(piece.split())
        usable = len(text) - len(text) % 4
        block, carry = text[:usable], text[usable:]
        if not block:
            continue
        if ended:  # padding only ever ends the data
            raise binascii.Error("data after the padding")
        data = base64.b64decode(block, validate=True)
        ended = block.endswith("=")
        written += len(data)
        if written > limit:
            raise too_large(provider, job_id)
        out.write(data)
    if carry:
        raise binascii.Error("incorrect padding")


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
    trailer). Other containers (WebM...) are left to the decoder. Reads a few bytes here
    and there, never the whole file."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return _gif_ends(fh, size)
        if len(head) >= 8 and head[4:8] == b"ftyp":
            return _boxes_fit(fh, size)
        return size > 0 and not _starts_like_text(fh)


def _gif_ends(fh: BinaryIO, end: int) -> bool:
    """The last byte that is not zero padding is the GIF trailer (0x3b)."""
    while end > 0:
        start = max(0, end - CHUNK)
        fh.seek(start)
        tail = fh.read(end - start).rstrip(b"\x00")
        if tail:
            return tail.endswith(b"\x3b")
        end = start
    return False


def _boxes_fit(fh: BinaryIO, end: int) -> bool:
    """Walk the top-level boxes by their headers alone, seeking over their contents."""
    pos = 0
    while pos < end:
        if end - pos < 8:
            return False
        fh.seek(pos)
        header = fh.read(16)
        size = int.from_bytes(header[:4], "big")
        if size == 1:  # 64-bit size follows the type
            if end - pos < 16:
                return False
            size = int.from_bytes(header[8:16], "big")
        elif size == 0:  # box runs to the end of the file
            return True
        if size < 8 or pos + size > end:
            return False
        pos += size
    return True


def _starts_like_text(fh: BinaryIO) -> bool:
    """Whether the first byte that is not white space opens markup or JSON."""
    fh.seek(0)
    while chunk := fh.read(CHUNK):
        rest = chunk.lstrip()
        if rest:
            return rest[:1] in (b"<", b"{")
    return False
