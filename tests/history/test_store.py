"""The history store in process: the streak rules, the shards' group, migrations applied
once, URLs and their redaction, the session's writer thread, and what a lost store does."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from batchsync.health import Health
from batchsync.history import queries, schema
from batchsync.history.db import HistoryError, connect, iso
from batchsync.history.location import Location, LocationError, default_path, parse
from batchsync.history.store import RunInfo, Writes, group_key, night
from batchsync.history.writer import Session
from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.history import History, Recall, since_text
from batchsync.outputs.sink import End, Lost, Start

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def ok(iid: int, result: Any = "unchanged") -> Outcome:
    return Outcome(integration_id=iid, account="acme", result=result, ended_at=T0)


def bad(iid: int) -> Outcome:
    return Outcome(integration_id=iid, account="acme", result="failed", error=ErrorInfo("server", 503, None, "down"))


def record(location: Any, outcomes: list[Outcome], at: float, group: str = "", command: str = "apply") -> Session:
    session = Session.open(location, RunInfo(command=command, started_at=at, group_key=group))
    for o in outcomes:
        session.add(o)
    assert session.finish(at + 60, 1 if any(o.result == "failed" for o in outcomes) else 0, {}) is None
    return session


def test_a_failing_streak_counts_runs_and_keeps_its_start_until_a_success(tmp_path: Path) -> None:
    where = parse(str(tmp_path / "h.sqlite3"))
    record(where, [bad(1), ok(2)], T0)
    record(where, [bad(1), bad(2)], T0 + 86400)
    record(where, [bad(1), ok(2, "skipped")], T0 + 2 * 86400)  # skipped: says nothing
    db = connect(where)
    failing = {f["integration_id"]: f for f in queries.failing(db)}
    assert failing[1]["runs"] == 3 and failing[1]["since"] == iso(T0)
    assert failing[2]["runs"] == 1 and failing[2]["since"] == iso(T0 + 86400)
    db.close()
    record(where, [ok(1, "changed"), ok(2)], T0 + 3 * 86400)
    db = connect(where)
    assert queries.failing(db) == []
    state = db.query("SELECT streak_runs, streak_since, failing FROM integration_state ORDER BY integration_id")
    assert state == [(1, iso(T0 + 3 * 86400), 0), (1, iso(T0 + 3 * 86400), 0)]  # both recovered in the 4th run
    record(where, [ok(1), ok(2), ok(3)], T0 + 4 * 86400)  # what goes on succeeding costs no write
    assert db.query("SELECT COUNT(*) FROM integration_state")[0][0] == 2
    assert db.query("SELECT COUNT(*) FROM outcomes WHERE run_id = 5")[0][0] == 3
    db.close()


def test_runs_of_one_group_count_once_in_a_streak(tmp_path: Path) -> None:
    where = parse(str(tmp_path / "h.sqlite3"))
    record(where, [bad(1)], T0, group="g1")
    record(where, [bad(1)], T0 + 10, group="g1", command="report merge")  # the merge of that night
    record(where, [bad(1)], T0 + 86400, group="g2")
    db = connect(where)
    assert [(f["runs"], f["since"]) for f in queries.failing(db)] == [(2, iso(T0))]
    db.close()


def test_the_shards_of_one_night_share_a_group_and_the_next_night_does_not() -> None:
    shard = {"index": 0, "count": 4, "integrations": [3, 3, 2, 2], "accounts": [1, 1, 1, 1]}
    other = dict(shard, index=3)
    evening, morning = 1_800_050_400.0, 1_800_050_400.0 + 10 * 3600  # 22:00 and 08:00 the next day, UTC
    assert night(evening) == night(morning)
    assert group_key(shard, "h", evening) == group_key(other, "h", morning)
    assert group_key(shard, "h", evening) != group_key(shard, "h", evening + 86400)
    assert group_key(shard, "h", evening) != group_key(shard, "other inventory", evening)
    assert group_key(None, "h", evening) == ""


def test_migrations_run_once_however_many_open_at_once(tmp_path: Path) -> None:
    where = parse(str(tmp_path / "h.sqlite3"))
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            connect(where).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = sqlite3.connect(where.target)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(schema.LATEST,)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.execute("INSERT INTO schema_version VALUES (99, 'later')")
    conn.commit()
    with pytest.raises(HistoryError, match="schema version 99, newer than"):
        connect(where)


_OPEN_AT = """
import sys, time
from batchsync.history.db import connect
from batchsync.history.location import parse
while time.time() < float(sys.argv[2]):
    pass
