"""The only module that speaks HTTP: Sendcloud's endpoints over aiohttp, bounded.

Every response becomes either a decoded value or one exception from a shallow tree under
:class:`ApiError` that says whether a retry can help. A response is bounded in size
(compressed and decompressed) and in time, a redirect is never followed, and nothing a
server wrote reaches an exception with a credential or a control character in it.
"""

from __future__ import annotations

import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from yarl import URL

from batchsync import wire
from batchsync._aiohttp import aiohttp, hdrs
from batchsync.limits import parse_retry_after
from batchsync.redact import Redactor
from batchsync.text import one_line

if TYPE_CHECKING:
    from batchsync.auth import Authenticator

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


class ApiError(Exception):
    """Base of every failure of one request. ``kind`` names the class of failure."""

    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str,
        *,
        method: str = "",
        url: str = "",
        http_status: int | None = None,
        code: str | None = None,
        pointer: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.method = method
        self.url = url
        self.http_status = http_status
        self.code = code
        self.pointer = pointer
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = f" {self.http_status}" if self.http_status is not None else ""
        return f"{self.kind}{status}: {self.detail}"


class TransportError(ApiError):
    """No usable response: connection refused or reset, DNS, a broken body. Retryable."""

    kind = "transport"
    retryable = True


class RequestTimeout(TransportError):
    """No complete response (headers and body) within the timeout. Retryable."""

    kind = "timeout"


class TLSError(TransportError):
    """The TLS handshake failed: a certificate that does not verify, a protocol mismatch.

    Not retryable: the next attempt meets the same certificate. A connection dropped
    during the handshake is an ordinary (retryable) :class:`TransportError`."""

    kind = "tls"
    retryable = False


class ThrottledError(ApiError):
    """429: the account's budget is spent. Retryable, after ``retry_after`` if given."""

    kind = "throttled"
    retryable = True


class ServerError(ApiError):
    """5xx. Retryable."""

    kind = "server"
    retryable = True


class InvalidResponseError(ApiError):
    """A 2xx response the API does not document (HTML, empty, not the schema, too large).

    Retryable: a proxy in between is the usual cause, and every request we make is
    idempotent (a POST overwrites with the same list)."""

    kind = "invalid_response"
    retryable = True


class ClientError(ApiError):
    """A 4xx other than 401 and 429, or a 3xx: the request itself is wrong. Not retryable."""

    kind = "client"


