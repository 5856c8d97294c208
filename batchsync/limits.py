"""Client-side rate limiting per Sendcloud account: reads and writes metered apart.

Each account gets two :class:`Meter` objects (reads, writes). A meter is a token
bucket (the rate) plus a cap on requests in flight (the burst allowance): separate
knobs, as aiometer separates ``max_per_second`` from ``max_at_once``. A 429 slows
only the meter that got it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

# We aim slightly under the documented budget: a server's clock and ours never agree
# exactly, and a request's arrival jitters by a few milliseconds.
SAFETY = 0.995
# After a 429 the rate we believed in was wrong; each one takes this much off it.
BACKOFF_FACTOR = 0.8
FLOOR = 0.1  # never below this fraction of the declared rate


class Meter:
    """A token bucket of ``capacity`` tokens refilled at ``per_minute``, and at most
    ``capacity`` requests in flight.

    Waiters are served first come, first served (the lock is fair), so a burst of
    callers is spread at the rate rather than stampeding at each refill.

    A request's token is debited when it completes (:meth:`release`), and until then
    it is reserved: a request may start only when ``tokens - in flight >= 1``. The
    server debits its own bucket when the request *arrives*, somewhere between our
    acquire and our release; a request that waited after its acquire (for a pooled
    connection, a busy event loop, a slow server) would otherwise arrive in a clump
    with later ones and find the server's bucket empty. Debiting at the latest
    moment the server can have debited keeps our bucket at or below the server's,
    whatever the delays, at the cost of refilling one round trip later.
    """

    def __init__(
        self,
        per_minute: float,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
        safety: float = SAFETY,
    ) -> None:
        self.declared = per_minute / 60.0
        self.rate = self.declared * safety
        self.capacity = max(1, capacity)
        self.tokens = float(self.capacity)
        self.reserved = 0  # tokens of requests in flight, debited on release
        self.clock = clock
        self.updated = clock()
        self.paused_until = 0.0
        self.throttled = 0  # 429s seen
        self.waiting = 0  # callers queued for a token right now
        self._lock = anyio.Lock()
        self._in_flight = anyio.Semaphore(self.capacity)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def try_acquire(self) -> bool:
        """Take a slot and a token now if both are free and nobody waits; else False.

        The synchronous fast path of :meth:`acquire` (pair it with :meth:`release` too):
        no task switch, no lock, which matters when limits are far from binding.
        """
        if self.waiting or self._in_flight.value == 0 or self._lock.locked():
            return False
        now = self.clock()
        if now < self.paused_until:
            return False
        self._refill(now)
        if self.tokens - self.reserved < 1.0:
            return False
        self._in_flight.acquire_nowait()
        self.reserved += 1
        return True

    async def acquire(self) -> None:
        """Wait for a slot in flight, then for a token. Pair with :meth:`release`."""
        self.waiting += 1
        try:
            await self._in_flight.acquire()
            try:
                async with self._lock:
                    while True:
                        now = self.clock()
                        if now < self.paused_until:
                            await anyio.sleep(self.paused_until - now)
                            continue
                        self._refill(now)
                        available = self.tokens - self.reserved
                        if available >= 1.0:
                            self.reserved += 1
                            return
                        await anyio.sleep((1.0 - available) / self.rate)
            except BaseException:
                self._in_flight.release()
                raise
        finally:
            self.waiting -= 1

    def release(self, used: bool = True) -> None:
        """The request is over: debit its token now (unless it was never sent), free its slot."""
        if used:
            self._refill(self.clock())
            self.tokens -= 1.0
        self.reserved -= 1
        self._in_flight.release()

    def on_throttled(self, retry_after: float | None) -> None:
        """A 429: slow down, empty the bucket, and pause for ``Retry-After`` if given."""
        self.throttled += 1
        self.rate = max(self.declared * FLOOR, self.rate * BACKOFF_FACTOR)
        now = self.clock()
        self._refill(now)
        self.tokens = min(self.tokens, float(self.reserved))  # nothing left to start with
        pause = retry_after if retry_after is not None else 1.0 / self.rate
        self.paused_until = max(self.paused_until, now + pause)

    @property
    def slowed(self) -> bool:
        """Whether a 429 has taken this meter below what the inventory declared."""
        return self.throttled > 0


class AccountLimiter:
    """The read and write meters of one account."""

    def __init__(
        self,
        writes_per_minute: float,
        write_burst: int,
        reads_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Sendcloud documents a burst only for writes; reads get the same cap on
        # requests in flight, which is what "burst allowance" describes.
        self.reads = Meter(reads_per_minute, write_burst, clock)
        self.writes = Meter(writes_per_minute, write_burst, clock)


# The longest pause a Retry-After may ask for; the engine cuts it further to what is
# left of --retry-max-time. A server saying "a billion seconds" or "inf" means "not soon".
RETRY_AFTER_MAX = 3600.0


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    A finite float in ``[0, RETRY_AFTER_MAX]``, or None when the header is absent or says
    nothing usable (``soon``, ``nan``, a malformed date). Never raises: the value comes
    from a server, and a header must not crash a run.
    """
    if not value:
        return None
    text = value.strip()
    seconds: float | None
    try:
        seconds = float(text)  # also "inf", "1e400" (inf) and "nan": handled below
    except ValueError:
        seconds = _seconds_until(text, now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def _seconds_until(http_date: str, now: Callable[[], float]) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(http_date).timestamp() - now()
    except Exception:  # ValueError, TypeError, OverflowError, IndexError: any malformed date
        return None
