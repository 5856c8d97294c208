"""``batchsync import`` against the sandbox over loopback: listing, reading, the round trip.

The round trip is the test that matters: import a fleet, then plan the file it wrote
against the same sandbox, and every integration is unchanged. It runs as a property
over generated fleets (families of lists with small variations, mappings, deleted
statuses, other systems, a few integrations declared already), and as the command a
person runs (three accounts, 300 shops in four families, ten of other systems).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from cli_helpers import SandboxProcess
from fake_api import FakeApi, run_virtual
from fake_api import Shop as FakeShop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsync import wire
from batchsync.commands.import_ import load_source
from batchsync.engine.engine import Engine
from batchsync.engine.limits import Bucket
from batchsync.engine.options import Options
from batchsync.engine.snapshot import Fleet, list_account, read_fleet
from batchsync.inventory.grouping import Current, build, canonical_statuses, read_raw
from batchsync.inventory.loader import load
from batchsync.inventory.writer import render, write_checked
from batchsync.model import Limits
from batchsync.outcome import Outcome
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.fleet import account_env, accounts_inventory, fleet_seed
from batchsync.sandbox.server import run_sandbox
from batchsync.sandbox.state import AccountSeed, IntegrationSeed, Seed
from batchsync.sendcloud.errors import ApiError, AuthError, ServerError
from batchsync.sendcloud.listing import ListBounds
from batchsync.sendcloud.transport import HttpApi
from batchsync.wire import LANGUAGES, STATUS_CATEGORIES, Status, Translation

ROOT = Path(__file__).resolve().parents[2]
FAST = {"reads_per_minute": 1e6, "writes_per_minute": 1e6, "write_burst": 100}
FAST_LIMITS = Limits(1e6, 100, 1e6)  # the sandbox's side of FAST
QUICK = Options(write=False, preflight=False, backoff_base=0.01, backoff_max=0.05, breaker_pause=0.05)


def as_data(value: Any) -> Any:
    """Plain JSON data (lists, not tuples), as a parsed file holds it."""
    return msgspec.json.decode(msgspec.json.encode(value))


def write_accounts(tmp: Path, seed: Seed, url: str, limits: dict[str, float] | None = FAST) -> Path:
    path = tmp / "accounts.toml"
    path.write_text(accounts_inventory(seed, url, limits))
    return path


async def import_fleet(
    seed: Seed, tmp: Path, config: SandboxConfig, fmt: str = "toml", declared: list[dict[str, Any]] | None = None
) -> tuple[Fleet, Path, Any]:
    """Import ``seed`` from an in-process sandbox; (what was read, the file written, the sandbox stats)."""
    env = account_env(seed)
    async with run_sandbox(seed, config) as box:
        source = write_accounts(tmp, seed, box.url)
        inv, raw, problems = load_source(source, environ=env)
        assert problems == []
        if declared:
            raw["integrations"] = declared
        fleet = Fleet()
        ids = {e["id"] for e in declared or ()}
        async with HttpApi(concurrency=64, timeout=10) as api:
            await read_fleet(inv.accounts, api, QUICK, fleet, declared=ids)
        doc, _ = build(raw, fleet.snapshots, fleet.listings, source_dir=str(tmp), target_dir=str(tmp))
        out = tmp / f"imported.{fmt}"
        problems = write_checked(str(out), render(doc, fmt), env)  # type: ignore[arg-type]
        assert problems == [], problems
        return fleet, out, box.stats()


async def plan(seed: Seed, path: Path, config: SandboxConfig) -> list[Outcome]:
    """Every outcome of a plan of ``path`` against a fresh sandbox of ``seed``."""
    inv = load(path, environ=account_env(seed))
    assert inv.valid, inv.problems
    outcomes: list[Outcome] = []
    async with run_sandbox(seed, config) as box, HttpApi(concurrency=64, timeout=10, base_url=box.url) as api:
        await Engine(inv.accounts, api, Options(write=False), outcomes.append).run(inv.jobs)
    return outcomes


# -- listing and reading --------------------------------------------------------------------


async def test_every_page_is_listed_and_each_prestashop_integration_read_once(tmp_path: Path) -> None:
    seed = fleet_seed(2, 25, families=2, others=3, mappings=True, limits=FAST_LIMITS)
    fleet, out, stats = await import_fleet(seed, tmp_path, SandboxConfig(page_size=4))
    per_account = {a.name: [s for s in seed.integrations if s.account == a.name] for a in seed.accounts}
    for name, shops in per_account.items():
        assert sorted(s.id for s in fleet.listings[name]) == sorted(s.id for s in shops)
        assert fleet.pages[name] == -(-len(shops) // 4)
        prestashop = sum(1 for s in shops if s.system == "prestashop_v2")
        # The budget an import spends: its pages, then two reads per integration; nothing else.
        assert stats["requests"][name] == {"GET": fleet.pages[name] + 2 * prestashop, "POST": 0}
    assert sum(stats["throttled"].values()) == 0
    assert len(fleet.snapshots) == 25 and fleet.failed == [] and fleet.list_errors == {}
    assert all(isinstance(s, Current) for s in fleet.snapshots)
    assert out.exists()


async def test_integrations_already_declared_are_not_read(tmp_path: Path) -> None:
    seed = fleet_seed(1, 12, families=1, others=0, mappings=False, limits=FAST_LIMITS)
    declared = [{"id": s.id, "account": s.account, "statuses": as_data(s.statuses)} for s in seed.integrations[:5]]
    fleet, out, stats = await import_fleet(seed, tmp_path, SandboxConfig(), declared=declared)
    assert stats["requests"]["acme"] == {"GET": 1 + 2 * 7, "POST": 0}
    assert sorted(s.shop.id for s in fleet.snapshots) == [s.id for s in seed.integrations[5:]]
    written = read_raw(out)["integrations"]
    assert written[:5] == declared  # kept as INVENTORY declares them
    assert [e["id"] for e in written[5:]] == [s.id for s in seed.integrations[5:]]


async def test_accounts_with_nothing_to_import_give_a_valid_file(tmp_path: Path) -> None:
    seed = fleet_seed(2, 0, families=1, others=1, mappings=False, limits=FAST_LIMITS)
    fleet, out, stats = await import_fleet(seed, tmp_path, SandboxConfig())
    assert fleet.snapshots == [] and fleet.to_read == 0
    assert stats["requests"] == {"acme": {"GET": 1, "POST": 0}, "globex": {"GET": 1, "POST": 0}}
    assert read_raw(out)["integrations"] == []


async def test_an_oauth2_account_is_imported_and_copied_as_references(tmp_path: Path) -> None:
    shops = fleet_seed(1, 8, families=1, others=1, mappings=True, limits=FAST_LIMITS).integrations
    seed = Seed(
        (AccountSeed("acme", limits=FAST_LIMITS, auth="oauth2", client_id="c-id", client_secret="c-secret"),), shops
    )
    env = {"C_ID": "c-id", "C_SECRET": "c-secret"}
    async with run_sandbox(seed, SandboxConfig(page_size=3)) as box:
        source = tmp_path / "accounts.toml"
        source.write_text(
            f'[accounts.acme]\nauth = "oauth2"\nclient_id = "env:C_ID"\nclient_secret = "env:C_SECRET"\n'
            f'token_url = "{box.url}/oauth2/token"\nbase_url = "{box.url}"\n'
            f"limits = {{ reads_per_minute = 1e6, writes_per_minute = 1e6, write_burst = 100 }}\n"
        )
        inv, raw, problems = load_source(source, environ=env)
        assert problems == []
        fleet = Fleet()
        async with HttpApi(concurrency=8, timeout=10) as api:
            await read_fleet(inv.accounts, api, QUICK, fleet)
        doc, _ = build(raw, fleet.snapshots, fleet.listings)
        out = tmp_path / "imported.toml"
        text = render(doc, "toml")
        assert write_checked(str(out), text, env) == []
        assert "c-secret" not in text and "c-id" not in text
        assert read_raw(out)["accounts"] == raw["accounts"]
        assert len(fleet.snapshots) == 8 and fleet.failed == []
        outcomes: list[Outcome] = []
        loaded = load(out, environ=env)
        async with HttpApi(concurrency=8, timeout=10) as api:
            await Engine(loaded.accounts, api, Options(write=False), outcomes.append).run(loaded.jobs)
    assert [o.result for o in outcomes] == ["unchanged"] * 8


async def test_transient_errors_are_retried_the_list_included(tmp_path: Path) -> None:
    seed = fleet_seed(2, 30, families=2, others=2, mappings=True, limits=FAST_LIMITS)
    config = SandboxConfig(page_size=3, fault_503=0.15, fault_reset=0.05, seed=4)
    fleet, out, stats = await import_fleet(seed, tmp_path, config)
    assert sum(stats["faults"].values()) > 5
    assert fleet.failed == [] and fleet.list_errors == {} and len(fleet.snapshots) == 30
    outcomes = await plan(seed, out, SandboxConfig())
    assert {o.result for o in outcomes} == {"unchanged"}


async def test_every_request_is_counted_the_list_s_retries_too(tmp_path: Path) -> None:
    """What the command's "(N requests)" line sums: before, the lists' pages were counted
    instead of the requests sent for them (a page retried after a 503 counted once)."""
    seed = fleet_seed(2, 30, families=2, others=2, mappings=True, limits=FAST_LIMITS)
    fleet, _, stats = await import_fleet(seed, tmp_path, SandboxConfig(page_size=2, fault_503=0.2, seed=4))
    assert fleet.failed == [] and fleet.list_errors == {} and fleet.summary is not None
    for name, sent in stats["requests"].items():
        assert fleet.list_requests[name] + fleet.summary.accounts[name].requests == sent["GET"]
    assert sum(fleet.list_requests.values()) > sum(fleet.pages.values())  # some pages took two tries


def fake_accounts(names: list[str]) -> dict[str, Any]:
    """Accounts as the loader gives them, whatever its version's Account looks like."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        seed = Seed(tuple(AccountSeed(n, f"{n}-public", f"{n}-secret") for n in names))
        path = Path(d) / "a.toml"
        path.write_text(accounts_inventory(seed, "http://127.0.0.1:9", FAST))
        inv, _, problems = load_source(path, environ=account_env(seed))
        assert problems == []
        return dict(inv.accounts)


