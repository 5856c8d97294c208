"""A run recorded once by its key (``report merge`` of the same reports): a merge killed
half-way does not stand for the night, and two merges at once record it once, on SQLite
and PostgreSQL alike."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from batchsync.history import queries
from batchsync.history.db import connect
from batchsync.history.location import parse
from batchsync.history.store import RunInfo, Writes
from batchsync.history.writer import Session
from batchsync.outcome import Outcome

T0 = 1_800_000_000.0
KEY = "merge:shards:abc:def"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return parse(str(tmp_path / "h.sqlite3"))
    return parse(request.getfixturevalue("pg_url"))


def merge_run() -> RunInfo:
    return RunInfo(command="report merge", started_at=T0, group_key="shards:abc", dedup_key=KEY)


def outcomes(n: int) -> list[Outcome]:
    return [Outcome(integration_id=i, account="acme", result="changed", ended_at=T0) for i in range(1, n + 1)]


def merge(where: Any, n: int, *, end: bool = True) -> Session:
    session = Session.open(where, merge_run())
    for o in outcomes(n):
        session.add(o)
    if end:
        assert session.finish(T0 + 60, 0, {"changed": n}) is None
    else:  # killed: what it wrote stays, it never ends
        session.flush(now=True)
        session._drain()
    return session


def test_a_merge_recorded_to_its_end_is_recorded_once(where: Any) -> None:
    merge(where, 10)
    again = Session.open(where, merge_run())
    assert again.recorded_before
    db = connect(where)
    assert [(r["command"], r["exit_code"]) for r in queries.runs(db)] == [("report merge", 0)]
    db.close()


def test_a_merge_killed_half_way_does_not_stand_for_the_night(where: Any) -> None:
    # Before, its row held the key: every later merge of the same reports found it
    # "recorded already" and wrote nothing, and the night kept 4 outcomes of 10 for good.
    cut = merge(where, 4, end=False)
    cut.db.close()
    rerun = Session.open(where, merge_run())
    assert not rerun.recorded_before
    for o in outcomes(10):
        rerun.add(o)
    assert rerun.finish(T0 + 120, 0, {"changed": 10}) is None
    db = connect(where)
    runs = sorted(queries.runs(db), key=lambda r: r["id"])
    assert [r["exit_code"] for r in runs] == [None, 0]  # the killed one as it was left, the rerun whole
    counted = db.query("SELECT run_id, COUNT(*) FROM outcomes GROUP BY run_id ORDER BY run_id")
    assert [n for _, n in counted] == [4, 10]
    db.close()
    assert Session.open(where, merge_run()).recorded_before  # and now it is recorded: once


def test_two_merges_at_once_are_neither_lost_and_one_row_holds_the_key(where: Any) -> None:
    """The first one's row inserted and not yet committed when the second looks for it.
    PostgreSQL: the second saw no row, then met the first's on inserting (before, a unique
    violation: the second merge's history lost, exit 5); it waits for the first's commit
    and records nothing. SQLite takes them in turn: the second finds the first's row not
    ended, as a killed merge's, and takes the key over (the night recorded twice)."""
    first = connect(where)
    first_writes = Writes(first)
    results: list[int | None] = []
    entered = threading.Event()
    release = threading.Event()
    real = first.transaction

    def slow_transaction() -> Any:
        @contextmanager
        def held() -> Any:
            with real():
                yield
                entered.set()
                assert release.wait(10)  # the insert done, the commit not yet

        return held()

    first.transaction = slow_transaction  # type: ignore[method-assign]
    one = threading.Thread(target=lambda: results.append(first_writes.begin(merge_run())))
    one.start()
    assert entered.wait(10)
    second = connect(where)
    two = threading.Thread(target=lambda: results.append(Writes(second).begin(merge_run())))
    two.start()
    two.join(0.5)  # PostgreSQL: waits on the first's row; SQLite: on its write lock
    release.set()
    one.join(10)
    two.join(10)
    assert not one.is_alive() and not two.is_alive()
    assert len(results) == 2, results  # neither raised
    if where.kind == "postgresql":
        assert results.count(None) == 1, results
    else:
        assert results == [1, 2]
    holders = second.query("SELECT id FROM runs WHERE dedup_key = ?", (KEY,))
    assert holders == [(max(r for r in results if r is not None),)]
    first.close()
    second.close()
