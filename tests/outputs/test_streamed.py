"""``--junit`` and ``--html`` written as the outcomes arrive: the same bytes as the whole
document built at the end, and memory that does not grow with the fleet."""

from __future__ import annotations

import random
import re
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from batchsync.diff import Change, MappingChange
from batchsync.health import Health
from batchsync.history.db import iso
from batchsync.history.queries import Streak
from batchsync.outcome import RESULTS, AccountStats, ErrorInfo, Outcome, Result, Summary
from batchsync.outputs import html_history
from batchsync.outputs.history import Recall
from batchsync.outputs.html import Html, render
from batchsync.outputs.html_parts import RunInfo, _e
from batchsync.outputs.junit import JUnit, add_gaps, junit_bytes, junit_document
from batchsync.outputs.sink import End, Lost, Part, Start
from batchsync.outputs.spool import Spool

T0 = 1_780_000_000.0
S = TypeVar("S")


def fleet(n: int, accounts: int = 7, seed: int = 3) -> list[Outcome]:
    """Outcomes of every kind, in no order, with texts XML and HTML must escape."""
    rng = random.Random(seed)
    ids = rng.sample(range(1, 50 * n + 2), n)
    out = []
    for k, iid in enumerate(ids):
        account = f"acc-{rng.randrange(accounts)}" + ("\x07<&>" if k % 11 == 0 else "")
        roll = rng.random()
        common: dict[str, Any] = {
            "attempts": rng.randint(1, 4),
            "duration_ms": rng.random() * 900,  # sums whose last digit depends on their order
            "started_at": T0 + k * 0.01,
            "ended_at": T0 + k * 0.01 + 0.3,
            "name": None if k % 3 else f'Café "{k}" <b>\x1b[31m',
            "tags": ("nl", f"client-{k % 4}") if k % 2 else (),
        }
        if k % 13 == 0:
            common["health"] = Health(since="2026-12-03T00:00:00Z", count=k % 4)
        if roll < 0.15:
            error = ErrorInfo("client", 422, f"c{k}", f"bad \x00 value {k} & <more>", "/data/0/name")
            out.append(Outcome(iid, account, "failed", error=error, **common))
        elif roll < 0.2:
            out.append(Outcome(iid, account, "failed", **common))
        elif roll < 0.3:
            out.append(Outcome(iid, account, "skipped", reason=rng.choice(["interrupted", "no\nreason"]), **common))
        elif roll < 0.6:
            changes = (Change("+", "paid"), Change("~", f"x{k}\t<y>"), Change("-", "6"))
            maps = (MappingChange("CANCEL", "6", "7"),) if k % 5 == 0 else ()
            out.append(
                Outcome(
                    iid,
                    account,
                    "changed",
                    added=1,
                    changed=1,
                    removed=1,
                    changes=changes,
                    mapping_changes=maps,
                    **common,
                )
            )
        else:
            out.append(Outcome(iid, account, "unchanged", **common))
    return out


def summary_of(outcomes: list[Outcome], stopped: str | None = None) -> Summary:
    accounts: dict[str, AccountStats] = {}
    for o in outcomes:
        stats = accounts.setdefault(o.account, AccountStats(throttled=len(o.account) % 3))
        setattr(stats, o.result, getattr(stats, o.result) + 1)
    return Summary(accounts, started_at=T0, duration_s=12.5, stopped=stopped)


def end_of(summary: Summary, code: int = 1) -> End:
    return End(summary=summary, code=lambda: code, started_at=T0, ended_at=T0 + 12.5)


STAMP = re.compile(rb'timestamp="[^"]*"')


def whole_junit(outcomes: list[Outcome], summary: Summary, parts: tuple[Part, ...] = ()) -> bytes:
    """The file as it was made before it was streamed: the whole tree, built at the end."""
    root = junit_document(outcomes, summary)
    add_gaps(root, parts)
    return junit_bytes(root)


GAPS = (
    Part("0/2", "a.jsonl", "complete", recorded=3),
    Part("1/2", None, "missing", reason="no report <here>", not_done=4),
)


@pytest.mark.parametrize(
    ("n", "stopped", "parts"),
    [(0, None, ()), (1, None, ()), (300, None, ()), (300, "interrupted \x1b", ()), (40, None, GAPS), (0, None, GAPS)],
)
def test_the_streamed_junit_file_is_the_whole_documents_bytes(
    tmp_path: Path, n: int, stopped: str | None, parts: tuple[Part, ...]
) -> None:
    outcomes = fleet(n)
    summary = summary_of(outcomes, stopped)
    path = tmp_path / "junit.xml"
    sink = JUnit(str(path), Start(mode="apply", started_at=T0, parts=parts), Lost())
    for o in outcomes:
        sink.add(o)
    sink.close(end_of(summary))
    assert STAMP.sub(b"", path.read_bytes()) == STAMP.sub(b"", whole_junit(outcomes, summary, parts))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]  # no spool left behind


def test_a_broken_off_run_leaves_the_junit_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_bytes(b"<old/>")
    sink = JUnit(str(path), Start(mode="apply", started_at=T0), Lost())
    for o in fleet(20):
        sink.add(o)
    sink.close(None)
    assert path.read_bytes() == b"<old/>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]


