"""Part 4: fleet scale: 100,000 integrations over 2,000 accounts, and over 20, limits off.

Peak RSS of ``batchsync apply`` (from ``/usr/bin/time``: a child of this big process would
report this process's RSS at fork time as its floor) against a bare ``python -c "import
aiohttp, msgspec, anyio"``; the same 2,000-account run on a pseudo-terminal (its stdout and
stderr, drained by a thread) against piped (to files); and ``-v`` against ``-q``, piped.
Inventories from ``bench.gen_inventory`` (Zipf sizes, shared status sets); limits off in
the inventory and the sandbox, so the client is the bottleneck; a fresh sandbox per run.
``PYTHONUNBUFFERED=1`` in every run, as in the Docker image.
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
RSS_TARGET_MB, RSS_GOAL_MB = 150.0, 100.0
RSS_20_BEFORE_MB = 110.0  # 100,000 over 20 accounts, `make bench` before issue 17 (bench/results.md of 9b09b42)
TTY_TARGET, VERBOSE_TARGET = 1.10, 1.50

# name -> (accounts, extra flags, on a terminal, rounds)
RUNS_OF: dict[str, tuple[int, tuple[str, ...], bool, int]] = {
    "quiet": (2000, ("--quiet",), False, RUNS),
    "piped": (2000, (), False, RUNS),
    "terminal": (2000, (), True, RUNS),
    "verbose": (2000, ("-v",), False, RUNS),
    "quiet-20": (20, ("--quiet",), False, SMALL_FLEET_RUNS),
}


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


def run(notes: list[str]) -> list[Row]:
    inventories: dict[int, Path] = {}
    generator = ""
    for accounts in sorted({spec[0] for spec in RUNS_OF.values()}):
        raw, generator = big_inventory(WORK / f"p4-raw-{accounts}.json", N, inline_fraction=0.0, accounts=accounts)
        inventories[accounts] = with_limits(raw, WORK / f"p4-{accounts}.json", HUGE)
    wall: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    cpu: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    rss: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    output: dict[str, list[float]] = {k: [] for k in RUNS_OF}
    base: list[float] = []
    for i in range(max(spec[3] for spec in RUNS_OF.values())):
        base.append(run_measured([PYTHON, "-c", "import aiohttp, msgspec, anyio"], rss=True).maxrss_mb)
        for name, (accounts, flags, tty, rounds) in RUNS_OF.items():
            if i >= rounds:
                continue
            m = _apply(inventories[accounts], name, flags, tty)
            wall[name].append(m.wall)
            cpu[name].append(m.user + m.system)
            rss[name].append(m.maxrss_mb)
            output[name].append((len(m.stdout.encode()) + len(m.stderr.encode())) / 1e6)
    ref = "python -c 'import aiohttp, msgspec, anyio'"
    notes.append(
        f"Part 4: `batchsync apply INVENTORY --report PATH` on {N:,} integrations made by {generator} (Zipf "
        f"sizes, shared status sets) over 2,000 and over 20 accounts, limits off, {round((1 - IN_SYNC) * 100)}% "
        f"drifted: every integration read, one in ten written; a fresh sandbox per run, PYTHONUNBUFFERED=1. "
        f"{RUNS} interleaved rounds of the 2,000-account runs, {SMALL_FLEET_RUNS} of the 20-account one. Peak "
        f"RSS of the apply process alone, from /usr/bin/time. 'terminal': stdout and stderr are one "
        f"pseudo-terminal of 120 columns (pty.openpty), drained by a thread; it took "
        f"{med(output['terminal']):.1f} MB of output, piped {med(output['piped']):.1f} MB. '-v' logs every "
        f"request ({med(output['verbose']):.0f} MB on stderr, to a file). Client CPU (user + system of the apply "
        f"process) is the figure least moved by other load on the machine; wall times of single runs this long "
        f"move by tens of percent when the machine is shared."
    )
    rows = [
        Row("4", f"peak RSS, apply {N:,} over 2,000 accounts (-q)", rss["quiet"], base, ref,
            f"< {RSS_TARGET_MB:.0f} MB (goal {RSS_GOAL_MB:.0f})", med(rss["quiet"]) < RSS_TARGET_MB, unit="MB"),
        Row("4", f"peak RSS, apply {N:,} over 20 accounts (-q)", rss["quiet-20"], base, ref,
            f"≤ {RSS_20_BEFORE_MB:.0f} MB, as before", med(rss["quiet-20"]) <= RSS_20_BEFORE_MB, unit="MB"),
        Row("4", f"apply {N:,} over 2,000 accounts, on a terminal (wall)", wall["terminal"], wall["piped"],
            "the same run, piped", f"≤ {TTY_TARGET:.2f}", None),
        Row("4", f"apply {N:,} over 2,000 accounts, on a terminal (client CPU)", cpu["terminal"], cpu["piped"],
            "the same run, piped", "(info)", None),
        Row("4", f"apply {N:,} over 2,000 accounts, -v (wall)", wall["verbose"], wall["quiet"], "the same run, -q",
            f"≤ {VERBOSE_TARGET:.2f}", None),
        Row("4", f"apply {N:,} over 2,000 accounts, -v (client CPU)", cpu["verbose"], cpu["quiet"],
            "the same run, -q", "(info)", None),
    ]  # fmt: skip
    rows[2].met = rows[2].ratio <= TTY_TARGET
    rows[4].met = rows[4].ratio <= VERBOSE_TARGET
    return rows