connect(parse(sys.argv[1])).close()
"""


def test_processes_creating_one_store_at_once_all_open_it(tmp_path: Path) -> None:
    # Two inventories' applies starting together on a new host share the default store:
    # one of them lost its history ("database is locked", switching the new file to WAL).
    for attempt in range(3):
        path = tmp_path / f"h{attempt}.sqlite3"
        at = f"{time.time() + 1.0:.3f}"
        procs = [
            subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(path), at], stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        errs = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errs
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(schema.LATEST,)]
        conn.close()


def test_an_empty_store_file_reads_as_no_history_yet(tmp_path: Path) -> None:
    # A file another run is creating, or one a full disk left empty: the reading verbs said
    # "schema version 0, older than this batchsync's" (as if an upgrade were due).
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"")
    with pytest.raises(HistoryError, match="no history yet"):
        connect(parse(str(path)), read_only=True, create=False)
    record(parse(str(path)), [ok(1)], T0)  # the next run makes it whole
    connect(parse(str(path)), read_only=True, create=False).close()


def test_urls_name_the_store_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pg = parse("postgresql://sync:pa%24%24word@db.example:5433/batchsync")
    assert pg.kind == "postgresql" and pg.name == "postgresql://db.example:5433/batchsync"
    assert "pa$$word" in pg.secrets and pg.target in pg.secrets
    assert "password" not in parse("postgres:///h?host=/run/pg&password=zz").name
    assert "zz" in parse("postgres:///h?host=/run/pg&password=zz").secrets
    assert parse("sqlite:////var/h.sqlite3").target == "/var/h.sqlite3"
    assert parse("sqlite:///rel/h.sqlite3").target == "rel/h.sqlite3"
    for wrong in ("", "sqlite://h.sqlite3", "mysql://u:secret@h/db"):
        with pytest.raises(LocationError) as caught:
            parse(wrong)
        assert "secret" not in str(caught.value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_path() == str(tmp_path / "batchsync" / "history.sqlite3")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    assert default_path().endswith(".local/state/batchsync/history.sqlite3")


def _end(summary: Summary, code: int = 0) -> End:
    return End(summary=summary, code=lambda: code, started_at=T0, ended_at=T0 + 5)


def test_the_sink_records_the_run_and_recalls_the_streaks(tmp_path: Path) -> None:
    where = parse(str(tmp_path / "h.sqlite3"))
    record(where, [bad(1), bad(2)], T0 - 86400)
    lost = Lost()
    sink = History(where, Start(mode="apply", started_at=T0, inventory="inv.toml"), lost)
    assert sink.recall.on and set(sink.recall.known) == {1, 2}
    assert sink.recall.failing_since(bad(1)) == (iso(T0 - 86400), 2)
    assert sink.recall.failing_since(bad(3)) is None
    memory = sink.recall.summarize([bad(1), ok(2), bad(3)])
    assert [o.integration_id for o in memory["new"]] == [3]
    assert [(o.integration_id, n) for o, _, n in memory["ongoing"]] == [(1, 2)]
    assert [(o.integration_id, n) for o, _, n in memory["recovered"]] == [(2, 1)]
    read = Health(since=iso(T0 - 86400))  # the run read acme's exception logs (--with-health)
    for o in (bad(1), msgspec.structs.replace(ok(2), health=read), bad(3)):
        sink.add(o)
    summary = Summary(accounts={"acme": AccountStats(unchanged=1, failed=2)})
    sink.close(_end(summary, 1))
    assert not lost
    db = connect(where)
    [run, _] = queries.runs(db)
    assert run["counts"] == {"unchanged": 1, "changed": 0, "failed": 2, "skipped": 0} and run["exit_code"] == 1
    assert run["inventory"] == os.path.abspath("inv.toml")  # absolute: found from any folder
    assert queries.last_start(db, "acme", "inv.toml") == iso(T0) and queries.last_start(db, "other", "inv.toml") is None
    chart = {"acme": [{"run": 2, "at": iso(T0), "changed": 0, "failed": 2}]}
    assert queries.account_runs(db, ["acme"], inventory="inv.toml") == chart
    # An account is a name in one inventory: another inventory's "acme" is another account.
    assert queries.last_start(db, "acme", "other.toml") is None
    assert queries.account_runs(db, ["acme"], inventory="other.toml") == {"acme": []}
    # The inventory as given, absolute, or through a link: the same runs.
    assert queries.last_start(db, "acme", os.path.abspath("inv.toml")) == iso(T0)
    link = tmp_path / "link"
    link.symlink_to(os.getcwd())
    assert queries.last_start(db, "acme", str(link / "inv.toml")) == iso(T0)
    db.close()
    assert since_text("2027-01-15T08:00:00.000Z", 3) == "failing since 2027-01-15 08:00 UTC (3 runs)"
    assert Recall().failing_since(bad(1)) is None and not Recall().on


def test_a_store_that_cannot_be_opened_is_a_lost_output_named_without_its_password(tmp_path: Path) -> None:
    where = parse("postgresql://u:hunter2secret@127.0.0.1:1/nothing")
    lost = Lost()
    sink = History(where, Start(mode="apply", started_at=T0), lost, redact=lambda s: s.replace("hunter2secret", "***"))
    assert not sink.recall.on
    sink.add(ok(1))
    sink.close(_end(Summary(accounts={})))
    [line] = lost.lines()
    assert line.startswith("batchsync: --history postgresql://127.0.0.1:1/nothing was not written: ")
    assert "hunter2secret" not in line and lost.exit_code(0) == 5


def test_a_store_lost_during_the_run_is_named_and_the_run_goes_on(tmp_path: Path) -> None:
    where = parse(str(tmp_path / "h.sqlite3"))
    lost = Lost()
    sink = History(where, Start(mode="apply", started_at=T0), lost)
    session = sink.session
    assert session is not None
    session.db.execute("DROP TABLE outcomes")  # a store broken under the run
    for i in range(5):
        sink.add(ok(i))
    sink.flush()
    time.sleep(0.05)
    sink.close(_end(Summary(accounts={})))
    assert lost and "no such table: outcomes" in lost.lines()[0]


def test_history_read_from_postgresql_alike(pg_url: str) -> None:
    where = parse(pg_url)
    record(where, [bad(1), ok(2, "changed")], T0)
    record(where, [bad(1)], T0 + 86400)
    db = connect(where)
    assert [(f["integration_id"], f["runs"], f["since"]) for f in queries.failing(db)] == [(1, 2, iso(T0))]
    assert [e["result"] for e in queries.integration(db, 2)["events"]] == ["changed"]
    assert queries.prune(db, iso(T0 + 1)) == {"runs": 1, "outcomes": 2, "kept_running": 0}
    db.close()


def test_prune_keeps_a_run_that_may_still_be_going(tmp_path: Path) -> None:
    # A maintenance job pruning up to "now" deleted the row of the night's run still going:
    # its later outcomes belonged to no run, shown by no command and pruned by none.
    where = parse(str(tmp_path / "h.sqlite3"))
    now = time.time()
    record(where, [ok(1)], now - 3 * 86400)  # ended
    cut = Session.open(where, RunInfo(command="apply", started_at=now - 2 * 86400))  # killed: no end
    cut.finish(None, None, {})
    going = Session.open(where, RunInfo(command="apply", started_at=now - 60))
    going.add(ok(2))
    going.flush(now=True)
    db = connect(where)
    assert queries.prune(db, iso(now + 1), now=now) == {"runs": 2, "outcomes": 1, "kept_running": 1}
    assert going.finish(now, 0, {"unchanged": 1}) is None  # its end is recorded: its row is there
    assert [r["exit_code"] for r in queries.runs(db)] == [0]
    db.close()


def test_runs_select_by_age_count_and_failure(tmp_path: Path) -> None:
    from batchsync.commands.history import when
    from batchsync.usage import UsageError

    where = parse(str(tmp_path / "h.sqlite3"))
    record(where, [ok(1)], T0)
    record(where, [bad(1)], T0 + 86400)
    record(where, [ok(1)], T0 + 2 * 86400)
    db = connect(where)
    assert [r["id"] for r in queries.runs(db)] == [3, 2, 1]
    assert [r["id"] for r in queries.runs(db, limit=2)] == [3, 2]
    assert [r["id"] for r in queries.runs(db, failed=True)] == [2]
    assert [r["id"] for r in queries.runs(db, since=when("36h", "--since", now=T0 + 2 * 86400))] == [3, 2]
    assert [r["id"] for r in queries.runs(db, since=when("2027-01-16", "--since"))] == [3, 2]
    assert queries.show(db, 9) is None
    db.close()
    with pytest.raises(UsageError, match="--since soon"):
        when("soon", "--since")


def test_a_large_run_is_written_whole_across_statements_and_batches(tmp_path: Path) -> None:
    from batchsync.history import store, writer

    where = parse(str(tmp_path / "h.sqlite3"))
    n = writer.BATCH + 2 * store.ROWS_PER_INSERT + 3  # a full batch, then two statements and a bit
    record(where, [bad(i) if i % 97 == 0 else ok(i) for i in range(1, n + 1)], T0)
    db = connect(where)
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT integration_id) FROM outcomes") == [(n, n)]
    assert len(queries.failing(db)) == n // 97
    db.close()


def test_a_default_store_that_cannot_be_made_is_said_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchsync.history.location import default

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # a container's user without a home, say
    said: list[str] = []
    lost = Lost()
    sink = History(default(), Start(mode="apply", started_at=T0), lost, warn=said.append)
    sink.add(ok(1))
    sink.close(_end(Summary(accounts={})))
    assert not lost and not sink.recall.on
    [line] = said
    assert line.startswith("batchsync: warning: no run history: ") and "--no-history" in line
    asked = History(parse(str(blocker / "h.sqlite3")), Start(mode="apply", started_at=T0), lost, warn=said.append)
    assert lost and len(said) == 1 and not asked.recall.on  # one asked for: a lost output


def test_an_outcome_s_shop_name_is_stored_with_it(tmp_path: Path) -> None:
    where = parse(str(tmp_path / "h.sqlite3"))
    named = Outcome(integration_id=7, account="acme", result="unchanged", ended_at=T0, name="Café Ö")
    record(where, [named, ok(8)], T0)
    db = connect(where)
    assert db.query("SELECT integration_id, name FROM outcomes ORDER BY integration_id") == [(7, "Café Ö"), (8, None)]
    db.close()


def test_health_counts_from_the_last_recorded_run_of_each_account(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from batchsync.commands._health import from_history
    from batchsync.health import no_history

    where = parse(str(tmp_path / "h.sqlite3"))
    assert from_history(where, ["acme"]) is no_history  # no store made yet: no earlier run
    inv = str(tmp_path / "inv.toml")
    for at, inventory in ((T0 - 86400, inv), (T0, inv), (T0 + 3600, str(tmp_path / "other.toml"))):
        session = Session.open(where, RunInfo(command="apply", started_at=at, inventory=inventory))
        session.add(ok(1))
        read = {"acme": {"unchanged": 1, "changed": 0, "failed": 0, "health": 1}}  # it read acme's logs
        assert session.finish(at + 60, 0, {}, read) is None
    # The last run of this inventory on its acme: another inventory's "acme" ran later.
    now = datetime.fromtimestamp(T0 + 86400, UTC)
    lookup = from_history(where, ["acme", "other"], inventory=inv, now=now)
    assert lookup("acme") == datetime.fromtimestamp(T0, UTC) and lookup("other") is None
    # A run recorded by a host whose clock ran a year ahead would hide every log until then.
    session = Session.open(where, RunInfo(command="apply", started_at=T0 + 365 * 86400, inventory=inv))
    assert session.finish(T0 + 365 * 86400, 0, {}, {"acme": {"unchanged": 1, "health": 1}}) is None
    ahead: list[str] = []
    assert from_history(where, ["acme"], warn=ahead.append, inventory=inv, now=now)("acme") is None
    assert ahead == [
        "batchsync: warning: the run history's last run of 'acme' started in the future of this machine's clock: "
        "health since 24 h there"
    ]
    warned: list[str] = []
    broken = parse("postgresql://u:pw-secret@127.0.0.1:1/db")
    assert from_history(broken, ["acme"], warn=warned.append) is no_history
    assert warned and "health since 24 h" in warned[0] and "pw-secret" not in warned[0]
    assert from_history(None, ["acme"]) is no_history


def test_a_literal_dsn_in_the_inventory_is_refused_without_being_quoted(tmp_path: Path) -> None:
    import json

    from batchsync.inventory.loader import load

    path = tmp_path / "inv.json"
    account = {"public_key": "env:P", "secret_key": "env:S"}
    for url in (
        "postgresql://u:pw-literal@db/x",
        "host=db password=pw-literal",
        "ENV:X",
        "postgresql:/u:pw-literal@db/x",
    ):
        doc = {"accounts": {"a": account}, "integrations": [], "history": {"url": url}}
        path.write_text(json.dumps(doc))
        inv = load(path, {"P": "p", "S": "s"})
        [problem] = inv.problems
        assert problem.path == "$.history.url" and "literal secret" in problem.message
        assert "pw-literal" not in problem.message and url not in problem.message
    path.write_text(json.dumps({"accounts": {"a": account}, "integrations": [], "history": {"url": "env:H"}}))
    inv = load(path, {"P": "p", "S": "s", "H": "sqlite:////tmp/h.sqlite3"})
    assert not inv.problems and inv.history is not None


def test_a_sqlite_file_in_the_inventory_is_taken_as_written_relative_to_it(tmp_path: Path) -> None:
    import json

    from batchsync.commands._arguments import history_location
    from batchsync.inventory.loader import load

    path = tmp_path / "inv.json"
    account = {"public_key": "env:P", "secret_key": "env:S"}
    # A path holds no credential: an inventory may name its SQLite file as it is.
    expected = {
        "state/h.sqlite3": str(tmp_path / "state" / "h.sqlite3"),
        "sqlite:///state/h%20x.sqlite3": str(tmp_path / "state" / "h x.sqlite3"),
        "sqlite:////var/lib/batchsync/h.sqlite3": "/var/lib/batchsync/h.sqlite3",
        " /srv/h.sqlite3 ": "/srv/h.sqlite3",
    }
    for url, target in expected.items():
        path.write_text(json.dumps({"accounts": {"a": account}, "integrations": [], "history": {"url": url}}))
        inv = load(path, {"P": "p", "S": "s"})
        assert not inv.problems, url
        where = history_location(None, False, inv.history)
        assert where is not None and where.kind == "sqlite" and where.target == target and where.secrets == ()
    path.write_text(json.dumps({"accounts": {"a": account}, "integrations": [], "history": {"url": "sqlite://h"}}))
    [problem] = load(path, {"P": "p", "S": "s"}).problems
    assert problem.path == "$.history.url" and "sqlite:///PATH" in problem.message


def test_the_writer_takes_a_batch_every_few_seconds_not_at_every_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchsync.history import writer

    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    handed: list[int] = []
    session = Session.open(parse(str(tmp_path / "h.sqlite3")), RunInfo(command="apply", started_at=T0))
    real = session._hand_over

    def spy() -> None:
        handed.append(len(session._batch))
        real()

    monkeypatch.setattr(session, "_hand_over", spy)
    for i in range(1, 4):
        session.add(ok(i, "changed"))
        clock[0] += 0.2
        session.flush()  # the run's timer: too soon for the writer
    assert handed == []
    clock[0] += writer.HAND_OVER_S
    session.flush()
    assert handed == [3]
    session.add(ok(4, "changed"))
    assert session.finish(T0 + 60, 0, {}) is None  # the rest at the end, whenever it comes
    assert handed == [3]  # the end hands the rest over itself, waiting for the writer if need be
    db = connect(parse(str(tmp_path / "h.sqlite3")))
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(4,)]
    db.close()


def _hold_writes(
    session: Session, monkeypatch: pytest.MonkeyPatch, release: threading.Event, pause: float = 0.0
) -> list[int]:
    """Each batch the writer takes waits for ``release`` (a hung server) or ``pause`` s (a slow one)."""
    written: list[int] = []
    real = session._writes.outcomes

    def slow(*args: Any, **kwargs: Any) -> None:
        release.wait(pause or None)
        real(*args, **kwargs)
        written.append(len(args[3]))

    monkeypatch.setattr(session._writes, "outcomes", slow)
    return written


def _first_batch_taken(session: Session) -> None:
    """Outcomes 1 to 10 added (a batch, in these tests), and taken by the writer."""
    for i in range(1, 11):
        session.add(ok(i, "changed"))
    deadline = time.monotonic() + 5
    while session._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not session._queue.qsize()


def _session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool = False, **writer_constants: float
) -> tuple[Location, Session]:
    """A run's history session in ``tmp_path``, the writer's constants set as given: written
    by its writer thread (a PostgreSQL server's path, and a SQLite store's once its lock is
    held elsewhere), or with ``inline`` by the caller, as a local SQLite file is."""
    from batchsync.history import writer

    monkeypatch.setattr(writer, "INLINE_SQLITE", inline)
    for name, value in writer_constants.items():
        monkeypatch.setattr(writer, name, value)
    where = parse(str(tmp_path / "h.sqlite3"))
    return where, Session.open(where, RunInfo(command="apply", started_at=T0))


def _answer_at_last(session: Session, release: threading.Event) -> None:
    """The hung server answers at last: the writer drains what waits, and ends."""
    release.set()
    session._queue.put(None, timeout=5)
    session._thread.join(5)
    assert not session._thread.is_alive()


def test_a_hung_store_never_holds_up_the_run_and_is_lost_after_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, session = _session(tmp_path, monkeypatch, BATCH=10, STUCK_S=0.3, PUT_TIMEOUT_S=2.0)
    release = threading.Event()
    written = _hold_writes(session, monkeypatch, release)
    _first_batch_taken(session)
    began = time.monotonic()
    for i in range(11, 201):  # the run's timer adds them on the event loop: it must not wait
        session.add(ok(i, "changed"))
        session.flush()
    assert time.monotonic() - began < 0.25  # not PUT_TIMEOUT_S: no hand-over waited
    assert written == [] and session.error is None  # the writer is still on the first batch
    assert len(session._batch) == 170  # two batches queued, the rest gathered for the next
    time.sleep(0.35)
    for i in range(201, 211):
        session.add(ok(i, "changed"))
    assert session.error == f"{where.name}: the store did not take the run's outcomes for 0.3s"
    assert session._batch == []  # dropped once lost: memory stays bounded
    session.add(ok(211, "changed"))
    assert session._batch == []
    try:
        began = time.monotonic()
        assert session.finish(T0 + 60, 0, {}) == session.error
        assert time.monotonic() - began < 0.25  # lost already: the run's end does not wait for it
    finally:
        _answer_at_last(session, release)


def test_a_hung_store_in_a_fast_run_holds_it_back_no_longer_than_the_writer_may_be_moving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, session = _session(tmp_path, monkeypatch, BATCH=10, BACKLOG=30, STUCK_S=0.5)
    release = threading.Event()
    _hold_writes(session, monkeypatch, release)
    _first_batch_taken(session)
    taken = session._taken
    for i in range(11, 71):  # 20 queued, 30 gathered: the hand-over at 30 waits, then gives up
        session.add(ok(i, "changed"))
    waited = time.monotonic() - taken
    assert 0.45 <= waited < 2.0  # up to STUCK_S after the writer last took a batch, not more
    assert session.error == f"{where.name}: the store did not take the run's outcomes for 0.5s"
    try:
        assert session.finish(T0 + 60, 0, {}) == session.error
    finally:
        _answer_at_last(session, release)


def test_a_writer_idle_through_a_lull_is_not_taken_for_a_hung_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run quiet for minutes (a long Retry-After), then a burst of outcomes faster than the
    writer thread wakes: the writer last took a batch long ago, yet nothing waited for it."""
    awake = threading.Event()
    work = Session._work

    def drowsy(self: Session) -> None:
        awake.wait()  # the writer thread not scheduled yet
        work(self)

    monkeypatch.setattr(Session, "_work", drowsy)
    _, session = _session(tmp_path, monkeypatch, BATCH=10, STUCK_S=60.0)
    session._taken -= 120.0  # its last batch two minutes ago
    for i in range(1, 41):  # two batches queued, the third finds the queue full
        session.add(ok(i, "changed"))
    assert session.error is None and len(session._batch) == 20
    awake.set()
    assert session.finish(T0 + 60, 0, {}) is None


