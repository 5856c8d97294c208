"""Prometheus textfile metrics (``--metrics``): the last run of each command, its exit code,
its last success, written atomically so that node_exporter reads the previous file or this one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from batchsync.files import atomic_write
from batchsync.outcome import RESULTS, Outcome, Summary
from batchsync.outputs.sink import End, Lost, Start
from batchsync.text import escape_controls

# -- JUnit -------------------------------------------------------------------------------


# -- Prometheus textfile -----------------------------------------------------------------
#
# Every sample carries a ``command`` label (plan, apply): both may write one file, and
# each keeps the other's series (the old file is read, the other command's samples
# kept, the whole written atomically). Every family is a gauge: each describes the last
# run, not a count since the process started, so none ends in ``_total``.


def _escape_label(value: str) -> str:
    """A label value as the text format writes it; a control or bidi character (an account
    name from a merged report) is spelled out first, so the file holds none raw."""
    value = "\n".join(map(escape_controls, value.split("\n")))  # a line feed has an escape of its own
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")
_META = re.compile(r"^#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s(.*))?$")


def _parse_labels(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None:
            return None
        out[m.group(1)] = _UNESCAPE.sub(lambda u: "\n" if u.group(1) == "n" else u.group(1), m.group(2))
        pos = m.end()
    return out


class _Family:
    __slots__ = ("help", "kind", "samples")

    def __init__(self, help_text: str = "", kind: str = "gauge") -> None:
        self.help = help_text  # as written in the file: escaped
        self.kind = kind
        self.samples: list[tuple[dict[str, str], str]] = []  # (labels, value as written)


def _parse(text: str) -> dict[str, _Family]:
    """The families of a textfile, in order; lines that do not parse are dropped."""
    families: dict[str, _Family] = {}
    for line in text.splitlines():
        meta = _META.match(line)
        if meta is not None:
            family = families.setdefault(meta.group(2), _Family())
            if meta.group(1) == "HELP":
                family.help = meta.group(3) or ""
            else:
                family.kind = (meta.group(3) or "untyped").strip()
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = _parse_labels(m.group(2) or "")
        try:
            float(m.group(3))
        except ValueError:
            continue
        if labels is not None:
            families.setdefault(m.group(1), _Family()).samples.append((labels, m.group(3)))
    return families


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _read(path: str) -> dict[str, _Family]:
    return _parse(_read_text(path))


# Which inventory file each ``inventory`` label stands for, in the file itself (a comment:
# the collector ignores it). The label is the file's name without its extension, and two
# inventories of one name in two folders (clients/eu/prod.toml, clients/us/prod.json)
# would write each other's series: one client's failing night read as the other's success.
_OWNER = re.compile(r'^# batchsync inventory ("(?:[^"\\]|\\.)*") is ("(?:[^"\\]|\\.)*")$')


class MetricsClash(OSError):
    """The file holds the series of another inventory file of the same name."""

    def __init__(self, path: str, label: str, owner: str) -> None:
        super().__init__(
            errno.EEXIST,
            f"it holds the series of inventory {label!r} of {owner}, another inventory file of the same name: "
            "give each its own --metrics file",
            path,
        )


def _owners(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _OWNER.match(line) if line.startswith("# batchsync inventory ") else None
        if m is not None:
            try:
                label, owner = json.loads(m.group(1)), json.loads(m.group(2))
            except ValueError:
                continue
            if isinstance(label, str) and isinstance(owner, str):
                found[label] = owner
    return found


def _read_claimed(
    path: str, labels: Mapping[str, str] | None, source: str | None
) -> tuple[dict[str, _Family], dict[str, str]]:
    """The file's families, and its owners with this run's inventory file (``source``,
    made absolute: the path a release's ``current`` link gives stays the same from one
    release to the next) claiming its label; MetricsClash when another inventory file has
    it. The same file by another path (a link, a working directory inside one) is the same
    inventory; an owner that is no longer there (moved, removed) hands its label over."""
    text = _read_text(path)
    owners = _owners(text)
    label = (labels or {}).get("inventory")
    if label is not None and source:
        source = os.path.abspath(source)
        owner = owners.setdefault(label, source)
        if owner != source:
            try:
                same = os.path.samefile(owner, source)
            except OSError:  # the owner is gone (or this one is): the label is this one's now
                same = not os.path.exists(owner)
            if not same:
                raise MetricsClash(path, label, owner)
            owners[label] = source
    return _parse(text), owners


def read_metric(path: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of sample ``name`` whose labels include ``labels`` in a textfile, or None
    (no file, unreadable, no such sample, garbage)."""
    family = _read(path).get(name)
    want = dict(labels or {})
    for got, value in family.samples if family is not None else ():
        if all(got.get(k) == v for k, v in want.items()):
            return float(value)
    return None


