"""Shared helpers of the benchmarks: inventories, sandbox processes, measured child processes, rows.

Every figure is a ratio against a reference measured in the same run; :class:`Row` holds
the paired samples and formats them as median (min-max).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import pty
import random
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchsync.wire import STATUS_CATEGORIES
from bench.gen_inventory import generate, zipf_sizes

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests/spec/integrations-v3.json"  # the official description, reduced, in-repo (see its README)
PYTHON = sys.executable  # the venv's python: `make bench` runs us with it
WORK = Path(tempfile.gettempdir()) / "batchsync-bench"  # generated inventories, reports
NIGHTS = WORK / "nights"  # each measured run's own temp dir (see night()); emptied by each make bench

LANGS = ("en-gb", "nl-nl", "de-de", "fr-fr", "es-es", "it-it", "en-us")

# Limits that never bind: the sandbox and the client both get them.
HUGE = {"writes_per_minute": 1e9, "write_burst": 1000, "reads_per_minute": 1e9}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- statistics and rows -------------------------------------------------------------


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


@dataclass
class Row:
    """One line of the table: paired samples of batchsync and of its reference.

    ``ratio`` is batchsync / reference, pair by pair; ``unit`` formats the absolute values.
    ``met`` is decided by the part that made the row (it knows the target's direction).
    """

    part: str
    measure: str
    ours: list[float]
    ref: list[float]
    ref_name: str
    target: str
    met: bool | None
    unit: str = "s"
    ratios: list[float] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if not self.ratios and self.ours and self.ref:
            self.ratios = [o / r for o, r in zip(self.ours, self.ref, strict=False) if r]

    @property
    def ratio(self) -> float:
        return med(self.ratios) if self.ratios else float("nan")


def fmt_value(xs: Sequence[float], unit: str) -> str:
    if not xs:
        return "–"
    m, lo, hi = med(xs), min(xs), max(xs)
    if len(xs) == 1:
        return fmt_one(m, unit)
    return f"{fmt_one(m, unit)} ({fmt_one(lo, unit, bare=True)}–{fmt_one(hi, unit, bare=True)})"


def fmt_one(x: float, unit: str, bare: bool = False) -> str:
    if unit == "s":
        text = f"{x:.3g}" if x < 10 else f"{x:.1f}"
    elif unit == "ms":
        text = f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"
    elif unit == "µs":
        text = f"{x:.1f}" if x < 100 else f"{x:.0f}"
    elif unit == "MB":
        text = f"{x:.0f}" if x >= 100 else f"{x:.1f}"
    elif unit == "%":
        text = f"{x:.2f}"
    else:
        text = f"{x:.3g}"
    return text if bare else f"{text} {unit}".rstrip()


def fmt_ratio(xs: Sequence[float]) -> str:
    if not xs:
        return "–"
    m, lo, hi = med(xs), min(xs), max(xs)
    if len(xs) == 1:
        return f"{m:.3f}"
    return f"{m:.3f} ({lo:.3f}–{hi:.3f})"


def table(rows: Sequence[Row]) -> str:
    head = "| measure | batchsync | reference | ratio, median (min–max) | target | met? |"
    out = [head, "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        met = "–" if r.met is None else ("yes" if r.met else "**no**")
        ref = f"{r.ref_name}: {fmt_value(r.ref, r.unit)}" if r.ref else r.ref_name
        cells = [f"{r.part}. {r.measure}", fmt_value(r.ours, r.unit), ref, fmt_ratio(r.ratios), r.target, met]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- inventories ---------------------------------------------------------------------


def _status_set(rng: random.Random, size: int, tag: str) -> list[dict[str, Any]]:
    out = []
    for k in range(size):
        langs = rng.sample(LANGS, rng.randint(1, 3))
        out.append(
            {
                "external_id": f"{tag}-{k}",
                "translations": [{"status": f"Status {tag} {k} ({lang})", "language": lang} for lang in langs],
            }
        )
    return out


def write_inventory(
    path: Path,
    n: int,
    *,
    accounts: int = 10,
    zipf: float = 0.0,
    inline_fraction: float = 0.0,
    limits: dict[str, float] | None = None,
    sets: int = 5,
    seed: int = 1,
    mappings: bool = False,
) -> Path:
    """A JSON inventory of ``n`` integrations; credentials are ``file:`` references beside it.

    Accounts get integrations in Zipf proportion (``zipf`` = 0: evenly); a fraction
    ``inline_fraction`` carries its own ``statuses``, the rest name one of ``sets`` shared sets.
    With ``mappings`` every set declares a mapping of all four categories to its first
    four statuses (so every integration on a set declares one).
    """
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    secrets = path.parent / f"{path.stem}.secrets"
    secrets.mkdir(exist_ok=True)
    names = [f"acct{k:02d}" for k in range(accounts)]
    doc: dict[str, Any] = {
        "defaults": {"base_url": "http://127.0.0.1:9"},
        "accounts": {},
        "status_sets": {f"set{k}": {"statuses": _status_set(rng, 4 + k % 4, f"s{k}")} for k in range(sets)},
        "integrations": [],
    }
    if limits:
        doc["defaults"]["limits"] = limits
    if mappings:
        for status_set in doc["status_sets"].values():
            ids = [s["external_id"] for s in status_set["statuses"]]
            status_set["mapping"] = dict(zip(STATUS_CATEGORIES, ids, strict=False))
    keys = random.Random(f"keys-{seed}")  # its own: the rest of the inventory stays as it was
    for name in names:
        # Keys as Sendcloud issues them (32 hex characters), not short alike names: what the
        # redactor costs per line depends on them (see batchsync/redact.py, the gate).
        (secrets / f"{name}.pub").write_text(f"{keys.getrandbits(128):032x}\n")
        (secrets / f"{name}.sec").write_text(f"{keys.getrandbits(128):032x}\n")
        doc["accounts"][name] = {
            "public_key": f"file:{secrets.name}/{name}.pub",
            "secret_key": f"file:{secrets.name}/{name}.sec",
        }
    owners = [name for name, c in zip(names, zipf_sizes(n, accounts, zipf), strict=True) for _ in range(c)]
    rng.shuffle(owners)
    integrations = doc["integrations"]
    for i, owner in enumerate(owners):
        entry: dict[str, Any] = {"id": 100_000 + i, "account": owner}
        if rng.random() < inline_fraction:
            entry["statuses"] = _status_set(rng, rng.randint(2, 8), f"i{i}")
        else:
            entry["status_set"] = f"set{rng.randrange(sets)}"
        integrations.append(entry)
    path.write_text(json.dumps(doc, separators=(",", ":")))
    return path


def big_inventory(path: Path, n: int, inline_fraction: float, seed: int = 7, accounts: int = 20) -> tuple[Path, str]:
    """A large inventory from ``bench.gen_inventory``; the path and the generator's name (for the notes)."""
    generate(n, path, inline_fraction=inline_fraction, seed=seed, accounts=accounts)
    return path, "bench.gen_inventory"


def with_limits(src: Path, dst: Path, limits: dict[str, float]) -> Path:
    """A copy of an inventory whose defaults and every account declare ``limits``."""
    doc = json.loads(src.read_text())
    doc.setdefault("defaults", {})["limits"] = limits
    for acc in doc.get("accounts", {}).values():
        acc.pop("limits", None)
        for key in ("public_key", "secret_key"):
            ref = acc[key]
            if ref.startswith("file:") and not os.path.isabs(ref[5:]):
                acc[key] = "file:" + str((src.parent / ref[5:]).resolve())
    dst.write_text(json.dumps(doc, separators=(",", ":")))
    return dst


# -- processes -----------------------------------------------------------------------


@dataclass
class Measured:
    returncode: int
    wall: float  # seconds, from spawn to reaped
    user: float
    system: float
    maxrss_mb: float
    stdout: str
    stderr: str


def night(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (or this process's) with a temp dir of its own: each measured run is a night
    of its own. A run records what it left of each account's budget beside its account
    locks (batchsync/engine/budget.py), and the next sandbox may get the port an earlier one had:
    a measurement must not start from another's spent budget. Nor may a run write into the
    real run history: its XDG_STATE_HOME is that temp dir too, unless ``env`` names one."""
    NIGHTS.mkdir(parents=True, exist_ok=True)
    base = os.environ if env is None else env
    temp = tempfile.mkdtemp(dir=NIGHTS)
    own = base.get("XDG_STATE_HOME")  # a part's own (not the one this process inherited)
    state = own if own and own != os.environ.get("XDG_STATE_HOME") else temp
    return {**base, "TMPDIR": temp, "XDG_STATE_HOME": state}


def run_measured(
    cmd: Sequence[str],
    timeout: float = 600.0,
    env: dict[str, str] | None = None,
    rss: bool = False,
    tty: bool = False,
) -> Measured:
    """Run ``cmd`` and reap it with ``os.wait4``: the child's own rusage, not the sum of all.

    On Linux a child's peak RSS starts at its parent's RSS at fork time (exec keeps the
    high-water mark), so with ``rss`` the command runs under ``/usr/bin/time``, itself
    tiny, and ``maxrss_mb`` is what that reports for the command alone.

    With ``tty`` the child's stdout and stderr are a pseudo-terminal (120 columns), as
    when a person runs it, drained by a thread as fast as a terminal would take it;
    ``stdout`` is then everything it wrote there.
    """
    env = night(env)
    out_path = WORK / f".out.{os.getpid()}"
    err_path = WORK / f".err.{os.getpid()}"
    rss_path = WORK / f".rss.{os.getpid()}"
    WORK.mkdir(parents=True, exist_ok=True)
    if rss:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss_path), *cmd]
    chunks: list[bytes] = []
    drain: threading.Thread | None = None
    master = -1
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            start = time.perf_counter()
            proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=ROOT, env=env)
            os.close(slave)  # the child holds the only copy: EIO on the master when it exits
            drain = threading.Thread(target=_drain, args=(master, chunks), daemon=True)
            drain.start()
        else:
            start = time.perf_counter()
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=ROOT, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if drain is not None:
        drain.join(10)
        os.close(master)
    stdout = b"".join(chunks).decode(errors="replace") if tty else out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    out_path.unlink()
    err_path.unlink()
    maxrss = usage.ru_maxrss / 1024.0
    if rss:
        maxrss = int(rss_path.read_text().split()[-1]) / 1024.0
        rss_path.unlink()
    return Measured(proc.returncode, wall, usage.ru_utime, usage.ru_stime, maxrss, stdout, stderr)


def _drain(master: int, chunks: list[bytes]) -> None:
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the last holder of the terminal's other side is gone
            return
        if not data:
            return
        chunks.append(data)


class SandboxProcess:
    """``python -m batchsync sandbox`` in its own process (its own core), seeded from an
    inventory (or, with ``source="--seed-file"``, from a seed file).

    ``server`` runs another module's sandbox instead (``python -m SERVER``, same options).
    """

    def __init__(
        self, inventory: Path, *args: str, source: str = "--inventory", server: str = "batchsync sandbox"
    ) -> None:
        cmd = [PYTHON, "-m", *server.split(), "--port", "0", source, str(inventory), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http://" not in line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"the sandbox did not start: {line!r} {err[-500:]}")
        self.url = line[line.index("http://") :].split()[0]

    def stats(self) -> dict[str, Any]:
        return self.call("/_sandbox/stats")

    def call(self, path: str, method: str = "GET") -> dict[str, Any]:
        """The JSON answer of one of the server's own endpoints."""
        req = urllib.request.Request(f"{self.url}{path}", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as resp:  # loopback only
            return json.load(resp)  # type: ignore[no-any-return]

    def cpu(self) -> float:
        """User + system CPU seconds the sandbox process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def sandbox(
    inventory: Path, *args: str, source: str = "--inventory", server: str = "batchsync sandbox"
) -> Iterator[SandboxProcess]:
    box = SandboxProcess(inventory, *args, source=source, server=server)
    try:
        yield box
    finally:
        box.stop()


def read_report(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(outcome rows, the closing summary line) of a ``--report`` file."""
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with open(path, "rb") as f:
        for line in f:
            row = json.loads(line)
            if "integration_id" in row:
                rows.append(row)
            else:
                summary = row
    return rows, summary


# -- the machine ---------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    from importlib.metadata import version

    def v(name: str) -> str:
        try:
            return version(name)
        except Exception:
            return "absent"

    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "aiohttp": v("aiohttp"),
        "msgspec": v("msgspec"),
        "anyio": v("anyio"),
        "batchsync": v("batchsync"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
