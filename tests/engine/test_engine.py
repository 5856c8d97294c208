"""The engine against an in-memory API under a virtual clock: scheduling, retries, budgets, mapping.

Every test here runs on trio with a clock that jumps whenever all tasks wait, so rates,
backoff, ``--retry-max-time`` and ``Retry-After`` are checked exactly, in no real time.
The same engine over real HTTP is tested in test_engine_http.py.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from fake_api import Call, FakeApi, run_virtual, shop_from
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inventory_factory import make_inventory

from batchsync.engine.engine import Engine
from batchsync.engine.limits import Bucket
from batchsync.engine.options import FailureBudget, Options
from batchsync.exitcodes import exit_code
from batchsync.model import DesiredMapping, Inventory, Job
from batchsync.outcome import Outcome
from batchsync.sendcloud.errors import (
    ApiError,
    AuthError,
    ClientError,
    InvalidResponseError,
    ServerError,
    ThrottledError,
    TransportError,
)
from batchsync.wire import STATUS_CATEGORIES

OPTS = Options(backoff_base=0.5, backoff_max=8.0)


class Run:
    """One engine run's results."""

    def __init__(self, engine: Engine, outcomes: list[Outcome]) -> None:
        self.engine = engine
        self.outcomes = outcomes
        self.by_id = {o.integration_id: o for o in outcomes}

    def results(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.result] = counts.get(o.result, 0) + 1
        return counts


def run(
    inv: Inventory,
    api: FakeApi,
    options: Options = OPTS,
    jobs: Sequence[Job] | None = None,
    during: Callable[[Engine], Any] | None = None,
) -> Run:
    outcomes: list[Outcome] = []
    engine = Engine(inv.accounts, api, options, outcomes.append, rng=random.Random(1))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            if during is not None:
                tg.start_soon(during, engine)
            await engine.run(inv.jobs if jobs is None else jobs)
            tg.cancel_scope.cancel()

    run_virtual(main)
    selected = inv.jobs if jobs is None else jobs
    assert sorted(o.integration_id for o in outcomes) == sorted(j.integration_id for j in selected)
    return Run(engine, outcomes)


def ids(inv: Inventory, account: str | None = None) -> list[int]:
    return [j.integration_id for j in inv.jobs if account is None or j.account == account]


# -- converging ------------------------------------------------------------------------


def test_only_drifted_integrations_are_written_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 30, "globex": 10})
    drifted = ids(inv)[::3]
    api = FakeApi.from_inventory(inv, drifted)
    first = run(inv, api)
    assert {i for i, o in first.by_id.items() if o.result == "changed"} == set(drifted)
    assert first.results() == {"changed": len(drifted), "unchanged": 40 - len(drifted)}
    assert api.count("post_statuses") == len(drifted)
    assert api.count("list") == 2  # the pre-flight: one page per account
    again = run(inv, api)
    assert again.results() == {"unchanged": 40}
    assert api.count("post_statuses") == len(drifted)  # nothing more written


def test_plan_writes_nothing_and_no_read_reads_only_what_the_guard_needs(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 10})
    api = FakeApi.from_inventory(inv, ids(inv)[:4])
    plan = run(inv, api, msgspec.structs.replace(OPTS, write=False))
    assert plan.results() == {"changed": 4, "unchanged": 6}
    assert api.count("post_statuses") == 0
    api.calls.clear()
    blind = run(inv, api, msgspec.structs.replace(OPTS, read_first=False))
    assert blind.results() == {"changed": 10}
    assert api.count("get_statuses") == 0
    assert api.count("get_mapping") == 10  # no mapping declared: read it, to guard it
    assert api.count("post_statuses") == 10


def test_faults_are_retried_until_every_integration_converges(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 40, "globex": 20})
    drifted = ids(inv)[::2]
    rng = random.Random(5)
    kinds = [
        ServerError("boom", http_status=500),
        ServerError("bad gateway", http_status=502),
        TransportError("reset"),
        InvalidResponseError("garbage", http_status=200),
    ]

    def fault(call: Call) -> ApiError | None:
        return rng.choice(kinds) if rng.random() < 0.15 else None

    api = FakeApi.from_inventory(inv, drifted, fault=fault)
    result = run(inv, api, msgspec.structs.replace(OPTS, max_attempts=20, breaker_threshold=100))
    assert sum(1 for call in api.calls if call.error) > 10  # the faults happened
    assert result.results() == {"changed": len(drifted), "unchanged": 60 - len(drifted)}
    applied = [call.integration_id for call in api.calls if call.op == "post_statuses" and call.error is None]
    assert None not in applied
    assert sorted(i for i in applied if i is not None) == sorted(drifted)  # each drifted one written exactly once


