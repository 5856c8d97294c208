"""Part 5: start-up, in the editable install (.venv) and in the install a user makes (a built
wheel in a clean venv, no extras).

``batchsync --version`` and ``batchsync validate`` on a one-integration inventory against
``python -c pass`` of the same venv; and the time from spawning ``batchsync apply`` on a
small inventory to its first request reaching the server (``bench.arrivals`` stamps it),
against a bare aiohttp script that sends one GET, spawned the same way, both with
``PYTHONDONTWRITEBYTECODE=1`` (as in many containers and CI: an install that is not
byte-compiled pays for compiling on every start). Interleaved runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, WORK, Row, SandboxProcess, log, med, run_measured, sandbox, write_inventory

RUNS = 10
# First-request pairs: more of them, for a median that a shared machine's noise moves less (each
# pair's ratio varies by +-10% from one run to the next; the target has a few percent to spare).
FIRST_RUNS = 20
FIRST_TARGET = 1.0  # batchsync's first request no later than the bare one-GET script's
# `make bench` before issue 17 (bench/results.md of 9b09b42): the medians above `python -c pass`.
BEFORE_MS = {"version": 28.0, "validate": 74.0}
SMALL = 10  # integrations in the first-request inventory, one account, all in sync

BARE_FIRST = """
import asyncio, sys
import aiohttp
async def main():
    async with aiohttp.ClientSession() as session:
        async with session.get(sys.argv[1] + "/integrations") as resp:
            await resp.read()
