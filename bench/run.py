"""``make bench``: every part, one table, written to bench/results.md with the machine's description.

``python -m bench.run [PART ...]`` runs only some parts (1 rate limits, 2 cost per
integration, 3 validation, 4 fleet scale, 5 start-up, 6 import, 7 rate limits with mappings,
8 run history)
and then does not touch results.md.
"""

from __future__ import annotations

import compileall
import importlib
import shutil
import sys
import time

from bench.common import NIGHTS, ROOT, Row, log, machine, table

# part -> (what it measures, "module" or "module:function"; the function (default run) takes
# the notes list and returns the part's rows)
PARTS: dict[str, tuple[str, str]] = {
    "1": ("rate-limited run length", "bench.ratelimit"),
    "2": ("cost per integration, limits off", "bench.overhead"),
    "3": ("inventory validation", "bench.validation"),
    "4": ("fleet scale: memory, terminal, verbosity", "bench.fleet"),
    "5": ("start-up", "bench.startup"),
    "6": ("import at the read limit", "bench.importing"),
    "7": ("rate-limited run length, mappings declared", "bench.ratelimit:run_mappings"),
    "8": ("run history: its cost, its size, history failing", "bench.history"),
}


def main(argv: list[str]) -> int:
    chosen = argv or list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        print(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    shutil.rmtree(NIGHTS, ignore_errors=True)  # the last make bench's runs' temp dirs
    # Every measured process runs with PYTHONDONTWRITEBYTECODE=1: a source edited since the
    # install compiled it would be compiled again in every run, and its cost measured.
    compileall.compile_dir(str(ROOT / "batchsync"), quiet=1)
    rows: list[Row] = []
    notes: list[str] = []
    timings: list[str] = []
    started = time.perf_counter()
    for key in chosen:
        name, target = PARTS[key]
        module, _, function = target.partition(":")
        log(f"part {key}: {name}")
        t0 = time.perf_counter()
        part_rows: list[Row] = getattr(importlib.import_module(module), function or "run")(notes)
        rows.extend(part_rows)
        timings.append(f"part {key} {time.perf_counter() - t0:.0f} s")
    total = time.perf_counter() - started
    text = table(rows)
    print(text)
    info = machine()
    desc = "\n".join(f"- {k}: {v}" for k, v in info.items())
    doc = (
        "# batchsync benchmarks\n\n"
        "Made by `make bench` (`python -m bench.run`). Each figure is batchsync against a reference "
        "measured in the same run: the ratio is batchsync ÷ reference, pair by pair, shown as the median "
        "(min–max) of the runs; absolute values are median (min–max) too. Servers run as separate "
        "processes, so the sandbox and the client each get a core.\n\n"
        f"## Machine\n\n{desc}\n- bench time: {total:.0f} s ({', '.join(timings)})\n\n"
        f"## Results\n\n{text}\n\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    )
    if not argv:
        (ROOT / "bench" / "results.md").write_text(doc)
        log("wrote bench/results.md")
    else:
        print("\n" + "\n".join(f"- {n}" for n in notes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
