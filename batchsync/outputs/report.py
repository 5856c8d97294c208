"""The JSON-lines report (``--report``): the writer a run streams into, and the one reader
that ``report merge`` and ``--retry-failed`` both use.

The file starts with a header line (what ran, on how many integrations), then gets one
line per integration as it finishes (flushed at once, so a killed run still leaves a true
record), then a closing summary line. Neither the header nor the summary has an
``integration_id``; a report without its summary line was cut short.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterable
from typing import IO, Any

import msgspec

from batchsync.outcome import AccountStats, Outcome, Summary, Undeclared
from batchsync.outputs.sink import End, Lost, Start
from batchsync.outputs.terminal import summary_document
from batchsync.text import json_safe

_encoder = msgspec.json.Encoder()


class ReportInUse(OSError):
    """Another process writes this report file now (two runs given one ``--report``: two
    cron lines started in the same second, a plan run by hand beside the night's apply)."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EBUSY, "in use by another batchsync run (two runs cannot share one report file)", path)


def _open_exclusive(path: str) -> IO[bytes]:
    """``path`` opened to write anew, holding an advisory lock on it for as long as it is
    open: ReportInUse, the file left as it is, when another process holds it. Made empty
    only once the lock is held (``open(path, "wb")`` would empty the other run's report).
    Only a regular file is locked and emptied (the command line refuses any other for a
    report; a file system without ``flock`` writes it without the lock)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReportInUse(path) from None
            except OSError:
                pass  # no flock here (ENOLCK on some network file systems): written without the lock
            os.ftruncate(fd, 0)
        return os.fdopen(fd, "wb", buffering=1 << 16)
    except BaseException:
        os.close(fd)
        raise


REPORT_VERSION = 2  # 2: a header line; outcomes with tags, times, mapping changes and warnings


class ReportWriter:
    """Appends outcome lines to a file, handed to the system a few times a second.

    The run calls :meth:`flush` on its timer (every 0.2 s) and at the end: a killed run
    loses at most the lines of its last fraction of a second, which its report, having
    no summary line, says it may have (``--retry-failed`` then redoes what the report
    does not record as done); and an outcome costs a buffered write, not a system call.
    A write that fails (a full disk) does not stop the run: the writer records it in
    ``lost`` and writes nothing more; the run's end says so."""

    FLAG = "--report"  # how the run names it lost (a second signal cutting its close: close_all)

    def __init__(self, path: str, lost: Lost | None = None) -> None:
        self.path = path
        self.lost = lost if lost is not None else Lost()
        self.failed = False
        self.mode = "apply"
        self._file: IO[bytes] = _open_exclusive(path)  # closed in close(): the lock goes with it

    def _put(self, data: bytes, flush: bool = False) -> None:
        if self.failed:
            return
        try:
            self._file.write(json_safe(data))
            if flush:
                self._file.flush()
        except OSError as exc:
            self.failed = True
            self.lost.record("--report", self.path, exc)

    def flush(self) -> None:
        """Hand what is buffered to the system (the run's timer calls it)."""
        if self.failed:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self.failed = True
            self.lost.record("--report", self.path, exc)

    @classmethod
    def open(cls, path: str, start: Start, lost: Lost) -> ReportWriter:
        """The sink of ``--report``: the file made anew, its header line written."""
        writer = cls(path, lost)
        writer.header(start.mode, start.inventory, start.selected, start.shard, start.plan, start.group)
        return writer

    def header(
        self,
        mode: str,
        inventory: str,
        selected: int,
        shard: dict[str, Any] | None = None,
        plan: dict[str, str] | None = None,
        group: str = "",
    ) -> None:
        self.mode = mode
        doc = {
            "header": True,
            "version": REPORT_VERSION,
            "command": mode,
            "started_at": round(time.time(), 3),
            "inventory": inventory,
            "selected": selected,
            "shard": shard,
        }
        if plan is not None:  # apply --plan: which plan this run carried out
            doc["plan"] = plan
        if group:
            doc["group"] = group  # the run history's group of the shards of one night (report merge records it)
        self._put(_encoder.encode(doc) + b"\n", flush=True)  # what ran is on disk at once

    def add(self, outcome: Outcome) -> None:
        self._put(_encoder.encode(outcome) + b"\n")

    def close(self, end: End | None) -> None:
        """Last of the files: the summary line carries the code the process exits with (unless
        closing the report is itself what fails), whatever was lost before it. None: the run
        broke off, and its report has no summary line."""
        if end is None:
            self.finish(None)
        else:
            self.finish(end.summary, self.mode, end.code())

    def finish(self, summary: Summary | None = None, mode: str = "apply", exit_code: int | None = None) -> None:
        """The summary line (none if the run never got one), with the run's exit code:
        ``report merge`` reads it."""
        if summary is not None:
            doc = summary_document(summary, mode) | {"exit_code": exit_code}
            self._put(_encoder.encode(doc) + b"\n")
        try:
            if not self.failed:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self.failed = True
            self.lost.record("--report", self.path, exc)
        try:
            self._file.close()
        except OSError as exc:  # the close flushes what the buffer still held
            if not self.failed:
                self.failed = True
                self.lost.record("--report", self.path, exc)


class ShardBlock(msgspec.Struct, frozen=True):
    index: int
    count: int
    integrations: tuple[int, ...] = ()  # per shard, in shard order
    accounts: tuple[int, ...] = ()


class Header(msgspec.Struct, frozen=True):
    version: int = 1
    command: str | None = None
    started_at: float | None = None
    inventory: str | None = None
    selected: int | None = None
    shard: ShardBlock | None = None
    plan: dict[str, str] | None = None  # apply --plan: {"path", "sha256"} of the plan carried out
    group: str | None = None  # the run history's group of a sharded run


class SummaryLine(msgspec.Struct, frozen=True):
    mode: str | None = None
    accounts: dict[str, AccountStats] = {}
    duration_s: float = 0.0
    stopped: str | None = None
    exit_code: int | None = None
    undeclared: list[Undeclared] = []  # reports before issue 27 have none


class Report(msgspec.Struct, frozen=True):
    """One report file as read: ``summary`` None means the run was cut short (killed)."""

    path: str
    header: Header | None = None
    outcomes: tuple[Outcome, ...] = ()
    summary: SummaryLine | None = None
    problem: str | None = None  # why it cannot be used at all
    mtime: float | None = None
    # Per account, from the outcome lines (a cut-short report has no summary to take them from).
    tally: dict[str, AccountStats] = {}
    last_ended_at: float | None = None

    @property
    def mode(self) -> str | None:
        if self.summary is not None and self.summary.mode:
            return self.summary.mode
        return self.header.command if self.header is not None else None

    @property
    def shard(self) -> ShardBlock | None:
        return self.header.shard if self.header is not None else None


def _problem(path: str, message: str, header: Header | None = None, mtime: float | None = None) -> Report:
    return Report(path, header=header, problem=message, mtime=mtime)


KNOWN_VERSIONS = (2,)  # of the header line (a report without one is an older one, read as well)


COMMANDS = ("plan", "apply")


def _why(exc: Exception) -> str:
    """What is wrong with a line, without quoting what it holds (a value, a name)."""
    return _QUOTED.sub("…", str(exc)) if isinstance(exc, msgspec.ValidationError) else str(exc)


_QUOTED = re.compile(r"'[^']*'")  # msgspec quotes a value it refuses (an unknown enum value)


def parse_report(path: str, data: bytes, mtime: float | None = None) -> Report:
    """Read one report's bytes (see :func:`parse_lines`)."""
    numbered = ((n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip())
    return parse_lines(path, numbered, mtime)


def parse_lines(path: str, lines: Iterable[tuple[int, bytes]], mtime: float | None = None) -> Report:
    """Read one report, line by line. A last line cut off mid-write (a killed run) is
    dropped; an older report without a header line is read as well. A header of an unknown
    version or command, a summary of another command, an integration id that is not one
    (below 1 or past 2^63 - 1), a line nested too deep or too long: the report is unusable,
    named with the line. Never raises on content."""
    from batchsync.jsonlines import LineError, objects

    header: Header | None = None
    summary: SummaryLine | None = None
    outcomes: list[Outcome] = []
    seen: set[int] = set()
    tally: dict[str, AccountStats] = {}
    last_end: float | None = None
    count = 0
    try:
        for n, row in objects(lines):
            count += 1
            if row.get("header") is True:
                if count != 1:
                    return _problem(path, f"line {n}: a header line after the first line", header, mtime)
                header = msgspec.convert(row, Header)
                if header.version not in KNOWN_VERSIONS:
                    return _problem(
                        path,
                        f"line {n}: a report of version {header.version}, not one batchsync reads "
                        f"(version {', '.join(map(str, KNOWN_VERSIONS))})",
                        None,
                        mtime,
                    )
                if header.command not in COMMANDS:
                    return _problem(path, f"line {n}: the header names no plan or apply run", None, mtime)
            elif row.get("summary") is True:
                if summary is not None:
                    return _problem(path, f"line {n}: a second summary line", header, mtime)
                summary = msgspec.convert(row, SummaryLine)
                if summary.mode is not None and summary.mode not in COMMANDS:
                    return _problem(path, f"line {n}: the summary names no plan or apply run", header, mtime)
                if header is not None and summary.mode is not None and summary.mode != header.command:
                    return _problem(
                        path,
                        f"line {n}: the summary line says {summary.mode}, the header {header.command}: not one run",
                        header,
                        mtime,
                    )
            elif "integration_id" in row:
                if summary is not None:
                    return _problem(path, f"line {n}: an outcome after the summary line", header, mtime)
                outcome = msgspec.convert(row, Outcome)
                if outcome.integration_id in seen:
                    return _problem(path, f"line {n}: integration {outcome.integration_id} twice", header, mtime)
                seen.add(outcome.integration_id)
                outcomes.append(outcome)
                stats = tally.setdefault(outcome.account, AccountStats())
                setattr(stats, outcome.result, getattr(stats, outcome.result) + 1)
                requests = row.get("requests")
                if isinstance(requests, list):
                    stats.requests += len(requests)
                    stats.throttled += sum(1 for r in requests if isinstance(r, list) and r[-1:] == [429])
                ended = row.get("ended_at")
                if isinstance(ended, int | float) and not isinstance(ended, bool):
                    last_end = ended if last_end is None else max(last_end, ended)
            else:
                return _problem(path, f"line {n} is neither a header, an outcome nor a summary", header, mtime)
    except msgspec.ValidationError as exc:
        return _problem(path, f"line {n}: {_why(exc)}", header, mtime)
    except (LineError, OSError) as exc:  # while reading the file: a line too long, an I/O error
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _problem(path, reason, header, mtime)
    if header is not None and header.shard is not None:
        s = header.shard
        if not 0 <= s.index < s.count or (s.integrations and len(s.integrations) != s.count):
            return _problem(path, f"line 1: shard {s.index}/{s.count} does not fit its own block", None, mtime)
    return Report(path, header, tuple(outcomes), summary, None, mtime, tally, last_end)


def read_report(path: str) -> Report:
    """Read one report file, line by line; a file that cannot be read comes back with its
    ``problem``. Only a regular file: a FIFO without a writer would block the merge for
    ever, and /dev/zero fill its memory (the open descriptor is checked)."""
    from batchsync.jsonlines import LineError, read_lines

    try:
        mtime = os.stat(path).st_mtime
        lines = read_lines(path)
        return parse_lines(path, lines, mtime)
    except FileNotFoundError:
        return _problem(path, "no such file")
    except OSError as exc:
        return _problem(path, exc.strerror or str(exc))
    except LineError as exc:
        return _problem(path, str(exc))


class RetryPlan(msgspec.Struct, frozen=True):
    """What an earlier report says is left to do."""

    failed: frozenset[int]  # failed or skipped
    succeeded: frozenset[int]  # unchanged or changed
    complete: bool  # it has its closing summary line: every selected integration is in it


def read_retry_report(path: str) -> RetryPlan:
    """What an earlier ``--report`` leaves to do, read by :func:`read_report` as ``report
    merge`` reads it. A run killed hard leaves no summary line and maybe a half-written last
    line: that line is ignored and the report marked incomplete. A report that cannot be
    used is a ValueError saying why (naming the line)."""
    report = read_report(path)
    if report.problem is not None:
        raise ValueError(report.problem)
    failed = {o.integration_id for o in report.outcomes if o.result in ("failed", "skipped")}
    succeeded = {o.integration_id for o in report.outcomes} - failed
    return RetryPlan(frozenset(failed), frozenset(succeeded), report.summary is not None)
