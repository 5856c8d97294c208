"""How a request proves which Sendcloud account it acts for: one small object per account.

The client asks its authenticator for the ``Authorization`` value before each request and,
after a 401, for a renewed one. Basic is a constant. OAuth2 (client credentials) is a token
fetched by one request however many want it at once, cached, and renewed shortly before
it expires or once after a 401.
"""

from __future__ import annotations

import base64
import copy
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import urlencode

import anyio
import msgspec

from batchsync.redact import Redactor
from batchsync.secrets import Secret
from batchsync.sendcloud._aiohttp import aiohttp
from batchsync.sendcloud.errors import ApiError, AuthError, CredentialsError, InvalidResponseError
from batchsync.sendcloud.exchange import classify, client_timeout, exchange, printable, safe_location

log = logging.getLogger("batchsync.http")


class Authenticator(Protocol):
    """What the client needs of an account's authentication scheme."""

    async def header(self) -> str:
        """The ``Authorization`` value for the next request."""
        ...

    async def renew(self, rejected: str) -> str | None:
        """After a 401 for ``rejected``: a fresh value, or None when renewing cannot help."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Every value a server could echo (for the redactor). May grow as tokens are issued."""
        ...


def _basic(user: Secret, password: Secret) -> tuple[str, tuple[str, ...]]:
    """The Basic header value, and the forms of the credentials it could be echoed in."""
    raw = f"{user.reveal()}:{password.reveal()}"
    encoded = base64.b64encode(raw.encode()).decode("ascii")
    return "Basic " + encoded, (user.reveal(), password.reveal(), raw, encoded)


class BasicAuthenticator:
    """HTTP Basic with the API public key (user) and secret key (password): a constant."""

    def __init__(self, public_key: Secret, secret_key: Secret) -> None:
        self._header, self._secrets = _basic(public_key, secret_key)
        self.constant = self._header  # the client sends it without asking header() each time

    async def header(self) -> str:
        return self._header

    async def renew(self, rejected: str) -> str | None:
        return None  # the keys are what they are: a 401 means they are refused

    def secrets(self) -> tuple[str, ...]:
        return self._secrets


# An access token lasts about an hour (Sendcloud's OAuth2 documentation): the lifetime assumed when the
# endpoint gives no expires_in. A 401 renews anyway if that guess is wrong.
DEFAULT_LIFETIME = 3600.0
MIN_LIFETIME, MAX_LIFETIME = 1.0, 86400.0
# A token is renewed this long before it expires: 2.5 % of its lifetime, at most 30 s.
# The lifetime is counted from when we *sent* the token request, so the server's own
# clock started later; what the margin must cover is the time between taking a header
# and the server checking it (a pooled connection, a busy loop): milliseconds on a
# healthy host, 30 s at worst for an hour-long token. A share rather than a constant
# keeps short lifetimes usable: a 2 s token is used for 1.95 s, and a run fetches
# (length / lifetime) x 1.026 + 1 tokens, within one of the ideal for runs of up to
# ~38 lifetimes.
RENEW_SHARE, RENEW_MAX = 0.025, 30.0
TOKEN_MAX_BODY = 64 * 1024  # a token answer is a few hundred bytes
PAST_TOKENS = 32  # tokens kept for the redactor: only recently sent ones can be echoed
# RFC 6750's b64token: a token with anything else (CR, LF, spaces) is not sent as a header.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class _Token(msgspec.Struct, frozen=True):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a password)
    expires_in: float | str | None = None  # a number in RFC 6749; some servers send a string


class _Refusal(msgspec.Struct, frozen=True):
    """RFC 6749 section 5.2: ``{"error": "invalid_client", "error_description": ...}``."""

    error: str
    error_description: str | None = None


_token_decoder = msgspec.json.Decoder(_Token)
_refusal_decoder = msgspec.json.Decoder(_Refusal)

E = TypeVar("E", bound=ApiError)


def _fresh_copy(error: E) -> E:
    """The same error for another waiter, without the first raiser's traceback."""
    return copy.copy(error).with_traceback(None)


class _Flight:
    """One token request in progress, awaited by every caller that needs its result."""

    __slots__ = ("done", "error", "header")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.header: str | None = None
        self.error: ApiError | None = None