# -- retries under the virtual clock --------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_its_maximum(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 1})
    api = FakeApi.from_inventory(inv, latency=0.0, fault=lambda call: ServerError("down", http_status=503))
    opts = msgspec.structs.replace(
        OPTS, max_attempts=8, retry_max_time=1000, backoff_base=1.0, backoff_max=10.0, breaker_threshold=100
    )
    result = run(inv, api, opts, jobs=inv.jobs)
    starts = [call.start for call in api.calls if call.op == "get_statuses"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 8
    for attempt, gap in enumerate(gaps, 1):
        ceiling = min(10.0, 1.0 * 2 ** (attempt - 1))
        assert ceiling / 2 - 1e-9 <= gap <= ceiling + 1e-9, (attempt, gap)
    outcome = result.outcomes[0]
    assert outcome.result == "failed" and outcome.error is not None and outcome.error.kind == "server"
    assert outcome.attempts == 8


def test_retry_max_time_bounds_all_attempts_of_a_request(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 1})
    api = FakeApi.from_inventory(inv, latency=0.5, fault=lambda call: ServerError("down", http_status=500))
    opts = msgspec.structs.replace(OPTS, max_attempts=100, retry_max_time=20.0, breaker_threshold=100)
    run(inv, api, opts)
    reads = [call for call in api.calls if call.op == "get_statuses"]
    # no attempt starts past the budget, and the next one would have passed it
    assert reads[-1].start - reads[0].start <= 20.0
    assert 3 <= len(reads) < 100


def test_retry_after_is_honoured_and_capped_by_the_retry_budget(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 2, "globex": 2})
    target = ids(inv, "acme")[0]
    seen: dict[int, int] = {}

    def fault(call: Call) -> ApiError | None:
        if call.account != "acme" or call.op != "get_statuses":
            return None
        seen[call.integration_id or 0] = n = seen.get(call.integration_id or 0, 0) + 1
        if call.integration_id == target and n == 1:
            return ThrottledError("slow down", http_status=429, retry_after=7.0)
        if call.integration_id != target:
            return ThrottledError("go away", http_status=429, retry_after=1e9)
        return None

    api = FakeApi.from_inventory(inv, fault=fault, latency=0.0)
    result = run(inv, api, msgspec.structs.replace(OPTS, retry_max_time=60.0))
    reads = [call for call in api.calls if call.integration_id == target and call.op == "get_statuses"]
    assert len(reads) == 2 and reads[1].start - reads[0].start == pytest.approx(7.0)
    assert result.by_id[target].result == "unchanged"
    other = next(i for i in ids(inv, "acme") if i != target)
    # A Retry-After past --retry-max-time: failed as throttled at once, one attempt.
    assert result.by_id[other].result == "failed"
    error = result.by_id[other].error
    assert error is not None and error.kind == "throttled"
    assert result.by_id[other].attempts == 1
    # ... and it never parked the account (or the run) for a billion seconds
    assert result.engine.summary.duration_s < 70.0
    assert {result.by_id[i].result for i in ids(inv, "globex")} == {"unchanged"}


