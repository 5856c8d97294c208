"""What the outputs say with a run history: new failures, failures that go on ("failing
since <date> (N runs)"), recoveries; and ``--notify-on new``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from batchsync.history.queries import Streak
from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.history import Recall
from batchsync.outputs.html import Html
from batchsync.outputs.notify import json_message, slack_message, wanted
from batchsync.outputs.sink import End, Lost, Start
from batchsync.outputs.terminal import memory_document, print_memory

SINCE = "2027-01-10T02:00:00.000Z"


def out(iid: int, result: Any = "failed") -> Outcome:
    error = ErrorInfo("server", 503, None, "down") if result == "failed" else None
    return Outcome(integration_id=iid, account="acme", result=result, error=error)


def memory() -> dict[str, Any]:
    recall = Recall({1: Streak(SINCE, 4, "run:7"), 2: Streak(SINCE, 2, "run:7")}, "run:9")
    return recall.summarize([out(1), out(2, "changed"), out(3)])


def summary(failed: int = 2) -> Summary:
    return Summary(accounts={"acme": AccountStats(unchanged=1, failed=failed, changed=1)}, started_at=1.8e9)


def test_the_recap_names_new_failures_old_ones_and_recoveries() -> None:
    text = io.StringIO()
    print_memory(memory(), text)
    lines = text.getvalue().splitlines()
    assert lines == [
        "new failures: 1",
        "  ! 3 (acme): new",
        "still failing: 1",
        "  ! 1 (acme): failing since 2027-01-10 02:00 UTC (5 runs)",
        "recovered: 1",
        "  + 2 (acme): recovered (failing since 2027-01-10 02:00 UTC (2 runs))",
    ]
    assert memory_document(memory()) == {
        "new": [3],
        "still_failing": [{"integration_id": 1, "since": SINCE, "runs": 5}],
        "recovered": [{"integration_id": 2, "since": SINCE, "runs": 2}],
    }


def test_the_recap_lists_each_section_sorted_and_says_one_run() -> None:
    """As the outcome lines are sorted (account, id), not in the order the answers came."""
    recall = Recall({i: Streak(SINCE, 1, "run:7") for i in (30, 10, 20)}, "run:9")
    text = io.StringIO()
    print_memory(recall.summarize([out(30, "changed"), out(10, "changed"), out(20, "changed"), out(5), out(4)]), text)
    assert text.getvalue().splitlines() == [
        "new failures: 2",
        "  ! 4 (acme): new",
        "  ! 5 (acme): new",
        "recovered: 3",
        "  + 10 (acme): recovered (failing since 2027-01-10 02:00 UTC (1 run))",
        "  + 20 (acme): recovered (failing since 2027-01-10 02:00 UTC (1 run))",
        "  + 30 (acme): recovered (failing since 2027-01-10 02:00 UTC (1 run))",
    ]


@pytest.mark.parametrize(
    ("mem", "run", "expected"),
    [
        (None, summary(), True),  # no history: as failure
        ({"new": [], "ongoing": [1], "recovered": []}, summary(), False),  # the same broken shop: quiet
        ({"new": [1], "ongoing": [], "recovered": []}, summary(), True),
        ({"new": [], "ongoing": [], "recovered": [1]}, summary(failed=0), True),
        ({"new": [], "ongoing": [], "recovered": []}, summary(failed=0), False),
    ],
)
def test_notify_on_new_only_when_something_started_failing_or_recovered(mem: Any, run: Summary, expected: bool) -> None:
    assert wanted("new", run, mem) is expected


def test_the_messages_say_new_since_and_recovered() -> None:
    mem = memory()
    failures = [out(1), out(3)]
    slack = slack_message(summary(), "apply", 1, failures, memory=mem)
    assert "• `1` acme: server 503: down (failing since 2027-01-10 02:00 UTC (5 runs))" in slack["text"]
    assert "• `3` acme: server 503: down (new)" in slack["text"]
    assert "Recovered:\n• `2` acme: recovered after 2 failing runs" in slack["text"]
    assert any("*Recovered* (1)" in b.get("text", {}).get("text", "") for b in slack["blocks"])
    plain = slack_message(summary(), "apply", 1, failures)
    assert "(new)" not in plain["text"] and "Recovered" not in plain["text"]
    doc = json_message(summary(), "apply", 1, failures, memory=mem)
    assert doc["history"]["new"] == [3] and doc["history"]["recovered"][0]["integration_id"] == 2


def test_the_html_page_has_the_history_section_and_each_accounts_last_runs(tmp_path: Path) -> None:
    import html5lib

    charts = {"acme": [{"run": i, "at": SINCE, "changed": i % 3, "failed": i % 2} for i in range(40)]}
    recall = Recall({1: Streak(SINCE, 4, "run:7"), 2: Streak(SINCE, 2, "run:7")}, "run:9", charts)
    page = tmp_path / "run.html"
    sink = Html(str(page), Start(mode="apply", started_at=1.8e9), Lost(), recall=recall)
    for o in (out(1), out(2, "changed"), out(3)):
        sink.add(o)
    sink.close(End(summary=summary(), code=lambda: 1, started_at=1.8e9, ended_at=1.8e9 + 5))
    doc = page.read_text()
    html5lib.HTMLParser(strict=True).parse(doc)
    assert '<section id="history">' in doc and "failing since 2027-01-10 02:00 UTC (5 runs)" in doc
    assert "recovered (failing since" in doc and "<td>new</td>" in doc
    assert doc.count('<svg class="runs"') == 1
    assert doc.count('<rect class="bad"') == 30  # the last 29 recorded runs and this one
    plain = tmp_path / "plain.html"
    sink = Html(str(plain), Start(mode="apply", started_at=1.8e9), Lost())
    sink.close(End(summary=summary(), code=lambda: 1, started_at=1.8e9, ended_at=1.8e9 + 5))
    assert 'id="history"' not in plain.read_text()
