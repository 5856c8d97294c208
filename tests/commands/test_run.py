"""The run's bookkeeping: retry files, exit codes, --max-failures, output to a closed pipe."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from batchsync.commands._arguments import parse_failure_budget
from batchsync.exitcodes import exit_code
from batchsync.outcome import AccountStats, Summary
from batchsync.outputs.report import read_retry_report
from batchsync.outputs.terminal import Screen
from batchsync.usage import UsageError


def write(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_a_complete_report_names_failed_and_skipped(tmp_path: Path) -> None:
    plan = read_retry_report(
        write(
            tmp_path / "r.jsonl",
            '{"integration_id": 1, "account": "a", "result": "changed"}',
            '{"integration_id": 2, "account": "a", "result": "failed"}',
            '{"integration_id": 3, "account": "a", "result": "skipped"}',
            '{"summary": true, "totals": {}}',
        )
    )
    assert plan.complete and plan.failed == {2, 3} and plan.succeeded == {1}


def test_a_killed_runs_report_is_incomplete_and_its_cut_line_ignored(tmp_path: Path) -> None:
    plan = read_retry_report(
        write(
            tmp_path / "r.jsonl",
            '{"integration_id": 1, "account": "a", "result": "unchanged"}',
            '{"integration_id": 2, "res',
        )
    )
    assert not plan.complete and plan.succeeded == {1} and plan.failed == frozenset()
    with pytest.raises(ValueError, match="line 1"):
        read_retry_report(write(tmp_path / "bad.jsonl", "garbage", '{"integration_id": 1, "result": "failed"}'))


def summary(stopped: str | None = None, **counts: int) -> Summary:
    return Summary({"a": AccountStats(**counts)}, stopped=stopped)


def test_exit_codes() -> None:
    assert exit_code(summary(unchanged=3), "apply", False) == 0
    assert exit_code(summary(changed=1, failed=1), "apply", False) == 1
    assert exit_code(summary("interrupted by SIGTERM", changed=1, skipped=2), "apply", False) == 3
    # --max-failures reached with the last integration: nothing was left out, so 1, not 3
    assert exit_code(summary("stopped", failed=3), "apply", False) == 1
    assert exit_code(summary(changed=2), "plan", True) == 4
    assert exit_code(summary(changed=2), "plan", False) == 0


def test_failure_budget_parsing() -> None:
    assert parse_failure_budget("3", "--max-failures").limit(100) == 3
    assert parse_failure_budget("5%", "--max-failures").limit(100) == 5
    assert parse_failure_budget("1%", "--max-failures").limit(10) == 1
    assert str(parse_failure_budget(" 7 ", "--max-failures")) == "7"
    for bad in ("0", "1.5", "abc", "0%", "150%", "3%%", "nan%", "inf%"):
        with pytest.raises(UsageError, match="whole number"):
            parse_failure_budget(bad, "--max-failures")


def test_output_survives_a_closed_pipe() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    out = Screen(Closed())
    assert out.write("line\n") == 5
    out.flush()
    assert out.stream is None  # dropped from then on, no exception
    out.write("more\n")
    out.flush()


def test_output_on_a_full_disk_is_dropped_and_its_failure_kept() -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    out = Screen(Full())
    out.write("line\n")
    out.flush()  # no exception: the run goes on
    assert out.stream is None and isinstance(out.failure, OSError) and out.failure.errno == 28
    out.write("more\n")
    out.flush()
    closed = Screen(io.StringIO())
    closed.stream = None
    assert closed.failure is None  # a closed pipe is no failure (the reader left)


def test_output_is_written_in_one_piece_when_flushed_or_large() -> None:
    class Counting(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Counting.writes += 1
            return super().write(text)

    stream = Counting()
    out = Screen(stream)
    erased: list[int] = []
    out.before_write = lambda: erased.append(1)
    for i in range(1000):
        out.write(f"line {i}\n")
    assert Counting.writes == 0  # nothing written before a flush
    out.flush()
    assert Counting.writes == 1 and erased == [1]
    assert stream.getvalue().count("\n") == 1000
    out.flush()  # nothing buffered: no write, no erase
    assert Counting.writes == 1 and erased == [1]
    out.write("x" * (Screen.LIMIT + 1))  # past the limit: written at once
    assert Counting.writes == 2


@pytest.mark.parametrize("old_msgspec", [False, True], ids=["installed", "msgspec-0.22"])
def test_a_report_that_is_not_utf8_names_its_line_and_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_msgspec: bool
) -> None:
    if old_msgspec:  # msgspec < 0.23 raised UnicodeDecodeError, not its DecodeError
        import msgspec

        def decode(line: bytes, **kw: Any) -> object:
            line.decode("utf-8")
            return msgspec.json.Decoder(**kw).decode(line)

        monkeypatch.setattr(msgspec.json, "decode", decode)
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"integration_id": 1, "result": "failed", "error": "Livr\xe9"}\n{"summary": true}\n')
    with pytest.raises(ValueError, match=r"^line 1 is not UTF-8 text \(column 57: byte 0xE9\)$"):
        read_retry_report(str(path))


def test_the_sinks_take_outcomes_in_batches_in_order_and_a_failure_at_once() -> None:
    from batchsync.commands._outputs import Batched
    from batchsync.outcome import Outcome

    report: list[Outcome] = []
    terminal: list[Outcome] = []
    batched = Batched([report.append, terminal.append])

    def ids(seen: list[Outcome]) -> list[int]:
        return [o.integration_id for o in seen]

    for iid in (1, 2):
        batched.add(Outcome(iid, "a", "changed"))
    assert report == terminal == []  # gathered until the run's timer delivers
    batched.deliver()
    batched.add(Outcome(3, "a", "unchanged"))
    batched.add(Outcome(4, "a", "failed"))  # -q prints a failure as it happens: it goes at once
    assert ids(report) == ids(terminal) == [1, 2, 3, 4]
    batched.add(Outcome(5, "a", "skipped"))
    batched.deliver()
    batched.deliver()  # nothing twice
    assert ids(report) == ids(terminal) == [1, 2, 3, 4, 5]
    assert batched.error is None


def test_a_sink_that_raises_costs_that_outcome_in_that_sink_only() -> None:
    """A bug in one sink's add must not end the run from its timer, nor cost the other
    sinks their outcomes: the first error is kept for the run to raise at its end."""
    from batchsync.commands._outputs import Batched
    from batchsync.outcome import Outcome

    report: list[int] = []

    def broken(outcome: Outcome) -> None:
        if outcome.integration_id == 2:
            raise ValueError("a bug in a sink")

    batched = Batched([broken, lambda o: report.append(o.integration_id)])
    for iid in (1, 2, 3):
        batched.add(Outcome(iid, "a", "changed"))
    batched.deliver()
    assert report == [1, 2, 3]
    assert isinstance(batched.error, ValueError) and str(batched.error) == "a bug in a sink"