def test_a_429_storm_slows_the_meter_once_per_overload_and_logs_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inv = make_inventory(tmp_path, {"acme": 60}, limits={"acme": {"reads_per_minute": 6000, "write_burst": 10}})
    # The server allows about a third of what the inventory declares: every request
    # that goes over gets 429, and the in-flight ones all do at once.
    allowed: list[float] = []

    def fault(call: Call) -> ApiError | None:
        recent = [t for t in allowed if call.start - t < 1.0]
        allowed[:] = recent
        if len(recent) >= 30:
            return ThrottledError("throttled", http_status=429)
        allowed.append(call.start)
        return None

    api = FakeApi.from_inventory(inv, fault=fault, latency=0.05)
    caplog.set_level(logging.WARNING, logger="batchsync")
    result = run(inv, api, msgspec.structs.replace(OPTS, max_attempts=30, retry_max_time=600))
    assert result.results() == {"unchanged": 60}
    throttled = sum(1 for call in api.calls if call.error == "throttled")
    warnings = [r for r in caplog.records if "429" in r.getMessage()]
    assert throttled > len(warnings) >= 1  # not one line per 429
    rates = [r.__dict__["fields"]["rate_per_minute"] for r in warnings]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates)  # each line a new rate
    stats = result.engine.summary.accounts["acme"]
    assert stats.read_rate is not None and stats.read_rate < 6000  # the recap can name the rate that worked


# -- limits ---------------------------------------------------------------------------


def _windows_ok(starts: list[float], burst: int, rate: float) -> bool:
    """No window [t, t+d] holds more than burst + rate*d starts."""
    starts = sorted(starts)
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            if j - i + 1 > burst + rate * (starts[j] - starts[i]) + 1e-6:
                return False
    return True


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reads=st.lists(st.sampled_from([60, 600, 3000]), min_size=3, max_size=3),
    writes=st.lists(st.sampled_from([30, 120, 600]), min_size=3, max_size=3),
    bursts=st.lists(st.sampled_from([1, 3, 15]), min_size=3, max_size=3),
    sizes=st.lists(st.integers(1, 60), min_size=3, max_size=3),
    concurrency=st.sampled_from([1, 2, 8, 64]),
    seed=st.integers(0, 2**16),
)
def test_each_account_stays_within_its_burst_and_rate(
    tmp_path: Path,
    reads: list[int],
    writes: list[int],
    bursts: list[int],
    sizes: list[int],
    concurrency: int,
    seed: int,
) -> None:
    """The meters' spec, as a property: whatever the limits, sizes, latencies and global
    slots, an account never has more than its burst in flight (reads and writes together)
    nor starts more than ``burst + rate * t`` of a kind in any window of ``t`` seconds."""
    rng = random.Random(seed)
    names = ("a", "b", "c")
    limits = {
        name: {"reads_per_minute": reads[k], "writes_per_minute": writes[k], "write_burst": bursts[k]}
        for k, name in enumerate(names)
    }
    inv = make_inventory(tmp_path, dict(zip(names, sizes, strict=True)), limits=limits)
    drifted = [i for i in ids(inv) if rng.random() < 0.4]
    api = FakeApi.from_inventory(inv, drifted, latency=lambda call: rng.uniform(0.001, 0.3))
    result = run(inv, api, msgspec.structs.replace(OPTS, concurrency=concurrency))
    assert result.results().get("failed", 0) == 0
    for name, lim in limits.items():
        cap = lim["write_burst"]
        assert api.peak.get(name, 0) <= cap  # reads and writes together
        mine = [call for call in api.calls if call.account == name]
        read_starts = [call.start for call in mine if call.op in ("get_statuses", "get_mapping", "list")]
        write_starts = [call.start for call in mine if call.op in ("post_statuses", "post_mapping")]
        assert _windows_ok(read_starts, cap, lim["reads_per_minute"] / 60)
        assert _windows_ok(write_starts, cap, lim["writes_per_minute"] / 60)
    assert max(api.in_flight.values(), default=0) == 0