def test_a_spool_that_cannot_be_written_loses_the_junit_file_and_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    path = tmp_path / "junit.xml"
    lost = Lost()
    sink = JUnit(str(path), Start(mode="apply", started_at=T0), lost)

    def full(group: str, key: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    outcomes = fleet(5)
    sink.add(outcomes[0])
    assert sink.spool is not None
    monkeypatch.setattr(sink.spool, "add", full)
    for o in outcomes[1:]:
        sink.add(o)  # no raise: the run goes on
    sink.close(end_of(summary_of(outcomes)))
    assert lost.lines() == [f"batchsync: --junit {path} was not written: No space left on device"]
    assert not path.exists()


def held(make: Callable[[], S], feed: Callable[[S, Outcome], None], outcomes: Iterator[Outcome]) -> int:
    """Bytes a sink still holds (traced) after being fed ``outcomes``."""
    tracemalloc.start()
    try:
        sink = make()
        base = tracemalloc.get_traced_memory()[0]
        for o in outcomes:
            feed(sink, o)
        return tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def many(n: int) -> Iterator[Outcome]:
    changes = (Change("+", "paid"), Change("~", "shipped"))
    for i in range(n):
        result: Result = RESULTS[i % 4]
        error = ErrorInfo("server", 500, detail=f"the shop said no to {i}") if result == "failed" else None
        yield Outcome(
            1000 + i, f"acc-{i % 20}", result, attempts=2, duration_ms=12.0, changes=changes, error=error,
            tags=("nl",), started_at=T0 + i / 1000, ended_at=T0 + i / 1000 + 0.1, name=f"shop {i}",
        )  # fmt: skip


def test_the_junit_sink_holds_a_few_bytes_per_outcome_not_the_outcomes(tmp_path: Path) -> None:
    def make() -> JUnit:
        return JUnit(str(tmp_path / "junit.xml"), Start(mode="apply", started_at=T0), Lost())

    small, large = held(make, JUnit.add, many(2_000)), held(make, JUnit.add, many(20_000))
    # An outcome held (with its error, its changes, its name) is several hundred bytes; its
    # case's key, offset, length and duration are 32.
    assert (large - small) / 18_000 < 64, (small, large)


def test_a_spool_reads_its_parts_back_by_group_then_key_ties_in_arrival_order(tmp_path: Path) -> None:
    for spool in (Spool(), Spool(str(tmp_path))):
        for group, key, data in [("b", 2, b"b2"), ("a", 9, b"a9"), ("b", 1, b""), ("a", 1, b"a1"), ("b", 2, b"b2'")]:
            spool.add(group, key, data)
        assert spool.groups() == ["a", "b"] and len(spool) == 5 and spool.size("b") == 3
        assert list(spool.everything()) == [b"a1", b"a9", b"", b"b2", b"b2'"]
        assert list(spool.parts("c")) == []
        spool.close()
    assert list(tmp_path.iterdir()) == []


# -- the HTML page --------------------------------------------------------------------------

FOOTER = re.compile(r"Made by batchsync [^ ]+ on [^.]*\.")


def whole_page(outcomes: list[Outcome], summary: Summary, end: End, recall: Recall | None, max_listed: int) -> str:
    """The page as it was made before its rows were spooled: from the outcomes held."""
    appendix = ""
    if recall is not None:
        memory = recall.summarize(outcomes)
        appendix = html_history.section(memory, recall.charts, summary, iso(end.started_at), _e)
    info = RunInfo(exit_code=end.code(), started_at=T0, ended_at=end.ended_at, inventory="inv.toml", appendix=appendix)
    return render(outcomes, summary, "apply", info, max_listed=max_listed)


@pytest.mark.parametrize(("n", "history"), [(0, False), (0, True), (1, False), (400, False), (400, True)])
def test_the_streamed_page_is_the_whole_pages_text(tmp_path: Path, n: int, history: bool) -> None:
    outcomes = fleet(n)
    summary, end = summary_of(outcomes), end_of(summary_of(outcomes))
    recall = None
    if history:  # some failing before (one of them recovered now, one still failing), some not
        known = {o.integration_id: Streak("2026-12-01T02:00:00Z", 3, "g1") for o in outcomes[::7]}
        recall = Recall(known, "g2", {"acc-1": [{"at": "2026-12-02T02:00:00Z", "changed": 2, "failed": 1}]})
    path = tmp_path / "page.html"
    sink = Html(str(path), Start(mode="apply", started_at=T0, inventory="inv.toml"), Lost(), recall=recall)
    sink.page.max_listed = 37  # type: ignore[union-attr]  # past the listing's bound too
    for o in outcomes:
        sink.add(o)
    sink.close(end)
    want = whole_page(outcomes, summary, end, recall, 37)
    assert FOOTER.sub("", path.read_text()) == FOOTER.sub("", want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]  # no spool left behind


def test_the_html_sink_holds_no_listed_outcome(tmp_path: Path) -> None:
    recall = Recall({}, "g")  # a run history: its section keeps every failure's row

    def make() -> Html:
        return Html(str(tmp_path / "page.html"), Start(mode="apply", started_at=T0), Lost(), recall=recall)

    small, large = held(make, Html.add, many(400)), held(make, Html.add, many(4_000))
    # Held, the 1,800 more outcomes listed (failed and changed: under the bound of 2,000
    # each) and the 900 more failures the history's section names are several hundred
    # bytes each; spooled, 24 bytes of index each.
    assert (large - small) / 3_600 < 64, (small, large)
