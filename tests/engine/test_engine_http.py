"""The engine over real HTTP against the sandbox on loopback: faults, limits, isolation, safety.

The same engine against an in-memory API, under a virtual clock, is in test_engine.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
from inventory_factory import STATUSES, make_inventory

from batchsync.engine.engine import Engine
from batchsync.engine.options import Options
from batchsync.model import Inventory
from batchsync.outcome import Outcome
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import run_sandbox
from batchsync.sendcloud.transport import HttpApi

FAST = Options(backoff_base=0.01, backoff_max=0.05)


async def run(inv: Inventory, url: str, options: Options = FAST) -> tuple[list[Outcome], Engine]:
    outcomes: list[Outcome] = []
    async with HttpApi(concurrency=options.concurrency, timeout=5.0, base_url=url) as api:
        engine = Engine(inv.accounts, api, options, outcomes.append)
        await engine.run(inv.jobs)
    return outcomes, engine


def by_result(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    return counts


async def test_converges_through_faults_writing_each_drifted_integration_once(tmp_path: Path) -> None:
    inv = make_inventory(
        tmp_path,
        {"acme": 60, "globex": 30, "initech": 10},
        limits={
            "acme": {"reads_per_minute": 30000, "writes_per_minute": 6000},
            "globex": {"reads_per_minute": 30000, "writes_per_minute": 1200, "write_burst": 5},
            "initech": {"reads_per_minute": 30000, "writes_per_minute": 6000},
        },
    )
    # the limits the inventory declares, enforced by the server
    config = SandboxConfig(in_sync=0.6, seed=7, fault_500=0.05, fault_502=0.03, fault_503=0.03, fault_reset=0.02)
    async with run_sandbox(inv, config) as box:
        drifted = {iid for iid, statuses in box.state.items() if _live(statuses) != _live_desired(STATUSES)}
        outcomes, _ = await run(inv, box.url)
        stats: Any = box.stats()
        assert sum(stats["faults"].values()) > 0  # the faults really happened
        assert len(outcomes) == 100
        assert {o.result for o in outcomes} <= {"unchanged", "changed"}, [o for o in outcomes if o.error]
        changed = {str(o.integration_id) for o in outcomes if o.result == "changed"}
        assert changed == drifted
        assert stats["applied_posts"] == dict.fromkeys(drifted, 1)  # each written exactly once
        # and the state is now the desired one: a second run changes nothing
        again, _ = await run(inv, box.url, msgspec.structs.replace(FAST, max_attempts=10))
        assert by_result(again) == {"unchanged": 100}


async def test_every_request_the_server_sees_is_one_the_engine_counted(tmp_path: Path) -> None:
    """A connection reset under a request: aiohttp would send a GET again by itself, on
    a new connection, outside the account's read bucket and its attempts. The engine
    retries it, on the budget: the server's count and the engine's are the same."""
    inv = make_inventory(
        tmp_path, {"acme": 40}, limits={"acme": {"reads_per_minute": 60000, "writes_per_minute": 60000}}
    )
    async with run_sandbox(inv, SandboxConfig(in_sync=0.0, seed=3, fault_reset=0.25)) as box:
        outcomes, engine = await run(inv, box.url, msgspec.structs.replace(FAST, max_attempts=10))
        stats: Any = box.stats()
    assert stats["faults"]["acme"] >= 5, stats["faults"]  # the resets really happened
    assert {o.result for o in outcomes} == {"changed"}
    assert sum(stats["requests"]["acme"].values()) == engine.summary.accounts["acme"].requests


def _live(statuses: list[dict[str, Any]]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {
        (s["external_id"], frozenset((t["language"], t["status"]) for t in s["translations"]))
        for s in statuses
        if s.get("deleted_at") is None
    }


def _live_desired(statuses: list[dict[str, Any]]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return _live([{**s, "deleted_at": None} for s in statuses])


async def test_refused_credentials_stop_only_that_account(tmp_path: Path) -> None:
    good = make_inventory(tmp_path, {"acme": 20, "globex": 40})
    bad = make_inventory(tmp_path, {"acme": 20, "globex": 40}, secrets={"globex": "wrong"}, name="bad.json")
    async with run_sandbox(good, SandboxConfig(in_sync=0.0)) as box:
        outcomes, _ = await run(bad, box.url)
        stats: Any = box.stats()
    acme = [o for o in outcomes if o.account == "acme"]
    globex = [o for o in outcomes if o.account == "globex"]
    assert {o.result for o in acme} == {"changed"}
    assert {o.result for o in globex} == {"failed"}
    assert {o.error.kind for o in globex if o.error} == {"auth"}
    # it stopped at once: at most the requests already in flight, never one per integration
    globex_requests = sum(stats["requests"].get("globex", {}).values())
    assert globex_requests <= good.accounts["globex"].limits.write_burst
    assert "wrong" not in json.dumps(msgspec.to_builtins(outcomes))


async def test_a_throttled_account_does_not_delay_the_others(tmp_path: Path) -> None:
    inv = make_inventory(
        tmp_path,
        {"slow": 6, "fast": 60},
        limits={
            "slow": {"writes_per_minute": 120, "write_burst": 1},
            "fast": {"writes_per_minute": 60000, "reads_per_minute": 60000},
        },
    )
    finished: dict[str, float] = {}
    start = time.monotonic()

    def note(o: Outcome) -> None:
        finished[o.account] = time.monotonic() - start
        assert o.result == "changed", o

    async with (
        run_sandbox(inv, SandboxConfig(in_sync=0.0)) as box,
        HttpApi(concurrency=64, timeout=5, base_url=box.url) as api,
    ):
        engine = Engine(inv.accounts, api, FAST, note)
        summary = await engine.run(inv.jobs)
    assert summary.total("changed") == 66
    # slow: 6 writes at 2/s with a burst of 1 take >= 2.5 s; fast must not wait for them
    assert finished["slow"] >= 2.4
    assert finished["fast"] < finished["slow"] / 2


async def test_wrong_limits_are_learnt_from_429_without_touching_other_accounts(tmp_path: Path) -> None:
    # The inventory believes in 6000 writes a minute; the server allows 600 (10/s, burst 3).
    inv = make_inventory(
        tmp_path,
        {"optimist": 30, "other": 30},
        limits={
            "optimist": {"writes_per_minute": 6000, "write_burst": 3, "reads_per_minute": 60000},
            "other": {"writes_per_minute": 6000, "reads_per_minute": 60000},
        },
    )
    config = SandboxConfig(in_sync=0.0, writes_per_minute=600, reads_per_minute=60000, retry_after=False)
    async with run_sandbox(inv, config) as box:
        outcomes, engine = await run(inv, box.url, msgspec.structs.replace(FAST, max_attempts=10))
        stats: Any = box.stats()
    assert by_result(outcomes) == {"changed": 60}
    assert stats["throttled"].get("optimist", 0) > 0
    assert engine.summary.accounts["optimist"].write_rate is not None  # slowed to what worked


async def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 3})
    other = inv.jobs[0].integration_id
    async with run_sandbox(inv, SandboxConfig(other_system_ids=frozenset({other}))) as box:
        # The pre-flight knows it from the integration list: no request for it at all
        outcomes, _ = await run(inv, box.url)
        failed = [o for o in outcomes if o.result == "failed"]
        assert [o.integration_id for o in failed] == [other]
        assert failed[0].error is not None and failed[0].error.kind == "not_supported"
        assert failed[0].attempts == 0
        # Without it, the API's 400 says so, and it is not retried
        outcomes, _ = await run(inv, box.url, msgspec.structs.replace(FAST, preflight=False))
    failed = [o for o in outcomes if o.result == "failed"]
    assert [o.integration_id for o in failed] == [other]
    assert failed[0].error is not None and failed[0].error.kind == "not_supported"
    assert failed[0].attempts == 1


async def test_empty_desired_list_is_refused_unless_allowed(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 1}, extra=[{"id": 5, "account": "acme", "statuses": []}])
    async with run_sandbox(inv, SandboxConfig(in_sync=1.0)) as box:
        # in sync means 5 has no statuses; give it some so that writing [] would delete them
        seeded = make_inventory(
            tmp_path, {"acme": 0}, extra=[{"id": 5, "account": "acme", "status_set": "std"}], name="s.json"
        )
        await run(seeded, box.url)
        outcomes, _ = await run(inv, box.url)
        refused = next(o for o in outcomes if o.integration_id == 5)
        assert refused.result == "failed" and refused.error is not None and refused.error.kind == "refused"
        assert refused.removed == 3
        assert len(_live(box.state["5"])) == 3  # nothing was deleted
        outcomes, _ = await run(inv, box.url, msgspec.structs.replace(FAST, allow_delete_all=True))
        assert next(o for o in outcomes if o.integration_id == 5).result == "changed"
        assert _live(box.state["5"]) == set()


async def test_plan_writes_nothing_and_no_read_reads_nothing(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 10}, limits={"acme": {"reads_per_minute": 60000}})
    async with run_sandbox(inv, SandboxConfig(in_sync=0.5, seed=3)) as box:
        outcomes, _ = await run(inv, box.url, msgspec.structs.replace(FAST, write=False))
        stats: Any = box.stats()
        assert stats["requests"]["acme"].get("POST", 0) == 0
        planned = by_result(outcomes)
        assert planned.get("changed", 0) > 0 and planned.get("unchanged", 0) > 0
        plan_gets = stats["requests"]["acme"]["GET"]
        outcomes, _ = await run(inv, box.url, msgspec.structs.replace(FAST, read_first=False))
        stats = box.stats()
        # --no-read reads no statuses: the pre-flight list, and each mapping (no mapping is
        # declared, so the guard must know whether the write would break it)
        assert stats["requests"]["acme"]["GET"] == plan_gets + 1 + 10
        assert stats["requests"]["acme"]["POST"] == 10
        assert by_result(outcomes) == {"changed": 10}


async def test_max_failures_stops_starting_new_work(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 40}, limits={"acme": {"write_burst": 1, "reads_per_minute": 60000}})
    async with run_sandbox(inv, SandboxConfig(fault_500=1.0)) as box:
        outcomes, engine = await run(inv, box.url, msgspec.structs.replace(FAST, max_failures=3, max_attempts=2))
    results = by_result(outcomes)
    assert len(outcomes) == 40
    assert 3 <= results["failed"] < 40
    assert results["skipped"] == 40 - results["failed"]
    assert engine.summary.stopped is not None and "max-failures" in engine.summary.stopped


async def test_a_bug_costs_one_integration_not_the_run(tmp_path: Path, monkeypatch: Any) -> None:
    from batchsync.sendcloud.client import Client

    inv = make_inventory(tmp_path, {"acme": 8})
    victim = inv.jobs[3].integration_id
    real = Client.get_statuses

    async def buggy(self: Client, integration_id: int) -> Any:
        if integration_id == victim:
            raise KeyError("boom")
        return await real(self, integration_id)

    monkeypatch.setattr(Client, "get_statuses", buggy)
    async with run_sandbox(inv, SandboxConfig(in_sync=0.0)) as box:
        outcomes, _ = await run(inv, box.url)
    assert len(outcomes) == 8
    failed = [o for o in outcomes if o.result == "failed"]
    assert [o.integration_id for o in failed] == [victim]
    assert failed[0].error is not None and failed[0].error.kind == "internal"
    assert "KeyError" in failed[0].error.detail
    assert {o.result for o in outcomes if o.integration_id != victim} == {"changed"}


async def test_no_read_still_refuses_or_writes_an_empty_list(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 0}, extra=[{"id": 5, "account": "acme", "statuses": []}])
    seeded = make_inventory(
        tmp_path, {"acme": 0}, extra=[{"id": 5, "account": "acme", "status_set": "std"}], name="s.json"
    )
    async with run_sandbox(seeded, SandboxConfig(in_sync=1.0)) as box:
        outcomes, _ = await run(inv, box.url, msgspec.structs.replace(FAST, read_first=False))
        assert outcomes[0].result == "failed" and outcomes[0].error is not None
        assert outcomes[0].error.kind == "refused"
        assert len(_live(box.state["5"])) == 3
        outcomes, _ = await run(inv, box.url, msgspec.structs.replace(FAST, read_first=False, allow_delete_all=True))
        assert outcomes[0].result == "changed"
        assert _live(box.state["5"]) == set()


async def test_nothing_new_starts_after_stop_even_when_waiting_for_a_global_slot(tmp_path: Path) -> None:
    import anyio

    inv = make_inventory(tmp_path, {"acme": 3, "globex": 3})
    async with run_sandbox(inv, SandboxConfig(latency=(0.4, 0.4))) as box:
        async with HttpApi(concurrency=1, timeout=5, base_url=box.url) as api:
            engine = Engine(inv.accounts, api, msgspec.structs.replace(FAST, concurrency=1), lambda o: None)
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run, inv.jobs)
                await anyio.sleep(0.1)  # one request is in flight, the others wait for the one global slot
                engine.stop("test")
        stats: Any = box.stats()
    assert sum(sum(per.values()) for per in stats["requests"].values()) == 1
    assert engine.summary.total("skipped") == 6


async def test_a_cookie_one_account_s_answer_sets_never_rides_on_another_s_request(tmp_path: Path) -> None:
    # One HTTP session serves every account: a cookie jar would send what the server set
    # for acme's request (a load balancer's affinity, a session) with globex's.
    from aiohttp import web
    from hostile_server import serving

    seen: list[tuple[str | None, str | None]] = []

    async def statuses(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), request.headers.get("Cookie")))
        response = web.json_response({"data": []})
        response.set_cookie("session", f"for-{len(seen)}", path="/")
        return response

    app = web.Application()
    app.router.add_get("/shop-order-statuses", statuses)
    inv = make_inventory(tmp_path, {"acme": 1, "globex": 1})
    async with serving(app) as served:
        # By name: aiohttp's jar keeps no cookie of a bare IP address.
        url = served.replace("127.0.0.1", "localhost")
        async with HttpApi(concurrency=2, timeout=5.0, base_url=url) as api:
            for name in ("acme", "globex", "acme"):
                job = next(j for j in inv.jobs if j.account == name)
                assert await api.account(inv.accounts[name]).get_statuses(job.integration_id) == ()
    assert len(seen) == 3 and seen[0][0] != seen[1][0]  # two accounts, each its own credentials
    assert [cookie for _, cookie in seen] == [None, None, None]
