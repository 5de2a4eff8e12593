"""Push notifications to an ntfy-style endpoint: an HTTP POST of plain text.

A notification is a courtesy: failing to send one must never fail a job, so `notify`
reports a failure as text and raises nothing but cancellation.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from email.header import Header

from drapto_engine.core.text import shown

_SCHEMES = ("http", "https")
_BODY_EXCERPT = 120


async def notify(
    url: str,
    title: str,
    message: str,
    *,
    tags: Sequence[str] = (),
    timeout_s: float = 5.0,
) -> str | None:
    """POST `message` to `url` with ntfy's Title and Tags headers.

    Returns None once the server answered 2xx, otherwise a one-line reason (bad URL,
    refused connection, timeout, an error status)."""
    problem = check_url(url)
    if problem is not None:
        return problem
    try:
        request = urllib.request.Request(
            url,
            data=shown(message).encode("utf-8"),  # a name that is not UTF-8 escaped
            method="POST",
            headers=_headers(shown(title), tags),
        )
        return await asyncio.to_thread(_send, request, timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure is reported, never raised: see the module doc
        return _describe(exc, timeout_s)


def check_url(url: str) -> str | None:
    """None for an http(s) URL with a host, otherwise what is wrong with it."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    if parts.scheme.lower() not in _SCHEMES:
        return f"invalid URL {url!r}: only http and https are supported"
    if not parts.hostname:
        return f"invalid URL {url!r}: no host"
    return None


def _headers(title: str, tags: Sequence[str]) -> dict[str, str]:
    headers = {"Content-Type": "text/plain; charset=utf-8", "Title": _header_value(title)}
    joined = ",".join(t.strip() for t in tags if t.strip())
    if joined:
        headers["Tags"] = _header_value(joined)
    return headers


def _header_value(text: str) -> str:
    """One line; non-ASCII as an RFC 2047 encoded word (ntfy decodes it), since HTTP
    headers go out as Latin-1 and a file name may hold any character."""
    line = " ".join(text.split())
    if line.isascii():
        return line
    return Header(line, "utf-8").encode(maxlinelen=10_000)


def _send(request: urllib.request.Request, timeout_s: float) -> str | None:
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        status = int(response.status)
    if 200 <= status < 300:
        return None
    return f"HTTP {status} from {request.full_url}"


def _describe(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}{_excerpt(exc)}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, Exception) else exc
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect: {exc.strerror}"
    return _one_line(f"{type(exc).__name__}: {exc}")


def _excerpt(exc: urllib.error.HTTPError) -> str:
    """The start of the server's explanation, if it sent one."""
    try:
        body = exc.read(_BODY_EXCERPT * 4).decode("utf-8", "replace")
    except Exception:  # the explanation is optional; the status already says it failed
        return ""
    text = _one_line(body)
    return f": {text[:_BODY_EXCERPT]}" if text else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())