def test_a_run_starts_from_the_budget_an_earlier_run_left(tmp_path: Path) -> None:
    """batchsync.engine.budget hands the engine what the last run on this host left of each
    account's buckets: a run right after another must not spend a burst the server's
    buckets no longer hold. Read at 10 a second, burst 10, every integration in sync."""
    inv = make_inventory(tmp_path, {"acme": 30}, limits={"acme": {"reads_per_minute": 600, "write_burst": 10}})

    def read_starts(carried: dict[str, tuple[float, float, float]]) -> list[float]:
        api = FakeApi.from_inventory(inv, [], latency=lambda call: 0.01)
        outcomes: list[Outcome] = []
        engine = Engine(inv.accounts, api, OPTS, outcomes.append, rng=random.Random(1))
        engine.carried = carried

        async def main() -> dict[str, tuple[float, float]]:
            await engine.run(inv.jobs)
            return engine.budget_left()

        left = run_virtual(main)
        assert len(outcomes) == 30 and {o.result for o in outcomes} == {"unchanged"}
        reads, writes = left["acme"]
        assert reads < 1.0 and writes == 10.0  # the reads spent it; no write was made
        return sorted(call.start for call in api.calls if call.op in ("get_statuses", "get_mapping", "list"))

    fresh = read_starts({})
    assert sum(1 for t in fresh if t < 0.05) == 10  # a full burst at once
    spent = read_starts({"acme": (0.0, 0.0, 10.0)})  # the last run ended just now, its reads spent
    assert spent[0] >= 0.099 and all(t >= 0.0999 * (k + 1) for k, t in enumerate(spent))
    half = read_starts({"acme": (0.5, 0.0, 10.0)})  # half a second ago: 5 tokens since
    assert sum(1 for t in half if t < 0.05) == 5
    old = read_starts({"acme": (60.0, 0.0, 0.0)})  # long ago: full again, never more
    assert sum(1 for t in old if t < 0.05) == 10


def _alone(n: int, per_minute: float, cap: int, latency: float) -> list[float]:
    """When an account's ``n`` requests would start if it had the whole machine: as soon
    as its own bucket and its cap on requests in flight allow, each taking ``latency``."""
    bucket = Bucket(per_minute, cap, 0.0)
    ends: list[float] = []  # of the requests in flight, sorted
    starts: list[float] = []
    now = 0.0
    for _ in range(n):
        while True:
            while ends and ends[0] <= now:
                bucket.give_back(ends.pop(0))
            if len(ends) >= cap:
                now = ends[0]
                continue
            ready = bucket.ready_at(now)
            if ready > now:
                now = min(ready, ends[0]) if ends else ready
                continue
            break
        bucket.take()
        starts.append(now)
        ends.append(now + latency)
        ends.sort()
    return starts


def test_the_busiest_account_follows_its_ideal_schedule(tmp_path: Path) -> None:
    """Global slots are scarce (8 for a demand of 60 requests a second): the busiest account
    must still start each request within one request's time of when it could alone."""
    names = ("big", "s1", "s2", "s3", "s4", "s5")
    limits = {name: {"reads_per_minute": 600, "write_burst": 5} for name in names}
    inv = make_inventory(tmp_path, {"big": 80, "s1": 40, "s2": 40, "s3": 40, "s4": 40, "s5": 40}, limits=limits)
    api = FakeApi.from_inventory(inv, latency=0.2)
    run(inv, api, msgspec.structs.replace(OPTS, concurrency=8, preflight=False))
    starts = sorted(call.start for call in api.calls if call.account == "big")
    ideal = _alone(80, 600, 5, 0.2)
    lag = [s - i for s, i in zip(starts, ideal, strict=True)]
    assert max(lag) <= 0.2 + 1e-6, max(lag)
    # and the others used the slots it left: the run is as short as the 8 slots and the
    # busiest account's own budget allow, give or take one request
    bound = max(len(api.calls) * 0.2 / 8, ideal[-1] + 0.2)
    assert max(call.end for call in api.calls) <= bound + 0.2 + 1e-6


def test_an_answer_leads_to_the_next_request_without_a_round_through_the_heaps(tmp_path: Path) -> None:
    """The worker that handles an answer sends what it leads to itself (the write, the
    account's next read) when that is what _pick would start: limits off, one account, 80
    requests, a handful of heap entries (every push counts in ``_seq``; before, one per request)."""
    off = {"reads_per_minute": 1e9, "writes_per_minute": 1e9, "write_burst": 1000}
    inv = make_inventory(tmp_path, {"acme": 40}, limits={"acme": off})
    api = FakeApi.from_inventory(inv, drifted=ids(inv), latency=0.01)
    result = run(inv, api, msgspec.structs.replace(OPTS, concurrency=4, preflight=False))
    assert result.results() == {"changed": 40} and len(api.calls) == 80
    assert [c.op for c in api.calls if c.integration_id == ids(inv)[0]] == ["get_statuses", "post_statuses"]
    assert result.engine._seq <= 8, result.engine._seq


# -- failures and budgets ---------------------------------------------------------------


