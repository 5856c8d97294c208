"""Part 2: cost per integration with the limits off: batchsync against plain HTTP loops.

Two scenarios, each against a sandbox seeded (``--seed-file``) so that every integration
needs one write:

- **renaming** (the common night): each one's desired statuses with one name changed, so
  ``batchsync apply`` does one GET and one POST for each (nothing is removed: no reason to
  read the mapping), plus its pre-flight pages;
- **deleting**: each one's desired statuses plus one status the inventory does not have,
  so the write deletes it and batchsync first reads the mapping (the mapping guard):
  GET statuses, GET mapping, POST.

The reference, a bare aiohttp loop at the same concurrency, makes the same requests
(each account's integration list read to its end first, as batchsync's pre-flight does;
the mapping read too where the write deletes), decodes every answer it reads, and sends
pre-encoded bodies with the same Authorization header. Both sides' request counts come
from the sandbox's own counters and are printed, and must be equal, so a change in the
requests shows. Every measured process runs with ``PYTHONDONTWRITEBYTECODE=1`` (as in
many containers and CI).
httpx.AsyncClient and sequential requests loops are measured on the renaming scenario, for
scale. A fresh sandbox per run, so every run does the same work.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.common import HUGE, PYTHON, WORK, Row, log, night, read_report, run_measured, sandbox, write_inventory

N = 5000
ACCOUNTS = 20
CONCURRENCY = 64
RUNS = 5  # per scenario: batchsync and the bare loop, interleaved
COUNTED_RUNS = 2  # per scenario: the same under valgrind, instructions counted
SLOW_RUNS = 2  # httpx and requests (renaming only)
SLOW_SUBSET = 1000  # integrations the slow references do; their time is per integration
TARGET = 1.10
GONE = "bench-gone"  # the external id of the status the deleting scenario's writes remove
SCENARIOS = ("renaming", "deleting")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONDONTWRITEBYTECODE="1")


def scenario_seed(inventory: Path, out: Path, scenario: str) -> Path:
    """A sandbox seed where every integration needs one write: one name changed
    (``renaming``), or one status more than the inventory declares (``deleting``; no
    mapping points at it, so the guard lets the write through)."""
    from batchsync.inventory.loader import load
    from batchsync.sandbox.state import seed_from_inventory
    from batchsync.wire import Status, Translation

    inv = load(inventory)
    desired = {j.integration_id: j.desired.statuses for j in inv.jobs}
    seed = seed_from_inventory(inv, in_sync=1.0)
    integrations = []
    for s in seed.integrations:
        first, *rest = desired[s.id]
        if scenario == "renaming":
            name = Translation(first.translations[0].status + " (old)", first.translations[0].language)
            statuses = (Status(first.external_id, (name, *first.translations[1:])), *rest)
        else:
            statuses = (first, *rest, Status(GONE, (Translation("Discontinued", "en-gb"),)))
        integrations.append(msgspec.structs.replace(s, statuses=statuses))
    out.write_bytes(msgspec.json.encode(msgspec.structs.replace(seed, integrations=tuple(integrations))))
    return out


def _counts(stats: dict[str, Any]) -> tuple[int, int]:
    """(GETs, POSTs) the sandbox counted, all accounts."""
    requests = stats["requests"].values()
    return sum(c.get("GET", 0) for c in requests), sum(c.get("POST", 0) for c in requests)


def _reference(
    kind: str, inventory: str, seed: Path, limit: int | None, read_mapping: bool = False
) -> tuple[float, float, float, int, tuple[int, int]]:
    """(loop seconds, process wall, process CPU, integrations, (GETs, POSTs)) of one reference
    run. The aiohttp loop over every integration reads the accounts' lists first (``--list``)."""
    with sandbox(seed, source="--seed-file") as box:
        cmd = [PYTHON, "-m", "bench.clients", kind, inventory, box.url, "--concurrency", str(CONCURRENCY)]
        if limit:
            cmd += ["--limit", str(limit)]
        elif kind == "aiohttp":
            cmd += ["--list"]
        if read_mapping:
            cmd += ["--read-mapping"]
        m = run_measured(cmd, timeout=600, env=_env())
        counts = _counts(box.stats())
    if m.returncode != 0:
        raise RuntimeError(f"bench.clients {kind} exited {m.returncode}: {m.stderr[-800:]}")
    out = json.loads(m.stdout)
    return float(out["loop_s"]), m.wall, m.user + m.system, int(out["n"]), counts


