"""The sandbox's OAuth2: the token endpoint as Sendcloud's answers, Bearer tokens on the API, expiry.

Over loopback HTTP. Expiry runs on an injected clock where the test would otherwise
sleep, and once on the real clock (the lifetime is real seconds).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
import pytest
from sandbox_fixture import SandboxFactory, auth_header
from test_sandbox import VALID, Answer, call

from batchsync.model import Account, Inventory, OAuth2Credentials
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import Sandbox, run_sandbox
from batchsync.sandbox.state import AccountSeed, IntegrationSeed, Seed
from batchsync.sandbox.state import seed_from_inventory as seed_of
from batchsync.secrets import Secret

CLIENT = ("oauth-client", "oauth-client-secret")
KEYS = ("oauth-public", "oauth-secret")  # API keys of the OAuth2 account: refused all the same
FORM = {"grant_type": "client_credentials", "scope": "api"}


def oauth_seed() -> Seed:
    return Seed(
        accounts=(
            AccountSeed("basicco", "basic-pk", "basic-sk"),
            AccountSeed("oauthco", *KEYS, auth="oauth2", client_id=CLIENT[0], client_secret=CLIENT[1]),
            AccountSeed("other", auth="oauth2", client_id="other-client", client_secret="other-secret"),
        ),
        integrations=(IntegrationSeed(1, "basicco"), IntegrationSeed(2, "oauthco"), IntegrationSeed(3, "other")),
    )


async def token(
    box: Sandbox,
    client: tuple[str, str] | None = CLIENT,
    form: dict[str, str] | str | None = None,
    *,
    path: str = "/oauth2/token",
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST the token endpoint as Sendcloud's docs do: Basic client auth and a form body."""
    data: Any = FORM if form is None else form
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            box.url + path,
            data=data,
            headers={**(auth_header(*client) if client else {}), **(headers or {})},
        ) as resp,
    ):
        return Answer("POST", path, {}, resp.status, await resp.read(), resp.headers)


def bearer(answer: Answer) -> dict[str, str]:
    assert answer.status == 200, answer.body
    return {"Authorization": "Bearer " + answer.json["access_token"]}


@pytest.fixture
async def box(sandbox_factory: SandboxFactory) -> Sandbox:
    return await sandbox_factory(SandboxConfig(token_lifetime=120), source=oauth_seed())


# -- the token endpoint -----------------------------------------------------------------------------


async def test_a_token_is_issued_and_opens_the_api(box: Sandbox) -> None:
    answer = await token(box)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 120, "api")
    assert len(body["access_token"]) >= 32
    auth = bearer(answer)
    got = await call(box, "GET", "/shop-order-statuses", auth, query={"integration_id": "2"})
    assert got.status == 200
    posted = await call(box, "POST", "/shop-order-statuses", auth, body={**VALID, "integration_id": 2})
    assert (posted.status, posted.body) == (200, b"null")
    assert (await call(box, "GET", "/integrations", auth)).json["data"][0]["id"] == 2
    # A token is one account's: another account's integration is not found.
    assert (await call(box, "GET", "/integrations/3", auth)).status == 404
    assert (await call(box, "GET", "/integrations/1", auth)).status == 404
    stats: Any = box.stats()
    assert stats["tokens_issued"] == {"basicco": 0, "oauthco": 1, "other": 0}
    assert stats["token_requests"] == {"basicco": 0, "oauthco": 1, "other": 0}
    assert stats["requests"]["oauthco"] == {"GET": 4, "POST": 1}
    assert stats["applied_posts"] == {"2": 1}
    assert (stats["unauthenticated"], stats["token_refused"]) == (0, 0)


async def test_the_spec_spelling_with_a_slash_and_case_of_bearer(box: Sandbox) -> None:
    answer = await token(box, path="/oauth2/token/")
    value = answer.json["access_token"]
    for header in (f"Bearer {value}", f"bearer {value}", f"BEARER  {value} "):
        got = await call(box, "GET", "/integrations", {"Authorization": header})
        assert got.status == 200, header