class OAuth2Authenticator:
    """OAuth2 client credentials: one token per account, shared by all its requests.

    ``header()`` returns the cached ``Bearer`` value without awaiting anything while it
    is fresh. When it is not, the first caller requests a token and every other caller
    waits for that one request (and shares its failure, if it fails). A refusal by the
    token endpoint (400/401 or any 3xx/4xx but 429) is remembered: the account's later
    requests fail at once with the same AuthError, without another token request.
    Token requests go straight to the session: no rate meter counts them.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token_url: str,
        client_id: Secret,
        client_secret: Secret,
        scope: str = "api",
        *,
        timeout: float,
        clock: Callable[[], float] = anyio.current_time,
        name: str = "",
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        """``on_token`` is handed each access token as it is issued (the run's redactor
        learns it before any answer could echo it)."""
        self.name = name  # the account's, for log lines
        self._on_token = on_token
        # Where the client credentials come from (env:NAME, file:PATH): a refusal names them, never their values.
        self._refs = " and ".join(
            s.source for s in (client_id, client_secret) if s.source.startswith(("env:", "file:"))
        )
        self._session = session
        self._token_url = token_url
        self._shown_url = safe_location(token_url)
        basic, self._fixed_secrets = _basic(client_id, client_secret)
        self._request_headers = {
            "Authorization": basic,
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self._form = urlencode({"grant_type": "client_credentials", "scope": scope}).encode("ascii")
        self._timeout = client_timeout(timeout)
        self._clock = clock
        self._header: str | None = None
        self._renew_at = -math.inf
        self._flight: _Flight | None = None
        self._refused: AuthError | None = None
        self._tokens: deque[str] = deque(maxlen=PAST_TOKENS)
        self._secrets = self._fixed_secrets
        self._redact = Redactor(self._secrets)
        self.fetches = 0  # token requests sent

    @property
    def token(self) -> Secret | None:
        """The current access token, if one was issued."""
        return Secret(self._tokens[-1], "oauth2-token") if self._tokens else None

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    async def header(self) -> str:
        header = self._header
        if header is not None and self._clock() < self._renew_at:
            return header
        return await self._fresh_header()

    async def renew(self, rejected: str) -> str | None:
        if rejected == self._header:
            self._renew_at = -math.inf  # refused: spent, whatever its lifetime said
        # Else another request has renewed it already: its token is the answer.
        return await self.header()

    async def _fresh_header(self) -> str:
        while True:
            if self._refused is not None:
                raise _fresh_copy(self._refused)
            header = self._header
            if header is not None and self._clock() < self._renew_at:
                return header
            flight = self._flight
            if flight is not None:
                await flight.done.wait()
                if flight.error is not None:
                    raise _fresh_copy(flight.error)
                if flight.header is not None:
                    # Taken as is, even if a slow endpoint made it due for renewal already:
                    # re-checking could chain fetches forever.
                    return flight.header
                continue  # the fetching task was cancelled: the loop starts another fetch
            flight = self._flight = _Flight()
            try:
                flight.header = await self._fetch()
                return flight.header
            except ApiError as exc:
                flight.error = exc
                raise
            finally:
                self._flight = None
                flight.done.set()

    async def _fetch(self) -> str:
        sent = self._clock()
        self.fetches += 1
        started = time.monotonic()
        try:
            status, body, headers = await exchange(
                self._session,
                "POST",
                self._token_url,
                self._request_headers,
                self._timeout,
                TOKEN_MAX_BODY,
                data=self._form,
            )
        except ApiError as exc:
            exc.url = self._shown_url
            raise
        if log.isEnabledFor(logging.DEBUG):  # as the client logs its requests (-v); never the body
            ms = (time.monotonic() - started) * 1000
            fields = {
                "account": self.name,
                "method": "POST",
                "status": status,
                "ms": round(ms, 1),
                "token_request": self.fetches,
            }
            log.debug(
                "POST %s -> %d (token request %d, %.1f ms)",
                self._shown_url,
                status,
                self.fetches,
                ms,
                extra={"fields": fields},
            )
        if 200 <= status < 300:
            return self._accept(body, status, sent)
        if status == 429 or status >= 500:  # busy or down: retryable, like any API request
            raise classify("POST", self._shown_url, status, body, headers, self._redact)
        self._refused = self._refusal(status, body, headers.get("Location"))
        raise self._refused

    def _refusal(self, status: int, body: bytes, location: str | None) -> AuthError:
        try:
            refusal: _Refusal | None = _refusal_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            refusal = None
        code: str | None = None
        if refusal is not None:
            code = printable(refusal.error, self._redact, 64)
            why = code
            if refusal.error_description:
                why += f": {printable(refusal.error_description, self._redact)}"
            detail = f"token endpoint refused the client credentials ({why})"
        elif 300 <= status < 400:
            where = safe_location(location or "", self._redact) or "nowhere"
            detail = f"token endpoint redirects to {where} (not followed): is token_url right?"
        else:
            body_text = printable(body.decode("utf-8", "replace"), self._redact, 120) or "empty body"
            detail = f"token endpoint answered HTTP {status} ({body_text})"
        if status in (400, 401) and code == "invalid_client":
            who = f"account {self.name!r}" if self.name else "the account"
            refs = f" ({self._refs})" if self._refs else ""
            detail = f"{who}: the client credentials{refs} were refused: {detail}"
            return CredentialsError(detail, method="POST", url=self._shown_url, http_status=status, code=code)
        return AuthError(detail, method="POST", url=self._shown_url, http_status=status, code=code)

    def _accept(self, body: bytes, status: int, sent: float) -> str:
        # A 2xx body holds the token: no part of it goes into a message, only what is wrong.
        try:
            answer = _token_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            why = (
                "empty body"
                if not body.strip()
                else "nested too deep"
                if isinstance(exc, RecursionError)
                else (printable(str(exc), self._redact, 120))
            )
            raise self._unusable(status, why) from None
        if answer.token_type.lower() != "bearer":
            raise self._unusable(status, f"token_type {printable(answer.token_type, self._redact, 32)!r}, not Bearer")
        token = answer.access_token
        if not _TOKEN.fullmatch(token):
            raise self._unusable(status, "access_token is not a bearer token (RFC 6750 characters)")
        lifetime = _lifetime(answer.expires_in)
        self._tokens.append(token)
        self._secrets = self._fixed_secrets + tuple(self._tokens)
        self._redact = Redactor(self._secrets)
        if self._on_token is not None:
            self._on_token(token)
        self._header = "Bearer " + token
        self._renew_at = sent + lifetime - min(RENEW_MAX, lifetime * RENEW_SHARE)
        return self._header

    def _unusable(self, status: int, why: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"token endpoint answered without a usable token: {why}",
            method="POST",
            url=self._shown_url,
            http_status=status,
        )


def _lifetime(expires_in: float | str | None) -> float:
    """Seconds a token lasts, from ``expires_in``: absent or meaningless is the default."""
    try:
        seconds = float(expires_in) if expires_in is not None else DEFAULT_LIFETIME
    except ValueError:
        seconds = DEFAULT_LIFETIME
    if math.isnan(seconds):
        seconds = DEFAULT_LIFETIME
    return min(max(seconds, MIN_LIFETIME), MAX_LIFETIME)
