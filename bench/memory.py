"""Part 4: peak RSS of ``batchsync apply`` at 10,000 and 100,000 integrations, limits off.

The child's own peak RSS comes from ``/usr/bin/time`` (a child of this big process would
report this process's RSS at fork time as its floor). The reference is a bare
``python -c "import aiohttp, msgspec, anyio"``. Whether memory per integration grows with
the run: the RSS above that reference, per
integration, at 100,000 over the same at 10,000 (≤ 1 means it does not grow).
"""

from __future__ import annotations

from pathlib import Path

from bench.common import (
    HUGE,
    PYTHON,
    WORK,
    Row,
    big_inventory,
    log,
    med,
    read_report,
    run_measured,
    sandbox,
    with_limits,
)

SIZES = (10_000, 100_000)
IN_SYNC = 0.9  # 10% drifted: every integration is read, one in ten written
RUNS = 3


def _apply(inventory: Path, i: int) -> float:
    report = WORK / f"p4-report-{i}.jsonl"
    with sandbox(inventory, "--in-sync", str(IN_SYNC)) as box:
        cmd = [PYTHON, "-m", "batchsync", "apply", str(inventory), "--base-url", box.url, "--report", str(report)]
        cmd += ["--concurrency", "64", "--quiet"]
        m = run_measured(cmd, timeout=600, rss=True)
    if m.returncode != 0:
        raise RuntimeError(f"batchsync apply exited {m.returncode}: {m.stderr[-800:]}")
    rows, summary = read_report(report)
    report.unlink()
    log(f"part 4: {len(rows)} integrations, {summary['totals']}, {m.wall:.1f}s, peak RSS {m.maxrss_mb:.0f} MB")
    return m.maxrss_mb


def run(notes: list[str]) -> list[Row]:
    inventories: dict[int, Path] = {}
    generator = ""
    for n in SIZES:
        raw, generator = big_inventory(WORK / f"p4-raw-{n}.json", n, inline_fraction=0.0)
        inventories[n] = with_limits(raw, WORK / f"p4-{n}.json", HUGE)
    base: list[float] = []
    rss: dict[int, list[float]] = {n: [] for n in SIZES}
    for i in range(RUNS):
        m = run_measured([PYTHON, "-c", "import aiohttp, msgspec, anyio"], rss=True)
        base.append(m.maxrss_mb)
        for n in SIZES:
            rss[n].append(_apply(inventories[n], i))
    small, large = SIZES
    per_small = [(r - b) * 1024 / small for r, b in zip(rss[small], base, strict=True)]
    per_large = [(r - b) * 1024 / large for r, b in zip(rss[large], base, strict=True)]
    notes.append(
        f"Part 4: `batchsync apply --report PATH --quiet` (the text format; `--format json` also keeps every "
        f"outcome for its closing document) on inventories made by {generator} (shared status sets), limits "
        f"off, {round((1 - IN_SYNC) * 100)}% drifted: every integration read, one in ten written. Peak RSS of "
        f"the apply process alone, from /usr/bin/time. Per-integration memory = (RSS − bare import RSS) / "
        f"integrations: "
        f"{med(per_small):.2f} KB at {small:,}, {med(per_large):.2f} KB at {large:,}."
    )
    rows = [
        Row("4", f"peak RSS, apply {small:,}", rss[small], base, "python -c 'import aiohttp, msgspec, anyio'",
            "(info)", None, unit="MB"),
        Row("4", f"peak RSS, apply {large:,}", rss[large], base, "python -c 'import aiohttp, msgspec, anyio'",
            "< 150 MB", med(rss[large]) < 150, unit="MB"),
        Row("4", f"KB per integration above the import, {large:,} vs {small:,}", per_large, per_small,
            f"same at {small:,}", "≤ 1 (no growth)", None, unit="KB"),
    ]  # fmt: skip
    rows[2].met = rows[2].ratio <= 1.0
    return rows