def _expected_gets(scenario: str, pages: int) -> int:
    """GETs of a run that reads ``pages`` pages of the accounts' lists: one per integration,
    two where the write deletes."""
    return N * (2 if scenario == "deleting" else 1) + pages


def list_pages(inventory: str) -> int:
    """Pages of 100 in the accounts' integration lists: what a pre-flight reads (the sandbox
    lists each account's seeded integrations, the inventory's)."""
    from batchsync.inventory.loader import load

    per_account = Counter(job.account for job in load(inventory).jobs)
    return sum(math.ceil(n / 100) for n in per_account.values())


# The same runs with some of the work around the requests left out, for what each costs
# (info rows): the run history, then the text output and the pre-flight as well (against
# the same bare loop, which still reads the lists: that row has the fewer requests).
LEANER = {
    "without its history (--no-history)": ["--no-history"],
    "without history, text and pre-flight (--no-history -q --no-preflight)": ["--no-history", "-q", "--no-preflight"],
}


# The same run on asyncio's own event loop instead of uvloop (batchsync's default where it
# installs): what the compiled loop gains, an info row against the default's runs.
STANDARD_LOOP = {"BATCHSYNC_EVENT_LOOP": "asyncio"}


def _batchsync(
    inventory: str,
    seed: Path,
    scenario: str,
    i: int,
    pages: int,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> tuple[float, float, float, int, tuple[int, int]]:
    report = WORK / f"p2-report-{i}.jsonl"
    with sandbox(seed, source="--seed-file") as box:
        cmd = [PYTHON, "-m", "batchsync", "apply", inventory, "--base-url", box.url, "--report", str(report)]
        cmd += ["--concurrency", str(CONCURRENCY), *extra]  # text output (to a file), as a nightly run has it
        m = run_measured(cmd, timeout=600, env={**_env(), **(env or {})})
        gets, posts = _counts(box.stats())
    if m.returncode != 0:
        raise RuntimeError(f"batchsync apply exited {m.returncode}: {m.stderr[-800:]}")
    rows, summary = read_report(report)
    changed = summary["totals"]["changed"]
    expected = _expected_gets(scenario, 0 if "--no-preflight" in extra else pages)
    if changed != N or posts != N or gets != expected:
        raise RuntimeError(f"batchsync apply ({scenario}) changed {changed}, GET {gets} and POSTed {posts} for {N}")
    return float(summary["duration_s"]), m.wall, m.user + m.system, len(rows), (gets, posts)


def _instructions(cmd: list[str]) -> int:
    """User-space instructions ``cmd`` executed, counted by valgrind (cachegrind without its
    cache simulation): the same for the same work, whatever else the machine is doing."""
    vg = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    done = subprocess.run([*vg, *cmd], capture_output=True, text=True, timeout=1800, check=False, env=night(_env()))
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind {cmd[1:3]} exited {done.returncode}: {done.stderr[-800:]}")
    return int(found.group(1).replace(",", ""))


def _counted(inventory: str, seed: Path, scenario: str) -> tuple[list[float], list[float]]:
    """Instructions per integration of batchsync and of the bare loop, interleaved runs."""
    ours: list[float] = []
    bare: list[float] = []
    for i in range(COUNTED_RUNS):
        with sandbox(seed, source="--seed-file") as box:
            # Under valgrind a request takes tens of times longer: a timeout to match.
            cmd = [PYTHON, "-m", "batchsync", "apply", inventory, "--base-url", box.url, "--timeout", "600"]
            cmd += ["--report", str(WORK / "p2-counted.jsonl"), "--concurrency", str(CONCURRENCY)]
            ours.append(_instructions(cmd) / N)
        with sandbox(seed, source="--seed-file") as box:
            cmd = [PYTHON, "-m", "bench.clients", "aiohttp", inventory, box.url, "--concurrency", str(CONCURRENCY)]
            cmd += ["--list"]
            if scenario == "deleting":
                cmd += ["--read-mapping"]
            bare.append(_instructions(cmd) / N)
        per = f"batchsync {ours[-1] / 1e6:.3f} M, aiohttp {bare[-1] / 1e6:.3f} M"
        log(f"part 2 {scenario} counted run {i + 1}: {per} instructions per integration")
    return ours, bare


def _scenario(inventory: str, scenario: str, pages: int, notes: list[str]) -> list[Row]:
    seed = scenario_seed(Path(inventory), WORK / f"p2-seed-{scenario}.json", scenario)
    ours: dict[str, list[float]] = {"loop": [], "wall": [], "cpu": []}
    bare: dict[str, list[float]] = {"loop": [], "wall": [], "cpu": []}
    leaner: dict[str, list[float]] = {what: [] for what in LEANER}  # client CPU ms per integration
    standard: list[float] = []  # the same, on asyncio's loop
    requests: dict[str, set[tuple[int, int]]] = {"batchsync": set(), "aiohttp": set()}
    for i in range(RUNS):
        for what, flags in LEANER.items():
            _, _, cpu, n, _ = _batchsync(inventory, seed, scenario, i, pages, flags)
            leaner[what].append(cpu / n * 1000)
            log(f"part 2 {scenario} run {i + 1} batchsync {' '.join(flags)}: cpu {cpu:.2f}s for {n}")
        _, _, cpu, n, _ = _batchsync(inventory, seed, scenario, i, pages, env=STANDARD_LOOP)
        standard.append(cpu / n * 1000)
        log(f"part 2 {scenario} run {i + 1} batchsync on asyncio's loop: cpu {cpu:.2f}s for {n}")
        for name, samples in (("batchsync", ours), ("aiohttp", bare)):
            if name == "batchsync":
                loop, wall, cpu, n, counts = _batchsync(inventory, seed, scenario, i, pages)
            else:
                loop, wall, cpu, n, counts = _reference("aiohttp", inventory, seed, None, scenario == "deleting")
                if counts != (_expected_gets(scenario, pages), N):
                    raise RuntimeError(f"the bare loop ({scenario}) made {counts[0]} GETs and {counts[1]} POSTs")
            requests[name].add(counts)
            samples["loop"].append(loop / n * 1000)
            samples["wall"].append(wall / n * 1000)
            samples["cpu"].append(cpu / n * 1000)
            log(
                f"part 2 {scenario} run {i + 1} {name}: loop {loop:.2f}s, wall {wall:.2f}s, cpu {cpu:.2f}s "
                f"for {n}; GET {counts[0]}, POST {counts[1]}"
            )
    said = {
        name: " or ".join(f"{g:,} GET + {p:,} POST = {g + p:,}" for g, p in sorted(seen))
        for name, seen in requests.items()
    }
    log(f"part 2 {scenario}: requests per run: batchsync {said['batchsync']}; bare loop {said['aiohttp']}")
    notes.append(
        f"Part 2, {scenario}: requests per run, as the sandbox counted them: batchsync {said['batchsync']} "
        f"(its pre-flight pages included); the bare loop {said['aiohttp']} (the same list pages first)."
    )
    bare_name = f"bare aiohttp loop, same requests ({scenario})"
    rows = [
        Row("2", f"{scenario}: apply, ms per integration (engine)", ours["loop"], bare["loop"], bare_name,
            "(info)", None, unit="ms"),
        Row("2", f"{scenario}: apply, ms per integration (whole process)", ours["wall"], bare["wall"], bare_name,
            "(info)", None, unit="ms"),
        Row("2", f"{scenario}: apply, client CPU ms per integration", ours["cpu"], bare["cpu"], bare_name,
            f"≤ {TARGET:.2f}", None, unit="ms"),
    ]  # fmt: skip
    rows[2].met = rows[2].ratio <= TARGET
    for what, cpus in leaner.items():
        rows.append(Row("2", f"{scenario}: apply {what}, client CPU ms per integration", cpus, bare["cpu"],
                        bare_name, "(info)", None, unit="ms"))  # fmt: skip
    rows.append(Row("2", f"{scenario}: apply on asyncio's loop (BATCHSYNC_EVENT_LOOP=asyncio), client CPU ms per "
                    "integration", standard, ours["cpu"], "the same apply on uvloop (the default)", "(info)", None,
                    unit="ms"))  # fmt: skip
    if shutil.which("valgrind"):
        ours_i, bare_i = _counted(inventory, seed, scenario)
        counted = Row("2", f"{scenario}: apply, client instructions per integration (valgrind)",
                      [x / 1e6 for x in ours_i], [x / 1e6 for x in bare_i], bare_name, f"≤ {TARGET:.2f}", None,
                      unit="M")  # fmt: skip
        counted.met = counted.ratio <= TARGET
        rows.append(counted)
    return rows


def run(notes: list[str]) -> list[Row]:
    inventory = str(write_inventory(WORK / "p2.json", N, accounts=ACCOUNTS, limits=HUGE, seed=2))
    pages = list_pages(inventory)  # the same inventory for both scenarios
    rows: list[Row] = []
    for scenario in SCENARIOS:
        rows.extend(_scenario(inventory, scenario, pages, notes))
    renaming_loop = rows[0].ours
    renaming_seed = WORK / "p2-seed-renaming.json"
    slow: dict[str, list[float]] = {"httpx": [], "requests": []}
    for i in range(SLOW_RUNS):
        for kind in slow:
            loop, _, _, n, _ = _reference(kind, inventory, renaming_seed, SLOW_SUBSET)
            slow[kind].append(loop / n * 1000)
            log(f"part 2 run {i + 1} {kind}: loop {loop:.2f}s for {n}")
    for kind, label in (("httpx", "httpx.AsyncClient loop"), ("requests", "sequential requests")):
        row = Row("2", "renaming: apply, ms per integration (engine)", renaming_loop, slow[kind],
                  f"{label}, {SLOW_SUBSET} integrations", "< 1", None, unit="ms")  # fmt: skip
        row.met = row.ratio < 1.0
        rows.append(row)
    notes.append(
        f"Part 2: {N:,} integrations over {ACCOUNTS} accounts, every one needing a write, limits off (sandbox "
        f"and inventory), concurrency {CONCURRENCY}, a fresh sandbox per run, {RUNS} interleaved runs per "
        f"scenario, every process with PYTHONDONTWRITEBYTECODE=1. 'renaming': one status name changed (GET, "
        f"POST); 'deleting': one status more on the server than in the inventory (GET, GET mapping, POST: the "
        f"mapping guard reads the mapping before a write that deletes). batchsync writes its text output (a "
        f"diff per integration) to a file and a --report; the bare aiohttp loop (asyncio's loop, as a script "
        f"has it) makes the same requests (each account's integration list read first, page by page, as the "
        f"pre-flight reads it) and decodes every answer (msgspec.json.decode). Times are per "
        f"integration. 'engine' is the report's duration_s (after start-up and loading), the loop's own time "
        f"likewise; 'process' is the whole process, start-up and loading included; 'CPU' is the client "
        f"process's user+system time. httpx and requests did the first {SLOW_SUBSET} integrations of the "
        f"renaming scenario only, {SLOW_RUNS} runs, compared per integration. batchsync runs on uvloop "
        f"(its default where uvloop installs); the 'asyncio's loop' rows are the same apply with "
        f"BATCHSYNC_EVENT_LOOP=asyncio, against the default's runs of the same round: above 1, what uvloop saves."
    )
    if shutil.which("valgrind"):
        notes.append(
            f"Part 2, instructions: the same runs under valgrind (cachegrind, no cache simulation), "
            f"{COUNTED_RUNS} of each per scenario, whole process: the count of user-space instructions does not "
            "move with other load on the machine the way CPU seconds do, so it is the steadiest measure of the "
            "client's own cost. Under valgrind the client runs tens of times slower than the sandbox, so the "
            "event loop batches answers differently than in a normal run."
        )
    else:
        notes.append("Part 2, instructions: valgrind is not installed here; those rows are left out.")
    return rows