def test_a_store_far_behind_but_moving_holds_the_run_back_rather_than_lose_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, session = _session(tmp_path, monkeypatch, BATCH=10, BACKLOG=30)
    written = _hold_writes(session, monkeypatch, threading.Event(), pause=0.02)
    for i in range(1, 401):
        session.add(ok(i, "changed"))
        assert len(session._batch) <= 30  # memory stays bounded: the run waits past BACKLOG
    assert session.error is None
    assert session.finish(T0 + 60, 0, {}) is None
    assert sum(written) == 400
    db = connect(where)
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT integration_id) FROM outcomes") == [(400, 400)]
    db.close()


def test_a_slow_store_that_catches_up_loses_no_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where, session = _session(tmp_path, monkeypatch, BATCH=10, BACKLOG=10_000)
    written = _hold_writes(session, monkeypatch, threading.Event(), pause=0.05)
    began = time.monotonic()
    for i in range(1, 301):
        session.add(ok(i, "changed"))
    assert time.monotonic() - began < 1.0  # not 28 batches x 0.05 s: the writer was behind
    assert session.finish(T0 + 60, 0, {}) is None
    assert sum(written) == 300 and len(written) < 30  # what waited went in larger batches
    db = connect(where)
    assert db.query("SELECT COUNT(*), COUNT(DISTINCT integration_id) FROM outcomes") == [(300, 300)]
    db.close()