def test_refused_credentials_stop_only_that_account(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 20, "globex": 40}, limits={"globex": {"write_burst": 4}})
    api = FakeApi.from_inventory(inv, ids(inv))

    def fault(call: Call) -> ApiError | None:
        return AuthError("Invalid username/password.", http_status=401) if call.account == "globex" else None

    api.fault = fault
    result = run(inv, api)
    assert {result.by_id[i].result for i in ids(inv, "acme")} == {"changed"}
    globex = [result.by_id[i] for i in ids(inv, "globex")]
    assert {o.result for o in globex} == {"failed"}
    assert {o.error.kind for o in globex if o.error} == {"auth"}
    assert sum(1 for call in api.calls if call.account == "globex") <= 4  # at most its requests in flight


def test_per_account_failure_budget_skips_only_that_accounts_rest(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"broken": 40, "a": 30, "b": 30, "c": 30}, limits={"broken": {"write_burst": 5}})
    api = FakeApi.from_inventory(inv, ids(inv)[::2])
    api.fault = lambda call: ServerError("down", http_status=500) if call.account == "broken" else None
    opts = msgspec.structs.replace(
        OPTS, max_failures_per_account=FailureBudget(count=5), max_attempts=3, retry_max_time=30
    )
    result = run(inv, api, opts)
    broken = [result.by_id[i] for i in ids(inv, "broken")]
    failed = sum(1 for o in broken if o.result == "failed")
    assert 5 <= failed <= 5 + 5  # the budget, plus at most its requests in flight
    assert failed + sum(1 for o in broken if o.result == "skipped") == 40
    assert all("--max-failures-per-account 5" in (o.reason or "") for o in broken if o.result == "skipped")
    healthy = [result.by_id[i] for a in "abc" for i in ids(inv, a)]
    assert {o.result for o in healthy} <= {"changed", "unchanged"}
    assert result.engine.summary.stopped is None
    assert exit_code(result.engine.summary, "apply", False) == 1


def test_global_max_failures_stops_the_whole_run(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 40}, limits={"acme": {"write_burst": 1}})
    api = FakeApi.from_inventory(inv, fault=lambda call: ServerError("down", http_status=500))
    result = run(inv, api, msgspec.structs.replace(OPTS, max_failures=3, max_attempts=2))
    counts = result.results()
    assert counts["failed"] == 3 and counts["skipped"] == 37
    assert result.engine.summary.stopped is not None and "max-failures" in result.engine.summary.stopped


def test_the_circuit_breaker_pauses_an_account_after_consecutive_server_failures(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 10}, limits={"acme": {"write_burst": 1, "reads_per_minute": 60000}})
    failing_until = 30.0
    api = FakeApi.from_inventory(inv, latency=0.01)
    api.fault = lambda call: ServerError("down", http_status=503) if call.start < failing_until else None
    opts = msgspec.structs.replace(
        OPTS, breaker_threshold=3, breaker_pause=4.0, backoff_max=16.0, max_attempts=50, retry_max_time=200
    )
    result = run(inv, api, opts)
    assert result.results() == {"unchanged": 10}
    failures = [call.start for call in api.calls if call.error]
    # With a breaker, an outage of 30 s costs a handful of requests, not one per backoff step of each
    assert len(failures) < 25
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    assert max(gaps) >= 4.0  # it did pause


def test_an_integration_waiting_to_retry_when_the_run_stops_is_skipped(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 5})
    api = FakeApi.from_inventory(inv, latency=0.01)
    api.fault = lambda call: ThrottledError("wait", http_status=429, retry_after=30.0)

    async def stop_soon(engine: Engine) -> None:
        await anyio.sleep(5.0)
        engine.stop("interrupted by SIGTERM")

    result = run(inv, api, during=stop_soon)
    assert result.results() == {"skipped": 5}
    assert {o.reason for o in result.outcomes} == {"interrupted by SIGTERM"}


def test_a_bug_costs_one_integration_not_the_run(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 8})
    victim = ids(inv)[3]

    def fault(call: Call) -> ApiError | None:
        if call.integration_id == victim:
            raise KeyError("boom")
        return None

    api = FakeApi.from_inventory(inv, ids(inv), fault=fault)
    result = run(inv, api)
    assert result.by_id[victim].result == "failed"
    error = result.by_id[victim].error
    assert error is not None and error.kind == "internal"
    assert {o.result for i, o in result.by_id.items() if i != victim} == {"changed"}


