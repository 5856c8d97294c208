"""A run's history session: the store opened, the run's row begun and the failing streaks
read as the run starts (bounded in time: the busy timeout, the connect timeout), then its
outcomes written in batches: a SQLite file's by the caller (the event loop) as each batch
is full, a PostgreSQL server's by one thread of its own, off the event loop, through a
bounded queue (memory stays flat however long the run).

Why SQLite in the loop: a batch of 2,000 outcomes is a few milliseconds of work on a
local file, and done there, on outcomes just made, it costs less than half of what the
same writes cost in a thread of their own, which competes with the event loop for the
interpreter's lock and the processor's caches (part 8 of ``make bench``). Only where the
loop cannot be held up by it: a file on a local filesystem (a network one can hang, and
a system call cannot be interrupted), each batch written within INLINE_SLOW_S (a slower
one, a disk that is failing or throttled, hands the rest of the run to the thread), and
never waiting for the file's lock: with a lock timeout of zero, a store another process
is writing (a second run, a ``history prune``) hands this run's writes to the writer
thread, which waits as long as a thread may (the busy timeout), for the rest of the run.

A store that cannot be opened or written costs no integration: the error is kept (redacted)
for the run to name among its lost outputs.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from batchsync.history.db import Db, HistoryError, connect
from batchsync.history.location import Location
from batchsync.history.queries import Streak, streaks
from batchsync.history.store import RunInfo, Writes
from batchsync.outcome import Outcome

# Outcomes per insert (executemany) and transaction. With QUEUE_BATCHES, what the history
# holds in memory at most: at 10,000 and 4 a fast run (plan --sandbox, 200,000 integrations)
# kept some 50,000 outcomes waiting, about 50 MB of its peak.
BATCH = 2_000
# The run's timer flushes a few times a second; the writer takes what has gathered at most
# this often. Each hand-over wakes the writer thread, whose work then competes with the
# event loop for the interpreter's lock and the processor's caches: a 0.2 s flush cost the
# loop more than the writes themselves. A run shorter than this is written at its end.
HAND_OVER_S = 5.0
QUEUE_BATCHES = 2  # batches waiting for the writer at most; past that, they gather here
# The event loop does not wait for the store while it keeps up (a hand-over that finds the
# queue full keeps the outcomes and tries again at the next one). Past BACKLOG outcomes
# gathered, it waits for a writer that is behind but moving (a busy machine: the history is
# not lost for it, and memory stays bounded). A writer that takes nothing for STUCK_S while
# outcomes wait (a hung server) is a lost history, and the run goes on.
BACKLOG = 5 * BATCH
STUCK_S = 60.0  # a writer that long on one batch (a hung server) is a lost history
# A SQLite store's batches are written by the event loop itself (the module's docstring);
# False: by the writer thread, as a PostgreSQL server's are (tests of that path set it).
INLINE_SQLITE = True
INLINE_SLOW_S = 0.25  # a batch written by the loop taking longer: the thread writes the rest
# Filesystems the loop may write a store on (Linux's names in /proc/self/mountinfo): local
# ones. Any other (nfs, cifs, fuse, 9p...), or none known (not Linux): the writer thread.
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "bcachefs"})
PUT_TIMEOUT_S = 60.0  # at the run's end, for the writer to take what is left
FINISH_TIMEOUT_S = 120.0  # for what is queued to be written at the run's end


class Session:
    """One run's history. ``open()`` raises HistoryError; after that nothing raises: a
    failure is kept in ``error`` and the rest is dropped."""

    def __init__(self, db: Db, run: RunInfo, run_id: int | None, known: dict[int, Streak]) -> None:
        self.db, self.run, self.run_id, self.streaks = db, run, run_id, known
        self.group = run.group_key or f"run:{run_id}"
        self.error: str | None = None
        self._writes = Writes(db)
        self._batch: list[Outcome] = []
        self._handed = time.monotonic()  # when a batch was last handed to the writer
        self._taken = self._handed  # when the writer last took one (its thread writes it)
        self._queued = self._handed  # when a batch last went into an empty queue
        self._queue: queue.Queue[list[Outcome] | None] = queue.Queue(QUEUE_BATCHES)
        self._thread = threading.Thread(target=self._work, name="batchsync-history", daemon=True)
        # Written by the caller, never waiting for the file's lock, until a lock held
        # elsewhere hands the writes to the thread (_write_here).
        # (The lock timeout goes to zero at the first such write, not before: what reads the
        # store as the sinks open, in their thread, waits for a lock as it always has.)
        self._inline = run_id is not None and INLINE_SQLITE and db.dialect == "sqlite" and local(db.location.target)
        self._timeout_set = False  # the lock timeout of the writes here: zero in the run, the busy timeout at its end
        if run_id is not None and not self._inline:
            self._thread.start()

    @classmethod
    def open(
        cls, location: Location, run: RunInfo, redact: Callable[[str], str] = str, ids: Iterable[int] | None = None
    ) -> Session:
        """Connect (migrating on first use), read the streaks of ``ids`` (all: None), begin
        the run's row. A run already recorded (its ``dedup_key``) gets no row and writes nothing."""
        db = connect(location, redact)
        try:
            known = streaks(db, ids)
            run_id = Writes(db).begin(run)
        except Exception as exc:
            db.close()
            raise HistoryError(redact(f"{location.name}: {' '.join(str(exc).split())}")) from None
        return cls(db, run, run_id, known)

    @property
    def recorded_before(self) -> bool:
        """This run (report merge of the same reports) was recorded already: nothing is written."""
        return self.run_id is None

    def add(self, outcome: Outcome) -> None:
        if self.run_id is None or self.error is not None:
            return
        self._batch.append(outcome)
        if len(self._batch) % BATCH == 0:  # a full batch (or one more while the writer is behind)
            self._hand_over()

    def flush(self, *, now: bool = False) -> None:
        """Hand what has gathered to the writer: at once with ``now``, else when the last
        hand-over is ``HAND_OVER_S`` old."""
        if not self._batch or self.run_id is None or self.error is not None:
            return
        if now or time.monotonic() - self._handed >= HAND_OVER_S:
            self._hand_over()

    def _write_here(self) -> bool:
        """Write what has gathered now, in the caller's thread (a SQLite store). False when
        the store's lock is held elsewhere: from then on the writer thread writes, as for a
        server, waiting for the lock as long as the busy timeout (the batch stays to go to it)."""
        try:
            return self._try_here()
        except Exception as exc:
            # A bug of ours (naming a failed write failed too): the history is lost, and said
            # so, as when the writer thread stops; nothing raises into the run.
            if self.error is None:
                self.error = f"{self.db.location.name}: the history's writer stopped ({type(exc).__name__})"
            self._batch = []
            return True

    def _try_here(self) -> bool:
        assert self.run_id is not None
        began = time.monotonic()
        try:
            if not self._timeout_set:
                self.db.lock_wait(0)
                self._timeout_set = True
            self._writes.outcomes(self.run_id, self.run, self.group, self._batch, self.streaks)
        except Exception as exc:
            if isinstance(exc, sqlite3.OperationalError) and _locked(exc):
                self._to_thread()  # the store is another's right now: the thread waits for it
                return False
            self._fail(self._why(exc))
        self._batch = []
        if time.monotonic() - began > INLINE_SLOW_S:  # a slow disk: the loop waits no more for it
            self._to_thread()
        return True

    def _to_thread(self) -> None:
        """The rest of the run's writes by the writer thread, waiting for the lock as it may."""
        self._inline = False
        self.db.lock_wait()
        self._taken = self._queued = time.monotonic()
        self._thread.start()

    def _hand_over(self) -> None:
        """Give what has gathered to the writer. The caller is the event loop: it waits only
        past :data:`BACKLOG` outcomes gathered, and only as long as the writer could still be
        moving; :data:`STUCK_S` without the writer taking a batch, the history is lost (what
        is gathered dropped). A SQLite store's batch is written here and now (_write_here)."""
        now = time.monotonic()
        self._handed = now
        if self._inline and self._write_here():
            return
        try:
            self._queue.put_nowait(self._batch)
        except queue.Full:
            # How long the writer has had work without taking any: since it last took a
            # batch, or since the oldest waiting one came, for a writer idle until then (a
            # run's lull) that has not woken yet.
            behind = now - max(self._taken, self._queued)
            if behind < STUCK_S and len(self._batch) >= BACKLOG:
                try:  # far behind, and moving: hold the run back rather than lose the history
                    self._queue.put(self._batch, timeout=STUCK_S - behind)
                except queue.Full:
                    pass
                else:
                    self._batch = []
                    return
            if time.monotonic() - max(self._taken, self._queued) >= STUCK_S:
                self._fail(f"{self.db.location.name}: the store did not take the run's outcomes for {STUCK_S:g}s")
                self._batch = []
            return
        if self._queue.qsize() <= 1:  # it was empty: the writer had nothing to do until now
            self._queued = now
        self._batch = []

    def _put_while_writing(self, item: list[Outcome] | None) -> None:
        """Queue ``item`` for the writer, waiting up to ``PUT_TIMEOUT_S`` while it runs: a
        writer that has stopped takes nothing more (queue.Full at once)."""
        deadline = time.monotonic() + PUT_TIMEOUT_S
        while True:
            try:
                self._queue.put(item, timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                return
            except queue.Full:
                if not self._thread.is_alive() or time.monotonic() >= deadline:
                    raise

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = self.db.redact(why)

    def _work(self) -> None:
        try:
            self._write_batches()
        except BaseException as exc:
            # A bug of ours (naming a failed write failed too): the history is lost, and
            # said so, rather than the run recording its end over outcomes never written.
            # The store's name and the exception's type only: no text that could hold a secret.
            if self.error is None:
                self.error = f"{self.db.location.name}: the history's writer stopped ({type(exc).__name__})"

    def _write_batches(self) -> None:
        run_id = self.run_id
        assert run_id is not None
        while True:
            batch = self._queue.get()
            self._taken = time.monotonic()
            if batch is None:
                return
            if self.error is not None:
                continue  # drained, dropped: the history is lost already
            try:
                self._writes.outcomes(run_id, self.run, self.group, batch, self.streaks)
            except Exception as exc:
                self._fail(self._why(exc))

    def _drain(self) -> bool:
        """The writer thread given what is left and waited for, while it moves: a store that
        has taken nothing for STUCK_S (a hung server, stuck on one batch) is lost as during
        the run, and FINISH_TIMEOUT_S bounds the whole wait. False: the history is lost."""
        try:
            if self._batch:  # what is left, waiting for the writer now
                batch, self._batch = self._batch, []
                self._put_while_writing(batch)
            self._put_while_writing(None)
        except queue.Full:
            self._fail(f"{self.db.location.name}: the store did not take the run's outcomes")
            return False
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        why = ""
        while self._thread.is_alive() and not why:
            self._thread.join(0.25)
            now = time.monotonic()
            if now - self._taken >= STUCK_S:
                why = f"the store took nothing for {STUCK_S:g}s"
            elif now >= deadline:
                why = f"not written within {FINISH_TIMEOUT_S:g}s"
        if self._thread.is_alive():
            self._fail(f"{self.db.location.name}: the run's outcomes were not all written: {why}")
            return False
        return True

    def _why(self, exc: BaseException) -> str:
        """A failed statement, for the lost outputs: the store's name and the driver's words."""
        return f"{self.db.location.name}: {' '.join(str(exc).split()) or type(exc).__name__}"

    def finish(
        self,
        ended_at: float | None,
        exit_code: int | None,
        counts: Mapping[str, int],
        per_account: Mapping[str, Mapping[str, int]] | None = None,
    ) -> str | None:
        """Write what is left and the run's end (``ended_at`` None: the run broke off; its
        row keeps no end); close. The error, if the history was lost."""
        try:
            if self.run_id is None:
                return self.error
            if self.error is not None:  # lost already: the run's end does not wait for a stuck writer
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)  # one that is only behind drains what waits, then ends
                return self.error
            if self._inline and self._batch:
                self._write_here()  # what is left, here, as during the run (or by the thread)
            if not self._inline and not self._drain():
                return self.error
            if self._inline:  # the end waits for the lock, as a thread would
                try:
                    self.db.lock_wait()
                except Exception as exc:
                    self._fail(self._why(exc))
                    return self.error
            if self.error is None and ended_at is not None:
                try:
                    self._writes.end(self.run_id, ended_at, exit_code, counts, per_account)
                except Exception as exc:
                    self._fail(self._why(exc))
            if self.error is None and self.db.dialect == "sqlite" and not os.path.exists(self.db.location.target):
                # Its folder removed while the run wrote it (a cleanup job): SQLite wrote on,
                # into a file no longer there. Said, not a history that seems recorded.
                self._fail(f"{self.db.location.name}: the file was removed during the run: its history is gone")
            return self.error
        finally:
            if not self._thread.is_alive():
                self.db.close()


