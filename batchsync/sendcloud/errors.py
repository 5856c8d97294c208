"""The failures of one request to Sendcloud: a shallow tree under :class:`ApiError` whose
classes say whether a retry can help (as httpx keeps its exceptions apart from its client).
"""

from __future__ import annotations

from typing import Any, ClassVar


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


class BodyTooLarge(InvalidResponseError):
    """A 2xx body past the bound on what one answer may be (its size: ``limit``)."""


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


class CredentialsError(AuthError):
    """The token endpoint refused the client itself (400/401 ``invalid_client``): the
    account's credentials are wrong, not a token gone stale. Stops the account, as
    AuthError does; its integrations fail as ``credentials``."""

    kind = "credentials"


class NotFoundError(ClientError):
    """404: the integration is not the account's, or does not exist."""

    kind = "not_found"


class NotSupportedError(ClientError):
    """400 for an integration that is not PrestaShop V2: only those have these endpoints."""

    kind = "not_supported"
