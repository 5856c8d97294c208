"""The sandbox's OAuth2 side: client-credentials token requests checked, Bearer tokens issued and looked up.

Shaped like Sendcloud's token endpoint (Ory Hydra at account.sendcloud.com): client
authentication by HTTP Basic, a form body, errors as RFC 6749 section 5.2 has them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import msgspec
from aiohttp import web

from batchsync.sandbox.limits import Clock

GRANT_TYPE = "client_credentials"
SCOPES = frozenset({"api"})
TOKEN_PREFIX = "ory_at_"  # noqa: S105 - what Hydra's tokens start with; opaque to clients all the same


class TokenAnswer(msgspec.Struct, frozen=True):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class OAuthError(msgspec.Struct, frozen=True):
    error: str
    error_description: str


_ENCODER = msgspec.json.Encoder()
# RFC 6749 5.1: token answers must not be cached.
_NO_STORE = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(status: int, error: str, description: str) -> web.Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oauth2"'
    return web.Response(body=_ENCODER.encode(OAuthError(error, description)), status=status, headers=headers)


def check_form(content_type: str, form: Mapping[str, list[str]]) -> tuple[str, web.Response | None]:
    """The granted scope, or the 400 to answer for a request whose client is authenticated."""
    if content_type != "application/x-www-form-urlencoded":
        return "", oauth_error(400, "invalid_request", "The request body must be application/x-www-form-urlencoded.")
    for name, values in form.items():
        if len(values) > 1:
            return "", oauth_error(400, "invalid_request", f"The parameter {name!r} is given more than once.")
    grant = form.get("grant_type", [""])[0]
    if not grant:
        return "", oauth_error(400, "invalid_request", "The request is missing the 'grant_type' parameter.")
    if grant != GRANT_TYPE:
        return "", oauth_error(
            400, "unsupported_grant_type", f"The grant type {grant!r} is not supported: use {GRANT_TYPE!r}."
        )
    asked = form.get("scope", [""])[0].split()
    if not asked:
        # Hydra would issue a token without scopes, which the API then refuses; say so here.
        return "", oauth_error(400, "invalid_scope", "No scope was requested: ask for scope=api.")
    unknown = [s for s in asked if s not in SCOPES]
    if unknown:
        return "", oauth_error(
            400, "invalid_scope", f"The client is not allowed to request scope {unknown[0]!r}: ask for scope=api."
        )
    return " ".join(dict.fromkeys(asked)), None


def token_answer(token: str, lifetime: int, scope: str) -> web.Response:
    return web.Response(body=_ENCODER.encode(TokenAnswer(token, "Bearer", lifetime, scope)), headers=_NO_STORE)


class Token:
    __slots__ = ("account", "expires_at")

    def __init__(self, account: str, expires_at: float) -> None:
        self.account = account
        self.expires_at = expires_at


class Tokens:
    """Every token issued, by the exact ``Authorization`` header that carries it.

    Expired tokens stay known, so that a request with one is told (and counted) as
    expired rather than unknown.
    """

    __slots__ = ("by_header", "clock")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.by_header: dict[str, Token] = {}

    def issue(self, account: str, lifetime: int) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.by_header["Bearer " + token] = Token(account, self.clock() + lifetime)
        return token