def test_a_run_s_streaks_are_read_without_a_table_of_every_id(tmp_path: Path) -> None:
    """A run reads the streaks of its own integrations: looked up among the few failing ones
    found, not through a set of every id of the run (some 6 MB at 100,000 integrations, on
    the run's peak)."""
    import tracemalloc

    where = parse(str(tmp_path / "h.sqlite3"))
    db = connect(where)
    ids = list(range(1, 100_001))
    tracemalloc.start()
    try:
        assert queries.streaks(db, iter(ids)) == {}  # nothing failing: the ids are not even read
        empty_peak = tracemalloc.get_traced_memory()[1]
        db.close()
        record(where, [bad(7), bad(100_000), bad(200_000), ok(8)], T0)
        db = connect(where)
        tracemalloc.reset_peak()
        found = queries.streaks(db, iter(ids))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        db.close()
    assert set(found) == {7, 100_000}  # 200,000 failed too, but is not among the run's ids
    assert found[7].runs == 1 and found[7].since == iso(T0)
    assert empty_peak < 100_000 and peak < 500_000


def _version_1_store(path: Path) -> None:
    """A store as batchsync made it before migration 2: two runs of two integrations."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(schema.VERSION_TABLE)
    for sql in schema.MIGRATIONS[0]:
        conn.execute(sql.replace("{id}", schema.ID["sqlite"]))
    conn.execute("INSERT INTO schema_version VALUES (1, ?)", (iso(T0),))
    for run in (1, 2):
        conn.execute(
            "INSERT INTO runs (id, command, inventory, inventory_hash, group_key, host, version, started_at) "
            "VALUES (?, 'apply', 'inv.json', '', ?, 'h', '0', ?)",
            (run, f"run:{run}", iso(T0 + run * 86400)),
        )
        for iid, result in ((7, "changed" if run == 1 else "unchanged"), (8, "unchanged")):
            conn.execute(
                "INSERT INTO outcomes (run_id, integration_id, account, result) VALUES (?, ?, 'acme', ?)",
                (run, iid, result),
            )
    conn.close()


def test_the_health_window_starts_at_the_last_run_that_read_the_accounts_logs(tmp_path: Path) -> None:
    """A plan without --with-health, or one whose read of the logs failed, does not move it:
    the logs written before it would never be reported."""
    where = parse(str(tmp_path / "h.sqlite3"))
    start = Start(mode="apply", started_at=T0, inventory="inv.toml")
    runs = [
        (T0, Health(since=iso(T0 - 86400))),  # read
        (T0 + 3600, None),  # a plan without --with-health
        (T0 + 7200, Health(since=iso(T0), unknown="the account's exception logs could not be read: 401")),
    ]
    for at, health in runs:
        sink = History(where, msgspec.structs.replace(start, started_at=at), Lost())
        sink.add(ok(2) if health is None else msgspec.structs.replace(ok(2), health=health))
        sink.close(End(summary=Summary(accounts={"acme": AccountStats(unchanged=1)}), code=lambda: 0,
                       started_at=at, ended_at=at + 5))  # fmt: skip
    db = connect(where)
    assert len(queries.runs(db)) == 3 and queries.last_start(db, "acme", "inv.toml") == iso(T0)
    db.close()


def test_a_version_1_store_is_migrated_to_the_run_and_integration_index(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    _version_1_store(path)
    db = connect(parse(str(path)))
    indexes = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outcomes'")}
    assert indexes == {"outcomes_run_integration"}
    assert db.version() == schema.LATEST == 4
    # Migration 3: the plan and the health are new columns, empty in what was there before.
    assert db.query("SELECT plan_path, plan_sha256 FROM runs WHERE id = 1") == [(None, None)]
    assert {r[0] for r in db.query("SELECT health FROM outcomes")} == {None}
    assert [(e["run"], e["result"]) for e in queries.integration(db, 7)["events"]] == [(2, "unchanged"), (1, "changed")]
    run = queries.show(db, 1)
    assert run is not None and [o["integration_id"] for o in run["outcomes"]] == [7, 8]
    # The timeline is a lookup per run, never a read of every outcome.
    sql = "SELECT 1 FROM runs r CROSS JOIN outcomes o ON o.run_id = r.id WHERE o.integration_id = ?"
    plan = " ".join(str(r[-1]) for r in db.query("EXPLAIN QUERY PLAN " + sql, (7,)))
    assert "SEARCH o USING COVERING INDEX outcomes_run_integration (run_id=? AND integration_id=?)" in plan, plan
    db.close()


def test_a_store_being_migrated_by_another_process_is_waited_for_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchsync.history.db as history_db

    path = tmp_path / "h.sqlite3"
    _version_1_store(path)
    monkeypatch.setattr(history_db, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(history_db, "MIGRATION_WAIT_S", 30.0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's long migration holds the lock
    release = threading.Timer(1.5, lambda: other.execute("ROLLBACK"))
    release.start()
    started = time.monotonic()
    try:
        db = connect(parse(str(path)))
    finally:
        release.join()
        other.close()
    assert time.monotonic() - started >= 1.0
    assert db.version() == schema.LATEST
    assert db.query("PRAGMA busy_timeout")[0][0] == 200  # the run's own writes wait as before
    db.close()


def _wal_frames_of_a_run(path: Path, prior: int) -> int:
    """Pages the last of ``prior + 1`` runs of 20,000 outcomes wrote into the WAL."""
    db = connect(parse(str(path)))
    db.execute("PRAGMA wal_autocheckpoint = 0")
    outcomes = [Outcome(i, f"a{i % 50}", "unchanged") for i in range(1, 20_001)]
    frames = 0
    for night_ in range(prior + 1):
        random.Random(night_).shuffle(outcomes)  # another order of arrival each night
        db.query("PRAGMA wal_checkpoint(TRUNCATE)")
        info = RunInfo(command="apply", started_at=T0 + night_ * 86400)
        run_id = Writes(db).begin(info)
        assert run_id is not None
        for i in range(0, len(outcomes), 2000):
            Writes(db).outcomes(run_id, info, f"run:{run_id}", outcomes[i : i + 2000])
        frames = int(db.query("PRAGMA wal_checkpoint(PASSIVE)")[0][1])
    db.close()
    return frames


def test_writing_a_night_costs_no_more_with_earlier_nights_in_the_store(tmp_path: Path) -> None:
    # Under an index by integration alone, every batch of a night touched a leaf for each of
    # its outcomes across the whole history: 585 pages for a night into a new store, 3,530
    # with five nights before it (533 and 624 now).
    first = _wal_frames_of_a_run(tmp_path / "new.sqlite3", 0)
    sixth = _wal_frames_of_a_run(tmp_path / "kept.sqlite3", 5)
    assert sixth < 1.5 * first, (first, sixth)


def test_a_version_1_postgresql_store_is_migrated_alike(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(schema.VERSION_TABLE)
        for sql in schema.MIGRATIONS[0]:
            conn.execute(sql.replace("{id}", schema.ID["postgresql"]))
        conn.execute("INSERT INTO schema_version VALUES (1, %s)", (iso(T0),))
        row = conn.execute(
            "INSERT INTO runs (command, inventory, inventory_hash, group_key, host, version, started_at) "
            "VALUES ('apply', 'inv.json', '', 'run:1', 'h', '0', %s) RETURNING id",
            (iso(T0),),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO outcomes (run_id, integration_id, account, result) VALUES (%s, 7, 'acme', 'changed')", row
        )
    where = parse(pg_url)
    record(where, [ok(7)], T0 + 86400)  # the next run migrates, then writes
    db = connect(where)
    names = db.query("SELECT indexname FROM pg_indexes WHERE tablename = 'outcomes'")
    assert {r[0] for r in names} == {"outcomes_run_integration"}
    assert db.version() == schema.LATEST
    assert [e["result"] for e in queries.integration(db, 7)["events"]] == ["unchanged", "changed"]
    db.close()


@pytest.mark.parametrize("inline", [True, False], ids=["in-the-loop", "writer-thread"])
def test_a_writer_that_stops_on_a_bug_loses_the_history_loudly_not_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    # A write fails, and naming why fails too (a bug of ours: the redactor raising): the
    # writer must not end quietly, leaving the run to record its end as if every outcome
    # were written, nor raise into the run.
    from batchsync.history import writer

    monkeypatch.setattr(writer, "INLINE_SQLITE", inline)
    where = parse(str(tmp_path / "h.sqlite3"))
    session = Session.open(where, RunInfo(command="apply", started_at=T0))
    session.db.execute("DROP TABLE outcomes")  # the write fails

    def broken(text: str) -> str:
        raise RuntimeError("Set changed size during iteration")

    monkeypatch.setattr(session.db, "redact", broken)
    for i in range(3):
        session.add(ok(i))
    session.flush(now=True)
    started = time.monotonic()
    error = session.finish(T0 + 60, 0, {"unchanged": 3})
    assert time.monotonic() - started < 5
    assert error is not None and "h.sqlite3" in error and "RuntimeError" in error, error


def test_a_store_hung_at_the_run_s_end_is_waited_for_no_longer_than_it_stays_still(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last batch goes to a writer that then hangs: the end waits STUCK_S after the
    store last took something, as during the run, not the whole FINISH_TIMEOUT_S."""
    where, session = _session(tmp_path, monkeypatch, BATCH=10, STUCK_S=0.5, FINISH_TIMEOUT_S=30.0)
    release = threading.Event()
    _hold_writes(session, monkeypatch, release)
    for i in range(1, 6):
        session.add(ok(i, "changed"))
    try:
        began = time.monotonic()
        error = session.finish(T0 + 60, 0, {})
        assert time.monotonic() - began < 3.0
        assert error == f"{where.name}: the run's outcomes were not all written: the store took nothing for 0.5s"
    finally:
        _answer_at_last(session, release)