def fake_shops() -> dict[int, FakeShop]:
    shops = {i: FakeShop("acme", {"1": (("en-gb", "Shipped"),)}) for i in range(1, 9)}
    shops.update({i: FakeShop("globex", {"1": (("en-gb", "Shipped"),)}) for i in range(11, 15)})
    shops[9] = FakeShop("acme", system="woocommerce")
    return shops


def test_one_integration_that_cannot_be_read_costs_that_integration_only() -> None:
    def fault(call: Any) -> ApiError | None:
        return ServerError("boom", http_status=500) if call.integration_id == 3 else None

    api = FakeApi(fake_shops(), fault=fault, page_size=3)
    fleet = Fleet()
    run_virtual(read_fleet, fake_accounts(["acme", "globex"]), api, QUICK, fleet)
    assert [o.integration_id for o in fleet.failed] == [3]
    assert fleet.failed[0].attempts == QUICK.max_attempts
    assert sorted(s.shop.id for s in fleet.snapshots) == [1, 2, 4, 5, 6, 7, 8, 11, 12, 13, 14]
    assert fleet.summary is not None and fleet.summary.total("unchanged") == 11


def test_an_account_whose_list_fails_costs_that_account_only() -> None:
    def fault(call: Any) -> ApiError | None:
        return AuthError("refused", http_status=401) if call.account == "globex" else None

    api = FakeApi(fake_shops(), fault=fault, page_size=3)
    fleet = Fleet()
    run_virtual(read_fleet, fake_accounts(["acme", "globex"]), api, QUICK, fleet)
    assert list(fleet.list_errors) == ["globex"] and "auth 401" in fleet.list_errors["globex"]
    assert api.count("list", "globex") == 1  # refused credentials are not retried
    assert fleet.list_requests == {"acme": api.count("list", "acme"), "globex": 1}  # the failed list's counted
    assert sorted(s.shop.id for s in fleet.snapshots) == list(range(1, 9))


