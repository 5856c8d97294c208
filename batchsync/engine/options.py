"""What the engine needs to know of a run, as one frozen struct: the run's shape (plan or
apply, read first or not), its retries and breaker, its failure budgets, its list bounds.
"""

from __future__ import annotations

import math

import msgspec

from batchsync.sendcloud.listing import ListBounds


class FailureBudget(msgspec.Struct, frozen=True):
    """``N`` failures, or ``P%`` of the integrations it applies to (at least 1)."""

    count: int | None = None
    percent: float | None = None

    def limit(self, total: int) -> int:
        if self.count is not None:
            return self.count
        return max(1, math.ceil(total * (self.percent or 0.0) / 100))

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine needs to know of a run."""

    write: bool = True  # False: plan (read and diff only)
    read_first: bool = True  # False: --no-read, write every selected integration
    allow_delete_all: bool = False
    allow_invalid_mapping: bool = False
    preflight: bool = True  # GET /integrations per account before its first status request
    concurrency: int = 64  # requests in flight over all accounts
    max_attempts: int = 6
    retry_max_time: float = 300.0  # seconds, all attempts of one request together
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_failures: int | None = None  # the whole run starts nothing new after this many failures
    max_failures_per_account: FailureBudget | None = None  # an account's rest is skipped after this many
    # Consecutive server-side failures (5xx, transport) of one account that pause it.
    breaker_threshold: int = 5
    breaker_pause: float = 5.0  # seconds, doubled on each trip, up to backoff_max
    list_bounds: ListBounds = ListBounds()