def test_mapping_changes_are_recorded_and_read_back(tmp_path: Path) -> None:
    from batchsync.diff import MappingChange

    where = parse(str(tmp_path / "h.sqlite3"))
    moved = (MappingChange("READY_TO_SEND", "2", "4"), MappingChange("CANCEL", None, "6", was_valid=True))
    only_mapping = Outcome(integration_id=7, account="acme", result="changed", mapping_changes=moved, ended_at=T0)
    record(where, [only_mapping, ok(8)], T0)
    db = connect(where)
    run = queries.show(db, 1)
    assert run is not None
    rows = {o["integration_id"]: o["mapping_changes"] for o in run["outcomes"]}
    assert rows[8] == [] and [(m["category"], m["before"], m["after"]) for m in rows[7]] == [
        ("READY_TO_SEND", "2", "4"),
        ("CANCEL", None, "6"),
    ]
    assert queries.integration(db, 7)["events"][0]["mapping_changes"] == rows[7]
    db.close()


def test_no_home_directory_is_a_default_file_that_cannot_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """No XDG_STATE_HOME, no HOME, a user without a passwd entry: Path.home() raises. The
    run goes on without a history (a warning), never a traceback."""
    from batchsync.history import location

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    where = location.default()
    assert where.implicit and where.target == "" and "no home directory" in where.name
    with pytest.raises(HistoryError, match="set XDG_STATE_HOME or give --history"):
        connect(where)
    lost, warned = Lost(), list[str]()
    History(where, Start(mode="apply", started_at=T0), lost, warn=warned.append)
    assert not lost and len(warned) == 1 and "no run history" in warned[0]