class _Circular:
    """A list whose next-page links go round: 1, 2, 1, 2, ..."""

    def __init__(self) -> None:
        self.pages = 0

    async def list_integrations_page(self, next_url: str | None = None) -> wire.ListedPage:
        self.pages += 1
        return wire.ListedPage((), "page-2" if next_url in (None, "page-1") else "page-1")


def test_links_that_go_round_in_a_circle_end_the_list() -> None:
    api = _Circular()

    async def go() -> None:
        bucket = Bucket(1e6, 100, anyio.current_time())
        await list_account(api, bucket, QUICK, "acme")  # type: ignore[arg-type]

    with pytest.raises(ApiError, match="does not end"):
        run_virtual(go)
    assert api.pages == 3


def test_the_list_keeps_within_the_read_budget() -> None:
    """100 pages at 60 reads a minute, burst 5: the first 5 at once, then one a second."""
    shops = {i: FakeShop("acme") for i in range(1, 101)}
    api = FakeApi(shops, page_size=1, latency=0.001)
    account = fake_accounts(["acme"])["acme"]

    async def go() -> float:
        bucket = Bucket(60, 5, anyio.current_time())
        start = anyio.current_time()
        # 100 s at that rate: past the default time bound, which --max-list-time raises.
        options = msgspec.structs.replace(QUICK, list_bounds=ListBounds(seconds=200))
        shops, pages = await list_account(api.account(account), bucket, options, "acme")
        assert pages == 100 and len(shops) == 100
        return anyio.current_time() - start

    took = run_virtual(go)
    budget = 95 / 0.995  # seconds: the pages past the burst, at the rate the client aims for
    assert budget - 0.5 <= took <= budget + 1


