"""Part 4: fleet scale: 100,000 integrations over 2,000 accounts, and over 20, limits off.

Peak RSS of ``batchsync validate`` and ``batchsync apply -q --report`` (from
``/usr/bin/time``: a child of this big process would report this process's RSS at fork time
as its floor) against a bare ``python -c "import aiohttp, msgspec, anyio"``; the same
2,000-account run on a pseudo-terminal (its stdout and stderr, drained by a thread) against
piped (to files); and ``-v`` against ``-q``, piped. Inventories from ``bench.gen_inventory``
(Zipf sizes): over 2,000 accounts with 20% of the integrations on their own status lists
(what a fleet of shops with their own lists looks like, and what makes memory grow), and,
for the figures of before, over 2,000 and over 20 accounts on shared status sets alone.
Limits off in the inventory and the sandbox, so the client is the bottleneck; a fresh
sandbox per run. ``PYTHONUNBUFFERED=1`` in every run, as in the Docker image. Then one
fleet twice as large over 200 accounts (20% on their own lists): ``plan --sandbox -q``
with ``--html`` and ``--junit`` (both written as outcomes arrive) against the same plan
without them; one run each (peak RSS hardly varies), the sandbox inside the process.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.common import (
    HUGE,
    PYTHON,
    WORK,
    Measured,
    Row,
    big_inventory,
    log,
    med,
    read_report,
    run_measured,
    sandbox,
    with_limits,
)

N = 100_000
IN_SYNC = 0.9  # 10% drifted: every integration read, one in ten written
RUNS = 2  # rounds of the 2,000-account runs (-q, piped, terminal, -v), interleaved
SMALL_FLEET_RUNS = 1  # of the 20-account run: its figure is peak RSS, which hardly varies
OWN_LISTS = 0.2  # the fraction of integrations on their own status lists, in the 2,000-account fleet
RSS_TARGET_MB, VALIDATE_TARGET_MB = 150.0, 100.0
RSS_SHARED_BEFORE_MB = 112.0  # 100,000 over 2,000 accounts on shared sets: bench/results.md of d98a854
RSS_20_BEFORE_MB = 110.0  # 100,000 over 20 accounts, `make bench` before issue 17 (bench/results.md of 9b09b42)
TTY_TARGET, VERBOSE_TARGET = 1.10, 1.50
BIG_N, BIG_ACCOUNTS = 200_000, 200  # plan --sandbox with --html --junit: one run each
BIG_TARGET_MB = 300.0

# inventory name -> (accounts, fraction on their own status lists)
FLEETS: dict[str, tuple[int, float]] = {"own": (2000, OWN_LISTS), "shared": (2000, 0.0), "shared-20": (20, 0.0)}

# name -> (inventory, extra flags, on a terminal, rounds); flags starting with "validate" run that verb
RUNS_OF: dict[str, tuple[str, tuple[str, ...], bool, int]] = {
    "validate": ("own", ("validate",), False, RUNS),
    "quiet": ("own", ("--quiet",), False, RUNS),
    "piped": ("own", (), False, RUNS),
    "terminal": ("own", (), True, RUNS),
    "verbose": ("own", ("-v",), False, RUNS),
    "validate-shared": ("shared", ("validate",), False, SMALL_FLEET_RUNS),
    "quiet-shared": ("shared", ("--quiet",), False, SMALL_FLEET_RUNS),
    "quiet-20": ("shared-20", ("--quiet",), False, SMALL_FLEET_RUNS),
}


def _validate(inventory: Path, name: str) -> Measured:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    m = run_measured([PYTHON, "-m", "batchsync", "validate", str(inventory)], timeout=900, env=env, rss=True)
    if m.returncode != 0:
        raise RuntimeError(f"batchsync validate ({name}) exited {m.returncode}: {(m.stderr or m.stdout)[-800:]}")
    log(f"part 4 {name}: {m.wall:.1f}s, CPU {m.user + m.system:.1f}s, peak RSS {m.maxrss_mb:.0f} MB")
    return m


def _apply(inventory: Path, name: str, flags: tuple[str, ...], tty: bool) -> Measured:
    report = WORK / f"p4-report-{name}.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with sandbox(inventory, "--in-sync", str(IN_SYNC)) as box:
        cmd = [PYTHON, "-m", "batchsync", "apply", str(inventory), "--base-url", box.url, "--report", str(report)]
        m = run_measured([*cmd, *flags], timeout=900, env=env, rss=True, tty=tty)
    if m.returncode != 0:
        raise RuntimeError(f"batchsync apply ({name}) exited {m.returncode}: {(m.stderr or m.stdout)[-800:]}")
    rows, summary = read_report(report)
    report.unlink()
    if len(rows) != N:
        raise RuntimeError(f"batchsync apply ({name}) reported {len(rows)} outcomes, expected {N}")
    out = len(m.stdout.encode()) + len(m.stderr.encode())
    log(
        f"part 4 {name}: {summary['totals']}, {m.wall:.1f}s, CPU {m.user + m.system:.1f}s, "
        f"peak RSS {m.maxrss_mb:.0f} MB, {out / 1e6:.1f} MB of output"
    )
    return m


def _plan_big(inventory: Path, name: str, outputs: bool) -> Measured:
    """``plan --sandbox -q`` on the big fleet, with ``--html`` and ``--junit`` or without."""
    page, junit = WORK / "p4-big.html", WORK / "p4-big.xml"
    flags = ["--html", str(page), "--junit", str(junit)] if outputs else []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [PYTHON, "-m", "batchsync", "plan", str(inventory), "--sandbox", "-q", *flags]
    m = run_measured(cmd, timeout=1800, env=env, rss=True)
    if m.returncode != 0:
        raise RuntimeError(f"batchsync plan ({name}) exited {m.returncode}: {(m.stderr or m.stdout)[-800:]}")
    if outputs:
        cases = junit.read_bytes().count(b"<testcase ")
        if cases != BIG_N or not page.stat().st_size:
            raise RuntimeError(f"batchsync plan ({name}) wrote {cases} test cases, expected {BIG_N}, and the page")
        page.unlink()
        junit.unlink()
    log(f"part 4 {name}: {m.wall:.1f}s, CPU {m.user + m.system:.1f}s, peak RSS {m.maxrss_mb:.0f} MB")
    return m


def run(notes: list[str]) -> list[Row]:
    inventories: dict[str, Path] = {}
    generator = ""
    for fleet, (accounts, own) in FLEETS.items():
        raw, generator = big_inventory(WORK / f"p4-raw-{fleet}.json", N, inline_fraction=own, accounts=accounts)
        inventories[fleet] = with_limits(raw, WORK / f"p4-{fleet}.json", HUGE)
    wall: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    cpu: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    rss: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    output: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    base: list[float] = []
    for i in range(max(spec[3] for spec in RUNS_OF.values())):
        base.append(run_measured([PYTHON, "-c", "import aiohttp, msgspec, anyio"], rss=True).maxrss_mb)
        for name, (fleet, flags, tty, rounds) in RUNS_OF.items():
            if i >= rounds:
                continue
            if flags == ("validate",):
                m = _validate(inventories[fleet], name)
            else:
                m = _apply(inventories[fleet], name, flags, tty)
            wall[name].append(m.wall)
            cpu[name].append(m.user + m.system)
            rss[name].append(m.maxrss_mb)
            output[name].append((len(m.stdout.encode()) + len(m.stderr.encode())) / 1e6)
    raw, _ = big_inventory(WORK / "p4-raw-big.json", BIG_N, inline_fraction=OWN_LISTS, accounts=BIG_ACCOUNTS)
    big = with_limits(raw, WORK / "p4-big.json", HUGE)
    plain = _plan_big(big, "plan-big", outputs=False).maxrss_mb
    outputs = _plan_big(big, "plan-big-html-junit", outputs=True).maxrss_mb
    ref = "python -c 'import aiohttp, msgspec, anyio'"
    notes.append(
        f"Part 4: `batchsync validate INVENTORY` and `batchsync apply INVENTORY --report PATH` on {N:,} "
        f"integrations made by {generator} (Zipf sizes) over 2,000 accounts with {OWN_LISTS:.0%} of them on their "
        f"own status lists (the rest on shared sets, 5% with a per-shop override), and over 2,000 and 20 accounts "
        f"on shared sets alone (the fleets of before), limits off, {round((1 - IN_SYNC) * 100)}% "
        f"drifted: every integration read, one in ten written; a fresh sandbox per run, PYTHONUNBUFFERED=1. "
        f"{RUNS} interleaved rounds of the runs on own lists, {SMALL_FLEET_RUNS} of those on shared sets. Peak "
        f"RSS of the validate or apply process alone, from /usr/bin/time. 'terminal': stdout and stderr are one "
        f"pseudo-terminal of 120 columns (pty.openpty), drained by a thread; it took "
        f"{med(output['terminal']):.1f} MB of output, piped {med(output['piped']):.1f} MB. '-v' logs every "
        f"request ({med(output['verbose']):.0f} MB on stderr, to a file). Client CPU (user + system of the apply "
        f"process) is the figure least moved by other load on the machine; wall times of single runs this long "
        f"move by tens of percent when the machine is shared. The {BIG_N:,}-integration fleet over {BIG_ACCOUNTS} "
        f"accounts ({OWN_LISTS:.0%} on own lists): `batchsync plan INVENTORY --sandbox -q` (the sandbox inside "
        f"the process, half the integrations in sync), with `--html PATH --junit PATH` and without, one run each."
    )
    own = f"{N:,} over 2,000 accounts, {OWN_LISTS:.0%} on own lists"
    big_own = f"{BIG_N:,} over {BIG_ACCOUNTS} accounts, {OWN_LISTS:.0%} on own lists"
    rows = [
        Row("4", f"peak RSS, validate {own}", rss["validate"], base, ref, f"< {VALIDATE_TARGET_MB:.0f} MB",
            med(rss["validate"]) < VALIDATE_TARGET_MB, unit="MB"),
        Row("4", f"peak RSS, apply -q --report {own}", rss["quiet"], base, ref, f"< {RSS_TARGET_MB:.0f} MB",
            med(rss["quiet"]) < RSS_TARGET_MB, unit="MB"),
        Row("4", f"peak RSS, validate {N:,} over 2,000 accounts, shared sets", rss["validate-shared"], base, ref,
            "(info)", None, unit="MB"),
        Row("4", f"peak RSS, apply -q --report {N:,} over 2,000 accounts, shared sets", rss["quiet-shared"], base,
            ref, f"≤ {RSS_SHARED_BEFORE_MB:.0f} MB, as before", med(rss["quiet-shared"]) <= RSS_SHARED_BEFORE_MB,
            unit="MB"),
        Row("4", f"peak RSS, apply -q --report {N:,} over 20 accounts, shared sets", rss["quiet-20"], base, ref,
            f"≤ {RSS_20_BEFORE_MB:.0f} MB, as before", med(rss["quiet-20"]) <= RSS_20_BEFORE_MB, unit="MB"),
        Row("4", f"peak RSS, plan --sandbox -q --html --junit {big_own}", [outputs], [plain],
            "the same plan without --html --junit", f"< {BIG_TARGET_MB:.0f} MB", outputs < BIG_TARGET_MB, unit="MB"),
        Row("4", f"peak RSS, plan --sandbox -q {big_own}", [plain], base, ref, "(info)", None, unit="MB"),
        Row("4", f"apply {own}, on a terminal (wall)", wall["terminal"], wall["piped"],
            "the same run, piped", f"≤ {TTY_TARGET:.2f}", None),
        Row("4", f"apply {own}, on a terminal (client CPU)", cpu["terminal"], cpu["piped"],
            "the same run, piped", "(info)", None),
        Row("4", f"apply {own}, -v (wall)", wall["verbose"], wall["quiet"], "the same run, -q",
            f"≤ {VERBOSE_TARGET:.2f}", None),
        Row("4", f"apply {own}, -v (client CPU)", cpu["verbose"], cpu["quiet"],
            "the same run, -q", "(info)", None),
    ]  # fmt: skip
    rows[7].met = rows[7].ratio <= TTY_TARGET
    rows[9].met = rows[9].ratio <= VERBOSE_TARGET
    return rows
