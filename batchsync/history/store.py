"""What a run writes into the history: its row (at its start, then its end), its outcomes
in batches, and each integration's state (the streak the recap and ``history failing``
read), in the SQL both databases speak.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import sqlite3
import time
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import msgspec
from msgspec import UNSET

from batchsync.history.db import Db, iso
from batchsync.outcome import Outcome

NIGHT_CUTOFF_H = 12  # a "night" runs from noon to noon, UTC: the shards of one night share it


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The run's row as it starts."""

    command: str  # plan, apply, import, merge
    started_at: float  # Unix time
    inventory: str = ""
    inventory_hash: str = ""
    shard: str | None = None  # "I/N"
    group_key: str = ""  # the shards of one night share it; "" : the run alone
    dedup_key: str | None = None  # a run recorded twice (report merge run again) is recorded once
    host: str = ""
    version: str = ""
    plan_path: str | None = None  # apply --plan: the plan carried out
    plan_sha256: str | None = None


def inventory_hash(path: str) -> str:
    """The SHA-256 of the inventory file ("" when it cannot be read: the run goes on)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def night(t: float) -> str:
    """The night a run started in: the UTC date of its start, twelve hours earlier (runs
    started from noon to the next noon, UTC, belong to one night)."""
    return datetime.fromtimestamp(t - NIGHT_CUTOFF_H * 3600, UTC).strftime("%Y-%m-%d")


def group_key(shard: Mapping[str, Any] | None, inv_hash: str, started_at: float) -> str:
    """The group of a sharded run: the split (shard count, and each shard's accounts and
    integrations: what every machine computes alike), the inventory's content and the night.
    Four shards of one night share it; the next night, or another inventory, does not.
    "" for a run without shards (it is a group of its own)."""
    if shard is None:
        return ""
    split = {k: shard.get(k) for k in ("count", "integrations", "accounts")}
    text = msgspec.json.encode([split, inv_hash, night(started_at)])
    return "shards:" + hashlib.sha256(text).hexdigest()[:32]


class Writes:
    """The statements of one run's writes on a :class:`Db`; each call its own transaction."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def begin(self, run: RunInfo) -> int | None:
        """Insert the run's row; its id. None: a run with the same ``dedup_key`` is recorded
        already, to its end. One that never ended (a merge killed half-way: no exit code)
        does not stand for it: its row stays as it was left ("running or cut short"), the
        key passes to this run, which records everything again. (A merge of the same reports
        still going at this moment is then recorded twice: better than a night lost.)"""
        db = self.db
        with db.transaction():
            if run.dedup_key is not None:
                found = db.query("SELECT id, exit_code FROM runs WHERE dedup_key = ?", (run.dedup_key,))
                if found and found[0][1] is not None:
                    return None
                if found:
                    db.execute("UPDATE runs SET dedup_key = NULL WHERE id = ?", (found[0][0],))
            params = (
                run.command,
                run.inventory,
                run.inventory_hash,
                run.shard,
                "",
                run.dedup_key,
                run.host,
                run.version,
                iso(run.started_at),
                run.plan_path,
                run.plan_sha256,
            )
            sql = (
                "INSERT INTO runs (command, inventory, inventory_hash, shard, group_key, dedup_key, host, version, "
                "started_at, plan_path, plan_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )
            if db.dialect == "postgresql":
                # Two merges of the same reports at once: the SELECT above saw neither's row
                # (SQLite's BEGIN IMMEDIATE takes them in turn); the second waits for the
                # first's commit, then inserts nothing: recorded already, not a lost history.
                inserted = db.query(sql + " ON CONFLICT (dedup_key) DO NOTHING RETURNING id", params)
                if not inserted:
                    return None
                run_id = int(inserted[0][0])
            else:
                run_id = int(db.execute(sql, params).lastrowid)
            # A run alone is a group of its own: its id names it.
            db.execute("UPDATE runs SET group_key = ? WHERE id = ?", (run.group_key or f"run:{run_id}", run_id))
        return run_id

    def outcomes(
        self, run_id: int, run: RunInfo, group: str, batch: Sequence[Outcome], failing: Container[int] = ()
    ) -> None:
        """One batch of outcomes and the states they move, in one transaction: the state of
        a failure, and of an integration in ``failing`` (its streak as the run started) that
        no longer fails. Sorted by integration: the index takes them in order."""
        started = iso(run.started_at)
        # The rows by which of their columns are NULL (see _insert): a night's outcomes come
        # in two or three shapes (unchanged, changed, failed).
        shapes: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
        states = []
        encode = msgspec.json.encode
        for o in sorted(batch, key=_BY_ID):
            err = o.error
            kind, detail = (err.kind, err.detail) if err is not None else (None, o.reason)
            changes = encode(o.changes).decode() if o.changes else None
            name = o.name  # the shop's name as the inventory gives it (None: none)
            mapping = encode(o.mapping_changes).decode() if o.mapping_changes else None
            health = encode(o.health).decode() if o.health is not UNSET else None
            row = (
                run_id,
                o.integration_id,
                o.account,
                name,
                o.result,
                kind,
                detail,
                o.added,
                o.changed,
                o.removed,
                changes,
                o.attempts,
                o.duration_ms,
                mapping,
                health,
            )
            shape: tuple[bool, ...] = (
                name is None,
                kind is None,
                detail is None,
                changes is None,
                mapping is None,
                health is None,
            )
            rows = shapes.get(shape)
            if rows is None:
                rows = shapes[shape] = []
            rows.append(row)
            if o.result == "skipped":
                continue  # not done: it says nothing of the integration's state
            if o.result != "failed" and o.integration_id not in failing:
                continue  # it was not failing, and is not: its state says so already
            at = iso(o.ended_at) if o.ended_at else started
            states.append(
                (
                    o.integration_id,
                    o.account,
                    name,
                    o.result,
                    1 if o.result == "failed" else 0,
                    run_id,
                    group,
                    at,
                    started,
                    run_id,
                    kind,
                    detail,
                )
            )
        db = self.db
        with db.transaction():
            for nulls, rows in shapes.items():
                values = _values(nulls)
                i = 0
                for n in _chunks(len(rows)):
                    db.execute(_insert(nulls, n), list(chain.from_iterable(map(values, rows[i : i + n]))))
                    i += n
            if states:
                db.executemany(_UPSERT, states)

    def end(
        self,
        run_id: int,
        ended_at: float,
        exit_code: int | None,
        counts: Mapping[str, int],
        per_account: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """The run's end, its counts, and each account's (the HTML page's chart; ``health``: 1
        when the run read the account's exception logs, where the next run's window starts)."""
        rows = [
            (account, run_id, c.get("unchanged", 0), c.get("changed", 0), c.get("failed", 0), c.get("skipped", 0),
             c.get("health", 0))
            for account, c in (per_account or {}).items()
        ]  # fmt: skip
        with self.db.transaction():
            if rows:
                self.db.executemany(
                    "INSERT INTO run_accounts (account, run_id, unchanged, changed, failed, skipped, health_read) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            self.db.execute(
                "UPDATE runs SET ended_at = ?, exit_code = ?, unchanged = ?, changed = ?, failed = ?, skipped = ? "
                "WHERE id = ?",
                (
                    iso(ended_at or time.time()),
                    exit_code,
                    counts.get("unchanged", 0),
                    counts.get("changed", 0),
                    counts.get("failed", 0),
                    counts.get("skipped", 0),
                    run_id,
                ),
            )


# A streak: consecutive groups (runs; a night's shards count once) with the same failing
# state. Another run of the group already counted (report merge after its shards) keeps it.
_UPSERT = """INSERT INTO integration_state (integration_id, account, name, result, failing, last_run,
    last_group, last_at, streak_since, streak_run, streak_runs, error_kind, detail)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
ON CONFLICT (integration_id) DO UPDATE SET
    streak_runs = CASE
        WHEN integration_state.failing <> excluded.failing THEN 1
        WHEN integration_state.last_group = excluded.last_group THEN integration_state.streak_runs
        ELSE integration_state.streak_runs + 1 END,
    streak_since = CASE WHEN integration_state.failing = excluded.failing
        THEN integration_state.streak_since ELSE excluded.streak_since END,
    streak_run = CASE WHEN integration_state.failing = excluded.failing
        THEN integration_state.streak_run ELSE excluded.streak_run END,
    account = excluded.account,
    name = COALESCE(excluded.name, integration_state.name),
    result = excluded.result,
    failing = excluded.failing,
    last_run = excluded.last_run,
    last_group = excluded.last_group,
    last_at = excluded.last_at,
    error_kind = excluded.error_kind,
    detail = excluded.detail"""


_BY_ID = operator.attrgetter("integration_id")


# Rows per INSERT: one statement of many rows, not one per row (executemany). The driver
# then binds and steps once per few hundred rows: a run's writer thread takes the
# interpreter's lock from the event loop far less often. A batch's rows of one shape go in
# statements of ROWS_PER_INSERT, then of halving sizes (128, 64, ... 1) for what is left:
# a few statements, each prepared once per connection and then taken from the driver's
# cache (a statement of a length not seen before is parsed anew, 3 us a row: the rest of
# every batch cost that when its statement had the rest's exact length). 15 values a row
# stay under SQLite's 32,766 variables (999 before 3.32) and PostgreSQL's 65,535 parameters.
ROWS_PER_INSERT = 256 if sqlite3.sqlite_version_info >= (3, 32) else 64
_OUTCOME_COLUMNS = (
    "run_id",
    "integration_id",
    "account",
    "name",
    "result",
    "error_kind",
    "detail",
    "added",
    "changed",
    "removed",
    "changes",
    "attempts",
    "duration_ms",
    "mapping_changes",
    "health",
)
# The columns a row may leave NULL, in the order of a shape's flags: a column whose value
# is None is left out of the row's INSERT rather than bound. Python's sqlite3 binds None
# only after asking the value for an adapter (two failed attribute lookups, each formatting
# an AttributeError): a third of the writer's instructions when four of a row's values were None.
_NULLABLE = (3, 5, 6, 10, 13, 14)


def _chunks(n: int) -> list[int]:
    """``n`` rows as statement sizes: as many of ROWS_PER_INSERT as fit, then powers of two."""
    sizes = [ROWS_PER_INSERT] * (n // ROWS_PER_INSERT)
    n %= ROWS_PER_INSERT
    size = ROWS_PER_INSERT
    while n:
        size //= 2
        if n >= size:
            sizes.append(size)
            n -= size
    return sizes


@functools.cache
def _kept(shape: tuple[bool, ...]) -> tuple[int, ...]:
    """The columns a row of ``shape`` binds: all but the NULL ones."""
    null = {column for column, is_null in zip(_NULLABLE, shape, strict=True) if is_null}
    return tuple(i for i in range(len(_OUTCOME_COLUMNS)) if i not in null)


@functools.cache
def _values(shape: tuple[bool, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A row's values that a statement of ``shape`` binds."""
    return operator.itemgetter(*_kept(shape))


@functools.cache
def _insert(shape: tuple[bool, ...], n: int) -> str:
    """The INSERT of ``n`` rows of ``shape``: the columns it leaves NULL are not named."""
    kept = _kept(shape)
    row = "(" + ", ".join(["?"] * len(kept)) + ")"
    columns = ", ".join(_OUTCOME_COLUMNS[i] for i in kept)
    return f"INSERT INTO outcomes ({columns}) VALUES " + ", ".join([row] * n)  # noqa: S608 - constant columns
