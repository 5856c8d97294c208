"""The client-side token bucket: burst first, then the rate; debit on completion; slower after a 429."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import pytest

from batchsync.engine.limits import Bucket, backend_clock
from batchsync.model import FLOOR
from batchsync.sendcloud.headers import RETRY_AFTER_MAX, parse_retry_after


def test_burst_then_rate() -> None:
    b = Bucket(per_minute=600, capacity=5, now=0.0, safety=1.0)  # 10 a second after 5 at once
    starts = []
    now = 0.0
    for _ in range(10):
        now = b.ready_at(now)
        starts.append(now)
        b.take()
        b.give_back(now)  # an instant request
    assert starts[:5] == [0.0] * 5
    assert starts[5:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_a_token_is_debited_when_its_request_completes() -> None:
    b = Bucket(per_minute=60, capacity=2, now=0.0, safety=1.0)  # one a second
    b.take()
    b.take()
    assert b.ready_at(0.0) > 0.0  # both reserved: nothing more may start
    # 5 seconds later the requests end; the bucket was full all along, so nothing refilled
    b.give_back(5.0)
    b.give_back(5.0)
    assert b.ready_at(5.0) == pytest.approx(6.0)


def test_a_request_never_sent_gives_its_token_back() -> None:
    b = Bucket(per_minute=60, capacity=1, now=0.0, safety=1.0)
    b.take()
    b.give_back(0.0, used=False)
    assert b.ready_at(0.0) == 0.0


def test_a_429_empties_pauses_and_cuts_the_rate_once_per_overload() -> None:
    b = Bucket(per_minute=600, capacity=5, now=0.0, safety=1.0)
    for _ in range(5):
        b.take()
    assert b.on_throttled(now=0.1, started=0.0, pause=2.0)  # the first cuts the rate
    assert b.rate == pytest.approx(10 * 0.8)
    assert b.ready_at(0.2) == pytest.approx(2.1)  # paused for the Retry-After
    # the other requests that were in flight get their 429 too: same overload, no new cut
    assert not b.on_throttled(now=0.15, started=0.0, pause=2.0)
    assert b.rate == pytest.approx(8.0)
    # a request started after the cut that is throttled again: a new cut
    assert b.on_throttled(now=3.0, started=2.5, pause=1.0)
    assert b.rate == pytest.approx(6.4)
    assert b.throttled == 3 and b.slowed


def test_the_rate_never_goes_below_the_floor_and_stops_changing_there() -> None:
    b = Bucket(per_minute=600, capacity=1, now=0.0, safety=1.0)
    changes = 0
    t = 0.0
    for _ in range(100):
        t += 1.0
        changes += b.on_throttled(now=t, started=t - 0.01, pause=0.0)
    assert b.rate == pytest.approx(10 * FLOOR)
    assert changes == math.ceil(math.log(FLOOR) / math.log(0.8))  # then no more "slowing to" news


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412490.0) == 0.0  # in the past


@pytest.mark.parametrize(
    "value",
    [
        "1000000000",
        "inf",
        "Infinity",
        "1e400",
        "9" * 5000,
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 01 Jan 9999 23:59:59 +2359",
    ],
)
def test_parse_retry_after_huge_is_capped_and_finite(value: str) -> None:
    got = parse_retry_after(value)
    assert got == RETRY_AFTER_MAX
    assert math.isfinite(got)


@pytest.mark.parametrize(
    "value",
    [
        "nan",
        "-nan",
        "NaN",
        "Wed, 21 Oct 99999 07:28:00 GMT",  # year out of range
        "Wed, 21 Oct 2015 25:28:00 GMT",  # hour out of range
        "Mon, 01 Jan 1 00:00:00 +2359",
        "a, b c d e",
        "\x00\x1b[31m",
        "1,2",
        "0x10",
    ],
)
def test_parse_retry_after_never_raises(value: str) -> None:
    got = parse_retry_after(value, now=lambda: 1445412470.0)
    assert got is None or (math.isfinite(got) and 0.0 <= got <= RETRY_AFTER_MAX)


def _steps_missed(clock: Callable[[], float], trials: int = 50) -> int:
    """How many of ``trials`` waits of 0.2 ms the clock did not see pass."""
    missed = 0
    for _ in range(trials):
        before = clock()
        t = time.perf_counter()
        while time.perf_counter() - t < 0.0002:
            pass
        missed += clock() <= before
    return missed


def test_the_buckets_clock_sees_a_fraction_of_a_millisecond_on_either_event_loop() -> None:
    """A bucket debits a request when it completes, never before the server did when it
    arrived: on loopback that is within a millisecond, finer than uvloop's own clock (whole
    milliseconds, up to one behind). The buckets' clock is time.monotonic on both loops."""
    uvloop = pytest.importorskip("uvloop")

    async def probe() -> tuple[int, float]:
        clock = backend_clock()
        return _steps_missed(clock), clock() - time.monotonic()

    for run in (asyncio.run, uvloop.run):
        missed, behind = run(probe())
        assert missed == 0, run
        assert -0.001 < behind <= 0.0, run
    assert uvloop.run(_loop_clock_missed()) > 0  # what the engine read before: a coarse clock


async def _loop_clock_missed() -> int:
    return _steps_missed(asyncio.get_running_loop().time)