def test_a_default_file_that_is_there_and_cannot_be_used_is_a_lost_output(tmp_path: Path) -> None:
    """A default file that cannot be made is a warning; one that is there and is no
    database (or sits on a full disk) loses the run's history: exit 5, said."""
    path = tmp_path / "history.sqlite3"
    path.write_bytes(random.Random(1).randbytes(100_000))
    where = Location("sqlite", str(path), str(path), implicit=True)
    lost, warned = Lost(), list[str]()
    History(where, Start(mode="apply", started_at=T0), lost, warn=warned.append)
    assert warned == [] and lost and lost.items[0][:2] == ("the run history", str(path))  # not --history: none given


def test_a_batch_of_every_shape_is_written_as_it_came_and_binds_no_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcomes whose columns are NULL in different places (unchanged, changed, failed,
    skipped, named or not, with a mapping or health) in one batch, each shape more rows than
    one statement takes: every row is read back as it was. An outcome's row binds no None
    (Python's sqlite3 asks each bound None for an adapter: the writer's costliest step once):
    an adapter for None that raises would fail the write."""
    from batchsync.diff import Change, MappingChange
    from batchsync.health import Health
    from batchsync.history import store

    moved = (MappingChange("READY_TO_SEND", "2", "4"),)
    renamed = (Change("~", "ext", {"en": "a"}, {"en": "b"}),)

    def make(iid: int) -> Outcome:
        name = None if iid % 2 else f"shop {iid}"
        kind = iid % 5
        if kind == 0:
            return Outcome(integration_id=iid, account="acme", result="unchanged", name=name, attempts=1)
        if kind == 1:
            return Outcome(integration_id=iid, account="acme", result="changed", changed=1, changes=renamed, name=name)
        if kind == 2:
            # named, with a detail: a failure's state row (integration_state) binds both, None or not
            error = ErrorInfo("server", 503, None, "down")
            return Outcome(integration_id=iid, account="acme", result="failed", error=error, name=f"shop {iid}")
        if kind == 3:
            return Outcome(integration_id=iid, account="acme", result="skipped", reason="stopped", name=name)
        return Outcome(
            integration_id=iid, account="acme", result="changed", mapping_changes=moved, health=Health("2027-01-01", 2)
        )

    n = 5 * (2 * store.ROWS_PER_INSERT) + 77  # each of the eight shapes: more than a statement, and a rest
    batch = [make(i) for i in range(n, 0, -1)]
    db = connect(parse(str(tmp_path / "h.sqlite3")))
    writes = Writes(db)
    info = RunInfo(command="apply", started_at=T0)
    run_id = writes.begin(info)
    assert run_id is not None

    def refuse(value: object) -> object:
        raise AssertionError(f"bound {value!r}")

    adapters: dict[Any, Any] = sqlite3.adapters
    monkeypatch.setitem(adapters, (type(None), sqlite3.PrepareProtocol), refuse)
    writes.outcomes(run_id, info, "g", batch)
    monkeypatch.undo()
    got = db.query(
        "SELECT integration_id, name, result, error_kind, detail, changed, changes, mapping_changes, health "
        "FROM outcomes ORDER BY integration_id"
    )
    assert len(got) == n
    for row, o in zip(got, sorted(batch, key=lambda o: o.integration_id), strict=True):
        iid, name, result, kind, detail, changed, changes, mapping, health = row
        assert (iid, name, result, changed) == (o.integration_id, o.name, o.result, o.changed)
        assert (kind, detail) == ((o.error.kind, o.error.detail) if o.error else (None, o.reason))
        assert (changes is None) == (not o.changes) and (mapping is None) == (not o.mapping_changes)
        assert (health is None) == (o.health is msgspec.UNSET)
    db.close()
    sizes = [store._chunks(k) for k in range(1, 3 * store.ROWS_PER_INSERT)]
    assert all(sum(s) == k for k, s in enumerate(sizes, 1))
    assert {size for s in sizes for size in s} == {
        store.ROWS_PER_INSERT >> i for i in range(store.ROWS_PER_INSERT.bit_length())
    }


def test_a_sqlite_store_is_written_by_the_caller_without_a_thread(tmp_path: Path) -> None:
    from batchsync.history import db as history_db
    from batchsync.history import writer

    where = parse(str(tmp_path / "h.sqlite3"))
    session = Session.open(where, RunInfo(command="apply", started_at=T0))
    # What reads the store as the sinks open (in their thread) waits for a lock as always;
    # the loop's writes never do.
    assert session.db.query("PRAGMA busy_timeout") == [(int(history_db.BUSY_TIMEOUT_S * 1000),)]
    for i in range(1, writer.BATCH + 6):
        session.add(ok(i, "changed"))
    assert session._thread.ident is None  # never started
    assert session.db.query("PRAGMA busy_timeout") == [(0,)]
    db = connect(where)
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(writer.BATCH,)]  # the full batch, at once
    assert session.finish(T0 + 60, 0, {"changed": writer.BATCH + 5}) is None
    assert db.query("SELECT COUNT(*), MAX(integration_id) FROM outcomes") == [(writer.BATCH + 5, writer.BATCH + 5)]
    assert db.query("SELECT exit_code, changed FROM runs") == [(0, writer.BATCH + 5)]
    db.close()


def test_a_sqlite_store_locked_elsewhere_never_holds_up_the_loop_and_its_writer_takes_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writes the store (a second run, a prune): the loop's batch does not
    wait for its lock; the writer thread takes the run's writes, waiting as a thread may."""
    where, session = _session(tmp_path, monkeypatch, inline=True, BATCH=10)
    path = tmp_path / "h.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    release.start()
    try:
        began = time.monotonic()
        for i in range(1, 26):
            session.add(ok(i, "changed"))
        assert time.monotonic() - began < 0.5  # not the busy timeout
        assert session._thread.is_alive()  # the writer's now
        assert session.finish(T0 + 60, 0, {}) is None
    finally:
        release.join()
        other.close()
    db = connect(where)
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(25,)]
    assert db.query("SELECT exit_code FROM runs") == [(0,)]
    db.close()


