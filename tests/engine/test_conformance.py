"""Every request batchsync sends conforms to the official OpenAPI description.

A middleware in front of the sandbox validates each incoming request with openapi-core
against the repository's copy of the official description (``tests/spec``, compared with
its source in tests/test_wire.py) while plan, apply and apply --no-read run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import spec
from aiohttp import web
from inventory_factory import make_inventory
from openapi_core import OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest
from test_engine_http import FAST

from batchsync.engine.engine import Engine
from batchsync.outcome import Outcome
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import Sandbox
from batchsync.sendcloud.auth import BasicAuthenticator
from batchsync.sendcloud.client import Client
from batchsync.sendcloud.transport import HttpApi

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def openapi_for_loopback() -> OpenAPI:
    doc = spec.document()
    doc["servers"] = [{"url": "http://127.0.0.1"}]  # openapi-core's host_url has no port
    return OpenAPI.from_dict(doc)


async def test_every_request_conforms(tmp_path: Path) -> None:
    openapi = openapi_for_loopback()
    seen: list[tuple[str, str]] = []
    invalid: list[str] = []

    @web.middleware
    async def validate(request: web.Request, handler: Handler) -> web.StreamResponse:
        # GET /integrations (the pre-flight) is not in the extract of the description.
        if not request.path.startswith(("/_sandbox", "/integrations")):
            body = await request.read()
            try:
                openapi.validate_request(AIOHTTPOpenAPIWebRequest(request, body=body or None))
            except Exception as exc:  # collect, so the test reports every violation
                invalid.append(f"{request.method} {request.path_qs}: {exc!r}")
            seen.append((request.method, request.path))
        return await handler(request)

    mapped = [
        {"id": 8, "account": "acme", "status_set": "std", "mapping": {"READY_TO_SEND": "1", "DELIVERED": "3"}},
        {"id": 9, "account": "globex", "status_set": "std", "mapping": {"IN_TRANSIT": "2", "CANCEL": "2"}},
    ]
    inv = make_inventory(
        tmp_path, {"acme": 12, "globex": 5}, extra=[{"id": 7, "account": "acme", "statuses": []}, *mapped]
    )
    box = Sandbox(inv, SandboxConfig(in_sync=0.3, seed=2))
    box.app.middlewares.append(validate)
    runner = web.AppRunner(box.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        outcomes: list[Outcome] = []
        for options in (
            msgspec.structs.replace(FAST, write=False),
            msgspec.structs.replace(FAST, allow_delete_all=True),
            msgspec.structs.replace(FAST, read_first=False, allow_delete_all=True),
        ):
            async with HttpApi(concurrency=64, timeout=5, base_url=url) as api:
                await Engine(inv.accounts, api, options, outcomes.append).run(inv.jobs)
        async with aiohttp.ClientSession() as session:
            account = inv.accounts["acme"]
            client = Client(session, url, BasicAuthenticator(*account.secrets()))
            await client.get_mapping(inv.jobs[0].integration_id)
    finally:
        box.close()
        await runner.cleanup()
    assert not [o for o in outcomes if o.result == "failed"]
    assert {m for m, _ in seen} == {"GET", "POST"}  # both kinds were checked
    assert ("GET", "/shop-order-statuses/mapping") in seen
    assert ("POST", "/shop-order-statuses/mapping") in seen  # declared mappings were written, and checked
    assert len(seen) >= 20 * 3
    assert invalid == []


def test_the_validator_does_catch_a_bad_request() -> None:
    """The check above can fail: a body the schema rejects is reported."""
    from openapi_core.testing import MockRequest

    openapi = openapi_for_loopback()
    bad = MockRequest(
        "http://127.0.0.1",
        "post",
        "/shop-order-statuses",
        headers={"Authorization": "Basic eDp5"},
        data=b'{"integration_id": "7", "statuses": [{"external_id": "1", "translations": []}]}',
        content_type="application/json",
    )
    try:
        openapi.validate_request(bad)
    except Exception:
        return
    raise AssertionError("the validator accepted an invalid body")


def logs_openapi() -> OpenAPI:
    """The exception-log operations' description, for loopback. The official description
    uses ``{id}`` in ``/integrations/{id}/logs`` without declaring it (openapi-core refuses
    such a document): the copy in tests/spec stays as published, and only here is the
    parameter declared, as the path implies (an integration id)."""
    doc = spec.logs_document()
    doc["servers"] = [{"url": "http://127.0.0.1"}]
    declared = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    doc["paths"]["/integrations/{id}/logs"].setdefault("parameters", [declared])
    return OpenAPI.from_dict(doc)


async def test_the_exception_log_requests_conform(tmp_path: Path) -> None:
    """Both exception-log GETs, as ``--with-health`` sends them (an account of several
    integrations: ``/integrations/logs``, paged; an account of one: ``/integrations/{id}/logs``),
    against the official description of those operations (tests/spec/integrations-logs-v3.json)."""
    from datetime import UTC, datetime, timedelta

    from batchsync.engine.health import read_health

    openapi = logs_openapi()
    seen: list[str] = []
    invalid: list[str] = []

    @web.middleware
    async def validate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/logs") and not request.path.startswith("/_sandbox"):
            try:
                openapi.validate_request(AIOHTTPOpenAPIWebRequest(request, body=None))
            except Exception as exc:
                invalid.append(f"{request.method} {request.path_qs}: {exc!r}")
            seen.append(request.path)
        return await handler(request)

    inv = make_inventory(tmp_path, {"acme": 4, "globex": 1})
    first = inv.jobs[0].integration_id
    only = next(j.integration_id for j in inv.jobs if j.account == "globex")
    config = SandboxConfig(exception_logs=((first, 5), (only, 3)), logs_page_size=2)
    box = Sandbox(inv, config)
    box.app.middlewares.append(validate)
    runner = web.AppRunner(box.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    since = dict.fromkeys(("acme", "globex"), datetime.now(UTC) - timedelta(days=1))
    try:
        async with HttpApi(concurrency=8, timeout=5, base_url=url) as api:
            found = await read_health(inv.accounts, api, inv.jobs, since, FAST)
    finally:
        box.close()
        await runner.cleanup()
    assert found.failed == {}
    assert found.by_integration[first].count == 5 and found.by_integration[only].count == 3
    assert seen.count("/integrations/logs") == 3  # 5 records, 2 a page
    assert seen.count(f"/integrations/{only}/logs") == 2
    assert invalid == []


def test_the_logs_validator_does_catch_a_bad_request() -> None:
    """The check above can fail: a path the description does not have is reported."""
    from openapi_core.testing import MockRequest

    openapi = logs_openapi()  # built outside the try: a description it refuses is no pass
    bad = MockRequest("http://127.0.0.1", "get", "/integrations/abc/logs", headers={"Authorization": "Basic eDp5"})
    try:
        openapi.validate_request(bad)
    except Exception:
        return
    raise AssertionError("the validator accepted a request the description does not have")
