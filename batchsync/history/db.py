"""One connection to a history store, SQLite or PostgreSQL, behind one small interface:
statements written once with ``?`` placeholders, transactions, and the migrations applied
on first use.

Drivers: the standard library's ``sqlite3``, and psycopg 3 for PostgreSQL (imported only
when a PostgreSQL URL is given; the ``postgresql`` extra installs it). Both are DB-API
drivers used synchronously, one code path for both databases: a run writes a server
through one writer thread, a SQLite file from the event loop without waiting for its lock
(:mod:`batchsync.history.writer`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from batchsync.history import schema
from batchsync.history.location import Location
from batchsync.text import escape_controls

BUSY_TIMEOUT_S = 10.0  # SQLite: how long a writer waits for another process's transaction
# SQLite: how long a store that needs migrating waits for another process's migration (an
# index built over a year of outcomes takes longer than a transaction of a run).
MIGRATION_WAIT_S = 600.0
CONNECT_TIMEOUT_S = 5  # PostgreSQL: how long to reach the server


class HistoryError(Exception):
    """The store cannot be opened, migrated, read or written. The message is safe to show
    (the caller's redactor still runs over it: a driver's message may quote the DSN)."""


def iso(t: float) -> str:
    """A Unix time as the store keeps it: ISO 8601 in UTC, to the millisecond, fixed width
    (so that text order is time order)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Db:
    """A connection: ``execute``/``executemany``/``query`` with ``?`` placeholders, and
    ``transaction()`` (SQLite: ``BEGIN IMMEDIATE``, so a writer waits for the lock up front
    instead of failing at its first write)."""

    def __init__(self, location: Location, conn: Any, redact: Callable[[str], str]) -> None:
        self.location, self.conn, self.redact = location, conn, redact
        self.dialect = location.kind
        self._pg = location.kind == "postgresql"
        self.read_only = False  # opened by a history verb, to read: it migrates nothing

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        try:
            cur.executemany(self._sql(sql), rows)
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(self._sql(sql), params)
        try:
            return list(cur.fetchall())
        finally:
            cur.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._pg:
            with self.conn.transaction():
                yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:  # a COMMIT refused (SQLITE_BUSY): nothing half-done stays open
            with suppress(Exception):
                self.conn.execute("ROLLBACK")
            raise

    def lock_wait(self, seconds: float | None = None) -> None:
        """How long a SQLite statement waits for a lock another connection holds: ``seconds``
        (0: not at all), else :data:`BUSY_TIMEOUT_S`."""
        wait = BUSY_TIMEOUT_S if seconds is None else seconds
        self.conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")

    def close(self) -> None:
        with suppress(Exception):  # closing what failed must not hide why it failed
            self.conn.close()

    def version(self) -> int:
        rows = self.query("SELECT MAX(version) FROM schema_version")
        value = rows[0][0]
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool):  # SQLite keeps whatever was put there
            raise HistoryError(f"{self.location.name}: its schema version is no number: not a batchsync history")
        return value

    def migrate(self) -> None:
        """Bring the store to :data:`schema.LATEST` in one transaction, once however many
        processes open it at the same moment. A store newer than this batchsync is refused.

        A SQLite store that is behind waits up to :data:`MIGRATION_WAIT_S` for its lock, not
        the busy timeout: the other process may be migrating it (PostgreSQL's advisory lock
        waits as long as the migration takes). A store already at :data:`schema.LATEST` is
        only read: the history verbs then work with a role that may only SELECT, a file in a
        read-only folder, and beside a run holding the write lock."""
        try:
            done = self.version()
        except HistoryError:
            raise
        except Exception:  # no version table yet: a new store
            done = -1
        if done == schema.LATEST:
            return
        if done > schema.LATEST:
            raise self._newer(done)
        if self.read_only and done <= 0:
            # No table yet: a file another run is creating right now, or one it could not
            # finish (a full disk left it empty). Nothing recorded there, as the verbs say it.
            raise HistoryError(f"{self.location.name}: no history yet (no run has recorded one there)")
        if self.read_only:
            raise HistoryError(
                f"{self.location.name} is at schema version {max(done, 0)}, older than this batchsync's "
                f"{schema.LATEST}: the next plan or apply that records into it brings it up to date"
            )
        if self._pg:
            self._migrate()
            return
        self.lock_wait(MIGRATION_WAIT_S)
        try:
            self._migrate()
        finally:
            self.lock_wait()

    def _newer(self, done: int) -> HistoryError:
        return HistoryError(
            f"{self.location.name} is at schema version {done}, newer than this batchsync's "
            f"{schema.LATEST}: upgrade batchsync"
        )

    def _migrate(self) -> None:
        with self.transaction():
            if self._pg:
                self.execute("SELECT pg_advisory_xact_lock(?)", (schema.ADVISORY_KEY,))
            self.execute(schema.VERSION_TABLE)
            done = self.version()
            if done > schema.LATEST:
                raise self._newer(done)
            if done < schema.LATEST:
                for sql in schema.statements(self.dialect, done):
                    self.execute(sql)
                self.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (schema.LATEST, iso(time.time()))
                )