def test_an_outcome_carries_every_field_in_its_place(tmp_path: Path) -> None:
    # The engine builds outcomes positionally (one per integration, the hot path): each
    # field must land where the report, the recap and the text output read it.
    inv = make_inventory(tmp_path, {"acme": 1})
    iid = ids(inv)[0]
    api = FakeApi.from_inventory(inv, latency=0.25)
    api.shops[iid].statuses = {  # "1" missing (+), "2" and "3" renamed (~), four extra (-)
        "2": (("en-gb", "Sent"), ("nl-nl", "Verzonden")),
        "3": (("en-gb", "Arrived"),),
        **{x: (("en-gb", f"Old {x}"),) for x in "wxyz"},
    }
    o = run(inv, api, msgspec.structs.replace(OPTS, preflight=False)).by_id[iid]
    assert (o.integration_id, o.account, o.result) == (iid, "acme", "changed")
    # Three requests: the statuses, the mapping (a removal may break it), the write.
    assert (o.added, o.changed, o.removed, o.attempts) == (1, 2, 4, 3)
    assert o.duration_ms == 750.0  # 0.25 s each, on the virtual clock
    assert (o.error, o.reason, o.mapping_changes, o.warnings, o.tags) == (None, None, (), (), ("acme",))
    assert sorted((c.op, c.external_id) for c in o.changes) == [
        ("+", "1"), ("-", "w"), ("-", "x"), ("-", "y"), ("-", "z"), ("~", "2"), ("~", "3")
    ]  # fmt: skip
    assert o.ended_at - o.started_at == pytest.approx(0.75, abs=0.002)
    assert o.started_at > 1.7e9  # a Unix time, not the loop's clock


def test_an_empty_desired_list_is_refused_unless_allowed(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 1}, extra=[{"id": 5, "account": "acme", "statuses": []}])
    api = FakeApi.from_inventory(inv)
    api.shops[5] = shop_from(inv.jobs[0].desired.statuses, "acme")
    refused = run(inv, api).by_id[5]
    assert refused.result == "failed" and refused.error is not None and refused.error.kind == "refused"
    assert refused.removed == 3 and len(api.live(5)) == 3
    assert run(inv, api, msgspec.structs.replace(OPTS, allow_delete_all=True)).by_id[5].result == "changed"
    assert api.live(5) == {}


# -- pre-flight ----------------------------------------------------------------------------


def test_preflight_fails_unknown_and_unsupported_integrations_without_a_status_request(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 30})
    all_ids = ids(inv)
    missing, other, failing = all_ids[:5], all_ids[5:10], all_ids[10]
    api = FakeApi.from_inventory(inv, page_size=7)
    for i in missing:
        del api.shops[i]
    for i in other:
        api.shops[i].system = "woocommerce"
    api.shops[failing].failing_since = "2026-11-20T10:00:00Z"
    result = run(inv, api)
    for i in missing:
        o = result.by_id[i]
        assert o.result == "failed" and o.error is not None and o.error.kind == "not_found"
        assert "not one of account acme's integrations" in o.error.detail
    for i in other:
        o = result.by_id[i]
        assert o.result == "failed" and o.error is not None and o.error.kind == "not_supported"
        assert "woocommerce" in o.error.detail
    touched = {call.integration_id for call in api.calls if call.op != "list"}
    assert touched.isdisjoint(missing + other)
    assert api.count("list") == 4  # 25 integrations, 7 a page
    assert any("failing since" in w for w in result.by_id[failing].warnings)


def test_without_the_list_the_run_goes_on_and_no_preflight_skips_it(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 5})
    api = FakeApi.from_inventory(inv)
    api.fault = lambda call: ClientError("forbidden", http_status=403) if call.op == "list" else None
    assert run(inv, api).results() == {"unchanged": 5}
    api.fault = None
    api.calls.clear()
    assert run(inv, api, msgspec.structs.replace(OPTS, preflight=False)).results() == {"unchanged": 5}
    assert api.count("list") == 0


# -- the mapping -------------------------------------------------------------------------------