def local(path: str) -> bool:
    """``path``'s folder is on a local filesystem (:data:`LOCAL_FILESYSTEMS`), as
    /proc/self/mountinfo says: the mount point that holds it is the longest that prefixes it."""
    folder = os.path.dirname(os.path.realpath(path)) or "/"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            mounts = f.read().splitlines()
    except OSError:
        return False
    best, kind = -1, ""
    for line in mounts:
        fields = line.split(" ")
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        inside = folder == point or folder.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), line.split(" - ", 1)[1].split(" ", 1)[0]
    return kind in LOCAL_FILESYSTEMS


def _locked(exc: sqlite3.OperationalError) -> bool:
    """The store's lock is held by another connection (SQLITE_BUSY, or SQLITE_LOCKED; the
    driver sets the code on every error it raises)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def describe_failure(known: Mapping[int, Streak], group: str, integration_id: int) -> tuple[str, int] | None:
    """A failure's streak counting this run: (since, runs), or None when it is new."""
    prev = known.get(integration_id)
    if prev is None:
        return None
    return prev.since, prev.runs if prev.last_group == group else prev.runs + 1


def summarize(known: Mapping[int, Streak], group: str, outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """New failures, failures that go on (with since and runs), and recoveries, of ``outcomes``."""
    new: list[Outcome] = []
    ongoing: list[tuple[Outcome, str, int]] = []
    recovered: list[tuple[Outcome, str, int]] = []
    for o in outcomes:
        if o.result == "failed":
            streak = describe_failure(known, group, o.integration_id)
            if streak is None or streak[1] == 1:
                new.append(o)
            else:
                ongoing.append((o, *streak))
        elif o.result != "skipped" and o.integration_id in known:
            prev = known[o.integration_id]
            recovered.append((o, prev.since, prev.runs))
    return {"new": new, "ongoing": ongoing, "recovered": recovered}