# -- the round trip, as a property -------------------------------------------------------------

IDS = [str(k) for k in range(1, 10)] + ["a", "b", "é", "x-1"]
NAMES = st.text(alphabet=st.sampled_from('aZé 1"\\#:\n\t\u2028发-'), min_size=1, max_size=6)


@st.composite
def status_lists(draw: st.DrawFn) -> tuple[Status, ...]:
    ids = draw(st.lists(st.sampled_from(IDS), max_size=7, unique=True))
    out = []
    for i in ids:
        langs = draw(st.lists(st.sampled_from(LANGUAGES), min_size=1, max_size=3, unique=True))
        out.append(Status(i, tuple(Translation(draw(NAMES), lang) for lang in langs)))
    return tuple(out)


@st.composite
def variation(draw: st.DrawFn, base: tuple[Status, ...]) -> tuple[Status, ...]:
    statuses = list(base)
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["drop", "add", "rename"]))
        if kind == "drop" and statuses:
            statuses.pop(draw(st.integers(0, len(statuses) - 1)))
        elif kind == "add":
            new = draw(st.sampled_from(IDS))
            if all(s.external_id != new for s in statuses):
                statuses.append(Status(new, (Translation(draw(NAMES), "en-gb"),)))
        elif statuses:
            k = draw(st.integers(0, len(statuses) - 1))
            s = statuses[k]
            statuses[k] = Status(s.external_id, (Translation(draw(NAMES), s.translations[0].language),))
    return tuple(statuses)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Seed, list[dict[str, Any]]]:
    """A seed (1-3 accounts, families of lists, variations, mappings, deleted statuses,
    other systems) and the integrations an INVENTORY declares already."""
    accounts = tuple(
        AccountSeed(n, f"{n}-public", f"{n}-secret", FAST_LIMITS)
        for n in ("acme", "globex", "initech")[: draw(st.integers(1, 3))]
    )
    families = draw(st.lists(status_lists(), min_size=1, max_size=3))
    integrations = []
    for k in range(draw(st.integers(0, 14))):
        statuses = draw(variation(draw(st.sampled_from(families))))
        deleted = () if draw(st.booleans()) else (Status("gone", (Translation("Gone", "en-gb"),)),)
        if any(s.external_id == "gone" for s in statuses):
            deleted = ()
        targets = [s.external_id for s in statuses] + [None, None] + [d.external_id for d in deleted]
        mapping = None
        if draw(st.booleans()):
            mapping = {cat: draw(st.sampled_from(targets)) for cat in STATUS_CATEGORIES}
        system = draw(st.sampled_from(["prestashop_v2"] * 6 + ["woocommerce", "shopify"]))
        integrations.append(
            IntegrationSeed(
                id=1000 + k,
                account=accounts[draw(st.integers(0, len(accounts) - 1))].name,
                statuses=statuses,
                deleted_statuses=deleted,
                system=system,
                shop_name=draw(st.one_of(st.none(), NAMES)),
                mapping=mapping,
            )
        )
    seed = Seed(accounts, tuple(integrations))
    declared = [
        {"id": s.id, "account": s.account, "statuses": as_data(s.statuses)}
        for s in integrations
        if s.system == "prestashop_v2" and draw(st.booleans()) and draw(st.booleans())
    ]
    return seed, declared


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleets(), st.sampled_from(["toml", "yaml", "json"]), st.integers(2, 5))
def test_importing_then_planning_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory, fleet_and_declared: tuple[Seed, list[dict[str, Any]]], fmt: str, page: int
) -> None:
    seed, declared = fleet_and_declared
    tmp = tmp_path_factory.mktemp("fleet")
    config = SandboxConfig(page_size=page)

    async def round_trip() -> None:
        fleet, out, _ = await import_fleet(seed, tmp, config, fmt, declared)
        inv = load(out, environ=account_env(seed))
        prestashop = [s for s in seed.integrations if s.system == "prestashop_v2"]
        assert sorted(j.integration_id for j in inv.jobs) == sorted(s.id for s in prestashop)
        # Each job wants exactly what its shop has: the file says what the sandbox holds.
        for job in inv.jobs:
            shop = next(s for s in prestashop if s.id == job.integration_id)
            assert canonical_statuses(job.desired.statuses) == canonical_statuses(shop.statuses)
            declared_mapping = getattr(job, "mapping", None)
            if declared_mapping is not None:
                have = {cat: (shop.mapping or {}).get(cat) for cat in STATUS_CATEGORIES}
                assert declared_mapping.as_dict() == have
        outcomes = await plan(seed, out, config)
        assert {o.integration_id: o.result for o in outcomes} == dict.fromkeys((s.id for s in prestashop), "unchanged")
        assert all(o.mapping_changes == () and o.changes == () for o in outcomes)
        assert not [s for s in fleet.snapshots if not isinstance(s, Current)]

    anyio.run(round_trip)


