"""Talking to a hosted provider: the HTTP client, one request, defensive reading of answers.

The default ``httpx.Client`` is built here and nowhere else (STYLE.md lesson 7), with
explicit timeouts and our user agent. httpx's transport errors are translated into the
studio's error tree here, once (``send``). What comes back is read defensively: bodies
that are not JSON objects, numbers sent as strings, keys echoed in messages. Downloading
and checking the video is ``backends.media``; the flow of a job is ``backends.hosted``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from backends.polling import Transient
from studio import secrets
from studio.errors import ProviderError

USER_AGENT = "svd-studio/0.1"


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait. A submit may be held open by the server while it works (ModelsLab
    does when not asked for an instant response, docs/hosted-apis.md §1.4), so it gets longer."""

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


def send(client: httpx.Client, method: str, url: str, *, provider: str, timeout: httpx.Timeout,
         repeatable: bool, limit: int | None = None, **kwargs: Any) -> httpx.Response:
    """One request, read whole (at most ``limit`` bytes), with httpx's transport errors translated.

    Failing to connect never reached the server, so it is always worth another try
    (``Transient``). A read timeout or a dropped connection after sending is only
    ``Transient`` for ``repeatable`` requests (polls): a submit may have created a job,
    and sending it again could charge the person twice (docs/hosted-apis.md §3.5).
    An answer past ``limit`` is stopped there, so a broken or hostile server cannot
    fill the memory of a studio that serves everyone (``AnswerTooLarge``).
    """
    try:
        response = client.send(client.build_request(method, url, timeout=timeout, **kwargs), stream=True)
        try:
            _read(response, limit, provider)
        finally:
            response.close()
        return response
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ProviderError(f"The {provider} address {url!r} is not a valid http(s) URL; check its base URL "
                            "setting.") from exc
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Transient(f"Could not reach {provider} ({type(exc).__name__}).") from exc
    except httpx.RequestError as exc:
        if repeatable:
            raise Transient(f"{provider} did not answer in time ({type(exc).__name__}).") from exc
        raise not_resubmitted(provider, type(exc).__name__) from exc


class AnswerTooLarge(ProviderError):
    """A provider's answer (not a video download) went past the size we read."""


def _read(response: httpx.Response, limit: int | None, provider: str) -> None:
    """``response.read()``, stopping at ``limit`` bytes (after decompression: that is what
    lands in memory). A declared Content-Length over the limit is refused unread."""
    if limit is None:
        response.read()
        return
    declared = response.headers.get("Content-Length", "")
    too_large = AnswerTooLarge(f"{provider} sent an answer larger than {limit / 2**20:g} MB (HTTP "
                               f"{response.status_code}); it was not read.", status=response.status_code)
    if declared.isdigit() and int(declared) > limit and "Content-Encoding" not in response.headers:
        raise too_large
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    response._content = b"".join(chunks)  # what httpx's own read() stores; .json() and .text use it


def not_resubmitted(provider: str, why: str) -> ProviderError:
    return ProviderError(
        f"{provider} did not answer the submit request ({why}). The job may have been created anyway, "
        "so it was not sent again (that could charge you twice). Check your jobs on "
        f"{provider}'s dashboard before trying again."
    )


def image_base64(image: Image.Image, max_bytes: int | None = None) -> tuple[str, str]:
    """(base64 text, format) of ``image``: PNG when it fits in ``max_bytes`` of base64,
    otherwise JPEG at falling quality (docs/hosted-apis.md §2.1: Novita takes at most 30 MB)."""
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
    from a gateway on 5xx, an empty body, a bare string: docs/hosted-apis.md §3.1)."""
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
    (docs/hosted-apis.md §1.7) or the standard ``Retry-After`` header (Novita may send it, §2.7)."""
    for raw in (body.get("retry_after"), response.headers.get("Retry-After")):
        try:
            if raw is not None and float(raw) >= 0:
                return float(raw)
        except (TypeError, ValueError):
            continue  # an HTTP-date Retry-After: fall back to our own backoff
    return None


def number(value: Any) -> float | None:
    """A number that may arrive as int, float or string ("3600", 12.5); None otherwise.
    docs/hosted-apis.md §2.2: TTLs, seeds and times drift between strings and numbers."""
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
