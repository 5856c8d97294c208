"""A run's outputs, opened once its first request is on its way.

None of the sinks but the report is needed before an outcome: the run history's store
(connected, migrated, its streaks read, the run's row begun), JUnit, HTML, metrics and the
notifications. Opening them before the run delayed its first request (part 5 of `make
bench`); opening them on the event loop would make it wait for a database (up to SQLite's
busy timeout, or PostgreSQL's connect timeout). So they are opened in a thread of their own,
started by the run's first outcome, while the run goes on; the outcomes that arrive
meanwhile are kept and handed to every sink, in their order, once the sinks are open (at
the next outcome, the next tick, or the run's end, which waits for them).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, cast

from batchsync.outcome import Outcome
from batchsync.outputs.sink import End, Lost, Sink, close_all


class HeldStream:
    """A text stream whose writes are held until :meth:`release`, then written through: what
    the sinks print while they are opened in their thread (a history's warning) is printed
    by the run's own thread, never in the middle of its progress line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.held: list[str] | None = []

    def write(self, text: str) -> int:
        if self.held is None:
            return self.stream.write(text)
        self.held.append(text)
        return len(text)

    def flush(self) -> None:
        if self.held is None:
            self.stream.flush()

    def release(self, before_write: Callable[[], None]) -> None:
        held, self.held = self.held, None
        if held:
            before_write()
            self.stream.write("".join(held))

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno: the stream's
        return getattr(self.stream, name)


class Outputs:
    """The run's sinks, built by ``build`` (given the stderr to write to) in a thread started
    by the first outcome. ``before_write`` clears the progress line before held text is written.

    ``early``: sinks open already (the report, made before the first request), which get each
    outcome as it comes, whatever the thread does: a run killed while the others open still
    leaves its report, and a build that fails (a bug) costs the others only. ``build``
    returns them among its sinks, in their place for the closing order. Nothing here raises
    into the run: a build's error is kept in ``error`` for the run to raise once the sinks
    it has are closed."""

    def __init__(
        self,
        build: Callable[[IO[str]], list[Sink]],
        err: IO[str],
        before_write: Callable[[], None],
        early: Sequence[Sink] = (),
    ) -> None:
        self._build = build
        self._err = HeldStream(err)
        self._before_write = before_write
        self._early = list(early)
        self._early_adds: list[Callable[[Outcome], None]] = [sink.add for sink in early]
        self._early_flushes: list[Callable[[], None]] = [sink.flush for sink in early]
        self._thread: threading.Thread | None = None
        self._built: list[Sink] | None = None
        self._error: BaseException | None = None
        self.error: BaseException | None = None  # the build's, for the run to raise at its end
        self._failed = False  # the sinks could not be built: the early ones only
        self._pending: list[Outcome] = []
        self.sinks: list[Sink] = []  # once open
        self._adds: list[Callable[[Outcome], None]] = []
        self._flushes: list[Callable[[], None]] = []

    def add(self, outcome: Outcome) -> None:
        for early in self._early_adds:
            early(outcome)
        if self.sinks or self._failed:
            for add in self._adds:
                add(outcome)
            return
        self._pending.append(outcome)
        if self._thread is None:
            self._thread = threading.Thread(target=self._open, name="batchsync-outputs", daemon=True)
            self._thread.start()
        elif not self._thread.is_alive():
            self._settle()

    def flush(self) -> None:
        if not (self.sinks or self._failed) and self._thread is not None and not self._thread.is_alive():
            self._settle()
        for flush in self._early_flushes:
            flush()
        for flush in self._flushes:
            flush()

    def opened(self) -> list[Sink]:
        """Every sink, open, each holding every outcome so far: waits for the thread, or opens
        them now when no outcome came (a run with nothing to do, or stopped before its first).
        Interrupted while it waits (a second Ctrl-C), or when the build failed: the early
        sinks alone, the error kept in ``error``."""
        if not (self.sinks or self._failed):
            try:
                if self._thread is None:
                    self._open()
                else:
                    self._thread.join()
            except BaseException as exc:
                self._give_up(exc)
            else:
                self._settle()
        return self.sinks

    def _open(self) -> None:
        try:
            self._built = self._build(cast("IO[str]", self._err))  # a text stream, as far as a sink writes
        except BaseException as exc:  # kept for the run's thread (_settle)
            self._error = exc

    def _give_up(self, error: BaseException) -> None:
        self._failed = True
        if self.error is None:
            self.error = error
        self._pending = []  # the early sinks have them
        self.sinks = list(self._early)
        self._adds = []
        self._flushes = []
        self._err.release(self._before_write)

    def _settle(self) -> None:
        error, self._error = self._error, None
        if error is not None or not self._built:
            self._give_up(error or RuntimeError("the run's outputs were not built"))
            return
        self._err.release(self._before_write)
        self.sinks = self._built
        later = [sink for sink in self.sinks if not any(sink is e for e in self._early)]
        self._adds = [sink.add for sink in later]
        self._flushes = [sink.flush for sink in later]
        pending, self._pending = self._pending, []
        for outcome in pending:
            for add in self._adds:
                add(outcome)


class Batched:
    """The sinks' ``add``, in batches: the run's timer delivers what gathered (``deliver``),
    and a failure goes at once, with what came before it (``-q`` prints it as it happens).

    Each sink's code then runs over many outcomes in a row, not between two requests'
    worth of the HTTP client's code, which evicts it from the processor's caches: that
    cost a third of the sinks' CPU per outcome. The order of the outcomes is kept.

    A sink whose ``add`` raises (a bug) costs that outcome in that sink only: the others go
    on, the run goes on, and the first error is kept in ``error`` for the run to raise once
    its outputs are closed (raised from the run's timer, it would have ended the run)."""

    __slots__ = ("adds", "error", "pending")

    def __init__(self, adds: Sequence[Callable[[Outcome], None]]) -> None:
        self.adds = adds
        self.pending: list[Outcome] = []
        self.error: Exception | None = None

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        if outcome.result == "failed":
            self.deliver()

    def deliver(self) -> None:
        if not self.pending:
            return
        batch = self.pending
        self.pending = []
        for add in self.adds:
            for outcome in batch:
                try:
                    add(outcome)
                except Exception as exc:
                    if self.error is None:
                        self.error = exc


def close_run(
    outputs: Outputs,
    end: End,
    lost: Lost,
    ran: int,
    unbuilt: Callable[[], None],
    redact: Callable[[str], str],
    batched_error: Exception | None = None,
) -> int:
    """Close a run's outputs once its engine is done; the process's exit code. Each output
    carries the code as it stands when it is written (a lost output must not look like a
    clean night); the report, closed last of the files, the final one.

    A second signal, once every integration had its outcome, cuts what it lands in: the
    outputs' opening (a history store waited on: ``unbuilt`` counts what was not opened
    lost) or their closing. What it cut is counted lost and named, and the code is the one
    the report's summary line says. With work left undone (``end``'s summary stopped), the
    KeyboardInterrupt goes on: 3, as the report says then. A bug in an output (``outputs``'
    build, ``batched_error``) is raised once the others are closed."""
    sinks = outputs.opened()
    stopped = end.summary.stopped is not None
    unopened = isinstance(outputs.error, KeyboardInterrupt) and not stopped
    if unopened:  # the report alone is open, no LostNotice: the lost outputs are named here
        outputs.error = None
        unbuilt()
    try:
        close_all(sinks, end)
        cut = False
    except KeyboardInterrupt:
        if stopped:
            raise
        cut = True
    if unopened or cut:
        for line in lost.lines() if unopened else ():
            print(redact(line), file=sys.stderr)
        print("batchsync: interrupted while the outputs were written", file=sys.stderr)
        return lost.exit_code(ran)
    for error in (outputs.error, batched_error):
        if error is not None:
            raise error
    return lost.exit_code(ran)