def connect(
    location: Location, redact: Callable[[str], str] = str, *, create: bool = True, read_only: bool = False
) -> Db:
    """Open and migrate the store; HistoryError (its message redacted) when that fails.
    ``create`` False: a SQLite file that does not exist is an error (the history verbs
    read; they make nothing). ``read_only``: a SQLite file is opened to read only, and a
    store that is behind is not migrated (an error that says so)."""
    try:
        if location.kind == "sqlite":
            db = _sqlite_reader(location) if read_only else _sqlite(location, create)
        else:
            db = _postgresql(location)
            db.read_only = read_only
    except HistoryError:
        raise
    except Exception as exc:
        raise HistoryError(redact(_why(location, exc))) from None
    try:
        db.migrate()
    except HistoryError:
        db.close()
        raise
    except Exception as exc:
        db.close()
        raise HistoryError(redact(_why(location, exc))) from None
    return db


def _why(location: Location, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{location.name}: {text}"


def _sqlite(location: Location, create: bool) -> Db:
    path = location.target
    if not path:
        raise HistoryError(f"{location.name}: set XDG_STATE_HOME or give --history")
    if not os.path.exists(path):
        if not create:
            raise HistoryError(f"{location.name}: no history yet (no run has recorded one there)")
        folder = os.path.dirname(path) or "."
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            shown = escape_controls(folder)
            raise HistoryError(f"{location.name}: cannot create the folder {shown}: {exc.strerror}") from None
        try:  # the file made private before SQLite opens it (its -wal and -shm take its mode)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise HistoryError(f"{location.name}: cannot create it: {exc.strerror}") from None
    _regular(location)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = _journal_mode_wal(conn)
        if mode is None or str(mode[0]).lower() != "wal":
            raise HistoryError(f"{location.name}: SQLite could not use write-ahead logging there")
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable at each checkpoint, consistent always
    except BaseException:
        conn.close()
        raise
    return Db(location, conn, str)


def _regular(location: Location) -> None:
    """HistoryError unless the store's path (its link followed) is a regular file: a FIFO, a
    device or a folder is no SQLite store, and opening one may block or read nonsense."""
    import stat

    try:
        mode = os.stat(location.target).st_mode
    except OSError as exc:
        raise HistoryError(f"{location.name}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise HistoryError(f"{location.name} is {what}, not a file: the history store is a SQLite file")


def _journal_mode_wal(conn: sqlite3.Connection) -> Any:
    """Switch to write-ahead logging (a no-op once the file uses it); the row SQLite answers.

    Two runs creating a store at once (two inventories' applies starting together on a new
    host): the switch of one fails at once with "database is locked" while the other's
    holds the file, whatever the busy timeout. It is tried again for as long as that timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)  # extended (SQLITE_BUSY_RECOVERY): its low byte
            busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _sqlite_reader(location: Location) -> Db:
    """The store opened to read only (the history verbs): nothing written, not even the
    journal mode, so a file in a folder this user may not write is read as it is. Its
    write-ahead log needs a shared-memory file beside it; where none is there and none can
    be made (a read-only folder after the last run closed), the file is read as it stands
    (``immutable``): no run can be writing there either."""
    from urllib.parse import quote

    if not location.target or not os.path.exists(location.target):
        raise HistoryError(f"{location.name}: no history yet (no run has recorded one there)")
    _regular(location)  # SQLite's read-only open of a FIFO waits for a writer for ever
    uri = "file:" + quote(os.path.abspath(location.target))
    for mode in ("mode=ro", "immutable=1"):
        conn = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn.close()
            continue
        except BaseException:
            conn.close()
            raise
        db = Db(location, conn, str)
        db.read_only = True
        return db
    raise HistoryError(f"{location.name}: cannot be opened to read")


def _postgresql(location: Location) -> Db:
    try:
        import psycopg
    except ImportError:
        raise HistoryError(f"{location.name}: PostgreSQL needs psycopg: pip install 'batchsync[postgresql]'") from None
    conn = psycopg.connect(location.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    return Db(location, conn, str)
