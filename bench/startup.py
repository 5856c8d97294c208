"""Part 5: start-up: ``batchsync --version`` and ``batchsync validate`` on a one-integration
inventory, against ``python -c pass`` (the venv's python), interleaved, median of many runs."""

from __future__ import annotations

from pathlib import Path

from bench.common import PYTHON, WORK, Row, log, med, run_measured, write_inventory

RUNS = 15
TARGET_MS = 150.0


def run(notes: list[str]) -> list[Row]:
    one = write_inventory(WORK / "p5-one.json", 1, accounts=1, seed=5)
    script = str(Path(PYTHON).parent / "batchsync")  # the console script, as a user runs it
    cmds = {
        "pass": [PYTHON, "-c", "pass"],
        "version": [script, "--version"],
        "validate": [script, "validate", str(one)],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(RUNS):
        for key, cmd in cmds.items():
            m = run_measured(cmd, timeout=60)
            if m.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} exited {m.returncode}: {m.stderr[-500:]}")
            times[key].append(m.wall * 1000)
    base = med(times["pass"])
    for key in ("version", "validate"):
        log(f"part 5: {key} {med(times[key]):.0f} ms, python -c pass {base:.0f} ms")
    notes.append(
        f"Part 5: wall time of the venv's `batchsync` console script against `python -c pass` with the same "
        f"interpreter, {RUNS} interleaved runs each; the target is at most {TARGET_MS:.0f} ms more (medians): "
        f"--version {med(times['version']) - base:+.0f} ms, validate {med(times['validate']) - base:+.0f} ms."
    )
    rows = []
    for key, label in (("version", "`batchsync --version`"), ("validate", "`batchsync validate` (1 integration)")):
        extra = med(times[key]) - base
        rows.append(
            Row("5", f"start-up, {label}", times[key], times["pass"], "python -c pass",
                f"≤ +{TARGET_MS:.0f} ms (now {extra:+.0f} ms)", extra <= TARGET_MS, unit="ms")
        )  # fmt: skip
    return rows