async def test_tokens_are_distinct_and_all_valid(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(SandboxConfig(write_burst=100), source=oauth_seed())
    answers = await asyncio.gather(*(token(box) for _ in range(20)))
    values = {a.json["access_token"] for a in answers}
    assert len(values) == 20
    for value in values:
        got = await call(box, "GET", "/integrations/2", {"Authorization": f"Bearer {value}"})
        assert got.status == 200
    assert box.stats()["tokens_issued"]["oauthco"] == 20


OAUTH_ERRORS: list[tuple[str, tuple[str, str] | None, Any, dict[str, str] | None, int, str]] = [
    ("wrong secret", (CLIENT[0], "wrong"), None, None, 401, "invalid_client"),
    ("unknown client", ("nobody", CLIENT[1]), None, None, 401, "invalid_client"),
    ("no client authentication", None, None, None, 401, "invalid_client"),
    ("API keys instead of client", KEYS, None, None, 401, "invalid_client"),
    ("a Basic account's keys", ("basic-pk", "basic-sk"), None, None, 401, "invalid_client"),
    ("password grant", CLIENT, {**FORM, "grant_type": "password"}, None, 400, "unsupported_grant_type"),
    ("no grant type", CLIENT, {"scope": "api"}, None, 400, "invalid_request"),
    ("another scope", CLIENT, {**FORM, "scope": "api admin"}, None, 400, "invalid_scope"),
    ("no scope", CLIENT, {"grant_type": "client_credentials"}, None, 400, "invalid_scope"),
    (
        "a JSON body",
        CLIENT,
        '{"grant_type": "client_credentials", "scope": "api"}',
        {"Content-Type": "application/json"},
        400,
        "invalid_request",
    ),
    ("grant type twice", CLIENT, "grant_type=client_credentials&grant_type=password&scope=api", None, 400, ""),
    ("bytes that are not text", CLIENT, b"grant_type=\xff\xfe&scope=api", None, 400, ""),
]


@pytest.mark.parametrize(
    ("client", "form", "headers", "status", "error"),
    [c[1:] for c in OAUTH_ERRORS],
    ids=[c[0] for c in OAUTH_ERRORS],
)
async def test_token_errors_have_the_oauth2_shape(
    box: Sandbox, client: Any, form: Any, headers: Any, status: int, error: str
) -> None:
    if isinstance(form, str | bytes) and headers is None:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await token(box, client, form, headers=headers)
    assert answer.status == status, answer.body
    body = answer.json
    assert set(body) == {"error", "error_description"}
    assert body["error"] == (error or "invalid_request")
    assert body["error_description"]
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
    stats: Any = box.stats()
    assert stats["token_refused"] == 1
    assert sum(stats["tokens_issued"].values()) == 0
    # A known client id is counted as its account's request, whatever the outcome.
    named = client is not None and client[0] == CLIENT[0]
    assert stats["token_requests"]["oauthco"] == (1 if named else 0)
    assert CLIENT[1] not in answer.body.decode(errors="replace")


async def test_token_requests_spend_no_api_budget(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(
        SandboxConfig(write_burst=1, reads_per_minute=1, writes_per_minute=1), source=oauth_seed()
    )
    answers = [await token(box) for _ in range(30)]
    assert {a.status for a in answers} == {200}
    auth = bearer(answers[-1])
    # The account's single read is still there, and the next one is throttled: tokens took none.
    assert (await call(box, "GET", "/integrations", auth)).status == 200
    assert (await call(box, "GET", "/integrations", auth)).status == 429
    stats: Any = box.stats()
    assert stats["requests"]["oauthco"] == {"GET": 2, "POST": 0}
    assert stats["throttled"]["oauthco"] == 1


async def test_token_endpoint_faults(box: Sandbox) -> None:
    box.queue_token_faults("503", "502", "reset")
    assert (await token(box)).status == 503
    assert (await token(box)).status == 502
    with pytest.raises(aiohttp.ClientConnectionError):
        await token(box)
    auth = bearer(await token(box))
    assert (await call(box, "GET", "/integrations", auth)).status == 200
    stats: Any = box.stats()
    assert (stats["token_faults"], stats["faults"]["oauthco"]) == (3, 0)
    assert stats["token_requests"]["oauthco"] == 4
    assert stats["tokens_issued"]["oauthco"] == 1


async def test_random_faults_reach_the_token_endpoint(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(SandboxConfig(fault_503=0.5, seed=3), source=oauth_seed())
    codes = [(await token(box)).status for _ in range(30)]
    assert set(codes) == {200, 503}
    assert box.stats()["token_faults"] == codes.count(503)


# -- Basic refused, Bearer expired --------------------------------------------------------------------


async def test_basic_is_refused_for_an_oauth2_account(box: Sandbox) -> None:
    for keys in (KEYS, CLIENT):
        for method in ("GET", "POST"):
            answer = await call(
                box,
                method,
                "/shop-order-statuses",
                auth_header(*keys),
                query={"integration_id": "2"},
                body={**VALID, "integration_id": 2},
            )
            assert answer.status == 401
            (error,) = answer.json["errors"]
            assert error["code"] == "authentication_failed"
            assert "OAuth2" in error["detail"]
    # Basic still works for the Basic account, and the OAuth2 one was left untouched.
    ok = await call(
        box, "GET", "/shop-order-statuses", auth_header("basic-pk", "basic-sk"), query={"integration_id": "1"}
    )
    assert ok.status == 200
    stats: Any = box.stats()
    assert stats["unauthenticated"] == 4
    assert stats["requests"]["oauthco"] == {"GET": 0, "POST": 0}
    assert stats["applied_posts"] == {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_expired_token_is_refused_and_counted() -> None:
    clock = FakeClock()
    async with run_sandbox(oauth_seed(), SandboxConfig(token_lifetime=60), clock=clock) as box:
        old = bearer(await token(box))
        clock.now += 59.9
        assert (await call(box, "GET", "/integrations", old)).status == 200
        fresh = bearer(await token(box))
        clock.now += 0.1  # the first token is now 60 s old
        refused = await call(box, "GET", "/integrations", old)
        assert refused.status == 401
        (error,) = refused.json["errors"]
        assert (error["code"], error["detail"]) == ("authentication_failed", "The access token has expired.")
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        # A POST with it is refused before it changes anything.
        posted = await call(box, "POST", "/shop-order-statuses", old, body={**VALID, "integration_id": 2})
        assert posted.status == 401
        assert (await call(box, "GET", "/integrations", fresh)).status == 200
        # A token this sandbox never issued is refused, but it is not an expired one.
        unknown = await call(box, "GET", "/integrations", {"Authorization": "Bearer ory_at_made-up"})
        assert unknown.status == 401
        assert unknown.json["errors"][0]["detail"] == "Invalid access token."
        stats: Any = box.stats()
        assert stats["expired_tokens"] == {"basicco": 0, "oauthco": 2, "other": 0}
        assert stats["unauthenticated"] == 3
        assert stats["applied_posts"] == {}


async def test_the_lifetime_is_real_seconds(sandbox_factory: SandboxFactory) -> None:
    # A sped-up clock for the rate limits does not shorten tokens.
    box = await sandbox_factory(SandboxConfig(token_lifetime=1, time_scale=1000.0), source=oauth_seed())
    answer = await token(box)
    assert answer.json["expires_in"] == 1
    auth = bearer(answer)
    await asyncio.sleep(0.3)
    assert (await call(box, "GET", "/integrations", auth)).status == 200
    await asyncio.sleep(0.8)
    assert (await call(box, "GET", "/integrations", auth)).status == 401
    assert box.stats()["expired_tokens"]["oauthco"] == 1


# -- seeding ------------------------------------------------------------------------------------------


def test_seed_checks_credentials_of_its_kind() -> None:
    with pytest.raises(ValueError, match="client_id and client_secret"):
        AccountSeed("o", "pk", "sk", auth="oauth2")
    with pytest.raises(ValueError, match="public_key and secret_key"):
        AccountSeed("b", client_id="id", client_secret="secret")
    from batchsync.sandbox.state import Store

    twice = AccountSeed("a", auth="oauth2", client_id="same", client_secret="x")
    with pytest.raises(ValueError, match="same client_id"):
        Store(Seed((twice, msgspec.structs.replace(twice, name="b"))))


async def test_inventory_oauth2_account_seeds_an_oauth2_account(
    sandbox_inventory: Inventory, sandbox_factory: SandboxFactory
) -> None:
    globex = sandbox_inventory.accounts["globex"]
    creds = OAuth2Credentials(Secret("globex-client"), Secret("globex-client-secret"))
    accounts = {**sandbox_inventory.accounts, "globex": Account("globex", creds, globex.base_url, globex.limits)}
    inv = msgspec.structs.replace(sandbox_inventory, accounts=accounts)
    seed = seed_of(inv)
    by_name = {a.name: a for a in seed.accounts}
    assert by_name["globex"] == AccountSeed(
        "globex", limits=globex.limits, auth="oauth2", client_id="globex-client", client_secret="globex-client-secret"
    )
    assert by_name["acme"].auth == "basic"
    box = await sandbox_factory(source=inv)
    auth = bearer(await token(box, ("globex-client", "globex-client-secret")))
    listing = await call(box, "GET", "/integrations", auth)
    assert [i["id"] for i in listing.json["data"]] == [201, 202]
    refused = await call(box, "GET", "/integrations", auth_header("globex-public", "globex-secret"))
    assert refused.status == 401
