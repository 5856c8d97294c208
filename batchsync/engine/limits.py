"""Client-side rate limiting per Sendcloud account: a token bucket for reads, one for writes.

The buckets are synchronous and read the clock they are given (:func:`backend_clock` in
a run, a virtual one in tests): the engine asks when a token will be ready and
schedules itself. The account's cap on requests in flight (Sendcloud's burst allowance,
shared by reads and writes) is kept by the engine, next to its queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from batchsync.model import FLOOR

# We aim slightly under the documented budget: a server's clock and ours never agree
# exactly, and a request's arrival jitters by a few milliseconds.
SAFETY = 0.999
# After a 429 the rate we believed in was wrong; each new 429 takes this much off it,
# down to model.FLOOR of the declared rate, never lower.
BACKOFF_FACTOR = 0.8


def backend_clock() -> Callable[[], float]:
    """The clock of the buckets of a run: ``time.monotonic`` under asyncio, whatever its
    loop; ``anyio.current_time`` elsewhere (trio, whose clock the tests make virtual).

    Not the event loop's own clock: uvloop's (libuv's) counts whole milliseconds of a
    coarse clock and lags by up to one. A request answered within a millisecond of
    reaching the server was then debited *before* the server debited it, and the next one
    sent a fraction of a token early: a 429 now and then at a thousand reads a minute.
    asyncio's own loop reads ``time.monotonic`` (the same clock), and it is called
    without anyio's lookup of the running backend (a microsecond, several times per request).
    A sleep on the loop's timers may then end a little before a token is due by this clock:
    whoever sleeps for a token checks again when it wakes."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio, in the tests)
        import anyio

        return anyio.current_time
    return time.monotonic


class Bucket:
    """``capacity`` tokens refilled at ``per_minute`` (aiming ``safety`` under it).

    A request reserves a token when it starts and the token is debited when it
    completes (:meth:`give_back`): a request may start only when ``tokens - reserved
    >= 1``. The server debits its own bucket when the request *arrives*, somewhere
    between our start and our completion; a request delayed after its start (a busy
    loop, a slow connection) would otherwise arrive in a clump with later ones and
    find the server's bucket empty. Debiting at the latest moment the server can have
    debited keeps our bucket at or below the server's, whatever the delays.
    """

    __slots__ = ("capacity", "cut_at", "declared", "paused_until", "rate", "reserved", "throttled", "tokens", "updated")

    def __init__(self, per_minute: float, capacity: int, now: float, safety: float = SAFETY) -> None:
        self.declared = per_minute / 60.0
        self.rate = self.declared * safety
        self.capacity = float(max(1, capacity))
        self.tokens = self.capacity
        self.reserved = 0
        self.updated = now
        self.paused_until = -math.inf
        self.throttled = 0  # 429s seen
        self.cut_at = -math.inf  # when a 429 last cut the rate

    def carry(self, left: float, age: float) -> None:
        """Start from what an earlier run left of this bucket ``age`` seconds ago (the
        server's bucket does not refill because our process is new)."""
        if math.isfinite(left) and math.isfinite(age) and age >= 0.0:
            self.tokens = min(self.capacity, max(0.0, left) + age * self.rate)

    def left(self, now: float) -> float:
        """Tokens in the bucket now, what is reserved not counted."""
        self._refill(now)
        return max(0.0, self.tokens - self.reserved)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def ready_at(self, now: float) -> float:
        """The earliest time a request may start (``<= now``: at once)."""
        if now < self.paused_until:
            return self.paused_until
        if now > self.updated:  # _refill, inline: this runs several times per request
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        available = self.tokens - self.reserved
        if available >= 1.0:
            return now
        return now + (1.0 - available) / self.rate

    def take(self) -> None:
        """Reserve a token; call only when :meth:`ready_at` said now."""
        self.reserved += 1

    def give_back(self, now: float, used: bool = True) -> None:
        """The request is over: debit its token (unless it was never sent)."""
        if used:
            if now > self.updated:  # _refill, inline: once per request
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
            self.tokens -= 1.0
        self.reserved -= 1

    def on_throttled(self, now: float, started: float, pause: float) -> bool:
        """A 429 for a request started at ``started``: empty the bucket, pause ``pause``
        seconds, and cut the rate. True when the rate changed.

        Requests already in flight when the rate was last cut are echoes of the same
        overload: they pause the bucket but do not cut the rate again, so one overload
        costs one cut (and one log line), not one per request that was in flight.
        """
        self.throttled += 1
        self._refill(now)
        self.tokens = min(self.tokens, float(self.reserved))  # nothing left to start with
        self.paused_until = max(self.paused_until, now + pause)
        if started < self.cut_at:
            return False
        floor = self.declared * FLOOR
        if self.rate <= floor:
            return False
        self.rate = max(floor, self.rate * BACKOFF_FACTOR)
        self.cut_at = now
        return True

    def adopt(self, other: Bucket) -> None:
        """Go on from what ``other``, the same meter of the same account measured just
        before on the same clock (the exception logs' read under ``--with-health``), learnt
        of the server: its rate if a 429 cut it lower, its pause, when it was last cut. The
        tokens are carried apart (:meth:`carry`)."""
        self.rate = min(self.rate, other.rate)
        self.paused_until = max(self.paused_until, other.paused_until)
        self.cut_at = max(self.cut_at, other.cut_at)

    @property
    def slowed(self) -> bool:
        """Whether a 429 has taken this bucket below the rate the inventory declared."""
        return self.rate < self.declared * SAFETY


def log_slowed(logger: logging.Logger, account: str, kind: str, bucket: Bucket) -> None:
    """The warning of a 429 that cut ``bucket``'s rate: one per change of rate."""
    logger.warning(
        "account %s: 429 on %s: slowing its %s to %.0f a minute (declared %.0f; the floor is %.0f)",
        account,
        kind,
        kind,
        bucket.rate * 60,
        bucket.declared * 60,
        bucket.declared * 60 * FLOOR,
        extra={"fields": {"account": account, "meter": kind, "rate_per_minute": round(bucket.rate * 60)}},
    )
