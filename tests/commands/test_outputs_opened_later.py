"""A run's outputs, opened in a thread of their own once its first outcome comes: the run
never waits for them meanwhile, and every sink still gets every outcome, in order."""

from __future__ import annotations

import io
import threading
import time
from typing import IO

import pytest

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


def test_an_output_that_cannot_be_built_is_raised_in_the_runs_thread() -> None:
    def build(err: IO[str]) -> list[Sink]:
        raise RuntimeError("a bug")

    outputs = Outputs(build, io.StringIO(), lambda: None)
    outputs.add(outcome(1))
    with pytest.raises(RuntimeError, match="a bug"):
        outputs.opened()
    assert outputs.opened() == []  # raised once
