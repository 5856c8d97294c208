"""The engine's state of one account and of each integration in progress.

Per account: its queues of pending work, its two token buckets, its cap on requests in
flight and its health (the breaker, refused credentials, a spent failure budget). Per
integration: what has been read and what remains to write; per request, a :class:`Step`.
"""

from __future__ import annotations

import math
from collections import deque
from enum import IntEnum
from typing import cast

from batchsync.diff import Diff, MappingChange
from batchsync.engine.api import AccountApi
from batchsync.engine.limits import Bucket
from batchsync.model import Account, Job
from batchsync.outcome import AccountStats, ErrorKind
from batchsync.sendcloud.errors import ApiError
from batchsync.sendcloud.listing import Listing
from batchsync.wire import CurrentStatus


class Op(IntEnum):
    PAGE = 0  # GET /integrations (pre-flight), one page
    GET_STATUSES = 1
    GET_MAPPING = 2
    POST_STATUSES = 3
    POST_MAPPING = 4


# The members by plain names: looking a member up on its enum class costs several times
# the comparison it is used in, and the engine compares steps' ops on every request.
PAGE, GET_STATUSES, GET_MAPPING, POST_STATUSES, POST_MAPPING = (
    Op.PAGE,
    Op.GET_STATUSES,
    Op.GET_MAPPING,
    Op.POST_STATUSES,
    Op.POST_MAPPING,
)
WRITES = (POST_STATUSES, POST_MAPPING)


class Work:
    """One integration in progress: what has been read, what remains to write."""

    __slots__ = ("attempts", "change", "current", "job", "mapping_changes", "started", "statuses_written", "warnings")

    current: tuple[CurrentStatus, ...]  # the statuses read: set for a saved plan's step alone (Engine)

    def __init__(self, job: Job, now: float) -> None:
        self.job = job
        self.attempts = 0
        self.started = now
        self.change: Diff | None = None
        self.mapping_changes: tuple[MappingChange, ...] = ()
        self.statuses_written = False
        self.warnings: list[str] = []


class Step:
    """One request to make: which, for whom, and since when it is being tried."""

    __slots__ = ("acc", "first", "op", "page_url", "sent", "tries", "work")

    def __init__(self, op: Op, acc: AccountState, work: Work | None, page_url: str | None = None) -> None:
        self.op = op
        self.acc = acc
        self.work = work
        self.page_url = page_url
        self.first = -1.0  # when its first attempt started
        self.sent = -1.0  # when its latest attempt started
        self.tries = 0


class AccountState:
    """Scheduling state of one account: its queues, buckets, slot count and health."""

    __slots__ = (
        "account",
        "api",
        "breaker_trips",
        "cap",
        "consecutive",
        "delayed",
        "direct",
        "fatal",
        "in_flight",
        "in_r",
        "in_w",
        "listing",
        "name",
        "paused_until",
        "pending",
        "read_q",
        "reads",
        "reads_done",
        "rkey",
        "stats",
        "stopped",
        "timer_at",
        "tripped_at",
        "unconfirmed",
        "wkey",
        "write_q",
        "writes",
        "writes_found",
    )

    def __init__(self, account: Account, api: AccountApi, now: float, stats: AccountStats) -> None:
        self.name = account.name
        self.account = account
        self.api = api
        self.stats = stats  # its counters in the run's summary
        lim = account.limits
        self.reads = Bucket(lim.reads_per_minute, lim.write_burst, now)
        self.writes = Bucket(lim.writes_per_minute, lim.write_burst, now)
        # Sendcloud's burst allowance is "the maximum number of concurrent requests": one
        # cap per account, shared by its reads and writes.
        self.cap = max(1, lim.write_burst)
        self.in_flight = 0
        self.pending: deque[Job] = deque()  # not started; their first request is a read
        self.direct: deque[Job] = deque()  # not started; their first request is a write (--no-read)
        # While the pre-flight reads the account's integration list, its jobs wait here
        # until a page confirms them.
        self.unconfirmed: dict[int, Job] = {}
        self.listing: Listing | None = None  # the pre-flight's list as read so far, with its bounds
        self.read_q: deque[Step] = deque()  # reads ready to go: follow-ups, retries that are due
        self.write_q: deque[Step] = deque()
        self.delayed: list[tuple[float, int, Step]] = []  # retries waiting for their time
        self.paused_until = -math.inf  # the circuit breaker's pause
        self.consecutive = 0  # server-side failures in a row
        self.breaker_trips = 0  # since its last success: each pause doubles
        self.tripped_at = -math.inf  # when the breaker last paused it
        self.fatal: ApiError | None = None  # credentials refused: nothing more is sent
        self.stopped: str | None = None  # its failure budget is spent: nothing more starts
        self.reads_done = 0
        self.writes_found = 0
        # Its entries in the read and write heaps: at most one live each, with its key.
        self.in_r = False
        self.in_w = False
        self.rkey = 0.0
        self.wkey = 0.0
        self.timer_at = math.inf  # its earliest wake-up already in the timer heap

    def remaining_time(self, drift: float) -> float:
        """Seconds of budget its remaining work needs at least: its reads or its writes.

        ``drift`` is the run's share of reads so far that found a difference; the account's
        own share takes over as its reads accumulate (``PRIOR`` reads' worth of weight).
        """
        jobs = len(self.pending) + len(self.unconfirmed)
        reads = jobs + len(self.read_q)
        share = (self.writes_found + drift * PRIOR) / (self.reads_done + PRIOR)
        writes = len(self.write_q) + len(self.direct) + jobs * share
        return max(reads / self.reads.rate, writes / self.writes.rate)

    def write_time(self) -> float:
        return (len(self.write_q) + len(self.direct)) / self.writes.rate

    def has_reads(self) -> bool:
        return bool(self.read_q or self.pending)

    def has_writes(self) -> bool:
        return bool(self.write_q or self.direct)

    def open(self) -> bool:
        return self.fatal is None and self.stopped is None


def error_kind(error: ApiError) -> ErrorKind:
    return cast("ErrorKind", error.kind)


PRIOR = 10.0  # reads of the whole run's drift an account's own estimate starts with

EMPTY_REFUSED = (
    "the desired list is empty: writing it would delete every status of this integration; "
    "pass --allow-delete-all to do so"
)
