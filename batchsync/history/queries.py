"""What the history answers: the runs, one run, one integration's timeline, the failing
integrations with their streaks, what a run starts from (:func:`streaks`), and pruning.
Each answer is plain data in the shapes ``batchsync history --format json`` prints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from batchsync.history.db import Db, iso

RESULTS = ("unchanged", "changed", "failed", "skipped")

_RUN_COLUMNS = (
    "id, command, inventory, started_at, ended_at, exit_code, unchanged, changed, failed, skipped, shard, "
    "group_key, host, version, inventory_hash, plan_path, plan_sha256"
)


def _run(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": int(row[0]),
        "command": row[1],
        "inventory": row[2],
        "started_at": row[3],
        "ended_at": row[4],
        "exit_code": row[5],
        "counts": {"unchanged": row[6], "changed": row[7], "failed": row[8], "skipped": row[9]},
        "shard": row[10],
    }


def runs(db: Db, *, since: str | None = None, limit: int | None = None, failed: bool = False) -> list[dict[str, Any]]:
    """Newest first. ``since``: started at or after (ISO 8601 UTC); ``failed``: runs that
    failed an integration or ended with another exit code than 0 (or never ended)."""
    where, params = [], []
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    if failed:
        where.append("(failed > 0 OR exit_code IS NULL OR exit_code NOT IN (0, 4))")
    sql = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 - constant columns; values are parameters
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [_counted(db, _run(r)) for r in db.query(sql, params)]


def _counted(db: Db, run: dict[str, Any]) -> dict[str, Any]:
    """A run without an end (running, or cut short: a kill) has no counts of its own, which
    are written at its end: those of the outcomes it recorded, not zeros beside them."""
    if run["exit_code"] is None:
        found = dict.fromkeys(RESULTS, 0)
        for result, n in db.query(
            "SELECT result, COUNT(*) FROM outcomes WHERE run_id = ? GROUP BY result", (run["id"],)
        ):
            if result in found:
                found[result] = int(n)
        run["counts"] = found
    return run


def show(db: Db, run_id: int) -> dict[str, Any] | None:
    """One run with every outcome; None when there is no such run."""
    rows = db.query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))  # noqa: S608 - constant columns
    if not rows:
        return None
    run = _counted(db, _run(rows[0])) | {"group": rows[0][11], "host": rows[0][12], "version": rows[0][13]}
    run["inventory_sha256"] = rows[0][14]
    if rows[0][16] is not None:  # apply --plan
        run["plan"] = {"path": rows[0][15], "sha256": rows[0][16]}
    outs = db.query(
        "SELECT integration_id, account, name, result, error_kind, detail, added, changed, removed, changes, "
        "attempts, duration_ms, mapping_changes, health FROM outcomes WHERE run_id = ? ORDER BY integration_id",
        (run_id,),
    )
    names = (
        *("integration_id", "account", "name", "result", "kind", "detail"),
        *("added", "changed", "removed", "changes", "attempts", "duration_ms"),
    )
    run["outcomes"] = [
        dict(zip(names, o[:12], strict=True))
        | {"changes": _changes(o[9]), "mapping_changes": _changes(o[12])}
        | _health(o[13])
        for o in outs
    ]
    return run


def _health(text: str | None) -> dict[str, Any]:
    """``{"health": ...}`` of an outcome that recorded its shop's health (--with-health), else nothing."""
    return {"health": msgspec.json.decode(text)} if text else {}


def _changes(text: str | None) -> list[Any]:
    return msgspec.json.decode(text) if text else []


_TIMELINE = (
    "SELECT r.id, r.started_at, r.command, o.result, o.changes, o.error_kind, o.detail, o.account, o.health, "
    "o.mapping_changes "
    "FROM runs r JOIN outcomes o ON o.run_id = r.id WHERE o.integration_id = ? "
    "ORDER BY r.started_at DESC, r.id DESC"
)


def integration(db: Db, integration_id: int, limit: int | None = None) -> dict[str, Any]:
    """One integration's timeline, newest first: each run, its result, what changed.

    A lookup in the (run, integration) index per run, newest run first: SQLite is told the
    order (``CROSS JOIN``), which, without statistics, would rather read every outcome;
    PostgreSQL's planner takes it as it is (a nested loop over the runs)."""
    sql = _TIMELINE.replace("runs r JOIN", "runs r CROSS JOIN") if db.dialect == "sqlite" else _TIMELINE
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    events = []
    for row in db.query(sql, (integration_id,)):
        event: dict[str, Any] = {
            "run": int(row[0]),
            "at": row[1],
            "command": row[2],
            "result": row[3],
            "changes": _changes(row[4]),
            "mapping_changes": _changes(row[9]),
        }
        if row[5] is not None:
            event["kind"], event["detail"] = row[5], row[6]
        event |= _health(row[8])
        events.append(event)
    return {"integration_id": integration_id, "events": events}


