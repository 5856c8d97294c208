"""Part 1: how close a rate-limited run comes to the lower bound set by the busiest account.

3,000 integrations over 30 Zipf-skewed accounts (s = 1), 20% drifted, against a sandbox
that enforces Sendcloud's documented limits on a clock sped up K times; the inventory
declares the same scaled limits, so client and server agree. The bound of one account is
``max((writes - burst) / write_rate, (reads - burst) / read_rate)``; the run's is the max
over accounts, with writes = the account's changed integrations (from the report).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from batchsync.limits import SAFETY
from bench.common import PYTHON, WORK, Row, log, read_report, run_measured, sandbox, with_limits, write_inventory

N = 3000
ACCOUNTS = 30
ZIPF = 1.0
IN_SYNC = 0.8
SEED = 11
WRITES, BURST, READS = 100.0, 15, 1000.0  # Sendcloud's documented defaults, per minute
TARGET_BOUND_S = 17.5
RUNS = 3


def bound(writes: Counter[str], reads: Counter[str], k: float) -> float:
    """Seconds the busiest account needs at least, at ``k`` times the documented limits."""
    w_rate, r_rate = WRITES * k / 60.0, READS * k / 60.0
    return max(
        max(max(0, writes[a] - BURST) / w_rate, max(0, reads[a] - BURST) / r_rate) for a in set(writes) | set(reads)
    )


def predicted_counts(inventory: Path) -> tuple[Counter[str], Counter[str]]:
    """(drifted, all) integrations per account, as the sandbox will seed them."""
    from batchsync.inventory import load
    from batchsync.sandbox.state import seed_from_inventory

    inv = load(inventory)
    desired = {j.integration_id: j.desired.statuses for j in inv.jobs}
    seed = seed_from_inventory(inv, in_sync=IN_SYNC, seed=SEED)
    writes: Counter[str] = Counter(s.account for s in seed.integrations if s.statuses != desired[s.id])
    reads: Counter[str] = Counter(j.account for j in inv.jobs)
    return writes, reads


def run(notes: list[str]) -> list[Row]:
    base = write_inventory(WORK / "p1-base.json", N, accounts=ACCOUNTS, zipf=ZIPF, sets=4, seed=SEED)
    writes, reads = predicted_counts(base)
    k = round(bound(writes, reads, 1.0) / TARGET_BOUND_S, 2)
    limits = {"writes_per_minute": WRITES * k, "write_burst": BURST, "reads_per_minute": READS * k}
    inventory = with_limits(base, WORK / "p1.json", limits)
    busiest = max(writes, key=lambda a: writes[a])
    log(
        f"part 1: K={k}, busiest account {busiest}: {reads[busiest]} reads, {writes[busiest]} writes; "
        f"predicted bound {bound(writes, reads, k):.1f}s"
    )
    walls: list[float] = []
    engines: list[float] = []
    bounds: list[float] = []
    shares: list[float] = []
    for i in range(RUNS):
        report = WORK / f"p1-report-{i}.jsonl"
        server_args = ["--in-sync", str(IN_SYNC), "--seed", str(SEED), "--time-scale", str(k)]
        server_args += ["--writes-per-minute", str(WRITES), "--write-burst", str(BURST)]
        server_args += ["--reads-per-minute", str(READS)]
        with sandbox(inventory, *server_args) as box:
            cmd = [PYTHON, "-m", "batchsync", "apply", str(inventory), "--base-url", box.url]
            cmd += ["--report", str(report), "--format", "json", "--concurrency", "64"]
            m = run_measured(cmd, timeout=300)
            stats = box.stats()
        if m.returncode != 0:
            raise RuntimeError(f"batchsync apply exited {m.returncode}: {m.stderr[-800:]}")
        rows, summary = read_report(report)
        changed: Counter[str] = Counter(r["account"] for r in rows if r["result"] == "changed")
        read: Counter[str] = Counter(r["account"] for r in rows)
        b = bound(changed, read, k)
        total = sum(c["GET"] + c["POST"] for c in stats["requests"].values())
        throttled = sum(stats["throttled"].values())
        walls.append(m.wall)
        engines.append(float(summary["duration_s"]))
        bounds.append(b)
        shares.append(100.0 * throttled / total if total else 0.0)
        log(
            f"part 1 run {i + 1}: wall {m.wall:.2f}s, engine {summary['duration_s']:.2f}s, bound {b:.2f}s, "
            f"{throttled}/{total} throttled, totals {summary['totals']}"
        )
    notes.append(
        f"Part 1: {N} integrations over {ACCOUNTS} accounts (Zipf s={ZIPF}), {round((1 - IN_SYNC) * 100)}% drifted; "
        f"the sandbox's clock runs K={k} times faster (writes {WRITES:g}/min, burst {BURST}, reads {READS:g}/min "
        f"scaled by K) and the inventory declares the same scaled limits. Bound = busiest account's "
        f"max((writes − burst)/write rate, (reads − burst)/read rate) = {min(bounds):.1f}–{max(bounds):.1f} s "
        f"(busiest: {busiest}, {reads[busiest]} integrations). The client aims {(1 - SAFETY) * 100:g}% under "
        f"the declared rate, so {1 / SAFETY:.2f} is its floor."
    )
    rows = [
        Row("1", "rate-limited apply, whole process (wall)", walls, bounds, "bound", "≤ 1.05", None),
        Row("1", "rate-limited apply, engine (duration_s)", engines, bounds, "bound", "≤ 1.05", None),
        Row("1", "429 share of all requests", shares, [], "sandbox stats: throttled / requests", "< 1%",
            max(shares) < 1.0, unit="%"),
    ]  # fmt: skip
    for row in rows[:2]:
        row.met = row.ratio <= 1.05
    return rows