def _mapped(inv: Inventory, which: Sequence[int], **mapping: str) -> list[Job]:
    wanted = DesiredMapping(tuple((cat, mapping.get(cat)) for cat in STATUS_CATEGORIES))
    return [msgspec.structs.replace(j, mapping=wanted) if j.integration_id in which else j for j in inv.jobs]


def test_a_declared_mapping_is_written_after_the_statuses_and_read_only_where_needed(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 6})
    with_mapping = ids(inv)[:3]
    jobs = _mapped(inv, with_mapping, READY_TO_SEND="1", IN_TRANSIT="2", DELIVERED="3")
    api = FakeApi.from_inventory(inv, ids(inv)[::2])
    result = run(inv, api, jobs=jobs)
    for i in with_mapping:
        assert api.shops[i].mapping == {"READY_TO_SEND": "1", "IN_TRANSIT": "2", "DELIVERED": "3", "CANCEL": None}
        ops = [call.op for call in api.calls if call.integration_id == i]
        if "post_statuses" in ops:
            assert ops.index("post_statuses") < ops.index("post_mapping")
        assert result.by_id[i].result == "changed"
        assert {m.category for m in result.by_id[i].mapping_changes} == {"READY_TO_SEND", "IN_TRANSIT", "DELIVERED"}
    # no declared mapping, nothing removed: the mapping costs nothing
    untouched = [i for i in ids(inv)[3:]]
    assert not [call for call in api.calls if call.op == "get_mapping" and call.integration_id in untouched]
    api.calls.clear()
    again = run(inv, api, jobs=jobs)
    assert again.results() == {"unchanged": 6}
    assert api.count("post_statuses") == api.count("post_mapping") == 0


def test_the_guard_refuses_a_write_that_would_break_the_current_mapping(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 4}, extra=[])
    api = FakeApi.from_inventory(inv)
    a, b, d, e = ids(inv)
    for i in (a, b, d, e):
        api.shops[i].statuses["6"] = (("en-gb", "Cancelled"),)  # a status the inventory does not have
        api.shops[i].mapping["CANCEL"] = "6"
    jobs = _mapped(inv, [d, e], CANCEL="3")  # d and e declare a repairing mapping; a and b do not
    plan = run(inv, api, msgspec.structs.replace(OPTS, write=False), jobs=jobs)
    error = plan.by_id[a].error
    assert plan.by_id[a].result == "failed" and error is not None
    assert error.kind == "refused" and "CANCEL -> '6'" in error.detail
    result = run(inv, api, jobs=jobs)
    for i in (a, b):
        error = result.by_id[i].error
        assert result.by_id[i].result == "failed" and error is not None
        assert error.kind == "refused"
        assert "6" in api.shops[i].statuses  # nothing was written for it
        assert not [call for call in api.calls if call.integration_id == i and call.op.startswith("post")]
    for i in (d, e):
        assert result.by_id[i].result == "changed"
        assert api.mapping_view(i).mapping[3].external_id == "3" and all(
            m.is_valid for m in api.mapping_view(i).mapping
        )
    assert result.engine.summary.accounts["acme"].refused == 2
    allowed = run(inv, api, msgspec.structs.replace(OPTS, allow_invalid_mapping=True), jobs=jobs)
    assert allowed.by_id[a].result == "changed" and allowed.by_id[a].warnings
    assert "6" not in api.shops[a].statuses


def test_no_read_with_a_declared_mapping_writes_both_without_reading(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 3})
    jobs = _mapped(inv, ids(inv), READY_TO_SEND="1")
    api = FakeApi.from_inventory(inv, ids(inv))
    result = run(inv, api, msgspec.structs.replace(OPTS, read_first=False), jobs=jobs)
    assert result.results() == {"changed": 3}
    assert api.count("get_statuses") == api.count("get_mapping") == 0
    assert api.count("post_statuses") == api.count("post_mapping") == 3


def test_the_engine_unit_tests_need_no_real_time(tmp_path: Path) -> None:
    """A run that takes 10 minutes of (virtual) budget finishes in well under a second."""
    import time

    inv = make_inventory(tmp_path, {"acme": 200}, limits={"acme": {"reads_per_minute": 20, "write_burst": 1}})
    api = FakeApi.from_inventory(inv, latency=0.1)
    started = time.perf_counter()
    result = run(inv, api, msgspec.structs.replace(OPTS, preflight=False))
    assert result.engine.summary.duration_s > 9 * 60
    assert time.perf_counter() - started < 2.0


