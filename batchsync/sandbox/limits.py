"""Server-side rate limits of the sandbox: a token bucket plus an in-flight cap per account and kind.

This is what the sandbox enforces, not how a client paces itself (that is
``batchsync.engine.limits``). Everything is synchronous and O(1): it runs on every request.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Clock = Callable[[], float]


class Gate:
    """One account's budget for one kind of request (reads or writes).

    A token bucket (``capacity`` tokens, ``rate`` tokens per real second) bounds the
    rate; ``max_in_flight`` bounds concurrency, because Sendcloud describes its burst
    allowance as "the maximum number of concurrent requests the API can handle".
    """

    __slots__ = ("capacity", "clock", "in_flight", "max_in_flight", "peak", "rate", "stamp", "tokens")

    def __init__(self, capacity: int, rate: float, max_in_flight: int, clock: Clock) -> None:
        if capacity < 1 or rate <= 0 or max_in_flight < 1:
            raise ValueError("capacity and max_in_flight must be >= 1 and rate > 0")
        self.capacity = float(capacity)
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.tokens = float(capacity)
        self.stamp = clock()
        self.in_flight = 0
        self.peak = 0

    def try_enter(self) -> int:
        """0 when admitted (call :meth:`leave` when done), else whole seconds to wait (>= 1)."""
        if self.in_flight >= self.max_in_flight:
            # A slot frees as soon as a request ends; one second is the smallest honest hint.
            return 1
        now = self.clock()
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self.tokens = tokens - 1.0
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight
        return 0

    def leave(self) -> None:
        self.in_flight -= 1


class AccountGates:
    """The read gate and the write gate of one account."""

    __slots__ = ("read", "write")

    def __init__(
        self,
        writes_per_minute: float,
        write_burst: int,
        reads_per_minute: float,
        time_scale: float,
        clock: Clock,
    ) -> None:
        # time_scale speeds the clock up: every rate is multiplied, capacities are not.
        self.write = Gate(write_burst, writes_per_minute / 60.0 * time_scale, write_burst, clock)
        self.read = Gate(write_burst, reads_per_minute / 60.0 * time_scale, write_burst, clock)