class _Exposition:
    def __init__(self, const: Mapping[str, str]) -> None:
        self.const = dict(const)
        self.families: dict[str, _Family] = {}
        self._current = _Family()

    def family(self, name: str, help_text: str, kind: str = "gauge") -> None:
        help_escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self._current = self.families.setdefault(name, _Family(help_escaped, kind))

    def sample(self, value: float, **labels: str) -> None:
        self._current.samples.append(({**self.const, **labels}, _number(value)))


def _render(families: Mapping[str, _Family], owners: Mapping[str, str] | None = None) -> str:
    lines = [f"# batchsync inventory {json.dumps(k)} is {json.dumps(v)}" for k, v in sorted((owners or {}).items())]
    for name, family in families.items():
        if not family.samples:
            continue
        if family.help:
            lines.append(f"# HELP {name} {family.help}")
        lines.append(f"# TYPE {name} {family.kind}")
        lines.extend(f"{name}{_labels(labels)} {value}" for labels, value in family.samples)
    return "\n".join(lines) + "\n"


def _ours(labels: Mapping[str, str], identity: Mapping[str, str]) -> bool:
    if "inventory" in identity and "inventory" not in labels:
        # A series of a batchsync that wrote no inventory label: this command's, replaced.
        return all(labels.get(k) == v for k, v in identity.items() if k != "inventory")
    return all(labels.get(k) == v for k, v in identity.items())


def _merge(old: Mapping[str, _Family], new: Mapping[str, _Family], identity: Mapping[str, str]) -> dict[str, _Family]:
    """``new``'s families, plus every old sample of another command (or other constant
    labels) kept. Old samples without a ``command`` label (an older batchsync's) go."""
    out: dict[str, _Family] = {}
    for name, family in new.items():
        merged = out[name] = _Family(family.help, family.kind)
        kept = old.get(name)
        if kept is not None:
            merged.samples.extend(s for s in kept.samples if "command" in s[0] and not _ours(s[0], identity))
        merged.samples.extend(family.samples)
    for name, family in old.items():
        if name in out:
            continue
        kept_samples = [s for s in family.samples if "command" in s[0] and not _ours(s[0], identity)]
        if kept_samples:
            out[name] = _Family(family.help, family.kind)
            out[name].samples = kept_samples
    return out


LOCK_WAIT_S = 10.0  # for the metrics directory's lock, held by another run for a read and a write