def failing(db: Db) -> list[dict[str, Any]]:
    """The integrations whose latest outcome is a failure: one indexed read of their state."""
    rows = db.query(
        "SELECT integration_id, account, name, streak_since, streak_runs, error_kind, detail FROM integration_state "
        "WHERE failing = 1 ORDER BY streak_since, integration_id"
    )
    names = ("integration_id", "account", "name", "since", "runs", "kind", "detail")
    return [dict(zip(names, r, strict=True)) | {"integration_id": int(r[0]), "runs": int(r[4])} for r in rows]


class Streak(msgspec.Struct, frozen=True):
    """An integration's failing streak as a run starts: since when, how many runs (groups),
    and the group of its latest run (a merge of shards that recorded it already)."""

    since: str
    runs: int
    last_group: str


def streaks(db: Db, ids: Iterable[int] | None = None) -> dict[int, Streak]:
    """The failing integrations' streaks (those of ``ids``, or all): what a run needs to
    tell a new failure from an old one, and to name recoveries. One indexed read."""
    rows = db.query(
        "SELECT integration_id, streak_since, streak_runs, last_group FROM integration_state WHERE failing = 1"
    )
    found = {int(r[0]): Streak(r[1], int(r[2]), r[3]) for r in rows}
    if ids is None or not found:
        return found
    # Each id looked up among the few found, not a set made of every id of the run: that
    # was some 6 MB at 100,000 integrations, on the run's peak (part 4: 112 MB, now 106).
    return {i: found[i] for i in ids if i in found}


def inventory_names(inventory: str) -> tuple[str, str, str]:
    """The ways a run may have recorded ``inventory``: absolute (as runs record it), as a
    real path (through links), and as given (a run of an older batchsync recorded that).
    An account is a name in one inventory: another inventory sharing the store may have an
    account of that name too, which is another Sendcloud account."""
    if not inventory:
        return inventory, inventory, inventory
    return os.path.abspath(inventory), os.path.realpath(inventory), inventory


def last_start(db: Db, account: str, inventory: str) -> str | None:
    """When the latest finished run of ``inventory`` that read ``account``'s exception logs
    started (a finished run has its accounts' rows: they are written at its end)."""
    rows = db.query(
        "SELECT MAX(r.started_at) FROM run_accounts a JOIN runs r ON r.id = a.run_id "
        "WHERE a.account = ? AND a.health_read = 1 AND r.inventory IN (?, ?, ?)",
        (account, *inventory_names(inventory)),
    )
    return rows[0][0] if rows and rows[0][0] is not None else None


def account_runs(
    db: Db, accounts: Iterable[str], per_account: int = 30, inventory: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """Each account's last ``per_account`` runs of ``inventory``, oldest first: changed and
    failed per run (the HTML page's chart). A few indexed rows per account."""
    out: dict[str, list[dict[str, Any]]] = {}
    for account in sorted(set(accounts)):
        rows = db.query(
            "SELECT a.run_id, r.started_at, a.changed, a.failed FROM run_accounts a JOIN runs r ON r.id = a.run_id "
            "WHERE a.account = ? AND r.inventory IN (?, ?, ?) ORDER BY a.run_id DESC LIMIT ?",
            (account, *inventory_names(inventory), per_account),
        )
        out[account] = [
            {"run": int(r[0]), "at": r[1], "changed": int(r[2]), "failed": int(r[3])} for r in reversed(rows)
        ]
    return out


RUNNING_S = 24 * 3600  # a run without an end that started more recently may still be going


def prune(db: Db, before: str, now: float | None = None) -> dict[str, int]:
    """Delete the runs started before ``before`` (ISO 8601 UTC) and their outcomes. The
    integrations' state stays (it is what their latest run left). A run without an end
    that started within :data:`RUNNING_S` of ``now`` may still be going (a cutoff of "now"
    from a maintenance job at midnight): it is kept, and counted in ``kept_running``;
    its outcomes would otherwise arrive for a run that no longer exists."""
    recent = iso((time.time() if now is None else now) - RUNNING_S)
    cond = "started_at < ? AND (ended_at IS NOT NULL OR started_at < ?)"
    args = (before, recent)
    with db.transaction():
        old = f"SELECT id FROM runs WHERE {cond}"  # noqa: S608 - constant text
        runs_gone = int(db.query(f"SELECT COUNT(*) FROM runs WHERE {cond}", args)[0][0])  # noqa: S608 - constant text
        kept = int(db.query("SELECT COUNT(*) FROM runs WHERE started_at < ?", (before,))[0][0]) - runs_gone
        outcomes = int(db.query(f"SELECT COUNT(*) FROM outcomes WHERE run_id IN ({old})", args)[0][0])  # noqa: S608 - constant text
        db.execute(f"DELETE FROM outcomes WHERE run_id IN ({old})", args)  # noqa: S608 - constant text
        db.execute(f"DELETE FROM run_accounts WHERE run_id IN ({old})", args)  # noqa: S608 - constant text
        db.execute(f"DELETE FROM runs WHERE {cond}", args)  # noqa: S608 - constant text
    return {"runs": runs_gone, "outcomes": outcomes, "kept_running": kept}
