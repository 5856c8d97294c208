"""Authenticators: Basic is a constant; OAuth2 fetches one token per account, shares it, renews it.

OAuth2 runs against a small token server of its own (below): an RFC 6749 client-credentials
endpoint with a configurable lifetime and faults, and an API that accepts only unexpired
tokens it issued and counts its 401s.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import aiohttp
import anyio
import pytest
from aiohttp import web
from hostile_server import Hostile, hostile_server

from batchsync.secrets import Secret
from batchsync.sendcloud import client as c
from batchsync.sendcloud.auth import RENEW_MAX, RENEW_SHARE, BasicAuthenticator, OAuth2Authenticator
from batchsync.sendcloud.errors import ApiError, AuthError, InvalidResponseError, ServerError, TLSError, TransportError

CLIENT_ID, CLIENT_SECRET = "client-id-7f3a", "client-secret-9c1e4d"
TIMEOUT = 1.0


@dataclass
class TokenServer:
    """A token endpoint and an API that checks its tokens. Tests set the knobs."""

    url: str = ""
    lifetime: float = 3600.0  # how long a token is accepted
    expires_in: object = None  # what the endpoint says (None: the lifetime)
    delay: float = 0.0  # before each token answer
    mode: str = "ok"  # ok | refuse | down | hang | garbage | not-bearer | bad-chars | no-expiry
    api_always_401: bool = False
    fetches: int = 0
    api_requests: int = 0
    unauthorized: int = 0  # 401s the API answered
    token_requests: list[tuple[str, str, bytes]] = field(default_factory=list)  # (auth, content-type, body)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)

    @property
    def api(self) -> str:
        return f"{self.url}/api/v3"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    def revoke_all(self) -> None:
        self.tokens.clear()

    async def token(self, request: web.Request) -> web.StreamResponse:
        self.fetches += 1
        body = await request.read()
        self.token_requests.append(
            (request.headers.get("Authorization", ""), request.headers.get("Content-Type", ""), body)
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = parse_qs(body.decode())
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "down":
            return web.Response(status=503, text="maintenance")
        if self.mode == "refuse" or request.headers.get("Authorization") != expected:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, status=401
            )
        if form.get("grant_type") != ["client_credentials"]:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.mode == "garbage":
            return web.Response(text='<html>{"access_token": "tok-leaked-in-html"}</html>')
        token = f"tok-{self.fetches:04d}-{'x' * 24}"
        if self.mode == "bad-chars":
            token = "tok\r\nX-Injected: 1"
        self.tokens[token] = time.monotonic() + self.lifetime
        answer: dict[str, object] = {
            "access_token": token,
            "token_type": "mac" if self.mode == "not-bearer" else "bearer",
            "expires_in": self.lifetime if self.expires_in is None else self.expires_in,
            "scope": form.get("scope", [""])[0],
        }
        if self.mode == "no-expiry":
            del answer["expires_in"]
        return web.json_response(answer)

    async def statuses(self, request: web.Request) -> web.StreamResponse:
        self.api_requests += 1
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self.tokens.get(token)
        if self.api_always_401 or scheme != "Bearer" or expiry is None or time.monotonic() >= expiry:
            self.unauthorized += 1
            detail = f"token {token} expired or unknown"  # echoes the token, as some servers do
            return web.json_response(
                {"errors": [{"status": "401", "code": "authentication_failed", "detail": detail}]}, status=401
            )
        if request.method == "POST":
            return web.json_response(None)
        return web.json_response({"data": []})


@pytest.fixture
async def server() -> AsyncIterator[TokenServer]:
    state = TokenServer()
    app = web.Application()
    app.router.add_post("/oauth2/token", state.token)
    app.router.add_route("*", "/api/v3/shop-order-statuses", state.statuses)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def oauth2(server: TokenServer, session: aiohttp.ClientSession, **kwargs: object) -> OAuth2Authenticator:
    secret = kwargs.pop("client_secret", CLIENT_SECRET)
    assert isinstance(secret, str)
    return OAuth2Authenticator(
        session,
        server.token_url,
        Secret(CLIENT_ID),
        Secret(secret),
        timeout=TIMEOUT,
        **kwargs,  # type: ignore[arg-type]
    )


def no_secret_in(exc: BaseException, auth: OAuth2Authenticator) -> None:
    text = f"{exc} {exc!r} " + " ".join(str(v) for v in vars(exc).values())
    for secret in auth.secrets():
        assert secret.lower() not in text.lower(), "a credential is in the exception"
    assert CLIENT_SECRET not in text


# -- Basic -------------------------------------------------------------------------------


async def test_basic_is_constant_and_cannot_renew() -> None:
    auth = BasicAuthenticator(Secret("pub"), Secret("sec"))
    value = await auth.header()
    assert value == "Basic " + base64.b64encode(b"pub:sec").decode()
    assert await auth.header() is value
    assert await auth.renew(value) is None
    assert set(auth.secrets()) >= {"pub", "sec", "pub:sec", base64.b64encode(b"pub:sec").decode()}
    assert "sec" not in repr(auth)


# -- OAuth2: the token request --------------------------------------------------------


async def test_token_request_is_client_credentials_with_basic(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    auth = oauth2(server, session, scope="api read")
    assert await auth.header() == "Bearer tok-0001-" + "x" * 24
    (authorization, content_type, body), *_ = server.token_requests
    assert authorization == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert content_type == "application/x-www-form-urlencoded"
    assert body == b"grant_type=client_credentials&scope=api+read"
    assert auth.token == Secret("tok-0001-" + "x" * 24)
    assert "tok-0001" not in repr(auth.token) and CLIENT_SECRET not in repr(auth)


async def test_secrets_cover_the_client_and_every_token(server: TokenServer, session: aiohttp.ClientSession) -> None:
    auth = oauth2(server, session)
    raw = f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert set(auth.secrets()) == {CLIENT_ID, CLIENT_SECRET, raw, base64.b64encode(raw.encode()).decode()}
    first = (await auth.header()).split()[1]
    second = (await auth.renew(f"Bearer {first}") or "").split()[1]
    assert first != second
    assert {first, second} <= set(auth.secrets())


async def test_the_run_s_redactor_learns_each_token_as_it_is_issued(server: TokenServer) -> None:
    """An answer that echoes a token can come before any outcome: the run's redactor (the
    one its logs and outputs use) knows the client's credentials, their pair and its
    base64 too, from the load, and each token the moment it is issued."""
    from batchsync.model import Account, Limits, OAuth2Credentials
    from batchsync.redact import Redactor
    from batchsync.sendcloud.transport import HttpApi

    creds = OAuth2Credentials(Secret(CLIENT_ID), Secret(CLIENT_SECRET), token_url=server.token_url)
    account = Account("acme", creds, server.url + "/api/v3", Limits())
    redactor = Redactor(account.echoes())  # as the run makes it when the inventory is loaded
    pair = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert redactor(f"{pair.rstrip('=')} / {CLIENT_SECRET}") == "*** / ***"
    async with HttpApi(concurrency=2, timeout=TIMEOUT, urls=[server.url], redactor=redactor) as api:
        client = api.account(account)
        assert not [s for s in api.secrets() if s.startswith("tok-")]  # none issued yet
        await client.authenticate()
        [token] = [s for s in api.secrets() if s.startswith("tok-")]
        assert redactor(f"echo: {token}") == "echo: ***"


# -- OAuth2: one fetch, shared --------------------------------------------------------


async def test_concurrent_first_requests_share_one_token_fetch(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    server.delay = 0.2  # every request starts while the token is on its way
    api = c.Client(session, server.api, oauth2(server, session), timeout=TIMEOUT)
    results = await asyncio.gather(*(api.get_statuses(i) for i in range(100)))
    assert results == [()] * 100
    assert server.fetches == 1
    assert server.api_requests == 100 and server.unauthorized == 0


async def test_waiters_share_a_failed_fetch_and_the_next_call_tries_again(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    server.mode, server.delay = "down", 0.1
    auth = oauth2(server, session)
    api = c.Client(session, server.api, auth, timeout=TIMEOUT)
    results = await asyncio.gather(*(api.get_statuses(i) for i in range(20)), return_exceptions=True)
    assert all(isinstance(r, ServerError) and r.retryable for r in results)
    assert server.fetches == 1  # one failed fetch, shared by all 20
    server.mode = "ok"  # back up: down is not remembered
    assert await api.get_statuses(1) == ()
    assert server.fetches == 2


async def test_a_cancelled_fetch_leaves_the_waiters_to_fetch_again(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    server.delay = 0.3
    auth = oauth2(server, session)
    with anyio.move_on_after(0.1):
        await auth.header()  # the fetching caller gives up
    server.delay = 0.0
    assert (await auth.header()).startswith("Bearer ")
    assert server.fetches == 2


# -- OAuth2: renewal ----------------------------------------------------------------------


async def test_renewal_follows_the_clock(server: TokenServer, session: aiohttp.ClientSession) -> None:
    now = [1000.0]
    server.lifetime = 3600.0  # the server would accept it for long
    server.expires_in = 100  # but says 100 s
    auth = oauth2(server, session, clock=lambda: now[0])
    first = await auth.header()
    margin = min(RENEW_MAX, 100 * RENEW_SHARE)  # 2.5 s
    for t in (1000.0, 1050.0, 1100.0 - margin - 0.01):
        now[0] = t
        assert await auth.header() == first
    assert server.fetches == 1
    now[0] = 1100.0 - margin
    second = await auth.header()
    assert second != first and server.fetches == 2
    now[0] += 50
    assert await auth.header() == second and server.fetches == 2


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(3600, 3600.0), ("120", 120.0), (None, 3600.0), ("soon", 3600.0), (0, 1.0), (10**12, 86400.0), (0.5, 1.0)],
)
async def test_expires_in_is_read_within_bounds(
    server: TokenServer, session: aiohttp.ClientSession, expires_in: object, lifetime: float
) -> None:
    now = [0.0]
    if expires_in is None:
        server.mode = "no-expiry"
    else:
        server.expires_in = expires_in
    auth = oauth2(server, session, clock=lambda: now[0])
    await auth.header()
    renew_at = lifetime - min(RENEW_MAX, lifetime * RENEW_SHARE)
    now[0] = renew_at - 0.001
    await auth.header()
    assert server.fetches == 1
    now[0] = renew_at
    await auth.header()
    assert server.fetches == 2


async def test_short_lived_tokens_are_renewed_before_the_server_refuses_them(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    """1 s tokens, requests without pause for 3.5 s: no 401, about one token per second."""
    server.lifetime = 1.0
    api = c.Client(session, server.api, oauth2(server, session), timeout=TIMEOUT)
    deadline = time.monotonic() + 3.5
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while time.monotonic() < deadline:
            await api.get_statuses(1)
            sent += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(8)))
    run_length = time.monotonic() - started
    assert server.unauthorized == 0
    assert sent > 100
    ideal = run_length / server.lifetime + 1
    assert ideal - 1 <= server.fetches <= ideal + 1, (server.fetches, run_length)


# -- OAuth2: a 401 --------------------------------------------------------------------------


async def test_a_401_renews_once_and_resends(server: TokenServer, session: aiohttp.ClientSession) -> None:
    api = c.Client(session, server.api, oauth2(server, session), timeout=TIMEOUT)
    await api.get_statuses(1)
    server.revoke_all()  # the server forgets the token early
    await api.post_statuses(b"{}")
    assert (server.fetches, server.unauthorized, server.api_requests) == (2, 1, 3)


async def test_concurrent_401s_for_one_token_share_one_renewal(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    api = c.Client(session, server.api, oauth2(server, session), timeout=TIMEOUT)
    await api.get_statuses(1)
    server.revoke_all()
    server.delay = 0.1
    await asyncio.gather(*(api.get_statuses(i) for i in range(30)))
    assert server.fetches == 2
    assert server.unauthorized == 30


async def test_a_second_401_is_refused_credentials(server: TokenServer, session: aiohttp.ClientSession) -> None:
    server.api_always_401 = True
    auth = oauth2(server, session)
    api = c.Client(session, server.api, auth, timeout=TIMEOUT)
    with pytest.raises(AuthError) as info:
        await api.get_statuses(1)
    assert (server.fetches, server.api_requests) == (2, 2)  # renewed once, resent once
    assert info.value.http_status == 401 and "***" in info.value.detail  # the echoed token, redacted
    no_secret_in(info.value, auth)


# -- OAuth2: a token endpoint that refuses, fails or lies -----------------------------------


async def test_refused_client_is_auth_after_exactly_one_token_request(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    auth = oauth2(server, session, client_secret="wrong-secret-value")
    api = c.Client(session, server.api, auth, timeout=TIMEOUT)
    errors = await asyncio.gather(*(api.get_statuses(i) for i in range(10)), return_exceptions=True)
    (posted,) = await asyncio.gather(api.post_statuses(b"{}"), return_exceptions=True)
    for error in [*errors, posted]:
        assert isinstance(error, AuthError)
        assert (error.kind, error.retryable, error.http_status) == ("credentials", False, 401)
        assert "invalid_client" in str(error) and "Client authentication failed" in str(error)
        no_secret_in(error, auth)
        assert "wrong-secret-value" not in str(error)
    assert server.fetches == 1  # remembered: no second token request
    assert server.api_requests == 0


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("down", "server"), ("hang", "timeout"), ("garbage", "invalid_response"), ("not-bearer", "invalid_response")],
)
async def test_token_endpoint_failures_are_retryable(
    server: TokenServer, session: aiohttp.ClientSession, mode: str, kind: str
) -> None:
    server.mode = mode
    auth = oauth2(server, session)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await auth.header()
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert (info.value.kind, info.value.retryable) == (kind, True)
    assert info.value.url == server.token_url
    assert "tok-leaked-in-html" not in str(info.value)  # a 2xx body is never quoted
    no_secret_in(info.value, auth)


async def test_a_token_that_would_inject_headers_is_refused(
    server: TokenServer, session: aiohttp.ClientSession
) -> None:
    server.mode = "bad-chars"
    with pytest.raises(InvalidResponseError) as info:
        await oauth2(server, session).header()
    assert "X-Injected" not in str(info.value)


async def test_unreachable_token_endpoint_is_transport(session: aiohttp.ClientSession) -> None:
    auth = OAuth2Authenticator(session, "http://127.0.0.1:1/oauth2/token", Secret("a"), Secret("b"), timeout=TIMEOUT)
    with pytest.raises(TransportError) as info:
        await auth.header()
    assert info.value.retryable and info.value.kind == "transport"


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    async with hostile_server() as h:
        yield h


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        ("echo-credentials", "credentials"),  # 401 invalid_client: the client itself refused
        ("redirect-307", "auth"),
        ("gzip-bomb", "invalid_response"),
        ("endless", "invalid_response"),
        ("drip", "timeout"),
        ("throttle-inf", "throttled"),
        ("control-chars-text", "server"),
    ],
)
async def test_hostile_token_endpoint(
    hostile: Hostile, session: aiohttp.ClientSession, behaviour: str, kind: str
) -> None:
    auth = OAuth2Authenticator(
        session, hostile.base(behaviour) + "/oauth2/token", Secret(CLIENT_ID), Secret(CLIENT_SECRET), timeout=TIMEOUT
    )
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await auth.header()
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert info.value.kind == kind, str(info.value)
    no_secret_in(info.value, auth)
    assert "\x1b" not in str(info.value)
    if behaviour == "redirect-307":
        assert hostile.landed == [] and "not followed" in str(info.value)
    if behaviour == "echo-credentials":
        assert "***" in str(info.value)


async def test_tls_failure_of_the_token_endpoint_is_not_retried(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    auth = OAuth2Authenticator(
        session, hostile.base("ok", tls=True) + "/oauth2/token", Secret("a"), Secret("b"), timeout=TIMEOUT
    )
    with pytest.raises(TLSError) as info:
        await auth.header()
    assert not info.value.retryable
