"""What every output shares: the :class:`Sink` protocol that ``plan``/``apply`` and
``report merge`` drive, what a sink is told when it is built (:class:`Start`) and at the
end (:class:`End`), one check of an output's path before anything is sent
(:func:`check_output`), and one policy for an output that cannot be written (:class:`Lost`:
the run goes on, names it at its end, and exits 5 unless a failure or a stop says more).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, Literal, Protocol

import msgspec

from batchsync.exitcodes import EXIT_CHANGES, EXIT_OK, EXIT_OUTPUT_LOST
from batchsync.model import Limits
from batchsync.outcome import Outcome, Summary
from batchsync.outputs.streams import stderr_failure
from batchsync.text import display


class Sink(Protocol):
    """One output of a run: fed each outcome as it finishes, then closed once.

    ``close(None)``: the run broke off (no summary): release what is held, write nothing
    more. A sink that cannot write records it in the run's :class:`Lost` and returns; it
    never raises for that."""

    def add(self, outcome: Outcome) -> None: ...

    def flush(self) -> None:
        """Hand what is buffered to the system (the run's timer calls it a few times a second)."""

    def close(self, end: End | None) -> None: ...


State = Literal["complete", "cut short", "missing", "unusable", "from an earlier run"]


class Part(msgspec.Struct, frozen=True):
    """What one shard (or, unsharded, one report file) contributed to a merged run."""

    shard: str | None  # "I/N", None for unsharded reports
    path: str | None  # None: no report claims this shard
    state: State
    reason: str | None = None
    recorded: int = 0  # outcome lines counted
    not_done: int | None = 0  # integrations it should have covered with no outcome; None: unknown

    @property
    def gap(self) -> bool:
        """Whether this part leaves the run short: work not done, or a report without its
        summary line (the run did not end as it should, whatever its lines say)."""
        return self.state != "complete" and (self.not_done != 0 or self.state == "cut short")

    def describe(self) -> str:
        where = f"shard {self.shard}" if self.shard is not None else "report"
        name = f" {display(self.path)}" if self.path is not None else ""
        if self.state == "complete":
            return f"{where}{name}: complete, {self.recorded} integrations"
        text = f"{where}{name}: {self.state}" + (f": {self.reason}" if self.reason else "")
        if self.not_done is None:
            return f"{text}; what it should have covered is unknown"
        if self.state == "cut short":
            return f"{text}; {self.recorded} recorded, {self.not_done} not done"
        if self.not_done:
            return f"{text}; its {self.not_done} integration{'s' if self.not_done != 1 else ''} not done"
        return text


class Start(msgspec.Struct, frozen=True, kw_only=True):
    """What ran, as the sinks are built: a run before its first request, a merge once it
    has read its reports."""

    mode: str  # plan or apply
    started_at: float  # Unix time
    inventory: str = ""  # its path; unknown (report merge): ""
    selected: int = 0  # integrations this run is to do
    shard: dict[str, Any] | None = None  # the report header's shard block (Split.header)
    limits: Mapping[str, Limits] = {}  # declared per account; unknown (report merge): none
    parts: tuple[Part, ...] | None = None  # report merge: what each shard's report contributed
    plan: dict[str, str] | None = None  # the saved plan carried out (apply --plan) or shown: {"path", "sha256"}
    inventory_sha256: str = ""  # the inventory file's content, as the run history records it
    group: str = ""  # the run history's group of a sharded run (every shard of a night alike); "": none

    @property
    def not_done(self) -> int:
        """Integrations that no report accounts for (report merge), counted as skipped."""
        return sum(p.not_done or 0 for p in self.parts or ())


class End(msgspec.Struct, frozen=True, kw_only=True):
    """How the run ended. ``code()`` is the exit code as it stands when a sink is closed:
    an output lost before it counts (the report, closed last, carries the final one)."""

    summary: Summary
    code: Callable[[], int]
    started_at: float  # Unix time: the run's first to its last moment
    ended_at: float


CUT = "cut short by a second signal"


def _cut(sink: Sink) -> None:
    """A sink whose close a second signal interrupted: a file's output is lost (a temp file
    unlinked, a store not told the run's end), and counted so (the report, closed last,
    says 5 then, as the process does: every integration had its outcome)."""
    cut = getattr(sink, "cut", None)
    if cut is not None:
        cut()
        return
    flag, lost = getattr(sink, "FLAG", None), getattr(sink, "lost", None)
    if isinstance(flag, str) and isinstance(lost, Lost):
        lost.note(flag, str(getattr(sink, "path", "")), CUT)


def close_all(sinks: Sequence[Sink], end: End | None) -> None:
    """Close every sink, in the order given. One that raises (a bug: a sink records what it
    cannot write and returns; a second signal) does not keep the ones after it from closing:
    the report's summary line still carries the exit code, an output a signal cut counted
    lost in it; the first error is raised after."""
    error: BaseException | None = None
    # A sink that holds lines back until the run is done (the terminal's, sorted) writes them
    # first, through its optional ``settle()``: a stream that fails then is a loss every
    # output closed after it counts in its exit code.
    for sink in sinks if end is not None else ():
        settle = getattr(sink, "settle", None)
        if settle is not None:
            try:
                settle()
            except BaseException as exc:
                error = error or exc
    for sink in sinks:
        try:
            sink.close(end)
        except KeyboardInterrupt as exc:
            error = error or exc
            if end is not None:
                _cut(sink)
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


class OutputError(ValueError):
    """An output path that must not be written; the message names it and why."""


def check_output(flag: str, path: str, protected: Iterable[str], reader: str = "the inventory") -> None:
    """``path`` may be written by ``flag``: a regular file or a new one, in a writable
    directory, and none of ``protected`` (the files ``reader`` reads: the inventory and the
    files it references, or the reports a merge reads)."""
    if not path:
        raise OutputError(f"{flag}: an empty path")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{flag} {display(path)}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{flag} {display(path)}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{flag} {display(path)}: is not a regular file (a device, a FIFO or a socket)")
        for other in protected:
            try:
                if os.path.samefile(path, other):
                    raise OutputError(f"{flag} {display(path)}: is {display(other)}, which {reader} reads")
            except OSError:
                continue
    if os.path.islink(path) and st is None:
        raise OutputError(f"{flag} {display(path)}: is a dangling symbolic link")
    folder = os.path.dirname(os.path.abspath(path))
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
        raise OutputError(f"{flag} {display(path)}: {display(folder)} is not a writable directory")


class _Stream(Protocol):
    failure: OSError | None


class Lost:
    """The outputs a run could not write, and why (``disk full``, say). ``stdout`` (the
    run's buffered stdout) counts as lost as soon as a write to it failed; it is named once
    the terminal's sink has closed."""

    def __init__(self, stdout: _Stream | None = None) -> None:
        self.items: list[tuple[str, str, str]] = []  # (flag, path, why)
        self.stdout = stdout

    def record(self, flag: str, path: str, exc: OSError) -> None:
        self.items.append((flag, path, exc.strerror or type(exc).__name__))

    def note(self, flag: str, path: str, why: str) -> None:
        """An output lost for a reason that is no OSError (a database's answer)."""
        self.items.append((flag, path, why))

    def __bool__(self) -> bool:
        return (
            bool(self.items)
            or (self.stdout is not None and self.stdout.failure is not None)
            or stderr_failure() is not None
        )

    def exit_code(self, ran: int) -> int:
        """The exit code as it stands: a lost output must not look like a clean night;
        failures and stops still say more."""
        return EXIT_OUTPUT_LOST if self and ran in (EXIT_OK, EXIT_CHANGES) else ran

    def lines(self) -> list[str]:
        named = ((" ".join(filter(None, (flag, path))), why) for flag, path, why in self.items)  # stdout: no path
        return [f"batchsync: {what} was not written: {why}" for what, why in named]


class LostNotice:
    """The sink that names the lost outputs on stderr: after every file (the report's
    closing included), before the notifications."""

    def __init__(self, lost: Lost, err: IO[str], redact: Callable[[str], str] = str) -> None:
        self.lost, self.err, self.redact = lost, err, redact

    def add(self, outcome: Outcome) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self, end: End | None) -> None:
        if end is not None:
            for line in self.lost.lines():
                print(self.redact(line), file=self.err)