def test_a_sqlite_store_that_fails_a_write_in_the_loop_is_a_lost_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where, session = _session(tmp_path, monkeypatch, inline=True, BATCH=10)

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(session._writes, "outcomes", full)
    for i in range(1, 26):
        session.add(ok(i, "changed"))  # nothing raises into the run
    assert session.finish(T0 + 60, 0, {}) == f"{where.name}: database or disk is full"
    assert session._thread.ident is None


def test_a_store_on_a_filesystem_not_known_local_is_written_by_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network filesystem can hang a write, and a system call cannot be interrupted: the
    loop writes only on a local one (as /proc/self/mountinfo names it)."""
    from batchsync.history import writer

    assert writer.local(str(tmp_path / "h.sqlite3"))  # the tests' temp folder: local
    assert not writer.local("/proc/self/h.sqlite3")  # proc: not a filesystem for a store
    monkeypatch.setattr(writer, "LOCAL_FILESYSTEMS", frozenset({"nothing-here"}))
    where = parse(str(tmp_path / "h.sqlite3"))
    session = Session.open(where, RunInfo(command="apply", started_at=T0))
    assert session._thread.is_alive()
    session.add(ok(1))
    assert session.finish(T0 + 60, 0, {}) is None
    db = connect(where)
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(1,)]
    db.close()


def test_a_slow_write_in_the_loop_hands_the_rest_of_the_run_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchsync.history import db as history_db

    where, session = _session(tmp_path, monkeypatch, inline=True, BATCH=10, INLINE_SLOW_S=0.05)
    real = session._writes.outcomes

    def slow(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.1)  # a disk that is failing, or throttled
        real(*args, **kwargs)

    monkeypatch.setattr(session._writes, "outcomes", slow)
    for i in range(1, 10):
        session.add(ok(i, "changed"))
    assert session._thread.ident is None
    session.add(ok(10, "changed"))  # the first batch: written here, slowly
    assert session._thread.is_alive()  # the rest: the thread's
    assert session.db.query("PRAGMA busy_timeout") == [(int(history_db.BUSY_TIMEOUT_S * 1000),)]
    for i in range(11, 26):
        session.add(ok(i, "changed"))
    assert session.finish(T0 + 60, 0, {}) is None
    db = connect(where)
    assert db.query("SELECT COUNT(*) FROM outcomes") == [(25,)]
    db.close()


def test_a_store_whose_folder_is_removed_during_the_run_is_a_lost_history(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "state"
    where = parse(str(folder / "h.sqlite3"))
    session = Session.open(where, RunInfo(command="apply", started_at=T0))
    session.add(ok(1))
    shutil.rmtree(folder)  # a cleanup job, mid-run
    session.add(ok(2))
    error = session.finish(T0 + 60, 0, {})
    assert error == f"{where.name}: the file was removed during the run: its history is gone"


@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_whose_schema_version_is_no_number_is_no_batchsync_history(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "odd.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version, applied_at)")
        db.execute("INSERT INTO schema_version VALUES ('abc', 'x')")
    with pytest.raises(HistoryError, match="schema version is no number: not a batchsync history"):
        connect(parse(str(path)), read_only=read_only)
