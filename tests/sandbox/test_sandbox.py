"""The sandbox over real loopback HTTP: conformance to the OpenAPI, validation, auth, limits, faults, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from sandbox_fixture import SANDBOX_ENV, SandboxFactory, auth_header, write_sandbox_inventory

from batchsync.model import PRESTASHOP_V2, Inventory
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.limits import Gate
from batchsync.sandbox.server import THROTTLED_CODE, Sandbox
from batchsync.sandbox.state import AccountSeed, IntegrationSeed, Seed, seed_from_inventory
from batchsync.wire import ERROR_CODES, Status, Translation

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "tests" / "spec" / "integrations-v3.json"  # the official description, in-repo (tests/spec)
SPEC_HOST = "https://panel.sendcloud.sc"
SPEC_PREFIX = "/api/v3"

Auth = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


@pytest.fixture(scope="module")
def errors_schema() -> jsonschema.Draft202012Validator:
    """The spec's ``errors`` schema, for answers the spec does not list (401, 404, 429)."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/components/schemas/errors", "components": spec["components"]})


class Answer:
    def __init__(self, method: str, path: str, query: dict[str, str], status: int, body: bytes, headers: Any):
        self.method, self.path, self.query = method, path, query
        self.status, self.body, self.headers = status, body, headers

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    box: Sandbox,
    method: str,
    path: str,
    auth: dict[str, str] | None,
    *,
    query: dict[str, str] | None = None,
    body: Any = None,
    raw: bytes | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 10.0,
) -> Answer:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    own = session is None
    sess = session or aiohttp.ClientSession()
    try:
        async with sess.request(
            method,
            box.url + path,
            params=query,
            data=data,
            headers={**(auth or {}), **({"Content-Type": "application/json"} if data is not None else {})},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return Answer(method, path, query or {}, resp.status, await resp.read(), resp.headers)
    finally:
        if own:
            await sess.close()


def conforms(api: OpenAPI, answer: Answer) -> None:
    """The answer is one the OpenAPI description allows for this request."""
    request = MockRequest(SPEC_HOST, answer.method.lower(), SPEC_PREFIX + answer.path, args=answer.query)
    api.validate_response(request, MockResponse(answer.body, status_code=answer.status))


def statuses_body(iid: int, *statuses: tuple[str, list[tuple[str, str]]]) -> dict[str, Any]:
    return {
        "integration_id": iid,
        "statuses": [
            {"external_id": ext, "translations": [{"status": s, "language": lang} for s, lang in trs]}
            for ext, trs in statuses
        ],
    }


VALID = statuses_body(101, ("10", [("Paid", "en-gb"), ("Betaald", "nl-nl")]), ("11", [("Sent", "en-gb")]))


# -- conformance and behaviour of the endpoints -----------------------------------------------


async def test_post_then_get_conforms_and_round_trips(sandbox: Sandbox, sandbox_auth: Auth, openapi: OpenAPI) -> None:
    acme = sandbox_auth["acme"]
    first = await call(sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101"})
    assert first.status == 200
    conforms(openapi, first)

    posted = await call(sandbox, "POST", "/shop-order-statuses", acme, body=VALID)
    assert (posted.status, posted.body) == (200, b"null")
    conforms(openapi, posted)

    got = await call(sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101"})
    conforms(openapi, got)
    assert [(s["external_id"], s["status"], s["deleted_at"]) for s in got.json["data"]] == [
        ("10", "Paid", None),
        ("11", "Sent", None),
    ]
    assert got.json["data"][0]["translations"] == VALID["statuses"][0]["translations"]

    # Overwrite with only "11": "10" is soft-deleted, visible only with show_deleted.
    only = statuses_body(101, ("11", [("Sent", "en-gb")]))
    assert (await call(sandbox, "POST", "/shop-order-statuses", acme, body=only)).status == 200
    live = await call(sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101"})
    assert [s["external_id"] for s in live.json["data"]] == ["11"]
    everything = await call(
        sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101", "show_deleted": "true"}
    )
    conforms(openapi, everything)
    deleted = {s["external_id"]: s["deleted_at"] for s in everything.json["data"]}
    assert deleted["11"] is None
    assert deleted["10"] is not None and deleted["10"].endswith("Z")
    assert sandbox.state["101"] == everything.json["data"]

    # Re-posting a deleted external_id revives it.
    assert (await call(sandbox, "POST", "/shop-order-statuses", acme, body=VALID)).status == 200
    revived = await call(
        sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101", "show_deleted": "true"}
    )
    assert {s["external_id"]: s["deleted_at"] for s in revived.json["data"] if s["deleted_at"] is None}.keys() == {
        "10",
        "11",
    }

    # An empty list deletes everything.
    assert (await call(sandbox, "POST", "/shop-order-statuses", acme, body=statuses_body(101))).status == 200
    assert (await call(sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101"})).json == {
        "data": []
    }
    stats = sandbox.stats()
    assert stats["applied_posts"] == {"101": 4}
    assert stats["requests"]["acme"] == {"GET": 6, "POST": 4}


async def test_language_selection(sandbox: Sandbox, sandbox_auth: Auth) -> None:
    acme = sandbox_auth["acme"]
    body = statuses_body(
        102,
        ("gb", [("Paid", "en-gb"), ("Betaald", "nl-nl")]),
        ("no-gb", [("Bezahlt", "de-de"), ("Betaald", "nl-nl"), ("Payé", "fr-fr")]),
    )
    assert (await call(sandbox, "POST", "/shop-order-statuses", acme, body=body)).status == 200

    async def names(language: str | None) -> list[str]:
        query = {"integration_id": "102", **({"language": language} if language else {})}
        answer = await call(sandbox, "GET", "/shop-order-statuses", acme, query=query)
        assert answer.status == 200, answer.body
        return [s["status"] for s in answer.json["data"]]

    assert await names(None) == ["Paid", "Bezahlt"]  # en-gb, else first alphabetically (de-de)
    assert await names("nl-nl") == ["Betaald", "Betaald"]
    assert await names("fr-fr") == ["Paid", "Payé"]  # missing language falls back the same way
    assert await names("it-it") == ["Paid", "Bezahlt"]
    bad = await call(sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "102", "language": "xx"})
    assert bad.status == 400
    assert bad.json["errors"][0]["code"] == "invalid_choice"


def _tr(status: Any = "Paid", language: Any = "en-gb") -> dict[str, Any]:
    return {"status": status, "language": language}


INVALID_BODIES: list[tuple[str, Any, str, str]] = [
    ("missing integration_id", {"statuses": []}, "required", "/integration_id"),
    ("missing statuses", {"integration_id": 101}, "required", "/statuses"),
    (
        "missing translations",
        {"integration_id": 101, "statuses": [{"external_id": "1"}]},
        "required",
        "/statuses/0/translations",
    ),
    ("integration_id string", {"integration_id": "101", "statuses": []}, "invalid", "/integration_id"),
    ("integration_id zero", {"integration_id": 0, "statuses": []}, "min_value", "/integration_id"),
    ("statuses not a list", {"integration_id": 101, "statuses": {}}, "not_a_list", "/statuses"),
    (
        "external_id number",
        {"integration_id": 101, "statuses": [{"external_id": 1, "translations": [_tr()]}]},
        "invalid",
        "/statuses/0/external_id",
    ),
    (
        "null status name",
        {"integration_id": 101, "statuses": [{"external_id": "1", "translations": [_tr(None)]}]},
        "null",
        "/statuses/0/translations/0/status",
    ),
    (
        "bad language",
        {"integration_id": 101, "statuses": [{"external_id": "1", "translations": [_tr(), _tr("x", "en")]}]},
        "invalid_choice",
        "/statuses/0/translations/1/language",
    ),
    (
        "no translations",
        {"integration_id": 101, "statuses": [{"external_id": "1", "translations": []}]},
        "invalid",
        "/statuses/0/translations",
    ),
    (
        "eight translations",
        {"integration_id": 101, "statuses": [{"external_id": "1", "translations": [_tr()] * 8}]},
        "invalid",
        "/statuses/0/translations",
    ),
    (
        "empty external_id",
        {"integration_id": 101, "statuses": [{"external_id": "", "translations": [_tr()]}]},
        "invalid",
        "/statuses/0/external_id",
    ),
    (
        "empty status name",
        {"integration_id": 101, "statuses": [{"external_id": "1", "translations": [_tr("")]}]},
        "invalid",
        "/statuses/0/translations/0/status",
    ),
    (
        "unknown field",
        {"integration_id": 101, "statuses": [{"external_id": "1", "translations": [_tr()], "colour": "red"}]},
        "unknown_field",
        "/statuses/0/colour",
    ),
    (
        "duplicate external_id",
        {
            "integration_id": 101,
            "statuses": [
                {"external_id": "1", "translations": [_tr()]},
                {"external_id": "1", "translations": [_tr("Other")]},
            ],
        },
        "invalid",
        "/statuses/1/external_id",
    ),
    (
        "duplicate language",
        {
            "integration_id": 101,
            "statuses": [{"external_id": "1", "translations": [_tr(), _tr("x", "nl-nl"), _tr("y")]}],
        },
        "invalid",
        "/statuses/0/translations/2/language",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "pointer"), [c[1:] for c in INVALID_BODIES], ids=[c[0] for c in INVALID_BODIES]
)
async def test_invalid_post_bodies(
    sandbox: Sandbox, sandbox_auth: Auth, openapi: OpenAPI, body: Any, code: str, pointer: str
) -> None:
    before = sandbox.state
    answer = await call(sandbox, "POST", "/shop-order-statuses", sandbox_auth["acme"], body=body)
    assert answer.status == 400, answer.body
    conforms(openapi, answer)
    (error,) = answer.json["errors"]
    assert (error["status"], error["code"], error["source"]["pointer"]) == ("400", code, pointer)
    assert error["detail"]
    assert sandbox.state == before
    assert sandbox.stats()["applied_posts"] == {}


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"null", b"{"], ids=repr)
async def test_wrong_format(sandbox: Sandbox, sandbox_auth: Auth, openapi: OpenAPI, raw: bytes) -> None:
    for path in ("/shop-order-statuses", "/shop-order-statuses/mapping"):
        answer = await call(sandbox, "POST", path, sandbox_auth["acme"], raw=raw)
        assert answer.status == 400
        conforms(openapi, answer)
        assert answer.json == {
            "errors": [
                {
                    "status": "400",
                    "code": "non_field_errors",
                    "title": "Wrong format",
                    "detail": "Wrong request format, expected object",
                }
            ]
        }


@pytest.mark.parametrize("path", ["/shop-order-statuses", "/shop-order-statuses/mapping"])
@pytest.mark.parametrize("value", [None, "", "abc", "-3", "0"])
async def test_get_needs_integration_id(
    sandbox: Sandbox, sandbox_auth: Auth, openapi: OpenAPI, path: str, value: str | None
) -> None:
    query = {} if value is None else {"integration_id": value}
    answer = await call(sandbox, "GET", path, sandbox_auth["acme"], query=query)
    assert answer.status == 400
    # A query that breaks the spec's "integer" cannot be validated as a request: check the answer only.
    conforms(openapi, Answer("GET", path, {"integration_id": "1"}, answer.status, answer.body, answer.headers))
    (error,) = answer.json["errors"]
    assert error["code"] in ("non_field_errors", "invalid")
    assert error["source"] == {"parameter": "integration_id"}
    if not value:
        assert error["detail"] == "Integration ID is a required GET parameter"


async def test_mapping(sandbox: Sandbox, sandbox_auth: Auth, openapi: OpenAPI) -> None:
    acme = sandbox_auth["acme"]
    first = await call(sandbox, "GET", "/shop-order-statuses/mapping", acme, query={"integration_id": "101"})
    conforms(openapi, first)
    assert first.json["data"]["integration_id"] == 101
    assert [(m["status_category"], m["external_id"], m["is_valid"]) for m in first.json["data"]["mapping"]] == [
        ("READY_TO_SEND", None, True),
        ("IN_TRANSIT", None, True),
        ("DELIVERED", None, True),
        ("CANCEL", None, True),
    ]
    assert (await call(sandbox, "POST", "/shop-order-statuses", acme, body=VALID)).status == 200
    mapping: dict[str, Any] = {
        "integration_id": 101,
        "mapping": [
            {"status_category": "CANCEL", "external_id": None},
            {"status_category": "READY_TO_SEND", "external_id": "10"},
            {"status_category": "IN_TRANSIT", "external_id": "10"},
            {"status_category": "DELIVERED", "external_id": "11"},
        ],
    }
    posted = await call(sandbox, "POST", "/shop-order-statuses/mapping", acme, body=mapping)
    assert (posted.status, posted.body) == (200, b"null")
    conforms(openapi, posted)
    # Deleting "11" makes DELIVERED invalid.
    only = statuses_body(101, ("10", [("Paid", "en-gb")]))
    assert (await call(sandbox, "POST", "/shop-order-statuses", acme, body=only)).status == 200
    got = await call(sandbox, "GET", "/shop-order-statuses/mapping", acme, query={"integration_id": "101"})
    conforms(openapi, got)
    assert [(m["status_category"], m["external_id"], m["is_valid"]) for m in got.json["data"]["mapping"]] == [
        ("READY_TO_SEND", "10", True),
        ("IN_TRANSIT", "10", True),
        ("DELIVERED", "11", False),
        ("CANCEL", None, True),
    ]

    three = {**mapping, "mapping": mapping["mapping"][:3]}
    twice = {**mapping, "mapping": [*mapping["mapping"][:3], {"status_category": "CANCEL", "external_id": "x"}]}
    bad_category = {**mapping, "mapping": [*mapping["mapping"][:3], {"status_category": "LOST", "external_id": None}]}
    no_external = {**mapping, "mapping": [*mapping["mapping"][:3], {"status_category": "DELIVERED"}]}
    for body, code, pointer in [
        (three, "invalid", "/mapping"),
        (twice, "invalid", "/mapping/3/status_category"),
        (bad_category, "invalid_choice", "/mapping/3/status_category"),
        (no_external, "required", "/mapping/3/external_id"),
    ]:
        answer = await call(sandbox, "POST", "/shop-order-statuses/mapping", acme, body=body)
        assert answer.status == 400, body
        conforms(openapi, answer)
        assert [(e["code"], e["source"]["pointer"]) for e in answer.json["errors"]] == [(code, pointer)]


# -- authentication, ownership, systems --------------------------------------------------------


async def test_auth_ownership_and_system(
    sandbox_factory: SandboxFactory, sandbox_auth: Auth, errors_schema: jsonschema.Draft202012Validator
) -> None:
    box = await sandbox_factory(SandboxConfig(other_system_ids=frozenset({105})))
    acme, globex = sandbox_auth["acme"], sandbox_auth["globex"]
    query = {"integration_id": "101"}

    for auth in (None, auth_header("acme-public", "wrong"), auth_header("nobody", "acme-secret")):
        for method in ("GET", "POST"):
            answer = await call(box, method, "/shop-order-statuses", auth, query=query, body=VALID)
            assert answer.status == 401
            errors_schema.validate(answer.json)
            assert answer.json["errors"][0]["code"] == "authentication_failed"
    assert box.stats()["unauthenticated"] == 6

    # Another account's integration, or one that does not exist: 404, and nothing changes.
    before = box.state
    for auth, iid in ((globex, 101), (acme, 201), (acme, 999)):
        answer = await call(box, "POST", "/shop-order-statuses", auth, body={**VALID, "integration_id": iid})
        assert answer.status == 404
        errors_schema.validate(answer.json)
        assert answer.json["errors"][0]["code"] == "not_found"
        got = await call(box, "GET", "/shop-order-statuses/mapping", auth, query={"integration_id": str(iid)})
        assert got.status == 404
    assert box.state == before

    for method in ("GET", "POST"):
        answer = await call(
            box,
            method,
            "/shop-order-statuses",
            acme,
            query={"integration_id": "105"},
            body={**VALID, "integration_id": 105},
        )
        assert answer.status == 400
        errors_schema.validate(answer.json)
        (error,) = answer.json["errors"]
        assert (error["code"], error["detail"]) == ("invalid", "Only the Prestashop V2 integration is supported")

    listing = await call(box, "GET", "/integrations", acme)
    assert listing.status == 200
    systems = {i["id"]: i["system"] for i in listing.json["data"]}
    assert systems == {
        101: PRESTASHOP_V2,
        102: PRESTASHOP_V2,
        103: PRESTASHOP_V2,
        104: PRESTASHOP_V2,
        105: "woocommerce",
    }
    assert set(listing.json["data"][0]) == {"id", "shop_name", "shop_url", "system", "failing_since", "last_fetch"}
    one = await call(box, "GET", "/integrations/201", globex)
    assert (one.status, one.json["id"]) == (200, 201)
    assert (await call(box, "GET", "/integrations/201", acme)).status == 404
    assert (await call(box, "GET", "/integrations/nope", acme)).status == 404


# -- rate limits -------------------------------------------------------------------------------


def test_gate_bucket_and_in_flight() -> None:
    now = [0.0]
    gate = Gate(capacity=3, rate=0.5, max_in_flight=2, clock=lambda: now[0])
    assert gate.try_enter() == 0
    assert gate.try_enter() == 0
    assert gate.try_enter() == 1  # a token is left, but two are in flight
    gate.leave()
    assert gate.try_enter() == 0
    gate.leave()
    gate.leave()
    assert gate.try_enter() == 2  # bucket empty: one token in 1 / 0.5 s
    now[0] = 1.0
    assert gate.try_enter() == 1  # half a token back: one more second
    now[0] = 2.0
    assert gate.try_enter() == 0
    gate.leave()
    now[0] = 1000.0  # a long pause refills up to the capacity (3), no further
    for _ in range(3):
        assert gate.try_enter() == 0
        gate.leave()
    assert gate.try_enter() == 2
    assert gate.peak == 2


async def test_concurrent_writes_are_limited(
    sandbox: Sandbox, sandbox_auth: Auth, errors_schema: jsonschema.Draft202012Validator
) -> None:
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        answers = await asyncio.gather(
            *(
                call(sandbox, "POST", "/shop-order-statuses", sandbox_auth["acme"], body=VALID, session=session)
                for _ in range(200)
            )
        )
    elapsed = time.monotonic() - started
    codes = [a.status for a in answers]
    admitted = codes.count(200)
    assert set(codes) <= {200, 429}
    # Default limits: burst 15, 100 per minute refill.
    assert 15 <= admitted <= 15 + int(elapsed * 100 / 60) + 1
    throttled = [a for a in answers if a.status == 429]
    assert len(throttled) == 200 - admitted
    for answer in throttled[:5]:
        errors_schema.validate(answer.json)
        assert answer.json["errors"][0]["code"] == THROTTLED_CODE
        assert int(answer.headers["Retry-After"]) >= 1
    stats = sandbox.stats()
    assert stats["throttled"]["acme"] == 200 - admitted
    assert stats["peak_in_flight"]["acme"]["write"] <= 15
    assert stats["applied_posts"] == {"101": admitted}
    # Reads are a separate budget: still available.
    read = await call(sandbox, "GET", "/shop-order-statuses", sandbox_auth["acme"], query={"integration_id": "101"})
    assert read.status == 200
    # And another account is not affected.
    other = await call(
        sandbox, "POST", "/shop-order-statuses", sandbox_auth["globex"], body={**VALID, "integration_id": 201}
    )
    assert other.status == 200


async def test_in_flight_cap_and_429_variants(sandbox_factory: SandboxFactory, sandbox_auth: Auth) -> None:
    # Plenty of tokens (sped-up clock), slow requests: only the in-flight cap can refuse.
    box = await sandbox_factory(
        SandboxConfig(write_burst=4, time_scale=1000.0, latency=(0.5, 0.5), empty_429=True, retry_after=False)
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        answers = await asyncio.gather(
            *(
                call(box, "POST", "/shop-order-statuses", sandbox_auth["acme"], body=VALID, session=session)
                for _ in range(10)
            )
        )
    assert sorted(a.status for a in answers) == [200] * 4 + [429] * 6
    refused = next(a for a in answers if a.status == 429)
    assert refused.body == b""
    assert "Retry-After" not in refused.headers
    assert box.stats()["peak_in_flight"]["acme"]["write"] == 4


async def test_time_scale_refills_faster(sandbox_factory: SandboxFactory, sandbox_auth: Auth) -> None:
    box = await sandbox_factory(SandboxConfig(write_burst=2, writes_per_minute=60, time_scale=20.0))
    acme = sandbox_auth["acme"]
    codes = [(await call(box, "POST", "/shop-order-statuses", acme, body=VALID)).status for _ in range(3)]
    assert codes == [200, 200, 429]
    await asyncio.sleep(0.12)  # 20 tokens per second: two back
    assert (await call(box, "POST", "/shop-order-statuses", acme, body=VALID)).status == 200


# -- faults ----------------------------------------------------------------------------------------


async def test_fault_500_changes_nothing(sandbox_factory: SandboxFactory, sandbox_auth: Auth) -> None:
    box = await sandbox_factory(SandboxConfig(fault_500=1.0))
    before = box.state
    for method in ("POST", "GET"):
        for _ in range(3):
            answer = await call(
                box, method, "/shop-order-statuses", sandbox_auth["acme"], query={"integration_id": "101"}, body=VALID
            )
            assert answer.status == 500
    assert box.state == before
    assert box.stats()["faults"] == {"acme": 6, "globex": 0}
    assert box.stats()["applied_posts"] == {}


async def test_fault_kinds(sandbox_factory: SandboxFactory, sandbox_auth: Auth) -> None:
    box = await sandbox_factory(SandboxConfig(hang_seconds=5.0))
    acme = sandbox_auth["acme"]
    query = {"integration_id": "101"}
    box.queue_faults("502", "503", "garbage_200")
    bad_gateway = await call(box, "GET", "/shop-order-statuses", acme, query=query)
    assert bad_gateway.status == 502
    assert bad_gateway.headers["Content-Type"].startswith("text/html")
    assert (await call(box, "GET", "/shop-order-statuses", acme, query=query)).status == 503
    garbage = await call(box, "GET", "/shop-order-statuses", acme, query=query)
    assert garbage.status == 200
    with pytest.raises(json.JSONDecodeError):
        _ = garbage.json

    box.queue_faults("reset")
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(box, "POST", "/shop-order-statuses", acme, body=VALID)
    assert box.stats()["applied_posts"] == {}

    box.queue_faults("hang")
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await call(box, "GET", "/shop-order-statuses", acme, query=query, timeout=0.2)
    assert time.monotonic() - started < 2.0
    assert box.stats()["faults"]["acme"] == 5
    # Back to normal once the queue is empty.
    assert (await call(box, "GET", "/shop-order-statuses", acme, query=query)).status == 200


async def test_random_faults_are_seeded(sandbox_factory: SandboxFactory, sandbox_auth: Auth) -> None:
    config = SandboxConfig(fault_500=0.3, fault_503=0.2, reads_per_minute=100000, write_burst=100, seed=7)

    async def run() -> list[int]:
        box = await sandbox_factory(config)
        return [(await call(box, "GET", "/integrations", sandbox_auth["acme"])).status for _ in range(40)]

    first, second = await run(), await run()
    assert first == second
    assert {500, 503, 200} <= set(first)


# -- seeding -----------------------------------------------------------------------------------


def _desired(inv: Inventory) -> dict[str, list[Status]]:
    return {str(j.integration_id): list(j.desired.statuses) for j in inv.jobs}


def _as_statuses(state: dict[str, list[dict[str, Any]]]) -> dict[str, list[Status]]:
    return {
        iid: [
            Status(s["external_id"], tuple(Translation(**t) for t in s["translations"]))
            for s in items
            if s["deleted_at"] is None
        ]
        for iid, items in state.items()
    }


@pytest.mark.parametrize("in_sync", [0.0, 0.5, 1.0])
async def test_seeding_in_sync(sandbox_factory: SandboxFactory, sandbox_inventory: Inventory, in_sync: float) -> None:
    box = await sandbox_factory(SandboxConfig(in_sync=in_sync, seed=3))
    desired, current = _desired(sandbox_inventory), _as_statuses(box.state)
    same = [iid for iid in desired if desired[iid] == current[iid]]
    assert len(same) == round(in_sync * len(desired))
    again = await sandbox_factory(SandboxConfig(in_sync=in_sync, seed=3))
    assert again.state == box.state


def test_seed_drift_kinds(sandbox_inventory: Inventory) -> None:
    kinds = set()
    for seed in range(10):
        plan = seed_from_inventory(sandbox_inventory, seed=seed)
        for spec in plan.integrations:
            ids = [s.external_id for s in spec.statuses]
            kinds.add("empty" if not ids else "renamed+extra" if "sandbox-legacy" in ids else "other")
    assert kinds == {"empty", "renamed+extra"}


async def test_plain_seed(sandbox_factory: SandboxFactory) -> None:
    paid = Status("paid", (Translation("Paid", "en-gb"),))
    old = Status("old", (Translation("Old", "en-gb"),))
    seed = Seed(
        accounts=(AccountSeed("solo", "pk", "sk"),),
        integrations=(IntegrationSeed(7, "solo", statuses=(paid,), deleted_statuses=(old,)),),
    )
    box = await sandbox_factory(source=seed)
    answer = await call(
        box, "GET", "/shop-order-statuses", auth_header("pk", "sk"), query={"integration_id": "7", "show_deleted": "1"}
    )
    assert [(s["external_id"], s["deleted_at"] is None) for s in answer.json["data"]] == [
        ("old", False),
        ("paid", True),
    ]


async def test_sandbox_endpoints(sandbox: Sandbox, sandbox_auth: Auth) -> None:
    await call(sandbox, "POST", "/shop-order-statuses", sandbox_auth["acme"], body=VALID)
    stats = await call(sandbox, "GET", "/_sandbox/stats", None)
    assert stats.status == 200
    assert stats.json == json.loads(json.dumps(sandbox.stats()))
    assert set(stats.json) >= {"requests", "throttled", "faults", "peak_in_flight", "applied_posts"}
    assert stats.json["requests"] == {"acme": {"GET": 0, "POST": 1}, "globex": {"GET": 0, "POST": 0}}
    assert stats.json["peak_in_flight"]["acme"] == {"read": 0, "write": 1}
    state = await call(sandbox, "GET", "/_sandbox/state", None)
    assert state.json == sandbox.state
    assert set(state.json) == {"101", "102", "103", "104", "105", "201", "202"}


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="add up"):
        SandboxConfig(fault_500=0.7, fault_503=0.5)
    with pytest.raises(ValueError, match="latency"):
        SandboxConfig(latency=(0.5, 0.1))
    assert set(ERROR_CODES) >= {THROTTLED_CODE, "authentication_failed", "not_found"}


# -- the command line --------------------------------------------------------------------------


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchsync.sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    path = write_sandbox_inventory(tmp_path)
    env = {**os.environ, **SANDBOX_ENV}
    proc = _start(["--port", "0", "--inventory", str(path), "--in-sync", "1"], env)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url + "/shop-order-statuses",
                params={"integration_id": "201"},
                headers=auth_header("globex-public", "globex-secret"),
            ) as resp,
        ):
            assert resp.status == 200
            assert len((await resp.json())["data"]) == 3
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_broken_inventory(tmp_path: Path) -> None:
    path = write_sandbox_inventory(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in SANDBOX_ENV}
    proc = _start(["--port", "0", "--inventory", str(path)], env)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert out == ""
    assert "SANDBOX_ACME_PUBLIC" in err


