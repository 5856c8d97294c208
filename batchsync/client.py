"""The only module that speaks HTTP: Sendcloud's shop-order-status endpoints over aiohttp.

Every response becomes either a decoded value or one exception from a shallow tree
under :class:`ApiError` that says whether a retry can help. No exception carries the
request's headers, so no credential can leak through one.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import aiohttp
import msgspec

from batchsync import wire
from batchsync.limits import parse_retry_after
from batchsync.secrets import Secret


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
    """No usable response: connection refused or reset, DNS, TLS. Retryable."""

    kind = "transport"
    retryable = True


class RequestTimeout(TransportError):
    """The request took longer than the timeout. Retryable."""

    kind = "timeout"


class ThrottledError(ApiError):
    """429: the account's budget is spent. Retryable, after ``retry_after`` if given."""

    kind = "throttled"
    retryable = True


class ServerError(ApiError):
    """5xx. Retryable."""

    kind = "server"
    retryable = True


class InvalidResponseError(ApiError):
    """A 2xx response the API does not document (HTML, empty, not the schema).

    Retryable: a proxy in between is the usual cause, and both requests we make are
    idempotent (a POST overwrites with the same list)."""

    kind = "invalid_response"
    retryable = True


class ClientError(ApiError):
    """A 4xx other than 401 and 429: the request itself is wrong. Not retryable."""

    kind = "client"


class AuthError(ClientError):
    """401: the account's credentials are refused. Stops every request of the account."""

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


class _IntegrationsPage(msgspec.Struct, frozen=True):
    data: tuple[wire.Integration, ...]


_integrations_decoder = msgspec.json.Decoder(_IntegrationsPage)


def _first_error(body: bytes) -> wire.ApiError | None:
    try:
        errors = _errors_decoder.decode(body).errors
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return errors[0] if errors else None


def classify(method: str, url: str, status: int, body: bytes, headers: Any) -> ApiError:
    """The exception for a non-2xx response."""
    first = _first_error(body)
    detail = first.detail if first else _snippet(body)
    code = first.code if first else None
    pointer = first.source.pointer if first and first.source else None
    common: dict[str, Any] = {
        "method": method,
        "url": url,
        "http_status": status,
        "code": code,
        "pointer": pointer,
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
    return ClientError(detail or f"HTTP {status}", **common)


def _transport_detail(exc: aiohttp.ClientError) -> str:
    """What went wrong, from fields that cannot hold a credential: str() of some aiohttp
    errors includes the request's info (headers), so it is never used."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"{name}: cannot connect to {exc.host}:{exc.port} ({reason})"
    return name


def _snippet(body: bytes) -> str:
    """A short, printable hint of an undocumented body (an HTML page, say)."""
    if not body.strip():
        return "empty body"
    text = body[:200].decode("utf-8", "replace")
    text = " ".join(text.split())
    return f"unexpected body: {text[:120]}"


class Client:
    """Requests for one account: its base URL and its ``Authorization`` header.

    Many clients share one :class:`aiohttp.ClientSession` (and so one pool of
    connections); the header is passed per request, never stored on the session.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        authorization: Secret,
        timeout: float = 30.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": authorization.reveal(),
            "Accept": "application/json",
        }
        self._post_headers = {**self._headers, "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._statuses_url = f"{self.base_url}/shop-order-statuses"

    async def _request(
        self, method: str, url: str, params: dict[str, str] | None = None, data: bytes | None = None
    ) -> bytes:
        headers = self._post_headers if data is not None else self._headers
        started = time.monotonic() if log.isEnabledFor(logging.DEBUG) else 0.0
        try:
            async with self.session.request(
                method, url, params=params, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                status = resp.status
                if started:
                    log.debug(
                        "%s %s%s -> %d (%d bytes, %.1f ms)",
                        method,
                        url,
                        f"?integration_id={params['integration_id']}" if params else "",
                        status,
                        len(body),
                        (time.monotonic() - started) * 1000,
                    )
                if status >= 300:
                    raise classify(method, url, status, body, resp.headers)
                return body
        except ApiError:
            raise
        except TimeoutError:
            raise RequestTimeout("no response within the timeout", method=method, url=url) from None
        except aiohttp.ClientError as exc:
            raise TransportError(_transport_detail(exc), method=method, url=url) from None

    async def get_statuses(self, integration_id: int) -> tuple[wire.CurrentStatus, ...]:
        """The integration's current (not deleted) statuses."""
        body = await self._request("GET", self._statuses_url, params={"integration_id": str(integration_id)})
        try:
            return _get_decoder.decode(body).data
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            detail = f"{_snippet(body)} ({exc})" if body.strip() else "empty body"
            raise InvalidResponseError(detail, method="GET", url=self._statuses_url, http_status=200) from None

    async def post_statuses(self, body: bytes) -> None:
        """Overwrite all statuses of one integration with a pre-encoded POST body."""
        answer = await self._request("POST", self._statuses_url, data=body)
        if answer.strip() != b"null":
            raise InvalidResponseError(_snippet(answer), method="POST", url=self._statuses_url, http_status=200)

    async def get_mapping(self, integration_id: int) -> wire.CurrentMapping:
        url = f"{self._statuses_url}/mapping"
        body = await self._request("GET", url, params={"integration_id": str(integration_id)})
        try:
            return _mapping_decoder.decode(body).data
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidResponseError(_snippet(body), method="GET", url=url, http_status=200) from None

    async def post_mapping(self, body: bytes) -> None:
        """Create or update the mapping of one integration with a pre-encoded body."""
        url = f"{self._statuses_url}/mapping"
        answer = await self._request("POST", url, data=body)
        if answer.strip() != b"null":
            raise InvalidResponseError(_snippet(answer), method="POST", url=url, http_status=200)

    async def list_integrations_page(
        self, next_url: str | None = None
    ) -> tuple[tuple[wire.Integration, ...], str | None]:
        """One page of the account's integrations and the next page's URL."""
        url = next_url or f"{self.base_url}/integrations"
        body = await self._request("GET", url)
        try:
            page = _integrations_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidResponseError(_snippet(body), method="GET", url=url, http_status=200) from None
        return page.data, None