class RedirectError(ClientError):
    """A 3xx. Never followed: a write would land elsewhere, without or with credentials."""

    def __init__(self, detail: str, *, location: str = "", **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.location = location


class AuthError(ClientError):
    """Credentials refused (401 after a renewal, or a token endpoint that refuses the
    client). Stops every request of the account."""

    kind = "auth"


class NotFoundError(ClientError):
    """404: the integration is not the account's, or does not exist."""

    kind = "not_found"


class NotSupportedError(ClientError):
    """400 for an integration that is not PrestaShop V2: only those have these endpoints."""

    kind = "not_supported"


log = logging.getLogger("batchsync.http")
_errors_decoder = msgspec.json.Decoder(wire.ErrorBody)
_get_decoder = msgspec.json.Decoder(wire.GetShopOrderStatuses)
_mapping_decoder = msgspec.json.Decoder(wire.GetMapping)


# -- what a server wrote, made safe to print ------------------------------------------

_NO_SECRETS = Redactor(())


def printable(text: str, redact: Callable[[str], str] = _NO_SECRETS, limit: int = DETAIL_MAX) -> str:
    """Server-written ``text`` as one short, safe line (see :func:`batchsync.text.one_line`)."""
    return one_line(text, redact, limit)


def _snippet(body: bytes, redact: Callable[[str], str] = _NO_SECRETS) -> str:
    """A short, printable hint of an undocumented body (an HTML page, say)."""
    if not body.strip():
        return "empty body"
    return "unexpected body: " + printable(body.decode("utf-8", "replace"), redact, 120)


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


def _why(exc: Exception) -> str:
    """Why a body did not decode. msgspec nests as deep as Python's recursion limit lets it
    (the body is bounded in size, not in depth): a body nested deeper is no answer either."""
    return "nested too deep" if isinstance(exc, RecursionError) else str(exc)


def _first_error(body: bytes) -> wire.ApiError | None:
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


# -- one bounded exchange -------------------------------------------------------------


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
    return InvalidResponseError(
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


# -- the API ----------------------------------------------------------------------------


class _IntegrationsPage(msgspec.Struct, frozen=True):
    """``GET /integrations``: ``data``, and a ``next`` URL where a server puts one in the
    body (Sendcloud v3 puts it in the ``Link`` header)."""

    data: tuple[wire.Integration, ...]
    next: Any = None


class _LoosePage(msgspec.Struct, frozen=True):
    """The same page when an item is not an integration: each item is checked alone."""

    data: tuple[Any, ...]
    next: Any = None


_page_decoder = msgspec.json.Decoder(_IntegrationsPage)
_loose_page_decoder = msgspec.json.Decoder(_LoosePage)


def _decode_page(body: bytes) -> tuple[tuple[wire.Integration, ...], Any, tuple[str, ...]]:
    """(integrations, next, rejected): an item that is not an integration batchsync can use
    (an id of 0 or past 2**63 - 1, a string id, not an object) costs only itself, described
    in ``rejected``. DecodeError or ValidationError when the page itself is not a page."""
    try:
        page = _page_decoder.decode(body)
        return page.data, page.next, ()
    except msgspec.ValidationError:
        loose = _loose_page_decoder.decode(body)  # raises in turn when the page is wrong
    items: list[wire.Integration] = []
    rejected: list[str] = []
    for position, raw in enumerate(loose.data, 1):
        try:
            items.append(msgspec.convert(raw, wire.Integration))
        except msgspec.ValidationError as exc:
            ident = raw.get("id") if isinstance(raw, dict) else None
            shown = f" (id {printable(str(ident), limit=40)})" if isinstance(ident, int | str) else ""
            rejected.append(f"item {position} of the page{shown}: {printable(str(exc), limit=120)}")
    return tuple(items), loose.next, tuple(rejected)


_LINK = re.compile(r"<([^>]*)>([^<]*)")
_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)
PAGE_SIZE = 100  # Sendcloud clamps it to the endpoint's own maximum


def next_link(value: str | None) -> str | None:
    """The target of ``rel="next"`` in a ``Link`` header (RFC 8288), or None."""
    if not value:
        return None
    for match in _LINK.finditer(value):
        for rel in _REL.finditer(match.group(2)):
            if "next" in (rel.group(1) or rel.group(2) or "").lower().split():
                return match.group(1).strip()
    return None


class Client:
    """Requests for one account: its base URL and its :class:`Authenticator`.

    Many clients share one :class:`aiohttp.ClientSession` (and so one pool of
    connections); the header is passed per request, never stored on the session.
    A 401 makes the authenticator renew once (OAuth2) and the request go again; a
    second 401, or one the authenticator cannot help with (Basic), is an AuthError.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: Authenticator,
        *,
        timeout: float = 30.0,
        max_body: int = MAX_BODY,
        name: str = "",
    ) -> None:
        self.session = session
        self.name = name  # the account's, for log lines
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._auth = auth
        self._timeout = client_timeout(timeout)
        self._max_body = max_body
        self._statuses_url = f"{self.base_url}/shop-order-statuses"
        self._mapping_url = f"{self._statuses_url}/mapping"
        self._integrations_url = f"{self.base_url}/integrations"
        self._redactor = _NO_SECRETS
        self._redacting: tuple[str, ...] = ()  # the secrets _redactor was made for
        # Header dicts are built once per Authorization value, not per request.
        self._auth_value = ""
        self._get_headers: dict[str, str] = {}
        self._post_headers: dict[str, str] = {}

    def _headers(self, auth_value: str, post: bool) -> dict[str, str]:
        if auth_value is not self._auth_value:
            self._auth_value = auth_value
            self._get_headers = {"Authorization": auth_value, "Accept": "application/json"}
            self._post_headers = {**self._get_headers, "Content-Type": "application/json"}
        return self._post_headers if post else self._get_headers

    def redact(self, text: str) -> str:
        """``text`` with every credential of this client's account replaced."""
        secrets = self._auth.secrets()
        if secrets is not self._redacting and secrets != self._redacting:
            self._redacting = secrets
            self._redactor = Redactor(secrets)
        return self._redactor(text)

    async def _request(
        self, method: str, url: str, params: dict[str, str] | None = None, data: bytes | None = None
    ) -> Exchange:
        started = time.monotonic() if log.isEnabledFor(logging.DEBUG) else 0.0
        auth_value = await self._auth.header()
        headers = self._headers(auth_value, data is not None)
        status, body, answer_headers = await exchange(
            self.session, method, url, headers, self._timeout, self._max_body, params=params, data=data
        )
        if status == 401:
            fresh = await self._auth.renew(auth_value)
            if fresh is not None:
                headers = self._headers(fresh, data is not None)
                status, body, answer_headers = await exchange(
                    self.session, method, url, headers, self._timeout, self._max_body, params=params, data=data
                )
        if started:
            iid = params.get("integration_id") if params else None
            ms = (time.monotonic() - started) * 1000
            fields: dict[str, object] = {"account": self.name, "method": method, "status": status, "ms": round(ms, 1)}
            if iid is not None:
                fields["integration_id"] = int(iid)
            log.debug(
                "%s %s%s -> %d (%d bytes, %.1f ms)",
                method,
                url,
                f"?integration_id={iid}" if iid is not None else "",
                status,
                len(body),
                ms,
                extra={"fields": fields},
            )
        if not 200 <= status < 300:
            raise classify(method, url, status, body, answer_headers, self.redact)
        return status, body, answer_headers

    def _invalid(self, method: str, url: str, status: int, body: bytes, why: str = "") -> InvalidResponseError:
        detail = _snippet(body, self.redact)
        if why and body.strip():
            detail += f" ({printable(why, self.redact, 160)})"
        return InvalidResponseError(detail, method=method, url=url, http_status=status)

    async def get_statuses(self, integration_id: int) -> tuple[wire.CurrentStatus, ...]:
        """The integration's current (not deleted) statuses."""
        url = self._statuses_url
        status, body, _ = await self._request("GET", url, params={"integration_id": str(integration_id)})
        try:
            return _get_decoder.decode(body).data
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._invalid("GET", url, status, body, _why(exc)) from None

    async def post_statuses(self, body: bytes) -> None:
        """Overwrite all statuses of one integration with a pre-encoded POST body."""
        status, answer, _ = await self._request("POST", self._statuses_url, data=body)
        if answer.strip() != b"null":
            raise self._invalid("POST", self._statuses_url, status, answer)

    async def get_mapping(self, integration_id: int) -> wire.CurrentMapping:
        """How the integration's statuses map onto Sendcloud's four categories."""
        url = self._mapping_url
        status, body, _ = await self._request("GET", url, params={"integration_id": str(integration_id)})
        try:
            return _mapping_decoder.decode(body).data
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._invalid("GET", url, status, body, _why(exc)) from None

    async def post_mapping(self, body: bytes) -> None:
        """Create or update one integration's mapping with a pre-encoded POST body."""
        status, answer, _ = await self._request("POST", self._mapping_url, data=body)
        if answer.strip() != b"null":
            raise self._invalid("POST", self._mapping_url, status, answer)

    async def list_integrations_page(self, next_url: str | None = None) -> wire.ListedPage:
        """One page of the account's integrations and the URL of the next (None: last).

        The next page comes from ``Link: <url>; rel="next"`` (Sendcloud v3's cursor
        pagination) or a ``next`` field of the body. One on another origin than the
        base URL is refused: the Authorization header never goes to another host."""
        if next_url is None:
            url, params = self._integrations_url, {"page_size": str(PAGE_SIZE)}
        else:
            url, params = self._same_origin(next_url, self._integrations_url), None
        status, body, headers = await self._request("GET", url, params=params)
        try:
            items, following, rejected = _decode_page(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._invalid("GET", url, status, body, _why(exc)) from None
        link = next_link(headers.get("Link"))
        if link is None and isinstance(following, str) and following.strip():
            link = following.strip()
        if link is None:
            return wire.ListedPage(items, None, len(body), rejected)
        current = str(URL(url).with_query(params)) if params else url
        target = self._same_origin(link, current)
        return wire.ListedPage(items, None if target == current else target, len(body), rejected)

    def _same_origin(self, link: str, current: str) -> str:
        """``link`` resolved against ``current``, if it stays on the base URL's origin."""
        try:
            target = URL(current).join(URL(link))
            origin = _origin(str(target))
        except (ValueError, TypeError):
            origin = None
        if origin is None or origin != self._origin:
            raise ClientError(
                f"next page link {safe_location(link, self.redact)} leaves {self._origin}: refused "
                "(credentials are only sent to the base URL's host)",
                method="GET",
                url=self._integrations_url,
            )
        return str(target)


def _origin(url: str) -> str | None:
    """``scheme://host:port`` of an absolute http(s) URL, else None."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"
