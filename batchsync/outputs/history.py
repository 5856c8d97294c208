"""The sink of the run history (``--history``, on by default): the run's row, each outcome,
each integration's streak, written by :mod:`batchsync.history` (never waiting on the database).

Built before the other sinks (which read its :class:`Recall`: what was failing before this
run), closed just before the report: a history that could not be opened or written is a
lost output (named, exit 5), and the report's summary line carries that code.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from batchsync import __version__
from batchsync.history.db import HistoryError, iso
from batchsync.history.location import Location
from batchsync.history.queries import Streak, account_runs
from batchsync.history.store import RunInfo
from batchsync.history.writer import Session, describe_failure, summarize
from batchsync.outcome import RESULTS, Outcome
from batchsync.outputs.sink import CUT, End, Lost, Start

FLAG = "--history"
CHART_RUNS = 30  # runs in each account's chart on the HTML page, this one included


def note_lost(location: Location, lost: Lost, why: str, redact: Callable[[str], str] = str) -> None:
    """The history at ``location`` counted lost, for ``why`` (its name said once)."""
    name = location.name
    why = why[len(name) + 2 :] if why.startswith(name + ": ") else why
    # The default file is nobody's --history: named as what it is.
    lost.note("the run history" if location.implicit else FLAG, name, redact(why))


class Recall:
    """What the history knew as the run started: the failing streaks. Empty without a history."""

    def __init__(
        self,
        known: Mapping[int, Streak] | None = None,
        group: str = "",
        charts: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.known: Mapping[int, Streak] = known or {}
        self.group = group
        self.on = known is not None
        self.charts: Mapping[str, list[dict[str, Any]]] = charts or {}  # each account's earlier runs

    def failing_since(self, outcome: Outcome) -> tuple[str, int] | None:
        """(since, runs) for a failure that goes on; None for a new one."""
        streak = describe_failure(self.known, self.group, outcome.integration_id)
        return None if streak is None or streak[1] == 1 else streak

    def concerns(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` is one :meth:`summarize` needs: a failure, or an integration
        that was failing (it may have recovered)."""
        return outcome.result == "failed" or outcome.integration_id in self.known

    def summarize(self, outcomes: Iterable[Outcome]) -> dict[str, Any]:
        return summarize(self.known, self.group, outcomes)


def since_text(since: str, runs: int) -> str:
    """``failing since 2026-12-01 02:00 UTC (3 runs)``."""
    return f"failing since {since[:10]} {since[11:16]} UTC ({runs} run{'' if runs == 1 else 's'})"


class History:
    """The sink. A store that cannot be opened costs no integration: the run goes on, and the
    history is named among the lost outputs."""

    def __init__(
        self,
        location: Location,
        start: Start,
        lost: Lost,
        redact: Callable[[str], str] = str,
        *,
        command: str | None = None,
        dedup_key: str | None = None,
        ids: Iterable[int] | None = None,
        charts: Iterable[str] = (),
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.location, self.lost, self.redact = location, lost, redact
        self.counts: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.health_read: set[str] = set()  # accounts whose exception logs this run read (--with-health)
        shard = start.shard
        run = RunInfo(
            command=command or start.mode,
            started_at=start.started_at or time.time(),
            # Absolute: an account's earlier runs are found by it whatever folder a later
            # run starts from (a merge keeps what its reports say: another machine's path).
            inventory=os.path.abspath(start.inventory) if start.inventory and not start.parts else start.inventory,
            inventory_hash=start.inventory_sha256,
            shard=f"{shard['index']}/{shard['count']}" if shard else None,
            group_key=start.group,
            dedup_key=dedup_key,
            host=socket.gethostname(),
            version=__version__,
            plan_path=start.plan["path"] if start.plan is not None and start.mode == "apply" else None,
            plan_sha256=start.plan["sha256"] if start.plan is not None and start.mode == "apply" else None,
        )
        self.session: Session | None = None
        try:
            self.session = Session.open(location, run, redact, ids)
        except HistoryError as exc:
            self.recall = Recall()
            if location.implicit and not (location.target and os.path.exists(location.target)):
                # The default file, which nobody asked for, that cannot be made (a container's
                # user without a home): said, not an output lost. A store asked for that
                # fails is one, and so is a default file that is there and cannot be used
                # (corrupt, a full disk): its history is lost, not merely never started.
                if warn is not None:
                    warn(
                        f"batchsync: warning: no run history: {self.redact(str(exc))} (set XDG_STATE_HOME, give "
                        "--history, or --no-history)"
                    )
                return
            self._lose(str(exc))
            return
        if self.session.recorded_before and warn is not None:
            warn(
                "batchsync: note: the run history has this merge already (the same reports merged before): "
                "not recorded again"
            )
        found: Mapping[str, list[dict[str, Any]]] = {}
        accounts = list(charts)
        if accounts:  # --html: each account's earlier runs, for its chart
            try:
                found = account_runs(self.session.db, accounts, CHART_RUNS - 1, start.inventory)
            except Exception as exc:
                self._lose(" ".join(str(exc).split()))
        self.recall = Recall(self.session.streaks, self.session.group, found)
        self.started = iso(run.started_at)

    def cut(self) -> None:
        """A second signal cut its close (close_all): what was not written is lost, and said."""
        self._lose(CUT)

    def _lose(self, why: str) -> None:
        note_lost(self.location, self.lost, why, self.redact)

    def add(self, outcome: Outcome) -> None:
        if self.session is not None:
            self.counts[outcome.result] += 1
            health = outcome.shop_health
            if health is not None and health.unknown is None:
                self.health_read.add(outcome.account)
            self.session.add(outcome)

    def flush(self) -> None:
        if self.session is not None:
            self.session.flush()

    def close(self, end: End | None) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        if end is None:
            error = session.finish(None, None, self.counts)
        else:
            counts: dict[str, int] = {r: end.summary.total(r) for r in RESULTS}
            accounts: dict[str, Mapping[str, int]] = {
                name: {**{r: a.count(r) for r in RESULTS}, "health": int(name in self.health_read)}
                for name, a in end.summary.accounts.items()
            }
            error = session.finish(end.ended_at, end.code(), counts, accounts)
        if error is not None:
            self._lose(error)