asyncio.run(main())
"""


def wheel_venv(notes: list[str]) -> Path:
    """The install a user of the image gets, made as the Dockerfile makes it: the wheel built
    by the locked setuptools in a build venv of its own (pip from ``ensurepip``: the project's
    .venv, made by uv, has none), then installed without extras, with the locked dependencies
    and nothing else, into a fresh ``venv --without-pip``; its ``bin`` folder."""
    wheels, builder, venv = WORK / "wheel", WORK / "wheel-builder", WORK / "wheel-venv"
    for folder in (wheels, builder, venv):
        shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True, "cwd": ROOT}
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter the project's venv was made from
    pip = [str(builder / "bin/python"), "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
    only = ["--require-hashes", "--only-binary=:all:"]
    try:
        subprocess.run([base, "-m", "venv", str(builder)], **quiet)
        subprocess.run([*pip, "install", *only, "-r", str(ROOT / "requirements/build.txt")], **quiet)
        build = ["wheel", "--no-build-isolation", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)]
        subprocess.run([*pip, *build], **quiet)
        (wheel,) = wheels.glob("batchsync-*.whl")
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], **quiet)
        target = ["--python", str(venv / "bin/python"), "install"]
        subprocess.run([*pip, *target, *only, "-r", str(ROOT / "requirements/image.txt")], **quiet)
        subprocess.run([*pip, *target, "--no-deps", "--only-binary=:all:", str(wheel)], **quiet)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"building the wheel venv failed: {exc.cmd}: {exc.stderr.decode()[-800:]}") from None
    finally:
        shutil.rmtree(builder, ignore_errors=True)
    log(f"part 5: wheel {wheel.name} installed into a clean venv in {time.perf_counter() - t0:.0f}s")
    notes.append(
        "Part 5 (wheel): built by the locked setuptools (`pip wheel --no-build-isolation --no-deps` in a venv "
        "of the base interpreter of the project's venv holding requirements/build.txt), installed with "
        "requirements/image.txt's hash-checked "
        "dependencies into `python -m venv --without-pip` (no extras): the Dockerfile's steps."
    )
    return venv / "bin"


def first_request(box: SandboxProcess, cmd: list[str]) -> float:
    """Milliseconds from spawning ``cmd`` to the first request it sends reaching ``box``."""
    box.call("/_bench/reset", "POST")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    spawned = time.monotonic()  # CLOCK_MONOTONIC, as the server's stamp
    m = run_measured(cmd, timeout=60, env=env)
    if m.returncode != 0:  # the bare script's GET is refused (401, no credentials): it arrived all the same
        raise RuntimeError(f"{' '.join(cmd)} exited {m.returncode}: {m.stderr[-500:]}")
    arrived = box.call("/_bench/arrivals")
    if arrived["first"] is None:
        raise RuntimeError(f"{' '.join(cmd)}: no request reached the server")
    return (float(arrived["first"]) - spawned) * 1000


def run(notes: list[str]) -> list[Row]:
    one = write_inventory(WORK / "p5-one.json", 1, accounts=1, seed=5)
    small = write_inventory(WORK / "p5-small.json", SMALL, accounts=1, seed=5)
    installs = {"editable": Path(PYTHON).parent, "wheel": wheel_venv(notes)}
    cmds: dict[str, list[str]] = {}
    for name, bindir in installs.items():
        script = str(bindir / "batchsync")  # the console script, as a user runs it
        cmds[f"{name} pass"] = [str(bindir / "python"), "-c", "pass"]
        cmds[f"{name} version"] = [script, "--version"]
        cmds[f"{name} validate"] = [script, "validate", str(one)]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    first: dict[str, list[float]] = {f"{name} {kind}": [] for name in installs for kind in ("apply", "bare")}
    with sandbox(small, "--in-sync", "1", server="bench.arrivals") as box:
        for i in range(max(RUNS, FIRST_RUNS)):
            for key, cmd in cmds.items() if i < RUNS else ():
                m = run_measured(cmd, timeout=60)
                if m.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} exited {m.returncode}: {m.stderr[-500:]}")
                times[key].append(m.wall * 1000)
            for name, bindir in installs.items():
                apply = [str(bindir / "batchsync"), "apply", str(small), "--base-url", box.url, "--quiet"]
                bare = [str(bindir / "python"), "-c", BARE_FIRST, box.url]
                # Each side first every other time: whatever the first of two runs pays (a cache
                # the other warms, a clock that ramps up) falls on both alike.
                for kind, cmd in (("apply", apply), ("bare", bare))[:: 1 if i % 2 == 0 else -1]:
                    first[f"{name} {kind}"].append(first_request(box, cmd))
    rows = []
    extras: list[str] = []
    for name in installs:
        base = med(times[f"{name} pass"])
        for key, label in (("version", "`batchsync --version`"), ("validate", "`batchsync validate` (1 integration)")):
            samples = times[f"{name} {key}"]
            extra = med(samples) - base
            extras.append(f"{name} {key} {extra:+.0f} ms")
            rows.append(
                Row("5", f"start-up, {label}, {name}", samples, times[f"{name} pass"], "python -c pass",
                    f"≤ +{BEFORE_MS[key]:.0f} ms, as before (now {extra:+.0f} ms)", extra <= BEFORE_MS[key], unit="ms")
            )  # fmt: skip
    for name in installs:
        ours = first[f"{name} apply"]
        label = f"spawn → first request at the server, `apply` ({SMALL} integrations), {name}"
        row = Row("5", label, ours, first[f"{name} bare"], "aiohttp script, one GET", f"≤ {FIRST_TARGET:.2f}", None,
                  unit="ms")  # fmt: skip
        row.met = row.ratio <= FIRST_TARGET
        rows.append(row)
        log(f"part 5: {name}: first request {med(ours):.0f} ms, bare aiohttp {med(first[f'{name} bare']):.0f} ms")
    notes.append(
        f"Part 5: wall time of each venv's `batchsync` console script against its own `python -c pass`, {RUNS} "
        f"interleaved runs each; 'as before' is the median above `python -c pass` that `make bench` measured "
        f"before issue 17 (editable install: --version +{BEFORE_MS['version']:.0f} ms, validate "
        f"+{BEFORE_MS['validate']:.0f} ms); now {', '.join(extras)}. First request: `batchsync apply` on {SMALL} "
        f"in-sync integrations of one account, {FIRST_RUNS} interleaved pairs, from spawn (time.monotonic() before "
        f"Popen) to the arrival of its first request (the pre-flight GET /integrations) as bench.arrivals stamps "
        f"it (the same clock); the reference is a bare aiohttp script that sends one GET, spawned the same way, "
        f"in the same venv (its start-up, .pth files included, is the same); both with PYTHONDONTWRITEBYTECODE=1, "
        f"so neither writes a .pyc: each runs on what its install compiled."
    )
    return rows
