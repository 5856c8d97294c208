"""One bounded HTTP exchange and the classification of its answer.

A response is bounded in size (compressed and decompressed) and in time, a redirect is
never followed, and every answer that is not 2xx becomes one exception of
:mod:`batchsync.sendcloud.errors`, built from what a server wrote made safe to print (no
credential, no control character). The client and the authenticator both go through here.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from yarl import URL

from batchsync import wire
from batchsync.redact import Redactor
from batchsync.sendcloud._aiohttp import aiohttp, hdrs
from batchsync.sendcloud.errors import (
    ApiError,
    AuthError,
    BodyTooLarge,
    ClientError,
    InvalidResponseError,
    NotFoundError,
    NotSupportedError,
    RedirectError,
    RequestTimeout,
    ServerError,
    ThrottledError,
    TLSError,
    TransportError,
)
from batchsync.sendcloud.headers import parse_retry_after
from batchsync.text import one_line

# The API's largest answer (GET statuses of a shop with many statuses in 7 languages, or a
# page of integrations) is a few hundred KB at most; a few times that leaves room for
# growth. Applies to the decompressed body, so a gzip bomb stops here. It is per request,
# and up to --concurrency requests read at once: 1 MiB keeps a run of hostile answers
# within about 150 MB (tests/test_hostile_run.py measures it).
MAX_BODY = 1024 * 1024


# Of an error response (3xx-5xx) only this much is read: a JSON:API error list fits many
# times over, and an HTML error page of a proxy is classified by its status anyway.
ERROR_BODY_MAX = 64 * 1024


DETAIL_MAX = 300  # characters of server-written text in an exception


LOCATION_MAX = 200


_errors_decoder = msgspec.json.Decoder(wire.ErrorBody)


_NO_SECRETS = Redactor(())


def printable(text: str, redact: Callable[[str], str] = _NO_SECRETS, limit: int = DETAIL_MAX) -> str:
    """Server-written ``text`` as one short, safe line (see :func:`batchsync.text.one_line`)."""
    return one_line(text, redact, limit)


def _snippet(body: bytes, redact: Callable[[str], str] = _NO_SECRETS) -> str:
    """A short, printable hint of an undocumented body (an HTML page, say)."""
    if not body.strip():
        return "empty body"
    text = body.decode("utf-8", "replace")
    # JSON as its values read: a server that echoes a credential JSON-escaped ("a\/b",
    # "\u0053K") must meet the redactor in the form the redactor knows.
    with contextlib.suppress(msgspec.DecodeError, msgspec.EncodeError, RecursionError, UnicodeDecodeError):
        text = msgspec.json.encode(msgspec.json.decode(body)).decode()
    return "unexpected body: " + printable(text, redact, 120)


def safe_location(value: str, redact: Callable[[str], str] = _NO_SECRETS) -> str:
    """A Location header fit to print: no user info, no query or fragment (either may
    hold a token), no control characters, truncated."""
    value = printable(value, redact, 4 * LOCATION_MAX)
    try:
        url = URL(value)
        shown = str(url.with_user(None).with_query(None).with_fragment(None))
        if url.raw_query_string or url.raw_fragment:
            shown += "?…"
    except (ValueError, TypeError):
        shown = value
    return printable(shown, redact, LOCATION_MAX)


def _first_error(body: bytes) -> wire.ErrorObject | None:
    try:
        errors = _errors_decoder.decode(body).errors
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return errors[0] if errors else None


def classify(
    method: str,
    url: str,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    redact: Callable[[str], str] = _NO_SECRETS,
) -> ApiError:
    """The exception for a response that is not 2xx."""
    first = _first_error(body)
    # An empty body says nothing: the kind's own words below say it better.
    detail = printable(first.detail, redact) if first else _snippet(body, redact) if body.strip() else ""
    pointer = first.source.pointer if first and first.source else None
    common: dict[str, Any] = {
        "method": method,
        "url": url,
        "http_status": status,
        "code": printable(first.code, redact, 64) if first else None,
        "pointer": printable(pointer, redact, 200) if pointer else None,
    }
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return ThrottledError(detail or "too many requests", retry_after=retry_after, **common)
    if status >= 500:
        return ServerError(detail or "server error", **common)
    if status == 401:
        return AuthError(detail or "authentication failed", **common)
    if status == 404:
        return NotFoundError(detail or "not found", **common)
    if status == 400 and "prestashop" in detail.lower():
        return NotSupportedError(detail, **common)
    if 300 <= status < 400:
        location = safe_location(headers.get("Location") or "", redact)
        where = f"to {location}" if location else "without a Location"
        return RedirectError(f"redirect {where} (redirects are not followed)", location=location, **common)
    return ClientError(detail or f"HTTP {status}", **common)


def transport_error(exc: aiohttp.ClientError, method: str, url: str) -> ApiError:
    """The exception for a request that got no usable response.

    Built from fields that cannot hold a credential: str() of some aiohttp errors
    includes the request's info (headers), so it is never used."""
    name = type(exc).__name__
    where: dict[str, Any] = {"method": method, "url": url}
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        reason = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or type(cert).__name__
        return TLSError(f"TLS certificate of {exc.host}:{exc.port} not accepted ({reason})", **where)
    if isinstance(exc, aiohttp.ClientConnectorSSLError) and not isinstance(exc.os_error, ssl.SSLEOFError):
        reason = getattr(exc.os_error, "reason", None) or type(exc.os_error).__name__
        return TLSError(f"TLS handshake with {exc.host}:{exc.port} failed ({reason})", **where)
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return TLSError(f"TLS certificate of {exc.host}:{exc.port} does not match the pinned fingerprint", **where)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return TransportError(f"{name}: cannot connect to {exc.host}:{exc.port} ({reason})", **where)
    return TransportError(name, **where)


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A total bound on one exchange: connection, headers and the whole body.

    aiohttp rounds a timeout of 5 s or more up to the next whole second of the loop's
    clock (``ceil_threshold``); an infinite threshold keeps it to ``seconds``."""
    return aiohttp.ClientTimeout(total=seconds, ceil_threshold=math.inf)


async def _read_body(resp: aiohttp.ClientResponse, cap: int, *, truncate: bool) -> bytes:
    """At most ``cap`` bytes of the (decompressed) body.

    Past the cap: the first ``cap`` bytes when ``truncate``, else InvalidResponseError.
    Either way nothing more is read and the connection is closed. Decompression is
    incremental (aiohttp inflates a chunk at a time and pauses the socket while its
    buffer is full), so memory stays near ``cap`` whatever the ratio."""
    length = resp.content_length
    if length is not None and length <= cap and hdrs.CONTENT_ENCODING not in resp.headers:
        return await resp.read()  # the usual case: a small, declared, uncompressed body
    if length is not None and length > cap and not truncate:
        resp.close()
        raise _too_large(resp, cap, f"{length} bytes declared")
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > cap:
            resp.close()
            if not truncate:
                chunks.clear()  # not kept alive by the exception's traceback
                raise _too_large(resp, cap, "once decompressed" if hdrs.CONTENT_ENCODING in resp.headers else "")
            chunks.append(chunk[: len(chunk) - (size - cap)])
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(resp: aiohttp.ClientResponse, cap: int, how: str) -> InvalidResponseError:
    return BodyTooLarge(
        f"response body over the {cap} byte limit{' (' + how + ')' if how else ''}; the rest was not read",
        method=resp.method,
        url=str(resp.url.with_query(None)),
        http_status=resp.status,
    )


Exchange = tuple[int, bytes, Mapping[str, str]]


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    max_body: int,
    *,
    params: Mapping[str, str] | None = None,
    data: bytes | str | None = None,
) -> Exchange:
    """One request, no redirect followed: (status, body, response headers).

    A 2xx body over ``max_body`` raises InvalidResponseError; an error body is cut at
    ``ERROR_BODY_MAX``. Failures without a response raise the transport errors."""
    try:
        async with session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as resp:
            status = resp.status
            if status < 300:
                length = resp.content_length
                if length is not None and length <= max_body and hdrs.CONTENT_ENCODING not in resp.headers:
                    body = await resp.read()  # _read_body's usual case, inline: one coroutine less per request
                else:
                    body = await _read_body(resp, max_body, truncate=False)
            else:
                body = await _read_body(resp, min(max_body, ERROR_BODY_MAX), truncate=True)
            return status, body, resp.headers
    except ApiError:
        raise
    except TimeoutError:
        total = timeout.total or 0.0
        raise RequestTimeout(f"no complete response within {total:g} s", method=method, url=url) from None
    except aiohttp.ClientError as exc:
        raise transport_error(exc, method, url) from None