def test_a_snapshot_reads_statuses_and_mapping_and_writes_nothing(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 4})
    api = FakeApi.from_inventory(inv, ids(inv)[:2])
    api.shops[ids(inv)[3]].mapping["CANCEL"] = "3"
    seen: dict[int, tuple[int, str | None]] = {}
    outcomes: list[Outcome] = []

    def snap(job: Job, statuses: Any, mapping: Any) -> None:
        seen[job.integration_id] = (len(statuses), mapping.mapping[3].external_id)

    engine = Engine(inv.accounts, api, OPTS, outcomes.append, on_snapshot=snap)
    run_virtual(engine.run, inv.jobs)
    assert seen == {ids(inv)[0]: (0, None), ids(inv)[1]: (0, None), ids(inv)[2]: (3, None), ids(inv)[3]: (3, "3")}
    assert {o.result for o in outcomes} == {"unchanged"}
    assert api.count("post_statuses") == api.count("post_mapping") == 0


def test_one_incident_trips_the_breaker_once_not_once_per_request_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inv = make_inventory(tmp_path, {"acme": 40}, limits={"acme": {"write_burst": 10, "reads_per_minute": 60000}})
    api = FakeApi.from_inventory(inv, latency=0.05)
    api.fault = lambda call: ServerError("down", http_status=503) if call.start < 10.0 else None
    caplog.set_level(logging.WARNING, logger="batchsync")
    opts = msgspec.structs.replace(
        OPTS,
        breaker_threshold=5,
        breaker_pause=2.0,
        backoff_max=30.0,
        max_attempts=50,
        retry_max_time=300,
        preflight=False,  # all 10 requests in flight from the start
    )
    result = run(inv, api, opts)
    assert result.results() == {"unchanged": 40}
    pauses = [r.__dict__["fields"]["delay"] for r in caplog.records if "in a row" in r.getMessage()]
    # 10 requests in flight fail together: one trip (2 s), then 4 s, then 8 s cover the outage
    assert pauses == [2.0, 4.0, 8.0][: len(pauses)] and 1 <= len(pauses) <= 3, pauses


def test_a_list_in_an_unknown_shape_does_not_hold_up_the_account(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"acme": 5})
    api = FakeApi.from_inventory(inv, latency=0.01)
    api.fault = lambda call: InvalidResponseError("unexpected body", http_status=200) if call.op == "list" else None
    result = run(inv, api)
    assert result.results() == {"unchanged": 5}
    assert api.count("list") == 1  # not retried: a shape does not change on a retry
    assert result.engine.summary.duration_s < 1.0


def test_a_mapping_item_the_statuses_write_revives_costs_no_mapping_write(tmp_path: Path) -> None:
    """CANCEL -> '3' is invalid because status 3 was deleted; the inventory wants 3 back
    and CANCEL -> '3': writing the statuses makes the item valid again, so the scarce
    write budget is not spent on a mapping POST that would change nothing."""
    inv = make_inventory(tmp_path, {"acme": 2})
    a, b = ids(inv)
    jobs = _mapped(inv, [a, b], READY_TO_SEND="1", CANCEL="3")
    api = FakeApi.from_inventory(inv)
    for i in (a, b):
        del api.shops[i].statuses["3"]
        api.shops[i].mapping.update({"READY_TO_SEND": "1", "CANCEL": "3"})
    api.shops[b].mapping["READY_TO_SEND"] = "2"  # b's mapping also differs for real
    plan = run(inv, api, msgspec.structs.replace(OPTS, write=False), jobs=jobs)
    assert [m.category for m in plan.by_id[a].mapping_changes] == []
    assert [m.category for m in plan.by_id[b].mapping_changes] == ["READY_TO_SEND"]
    result = run(inv, api, jobs=jobs)
    assert result.by_id[a].result == result.by_id[b].result == "changed"
    assert [call.integration_id for call in api.calls if call.op == "post_mapping"] == [b]
    assert all(m.is_valid for i in (a, b) for m in api.mapping_view(i).mapping)
