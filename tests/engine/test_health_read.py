"""Reading the accounts' exception logs (batchsync.engine.health) against the in-memory API:
what is kept per integration, since when, the early stop, the bounds, the read budget, and
a failure that costs one account's health only."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses
from fake_api import Call, FakeApi
from inventory_factory import make_inventory

from batchsync import wire
from batchsync.engine.health import HealthRead, read_health
from batchsync.engine.options import Options
from batchsync.health import since_for
from batchsync.sendcloud.errors import ApiError, AuthError, ClientError, ServerError, ThrottledError
from batchsync.sendcloud.listing import ListBounds

FAST = Options(backoff_base=0.01, backoff_max=0.02, max_attempts=3)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=24)


def _record(ident: int, iid: int, hours_ago: float, code: int | None = 401, **kw: str) -> wire.LogRecord:
    at = (NOW - timedelta(hours=hours_ago)).isoformat()
    return wire.LogRecord(integration_id=iid, id=ident, created_at=at, response_code=code, method="POST", **kw)


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[FakeApi, list[int], list[int]]:
    inv = make_inventory(tmp_path, {"acme": 3, "globex": 2})
    api = FakeApi.from_inventory(inv, latency=0.0, page_size=2)
    api.inv = inv  # type: ignore[attr-defined]
    acme = [j.integration_id for j in inv.jobs if j.account == "acme"]
    globex = [j.integration_id for j in inv.jobs if j.account == "globex"]
    return api, acme, globex


async def _read(api: FakeApi, options: Options = FAST, **kw: Any) -> HealthRead:
    inv = api.inv  # type: ignore[attr-defined]
    return await read_health(inv.accounts, api, inv.jobs, dict.fromkeys(("acme", "globex"), SINCE), options, **kw)


async def test_per_integration_counts_codes_times_and_the_last(fleet: tuple[FakeApi, list[int], list[int]]) -> None:
    api, acme, globex = fleet
    a, b = acme[0], acme[1]
    api.logs["acme"] = [
        _record(
            5,
            a,
            1,
            401,
            exception="401 for url: https://shop.example/x?ws_key=SHOPKEY",
            full_url="https://u:p@shop.example/x?ws_key=SHOPKEY",
        ),
        _record(4, b, 2, None, exception_type="requests.exceptions.SSLError"),
        _record(3, a, 3, 500),
        _record(2, a, 30, 404),  # older than the moment: not counted
        _record(1, 99999, 1, 401),  # another integration of the account, not selected
    ]
    found = await _read(api)
    assert found.failed == {}
    ha, hb = found.by_integration[a], found.by_integration[b]
    assert (ha.count, ha.response_codes) == (2, {"401": 1, "500": 1})
    assert (
        ha.last_at == (NOW - timedelta(hours=1)).isoformat() and ha.first_at == (NOW - timedelta(hours=3)).isoformat()
    )
    assert ha.last is not None and ha.last.url == "https://shop.example/x" and ha.last.response_code == 401
    assert ha.last.exception == "401 for url: https://shop.example/x?…"
    assert (hb.count, hb.response_codes, hb.exception_types) == (1, {"none": 1}, {"requests.exceptions.SSLError": 1})
    assert all(found.by_integration[i].count == 0 for i in (acme[2], *globex))


async def test_newest_first_stops_once_past_the_moment(fleet: tuple[FakeApi, list[int], list[int]]) -> None:
    api, acme, _ = fleet
    api.logs["acme"] = [_record(100 - k, acme[0], 10 * k + 1) for k in range(10)]  # 1 h, 11 h, 21 h, 31 h...
    found = await _read(api)
    assert found.by_integration[acme[0]].count == 3
    # Page 2 (21 h, 31 h) goes past the moment: page 3 is never asked for.
    assert len([c for c in api.calls if c.account == "acme" and c.op == "logs"]) == 2
    # Oldest first: no early stop, every page read, the same count.
    api.calls.clear()
    api.logs["acme"].reverse()
    again = await _read(api)
    assert again.by_integration[acme[0]].count == 3
    assert len([c for c in api.calls if c.account == "acme" and c.op == "logs"]) == 5


async def test_a_failure_costs_that_accounts_health_only(fleet: tuple[FakeApi, list[int], list[int]]) -> None:
    api, acme, globex = fleet
    api.logs["acme"] = [_record(1, acme[0], 1)]

    def refuse(call: Call) -> AuthError | None:
        return AuthError("bad key", method="GET", http_status=401) if call.account == "globex" else None

    api.fault = refuse
    found = await _read(api, redact=lambda t: t.replace("bad", "***"))
    assert set(found.failed) == {"globex"} and "auth 401: *** key" in found.failed["globex"]
    assert all(found.by_integration[i].unknown == found.failed["globex"] for i in globex)
    assert found.by_integration[acme[0]].count == 1 and found.by_integration[acme[0]].unknown is None


async def test_server_errors_and_429_are_retried_on_the_read_budget(
    fleet: tuple[FakeApi, list[int], list[int]],
) -> None:
    api, acme, _ = fleet
    api.logs["acme"] = [_record(1, acme[0], 1)]
    failures = iter(
        [ServerError("boom", http_status=503), ThrottledError("slow down", http_status=429, retry_after=0.01)]
    )

    def flaky(call: Call) -> ApiError | None:
        return next(failures, None) if call.account == "acme" else None

    api.fault = flaky
    carried = {"acme": (0.0, 5.0, 2.0)}
    found = await _read(api, carried=carried)
    assert found.failed == {} and found.by_integration[acme[0]].count == 1
    assert len([c for c in api.calls if c.account == "acme"]) == 3
    # Reads only: what the write bucket held is handed on untouched; the read bucket was drained.
    _, reads, writes = found.carried["acme"]
    assert writes >= 2.0 and reads < 5.0  # the write bucket only refilled meanwhile


async def test_a_record_listed_again_on_a_later_page_counts_once(fleet: tuple[FakeApi, list[int], list[int]]) -> None:
    """Offset paging while new records arrive pushes a record onto the next page too: it is
    the same record (its id), counted once, on a middle page or on the last, and no list in a
    circle (the account's health is known)."""
    api, acme, _ = fleet
    a = acme[0]
    api.logs["acme"] = [_record(5, a, 1), _record(4, a, 2), _record(4, a, 2), _record(3, a, 3), _record(3, a, 3)]
    found = await _read(api)  # pages of 2: [5, 4] [4, 3] [3]
    assert found.failed == {} and found.by_integration[a].count == 3 and found.by_integration[a].unknown is None
    assert found.unreadable == {}


async def test_records_that_cannot_be_read_are_counted_apart_and_said(
    fleet: tuple[FakeApi, list[int], list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    api, acme, _ = fleet
    a = acme[0]
    api.logs["acme"] = [_record(3, a, 1), wire.LogRecord(integration_id=a, id=2, created_at="yesterday"),
                        wire.LogRecord(integration_id=a, id=1, created_at=None)]  # fmt: skip
    with caplog.at_level("WARNING", logger="batchsync.health"):
        found = await _read(api)
    assert found.by_integration[a].count == 1 and found.unreadable == {"acme": 2}
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "account acme: 2 exception log records could not be read (not a record, or no readable time): not counted"
    ]


async def test_a_time_outside_the_calendar_in_utc_is_an_unreadable_record(
    fleet: tuple[FakeApi, list[int], list[int]],
) -> None:
    """0001-01-01T00:00+01:00 parses, but is no time in UTC: counted apart, the run goes on."""
    api, acme, globex = fleet
    a = acme[0]
    low, high = "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"
    ahead = "2999-01-01T00:00:00+00:00"  # parses, but would fall in every later window
    api.logs["acme"] = [wire.LogRecord(integration_id=a, id=4, created_at=ahead), _record(3, a, 1),
                        wire.LogRecord(integration_id=a, id=2, created_at=low),
                        wire.LogRecord(integration_id=a, id=1, created_at=high)]  # fmt: skip
    api.logs["globex"] = [_record(4, globex[0], 1)]
    found = await _read(api)
    assert found.failed == {} and found.unreadable == {"acme": 3}
    assert found.by_integration[a].count == 1 and found.by_integration[globex[0]].count == 1


async def test_a_bug_on_what_a_server_sent_costs_that_accounts_health_only(
    fleet: tuple[FakeApi, list[int], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchsync import health

    api, acme, globex = fleet
    api.logs["acme"] = [_record(1, acme[0], 1, code=418)]
    api.logs["globex"] = [_record(2, globex[0], 1)]
    real = health.Tally.add

    def broken(self: Any, record: wire.LogRecord, at: datetime, redact: Any) -> None:
        if record.response_code == 418:
            raise ZeroDivisionError("a bug")
        real(self, record, at, redact)

    monkeypatch.setattr(health.Tally, "add", broken)
    found = await _read(api)
    assert set(found.failed) == {"acme"} and "internal error: ZeroDivisionError('a bug')" in found.failed["acme"]
    assert found.by_integration[globex[0]].count == 1 and found.by_integration[globex[0]].unknown is None


async def test_an_account_whose_logs_hang_is_given_up_at_the_time_bound(
    fleet: tuple[FakeApi, list[int], list[int]],
) -> None:
    """Hung requests and their retries count in the listing's time bound: one account's
    hang delays the others' statuses (which wait for every account's logs) that long at most."""
    import anyio

    api, acme, globex = fleet
    api.logs["globex"] = [_record(1, globex[0], 1)]
    real = api.account

    def account(acc: Any) -> Any:
        client = real(acc)
        if acc.name == "acme":

            async def hang(*args: Any, **kwargs: Any) -> Any:
                await anyio.sleep(3600)

            client.list_logs_page = hang  # type: ignore[method-assign]
        return client

    api.account = account  # type: ignore[method-assign,assignment]
    began = anyio.current_time()
    found = await _read(api, bounds=ListBounds(seconds=0.3))
    assert anyio.current_time() - began < 2.0
    assert "could not be read within 0.3 s; not read further" in found.failed["acme"]
    assert all(found.by_integration[i].unknown == found.failed["acme"] for i in acme)
    assert "globex" not in found.failed and found.by_integration[globex[0]].count == 1


async def test_an_endless_listing_stops_at_the_page_bound(fleet: tuple[FakeApi, list[int], list[int]]) -> None:
    api, acme, _ = fleet
    api.endless_logs = True
    found = await _read(api, bounds=ListBounds(pages=4))
    assert "the list of exception logs of account acme goes on past 4 pages; not read further" in found.failed["acme"]
    assert len([c for c in api.calls if c.account == "acme"]) == 4
    assert found.by_integration[acme[0]].unknown is not None


async def test_one_selected_integration_reads_its_own_logs(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"solo": 1})
    api = FakeApi.from_inventory(inv, latency=0.0)
    iid = inv.jobs[0].integration_id
    api.logs["solo"] = [wire.LogRecord(id=1, created_at=NOW.isoformat(), integration_id=iid)]
    found = await read_health(inv.accounts, api, inv.jobs, {"solo": SINCE}, FAST)
    assert found.by_integration[iid].count == 1
    assert [c.integration_id for c in api.calls] == [iid]


def test_since_explicit_wins_then_the_last_run_then_24_hours() -> None:
    earlier = NOW - timedelta(hours=6)
    explicit = NOW - timedelta(hours=2)
    assert since_for("acme", explicit, lambda name: earlier, NOW) == explicit
    assert since_for("acme", None, lambda name: earlier if name == "acme" else None, NOW) == earlier
    assert since_for("globex", None, lambda name: earlier if name == "acme" else None, NOW) == NOW - timedelta(hours=24)


# -- the client: both pagination forms ---------------------------------------------------

BASE = "https://api.example.test/api/v3"
LOGS = re.compile(r"^https://api\.example\.test/api/v3/integrations/logs.*$")


async def test_the_client_follows_a_link_header_and_a_v2_body() -> None:
    import aiohttp

    from batchsync.secrets import Secret
    from batchsync.sendcloud.auth import BasicAuthenticator
    from batchsync.sendcloud.client import Client

    record = {
        "id": 1,
        "integration_id": 7,
        "created_at": NOW.isoformat(),
        "request": {"headers": {"Authorization": "Basic SHOPKEY"}, "payload": {"k": "SHOPKEY"}},
        "response": {"headers": {"Set-Cookie": "SHOPKEY"}, "body": "SHOPKEY"},
    }
    async with aiohttp.ClientSession() as session:
        client = Client(session, BASE, BasicAuthenticator(Secret("pub"), Secret("sec")), timeout=5)
        with aioresponses() as m:
            m.get(
                LOGS, payload={"data": [record]}, headers={"Link": f'<{BASE}/integrations/logs?cursor=abc>; rel="next"'}
            )
            m.get(LOGS, payload={"next": f"{BASE}/integrations/logs?cursor=def", "previous": None, "results": [record]})
            m.get(LOGS, payload={"next": None, "previous": None, "results": []})
            first = await client.list_logs_page()
            second = await client.list_logs_page(first.next_url)
            third = await client.list_logs_page(second.next_url)
        with aioresponses() as m:
            m.get(LOGS, payload={"data": []}, headers={"Link": '<https://elsewhere.test/logs?cursor=x>; rel="next"'})
            with pytest.raises(ClientError, match=r"leaves https://api\.example\.test:443: refused"):
                await client.list_logs_page()
    assert first.next_url == f"{BASE}/integrations/logs?cursor=abc"
    assert second.next_url == f"{BASE}/integrations/logs?cursor=def" and third.next_url is None
    assert first.records[0] == wire.LogRecord(integration_id=7, id=1, created_at=NOW.isoformat())
    assert "SHOPKEY" not in repr(first) + repr(second)  # headers and bodies are not even decoded


async def test_a_page_of_records_with_large_bodies_is_read_up_to_its_own_bound() -> None:
    """Records carry whole requests and responses (a shop's HTML error page): a page of 100
    records of 20 KB is 2 MB, more than the statuses' 1 MiB bound, and is read; a page past
    the logs' own bound (4 MiB) is refused as a statuses answer past its bound is. Over
    loopback, from a real server."""
    import aiohttp
    from aiohttp import web
    from hostile_server import serving

    from batchsync.secrets import Secret
    from batchsync.sendcloud.auth import BasicAuthenticator
    from batchsync.sendcloud.client import LOGS_MAX_BODY, Client
    from batchsync.sendcloud.errors import InvalidResponseError

    def page(n: int, size: int) -> bytes:
        body = "<html>" + "x" * size + "</html>"
        records = [
            {"id": i, "integration_id": 7, "created_at": NOW.isoformat(), "response": {"body": body}} for i in range(n)
        ]
        return json.dumps({"data": records}).encode()

    pages = [page(100, 20_000), page(100, LOGS_MAX_BODY // 90)]
    assert 1024 * 1024 < len(pages[0]) < LOGS_MAX_BODY < len(pages[1])
    served = iter(pages)

    async def logs(request: web.Request) -> web.Response:
        return web.Response(body=next(served), content_type="application/json")

    app = web.Application()
    app.router.add_get("/integrations/logs", logs)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        client = Client(session, url, BasicAuthenticator(Secret("pub"), Secret("sec")), timeout=5)
        read = await client.list_logs_page()
        with pytest.raises(InvalidResponseError, match="byte limit"):
            await client.list_logs_page()
    assert len(read.records) == 100 and read.size == len(pages[0])