def test_cli_refuses_more_seeded_logs_than_it_could_hold() -> None:
    """A count that would take the machine's memory (99,999,999,999 records) is a usage error."""
    proc = _start(["--port", "0", "--exception-logs", "1001=99999999999"], dict(os.environ))
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == ""
    assert "at most 100,000 logs per integration" in err


def test_cli_with_stdout_on_a_full_disk_serves_and_exits_5_saying_so() -> None:
    """It said "cannot listen on 127.0.0.1:0: No space left on device" and exited 2."""
    with open("/dev/full", "w") as full:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchsync", "sandbox", "--port", "0"],
            stdout=full, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        first = proc.stderr.readline()  # said once the listening line failed: it is serving
        assert time.monotonic() < deadline and "stdout was not written: No space left on device" in first
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 5, first + err
    assert "cannot listen" not in first + err


# -- one account down ----------------------------------------------------------------------------


async def test_a_down_account_answers_500_to_everything_while_the_others_are_served(
    sandbox_factory: SandboxFactory, sandbox_auth: Auth
) -> None:
    box = await sandbox_factory(SandboxConfig(down_accounts=frozenset({"acme"})))
    before = box.state
    acme = sandbox_auth["acme"]
    mapping = {"integration_id": 101, "mapping": [{"status_category": "CANCEL", "external_id": None}]}
    for method, path, query, body in (
        ("GET", "/integrations", None, None),
        ("GET", "/shop-order-statuses", {"integration_id": "101"}, None),
        ("POST", "/shop-order-statuses", None, VALID),
        ("GET", "/shop-order-statuses/mapping", {"integration_id": "101"}, None),
        ("POST", "/shop-order-statuses/mapping", None, mapping),
    ):
        answer = await call(box, method, path, acme, query=query, body=body)
        assert answer.status == 500, (method, path)
    # Authentication still comes first: a wrong key is a 401, not the account's 500.
    assert (await call(box, "GET", "/integrations", auth_header("acme-public", "wrong"))).status == 401
    ok = await call(box, "GET", "/shop-order-statuses", sandbox_auth["globex"], query={"integration_id": "201"})
    assert ok.status == 200
    assert box.state == before
    stats = box.stats()
    assert stats["faults"] == {"acme": 5, "globex": 0}
    assert stats["requests"]["acme"] == {"GET": 3, "POST": 2}
    assert stats["throttled"] == {"acme": 0, "globex": 0}  # refused before its rate limit: no budget spent


def test_a_down_account_must_be_one_of_the_sandbox(sandbox_inventory: Inventory) -> None:
    with pytest.raises(ValueError, match="does not have: nope"):
        Sandbox(sandbox_inventory, SandboxConfig(down_accounts=frozenset({"nope", "acme"})))


def test_cli_down_account_is_checked(tmp_path: Path) -> None:
    path = write_sandbox_inventory(tmp_path)
    proc = _start(["--port", "0", "--inventory", str(path), "--down-account", "nope"], {**os.environ, **SANDBOX_ENV})
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == ""
    assert "down accounts the sandbox does not have: nope" in err and "Traceback" not in err
