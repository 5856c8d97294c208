"""The client-side meter: burst first, then the rate; in-flight cap; slower after a 429."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from batchsync.limits import RETRY_AFTER_MAX, Meter, parse_retry_after


async def test_burst_then_rate() -> None:
    meter = Meter(per_minute=600, capacity=5, safety=1.0)  # 10 per second after 5 at once
    stamps: list[float] = []
    start = time.monotonic()
    for _ in range(10):
        await meter.acquire()
        stamps.append(time.monotonic() - start)
        meter.release()
    assert stamps[4] < 0.05  # the burst is immediate
    # the 5 after it are paced at ~0.1 s each: generous bounds, never exact sleeps
    assert 0.4 <= stamps[9] <= 0.9


async def test_in_flight_cap() -> None:
    meter = Meter(per_minute=60_000, capacity=3)
    in_flight = peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        await meter.acquire()
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.02)
        in_flight -= 1
        meter.release()

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert peak == 3


async def test_throttle_slows_and_pauses() -> None:
    meter = Meter(per_minute=6000, capacity=2, safety=1.0)
    before = meter.rate
    meter.on_throttled(0.2)
    assert meter.rate < before and meter.throttled == 1
    start = time.monotonic()
    await meter.acquire()
    meter.release()
    assert time.monotonic() - start >= 0.18  # honoured the Retry-After pause


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