# -- the command line ---------------------------------------------------------------------------


class SeedSandbox(SandboxProcess):
    """``batchsync sandbox --seed-file`` in a process of its own, seeded from ``seed``."""

    def __init__(self, seed: Seed, tmp: Path, *args: str) -> None:
        seed_file = tmp / "seed.json"
        seed_file.write_bytes(msgspec.json.encode(seed))
        super().__init__(None, dict(os.environ), "--seed-file", str(seed_file), *args)


def batchsync(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchsync", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=timeout,
    )


K = 20  # the sandbox's clock runs K times faster; the inventory declares the same scaled limits
SCALED = {"reads_per_minute": 1000.0 * K, "writes_per_minute": 100.0 * K, "write_burst": 15}


@pytest.mark.parametrize("mappings", [True, False])
def test_three_accounts_300_shops_in_4_families_import_as_4_sets_and_plan_to_nothing(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], mappings: bool
) -> None:
    seed = fleet_seed(3, 300, families=4, others=10, mappings=mappings, seed=7)
    box = SeedSandbox(seed, tmp_path, "--time-scale", str(K), "--page-size", "50")
    sandbox_proc.append(box)
    env = account_env(seed)
    source = write_accounts(tmp_path, seed, box.url, SCALED)
    out = tmp_path / "fleet.toml"
    done = batchsync("import", str(source), "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    doc = read_raw(out)
    assert len(doc["status_sets"]) == 4
    assert len(doc["integrations"]) == 300
    others = [s for s in seed.integrations if s.system != "prestashop_v2"]
    assert f"not importable ({len(others)}):" in done.stdout
    for s in others:
        assert f"{s.account} {s.id} {s.shop_name!r} {s.system}:" in done.stdout
    assert "wrote" in done.stdout and "4 new status sets, 300 integrations added" in done.stdout
    text = out.read_text() + done.stdout + done.stderr
    assert not [v for v in env.values() if v in text]  # not a key, public or secret
    validated = batchsync("validate", str(out), env=env)
    assert validated.returncode == 0, validated.stdout
    planned = batchsync("plan", str(out), "--detailed-exitcode", env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "unchanged=300" in planned.stdout


def test_a_plan_right_after_an_import_meets_no_429(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    """An import spends the accounts' read budget; the plan an agency runs right after it
    used to start with a full burst the server no longer had (batchsync.engine.budget). At
    Sendcloud's own rates: 1000 reads a minute, burst 15."""
    seed = fleet_seed(1, 30, families=2, others=0, mappings=False, seed=3)
    box = SeedSandbox(seed, tmp_path)
    sandbox_proc.append(box)
    env = account_env(seed)
    source = write_accounts(
        tmp_path, seed, box.url, {"reads_per_minute": 1000, "writes_per_minute": 100, "write_burst": 15}
    )
    out = tmp_path / "fleet.toml"
    done = batchsync("import", str(source), "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    planned = batchsync("plan", str(out), "--detailed-exitcode", env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "unchanged=30" in planned.stdout and "429" not in planned.stdout + planned.stderr
    assert set(box.stats()["throttled"].values()) == {0}


def test_the_command_keeps_what_is_declared_and_says_what_is_gone(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    seed = fleet_seed(2, 12, families=1, others=1, mappings=False, limits=FAST_LIMITS)
    box = SeedSandbox(seed, tmp_path)
    sandbox_proc.append(box)
    env = account_env(seed)
    raw = read_raw(write_accounts(tmp_path, seed, box.url, SCALED))
    mine = seed.integrations[0]
    raw["integrations"] = [
        {"id": mine.id, "account": mine.account, "tags": ["vip"], "statuses": as_data(mine.statuses)},
        {"id": 99, "account": "acme", "statuses": []},
        {"id": 98, "account": "globex", "statuses": []},
    ]
    source = tmp_path / "inventory.json"
    source.write_bytes(msgspec.json.encode(raw))
    out = tmp_path / "out" / "fleet.yaml"
    out.parent.mkdir()
    done = batchsync("import", str(source), "-o", str(out), "--account", "acme", env=env)
    assert done.returncode == 0, done.stderr
    assert "declared, but account acme no longer lists integration 99 (kept in the file)" in done.stdout
    assert "integration 98" not in done.stdout  # globex was not selected: not listed, not judged
    written = read_raw(out)["integrations"]
    assert written[0]["tags"] == ["vip"] and [e["id"] for e in written[:3]] == [mine.id, 99, 98]
    acme = sorted(s.id for s in seed.integrations if s.account == "acme" and s.system == "prestashop_v2")
    assert sorted(e["id"] for e in written[3:]) == [i for i in acme if i != mine.id]
    assert batchsync("validate", str(out), env=env).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "nobody"], "--account nobody: not an account of"),
        (["-o", "{tmp}/x.txt"], "use a .toml, .yaml, .yml or .json file name"),
        (["--format", "yaml"], "--format yaml and -o"),
        (["-o", "{tmp}/missing/x.toml"], "is not a writable directory"),
    ],
)
def test_usage_mistakes_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    seed = Seed((AccountSeed("acme", "acme-public", "acme-secret"),))
    source = write_accounts(tmp_path, seed, "http://127.0.0.1:9")
    out = tmp_path / "out.toml"
    out.write_text("before")
    argv = ["import", str(source), "-o", str(out), *[a.replace("{tmp}", str(tmp_path)) for a in args]]
    done = batchsync(*argv, env=account_env(seed))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and out.read_text() == "before"


def test_an_invalid_inventory_exits_2_with_its_problems(tmp_path: Path) -> None:
    source = tmp_path / "bad.toml"
    source.write_text('[accounts.acme]\npublic_key = "literal-key"\nsecret_key = "env:NOPE"\n')
    done = batchsync("import", str(source), "-o", str(tmp_path / "out.toml"), env={})
    assert done.returncode == 2
    assert "public_key" in done.stderr and "literal-key" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.toml").exists()


def test_an_interrupted_import_writes_nothing(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    seed = fleet_seed(1, 60, families=1, others=0, mappings=False, limits=FAST_LIMITS)
    box = SeedSandbox(seed, tmp_path, "--latency", "0.2:0.2")
    sandbox_proc.append(box)
    source = write_accounts(tmp_path, seed, box.url)
    out = tmp_path / "out.toml"
    out.write_text("before")
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchsync", "import", str(source), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **account_env(seed)},
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not box.stats()["requests"].get("acme", {}).get("GET", 0) > 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 3, stderr
    assert "interrupted; nothing was written" in stderr and "Traceback" not in stderr
    assert out.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.toml")] == []


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_a_second_import_into_the_inventory_keeps_what_a_person_wrote(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], fmt: str
) -> None:
    """Issue 27: a hand comment, a name and tags a person gave, a set renamed by hand and
    the key order survive a second import into the same file; the new shops are added."""
    seed = fleet_seed(2, 16, families=1, others=0, mappings=False, limits=FAST_LIMITS)
    box = SeedSandbox(seed, tmp_path)
    sandbox_proc.append(box)
    env = account_env(seed)
    accounts = write_accounts(tmp_path, seed, box.url, SCALED)
    inv = tmp_path / f"inventory.{fmt}"
    first = batchsync("import", str(accounts), "-o", str(inv), "--account", seed.accounts[0].name, env=env)
    assert first.returncode == 0, first.stderr
    raw = read_raw(inv)
    [set_name] = raw["status_sets"]
    assert set_name == seed.accounts[0].name  # named after the account all its shops belong to
    one = raw["integrations"][0]
    assert one["name"] and one["shop_url"]  # the shop's, from the list
    # A person edits the file: a comment, their own name and tags for a shop, the set renamed.
    text = inv.read_text()
    if fmt == "json":
        doc = json.loads(text)
        doc["integrations"][0].update(name="Our flagship", tags=["vip"])
        doc["status_sets"] = {"house-standard": doc["status_sets"][set_name]}
        for e in doc["integrations"]:
            if e.get("status_set") == set_name:
                e["status_set"] = "house-standard"
        text = json.dumps(doc, indent=4)
    else:
        text = text.replace(set_name, "house-standard")
        name = one["name"]
        if fmt == "toml":
            text = text.replace(f'name = "{name}"', 'name = "Our flagship"  # renamed by hand\ntags = ["vip"]', 1)
            text = text.replace(
                "[[integrations]]", "# Hand comment: call Anna before touching these\n[[integrations]]", 1
            )
        else:
            text = text.replace(
                f"name: {json.dumps(name)}", 'name: "Our flagship"  # renamed by hand\n    tags: [vip]', 1
            )
            text = text.replace("integrations:", "# Hand comment: call Anna before touching these\nintegrations:", 1)
    inv.write_text(text)
    second = batchsync("import", str(inv), "-o", str(inv), env=env)
    assert second.returncode == 0, second.stderr
    after = inv.read_text()
    if fmt != "json":
        assert "# Hand comment: call Anna before touching these" in after
        assert "# renamed by hand" in after
    assert after.startswith(text.rstrip("\n")[:200])  # what was there comes first, as it was
    raw = read_raw(inv)
    first_entry = raw["integrations"][0]
    assert first_entry["name"] == "Our flagship" and first_entry["tags"] == ["vip"]
    assert "house-standard" in raw["status_sets"]
    listed = sorted(s.id for s in seed.integrations if s.system == "prestashop_v2")
    assert sorted(e["id"] for e in raw["integrations"]) == listed  # the second account's shops added
    assert batchsync("validate", str(inv), env=env).returncode == 0
    assert batchsync("plan", str(inv), "--detailed-exitcode", env=env).returncode == 0


def test_an_account_whose_secret_is_unset_is_skipped_named_and_the_others_imported(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    seed = fleet_seed(2, 8, families=1, others=0, mappings=False, limits=FAST_LIMITS)
    box = SeedSandbox(seed, tmp_path)
    sandbox_proc.append(box)
    first, second = (a.name for a in seed.accounts)
    env = account_env(seed)
    missing = f"{second.upper().replace('-', '_')}_SECRET"
    env = {k: v for k, v in env.items() if k != missing}
    out = tmp_path / "fleet.toml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchsync",
            "import",
            str(write_accounts(tmp_path, seed, box.url, SCALED)),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.endswith(("_PUBLIC", "_SECRET"))} | env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"account '{second}'" in result.stderr and missing in result.stderr and "skipped" in result.stderr
    ids = {e["id"] for e in read_raw(out)["integrations"]}
    assert ids == {s.id for s in seed.integrations if s.account == first and s.system == "prestashop_v2"}
    assert box.stats()["requests"].get(second, {"GET": 0})["GET"] == 0
    # All or nothing, for those who want it: exit 2, nothing read, nothing written.
    out.unlink()
    strict = subprocess.run(
        [sys.executable, "-m", "batchsync", "import", str(tmp_path / "accounts.toml"), "-o", str(out),
         "--require-all-credentials"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.endswith(("_PUBLIC", "_SECRET"))} | env,
        cwd=ROOT,
        timeout=120,
    )  # fmt: skip
    assert strict.returncode == 2 and missing in strict.stderr and not out.exists()


def test_a_generated_fleet_of_any_size_with_oauth2_accounts_imports_and_plans_to_nothing(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    seed = fleet_seed(10, 40, families=2, others=2, oauth2=2, limits=FAST_LIMITS)
    names = [a.name for a in seed.accounts]
    assert names[8:] == ["acme-2", "globex-2"] and [a.auth for a in seed.accounts[8:]] == ["oauth2", "oauth2"]
    box = SeedSandbox(seed, tmp_path)
    sandbox_proc.append(box)
    env = account_env(seed)
    out = tmp_path / "fleet.toml"
    done = batchsync("import", str(write_accounts(tmp_path, seed, box.url, SCALED)), "-o", str(out), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sum(box.stats()["token_requests"].values()) >= 2  # the OAuth2 accounts used their token endpoint
    assert batchsync("plan", str(out), "--detailed-exitcode", "--quiet", env=env).returncode == 0


def test_an_import_is_recorded_in_the_run_history(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    seed = fleet_seed(1, 6, families=1, others=0, mappings=False, limits=FAST_LIMITS)
    box = SeedSandbox(seed, tmp_path)
    sandbox_proc.append(box)
    env = account_env(seed)
    source = write_accounts(tmp_path, seed, box.url)
    store = tmp_path / "history.sqlite3"
    done = batchsync("import", str(source), "-o", str(tmp_path / "fleet.toml"), "--history", str(store), env=env)
    assert done.returncode == 0, done.stderr
    runs = batchsync("history", "runs", "--format", "json", "--history", str(store), env=env)
    [run] = msgspec.json.decode(runs.stdout)
    assert run["command"] == "import" and run["exit_code"] == 0 and run["counts"]["unchanged"] == 6
    lost = batchsync(
        "import", str(source), "-o", str(tmp_path / "again.toml"), "--history", f"sqlite:///{source}/x", env=env
    )
    assert lost.returncode == 5 and (tmp_path / "again.toml").exists()
    assert f"--history {source}/x was not written" in lost.stderr
