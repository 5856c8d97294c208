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

import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, cast

from batchsync.outcome import Outcome
from batchsync.outputs.sink import Sink


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
    by the first outcome. ``before_write`` clears the progress line before held text is written."""

    def __init__(self, build: Callable[[IO[str]], list[Sink]], err: IO[str], before_write: Callable[[], None]) -> None:
        self._build = build
        self._err = HeldStream(err)
        self._before_write = before_write
        self._thread: threading.Thread | None = None
        self._built: list[Sink] | None = None
        self._error: BaseException | None = None
        self._failed = False  # the sinks could not be built (a bug): raised once, then none
        self._pending: list[Outcome] = []
        self.sinks: list[Sink] = []  # once open
        self._adds: list[Callable[[Outcome], None]] = []
        self._flushes: list[Callable[[], None]] = []

    def add(self, outcome: Outcome) -> None:
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
        if not self.sinks and self._thread is not None and not self._thread.is_alive():
            self._settle()
        for flush in self._flushes:
            flush()

    def opened(self) -> list[Sink]:
        """Every sink, open, each holding every outcome so far: waits for the thread, or opens
        them now when no outcome came (a run with nothing to do, or stopped before its first)."""
        if not (self.sinks or self._failed):
            if self._thread is None:
                self._open()
            else:
                self._thread.join()
            self._settle()
        return self.sinks

    def _open(self) -> None:
        try:
            self._built = self._build(cast("IO[str]", self._err))  # a text stream, as far as a sink writes
        except BaseException as exc:  # raised in the run's thread, by _settle
            self._error = exc

    def _settle(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            self._failed = True
            self._err.release(self._before_write)
            raise error
        assert self._built, "the terminal's sink is always one"
        self._err.release(self._before_write)
        self.sinks = self._built
        self._adds = [sink.add for sink in self.sinks]
        self._flushes = [sink.flush for sink in self.sinks]
        pending, self._pending = self._pending, []
        for outcome in pending:
            for add in self._adds:
                add(outcome)


class Batched:
    """The sinks' ``add``, in batches: the run's timer delivers what gathered (``deliver``),
    and a failure goes at once, with what came before it (``-q`` prints it as it happens).

    Each sink's code then runs over many outcomes in a row, not between two requests'
    worth of the HTTP client's code, which evicts it from the processor's caches: that
    cost a third of the sinks' CPU per outcome. The order of the outcomes is kept."""

    __slots__ = ("adds", "pending")

    def __init__(self, adds: Sequence[Callable[[Outcome], None]]) -> None:
        self.adds = adds
        self.pending: list[Outcome] = []

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
                add(outcome)
