"""A run's outputs, opened in a thread of their own once its first outcome comes: the run
never waits for them meanwhile, and every sink still gets every outcome, in order."""

from __future__ import annotations

import io
import threading
import time
from typing import IO

from batchsync.commands._outputs import Outputs
from batchsync.outcome import Outcome
from batchsync.outputs.sink import End, Sink


class Recorder:
    def __init__(self) -> None:
        self.got: list[int] = []
        self.flushed = 0
        self.thread = threading.current_thread()

    def add(self, outcome: Outcome) -> None:
        self.got.append(outcome.integration_id)

    def flush(self) -> None:
        self.flushed += 1

    def close(self, end: End | None) -> None:
        pass


def outcome(n: int) -> Outcome:
    return Outcome(n, "acme", "unchanged")


def test_outcomes_that_come_while_the_outputs_open_are_handed_over_in_order() -> None:
    release = threading.Event()
    recorder = Recorder()

    def build(err: IO[str]) -> list[Sink]:
        release.wait(10)  # a store that is slow to open
        recorder.thread = threading.current_thread()
        return [recorder]

    outputs = Outputs(build, io.StringIO(), lambda: None)
    t0 = time.monotonic()
    for n in range(3):
        outputs.add(outcome(n))  # never waits for the store
    outputs.flush()
    assert time.monotonic() - t0 < 1 and recorder.got == [] and not outputs.sinks
    release.set()
    assert outputs.opened() == [recorder]
    assert recorder.got == [0, 1, 2] and recorder.thread is not threading.main_thread()
    outputs.add(outcome(3))
    outputs.flush()
    assert recorder.got == [0, 1, 2, 3] and recorder.flushed == 1


def test_the_next_outcome_or_tick_hands_over_what_waited() -> None:
    recorder = Recorder()
    outputs = Outputs(lambda err: [recorder], io.StringIO(), lambda: None)
    outputs.add(outcome(1))
    deadline = time.monotonic() + 10
    while not recorder.got and time.monotonic() < deadline:
        time.sleep(0.01)
        outputs.flush()  # the run's tick
    assert recorder.got == [1] and outputs.sinks == [recorder]


def test_what_the_sinks_print_as_they_open_waits_for_the_runs_thread() -> None:
    err = io.StringIO()
    cleared: list[str] = []

    def build(stream: IO[str]) -> list[Sink]:
        print("batchsync: warning: no run history", file=stream)
        return [Recorder()]

    outputs = Outputs(build, err, lambda: cleared.append(err.getvalue()))
    outputs.add(outcome(1))
    assert outputs._thread is not None
    outputs._thread.join(10)
    assert err.getvalue() == ""  # held while the progress line may be drawn
    outputs.opened()
    assert cleared == [""]  # the progress line cleared first
    assert err.getvalue() == "batchsync: warning: no run history\n"


def test_a_run_without_an_outcome_opens_them_at_its_end() -> None:
    recorder = Recorder()
    outputs = Outputs(lambda err: [recorder], io.StringIO(), lambda: None)
    assert outputs.opened() == [recorder] and recorder.thread is threading.main_thread()


def test_outputs_that_cannot_be_built_cost_the_others_only_and_the_error_is_kept() -> None:
    """A build that fails (a bug) raises nothing into the run: the report, open already,
    keeps getting every outcome and is the one sink to close; the error waits for the run
    to raise it once that is done."""
    report = Recorder()

    def build(err: IO[str]) -> list[Sink]:
        raise RuntimeError("a bug")

    outputs = Outputs(build, io.StringIO(), lambda: None, early=[report])
    outputs.add(outcome(1))
    assert outputs.opened() == [report]
    outputs.add(outcome(2))
    outputs.flush()
    assert report.got == [1, 2] and report.flushed == 1
    assert isinstance(outputs.error, RuntimeError) and str(outputs.error) == "a bug"


def test_the_report_gets_each_outcome_at_once_while_the_others_open() -> None:
    """The report (open before the first request) never waits for a slow store: a run
    killed meanwhile leaves its lines; the others get them when open, and the report is
    given none twice."""
    release = threading.Event()
    report, later = Recorder(), Recorder()

    def build(err: IO[str]) -> list[Sink]:
        release.wait(10)
        return [later, report]  # the report among them, last to close

    outputs = Outputs(build, io.StringIO(), lambda: None, early=[report])
    outputs.add(outcome(1))
    outputs.add(outcome(2))
    outputs.flush()
    assert report.got == [1, 2] and report.flushed == 1 and later.got == []
    release.set()
    assert outputs.opened() == [later, report]
    outputs.add(outcome(3))
    assert later.got == [1, 2, 3] and report.got == [1, 2, 3]


def test_interrupted_while_waiting_for_the_outputs_leaves_the_report_to_close() -> None:
    """A Ctrl-C while the run's end waits for the thread: the early sinks are given to close
    (the report keeps its lines), and the interruption is kept, not lost."""
    release = threading.Event()
    report = Recorder()

    def build(err: IO[str]) -> list[Sink]:
        release.wait(10)
        return [report]

    outputs = Outputs(build, io.StringIO(), lambda: None, early=[report])
    outputs.add(outcome(1))
    thread = outputs._thread
    assert thread is not None

    def interrupted_join(timeout: float | None = None) -> None:
        raise KeyboardInterrupt

    thread.join = interrupted_join  # type: ignore[method-assign]
    try:
        assert outputs.opened() == [report]
        assert isinstance(outputs.error, KeyboardInterrupt) and report.got == [1]
    finally:
        release.set()