@contextlib.contextmanager
def _exclusive(path: str) -> Iterator[None]:
    """Plan and apply finishing together: one reads, merges and replaces the file, then the
    other; otherwise the second would write back the first one's old series. The lock is
    on the directory (the file itself is replaced, and a lock file would litter the
    collector's directory). Best effort: where it cannot be taken, the write goes on; nor
    does it wait for it past LOCK_WAIT_S (another batchsync holds it for a read and a small
    write; anything holding it longer, an operator's ``flock DIR ...``, a process hung on a
    network disk, must not keep a finished run, its inventory's lock and the next night's
    run waiting for ever)."""
    import time

    try:
        fd = os.open(Path(path).parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break  # written without it: a merge may miss a series a run wrote meanwhile
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except OSError:
                break
        yield
    finally:
        os.close(fd)


def metrics_families(
    summary: Summary,
    command: str,
    finished_at: float,
    last_success: float,
    exit_code: int | None = None,
    labels: Mapping[str, str] | None = None,
    health: Mapping[tuple[str, int], int] | None = None,
) -> dict[str, _Family]:
    """The families of one run; :func:`write_metrics` decides ``last_success`` and writes them.
    ``health``: per (account, integration) its exception logs (``--with-health``; an
    integration whose logs could not be read is left out)."""
    success = is_success(summary)
    m = _Exposition({**(labels or {}), "command": command})
    accounts = sorted(summary.accounts)
    m.family("batchsync_integrations", "Integrations per account and result in the last run.")
    for account in accounts:
        stats = summary.accounts[account]
        for result in RESULTS:
            m.sample(getattr(stats, result), account=account, result=result)
    m.family("batchsync_run_integrations", "Integrations per result in the last run, over all accounts.")
    for result in RESULTS:
        m.sample(summary.total(result), result=result)
    m.family("batchsync_throttled_responses", "Responses 429 (Too Many Requests) per account in the last run.")
    for account in accounts:
        m.sample(summary.accounts[account].throttled, account=account)
    m.family(
        "batchsync_account_rate_per_minute",
        "Requests per minute each account's meter ran at by the end of the last run: the declared rate, "
        "or the lower one 429s brought it to.",
    )
    for account in accounts:
        stats = summary.accounts[account]
        for meter, rate, declared in (
            ("reads", stats.read_rate, stats.read_declared),
            ("writes", stats.write_rate, stats.write_declared),
        ):
            worked = rate if rate is not None else declared
            if worked is not None:
                m.sample(worked, account=account, meter=meter)
    m.family("batchsync_account_declared_rate_per_minute", "Requests per minute the inventory declares per meter.")
    for account in accounts:
        stats = summary.accounts[account]
        for meter, declared in (("reads", stats.read_declared), ("writes", stats.write_declared)):
            if declared is not None:
                m.sample(declared, account=account, meter=meter)
    m.family(
        "batchsync_undeclared_integrations",
        "PrestaShop V2 integrations of each account that the inventory does not declare, as the last run's "
        "pre-flight listed them.",
    )
    undeclared: dict[str, int] = dict.fromkeys(accounts, 0)
    for u in summary.undeclared:
        undeclared[u.account] = undeclared.get(u.account, 0) + 1
    for account in sorted(undeclared):
        m.sample(undeclared[account], account=account)
    m.family("batchsync_run_duration_seconds", "Wall-clock duration of the last run.")
    m.sample(round(summary.duration_s, 3))
    m.family("batchsync_run_finished_timestamp_seconds", "Unix time the last run finished.")
    m.sample(round(finished_at, 3))
    m.family(
        "batchsync_last_success_timestamp_seconds",
        "Unix time of the last run with no failed and no skipped integration (0: none recorded).",
    )
    m.sample(round(last_success, 3))
    m.family("batchsync_run_success", "1 if the last run had no failed and no skipped integration, else 0.")
    m.sample(1 if success else 0)
    m.family("batchsync_run_interrupted", "1 if the last run stopped early (signal, failure limit), else 0.")
    m.sample(1 if summary.stopped is not None else 0)
    if health:
        m.family(
            "batchsync_shop_exception_logs",
            "Integration exception logs per shop since the last run (--with-health): Sendcloud's failed "
            "requests to the shop.",
        )
        for (account, integration), count in sorted(health.items()):
            m.sample(count, account=account, integration=str(integration))
    if exit_code is not None:
        _exit_families(m, exit_code, finished_at)
    return m.families


def _exit_families(m: _Exposition, exit_code: int, at: float) -> None:
    m.family(
        "batchsync_last_run_exit_code",
        "Exit code of the last attempt, whether it ran or not (2: usage error or invalid inventory, "
        "75: another run held a lock).",
    )
    m.sample(exit_code)
    m.family("batchsync_last_run_timestamp_seconds", "Unix time the last attempt ended, whether it ran or not.")
    m.sample(round(at, 3))


def is_success(summary: Summary) -> bool:
    """No failed, no skipped, not stopped early: what ``last_success`` counts."""
    return summary.stopped is None and not summary.total("failed") and not summary.total("skipped")


def _previous_success(old: Mapping[str, _Family], identity: Mapping[str, str]) -> float:
    family = old.get("batchsync_last_success_timestamp_seconds")
    # A file of an older batchsync labelled the command ``mode``: its last success still counts.
    legacy = {("mode" if k == "command" else k): v for k, v in identity.items()}
    for want in (identity, legacy):
        for labels, value in family.samples if family is not None else ():
            if _ours(labels, want) and math.isfinite(float(value)):
                return float(value)
    return 0.0


def write_metrics(
    path: str,
    summary: Summary,
    mode: str,
    finished_at: float | None = None,
    last_success_from: str | None = None,
    labels: Mapping[str, str] | None = None,
    exit_code: int | None = None,
    health: Mapping[tuple[str, int], int] | None = None,
    source: str | None = None,
) -> None:
    """Write the run's metrics to ``path`` (Prometheus text format) atomically. ``source``:
    the inventory file, which claims its ``inventory`` label in the file
    (MetricsClash, nothing written, when another inventory file of the same name has it).

    For node_exporter's textfile collector ``path`` must end in ``.prom`` and sit in its
    ``--collector.textfile.directory``; that is not checked here. Every sample carries
    ``command`` (``mode``: plan/apply) plus the constant ``labels`` (e.g. ``{"inventory":
    "eu"}``). The series of another command or other constant labels already in the file
    are kept; this run's own replace the previous run's.

    ``batchsync_last_success_timestamp_seconds`` is this run's ``finished_at`` when it
    succeeded; otherwise the value is carried over from the previous file
    (``last_success_from``, default ``path`` itself), so it survives failing runs. 0 when
    no run has succeeded yet, so ``time() - metric > 2 * 86400`` alerts from day one.
    """
    finished = time.time() if finished_at is None else finished_at
    identity = {**(labels or {}), "command": mode}
    with _exclusive(path):
        old, owners = _read_claimed(path, labels, source)
        if is_success(summary):
            last = finished
        else:
            last = _previous_success(old if last_success_from is None else _read(last_success_from), identity)
        new = metrics_families(summary, mode, finished, last, exit_code, labels, health)
        atomic_write(path, _render(_merge(old, new, identity), owners).encode("utf-8"))


def write_exit_code(
    path: str,
    command: str,
    exit_code: int,
    at: float | None = None,
    labels: Mapping[str, str] | None = None,
    source: str | None = None,
) -> None:
    """Record an attempt that never ran (exit 2 or 75) in the metrics file: its exit code and
    time change, everything else (this command's last run, its last success) stays."""
    when = time.time() if at is None else at
    identity = {**(labels or {}), "command": command}
    with _exclusive(path):
        old, owners = _read_claimed(path, labels, source)
        m = _Exposition(identity)
        _exit_families(m, exit_code, when)
        if "batchsync_last_success_timestamp_seconds" not in old or not any(
            _ours(s[0], identity) for s in old["batchsync_last_success_timestamp_seconds"].samples
        ):
            m.family(
                "batchsync_last_success_timestamp_seconds",
                "Unix time of the last run with no failed and no skipped integration (0: none recorded).",
            )
            m.sample(_previous_success(old, identity))
        merged = dict(old)
        for name, family in m.families.items():
            kept = old.get(name)
            into = merged[name] = _Family(family.help, family.kind)
            into.samples = [s for s in (kept.samples if kept else ()) if not _ours(s[0], identity)] + family.samples
        atomic_write(path, _render(merged, owners).encode("utf-8"))


def inventory_label(inventory: str | None) -> dict[str, str]:
    """The ``inventory`` label of every series: the inventory file's name without its
    extension (``clients-eu.toml`` -> ``clients-eu``), so two inventories' runs writing
    one metrics file keep their series apart, whichever folder cron starts them from."""
    if not inventory:
        return {}
    return {"inventory": Path(inventory).stem or inventory}


class Metrics:
    """The sink of ``--metrics``: the file rewritten at the end, with the exit code as it
    stands then (an output lost before it counts)."""

    FLAG = "--metrics"  # how the run names it lost (a second signal cutting its close: close_all)

    def __init__(self, path: str, start: Start, lost: Lost) -> None:
        self.path, self.mode, self.lost = path, start.mode, lost
        self.health: dict[tuple[str, int], int] = {}
        self.labels = inventory_label(start.inventory)
        # The inventory file claims its label in the file; a merge's reports name theirs as
        # each shard saw it (another machine's path): it claims nothing.
        self.source = start.inventory if not start.parts else None

    def add(self, outcome: Outcome) -> None:
        health = outcome.shop_health
        if health is not None and health.unknown is None:
            self.health[(outcome.account, outcome.integration_id)] = health.count

    def flush(self) -> None:
        pass

    def close(self, end: End | None) -> None:
        if end is None:
            return
        try:
            write_metrics(
                self.path,
                end.summary,
                self.mode,
                exit_code=end.code(),
                health=self.health,
                labels=self.labels,
                source=self.source,
            )
        except OSError as exc:
            self.lost.record("--metrics", self.path, exc)
