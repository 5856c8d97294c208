"""Plan and apply: the only place that knows about concurrency.

One pool of workers, bounded by ``--concurrency``, serves every account. Per account
there is only a queue of pending work, two token buckets (reads, writes) and one cap on
requests in flight shared by both (Sendcloud's burst allowance). Which request starts
next is decided in one place, :meth:`Engine._pick`:

1. a write whose account has a write token and a free slot (the scarce budget never idles);
2. else a read of the account with the most remaining work per unit of its budget
   (longest processing time first), so the account that sets the run's length is never
   behind its own budget while the others fill the slots it leaves.

An integration goes through a few steps (pre-flight check, read statuses, read the
mapping when it matters, write statuses, write the mapping), each one request; the
mapping guard refuses writes that would break a shop's mapping. Every integration ends
with exactly one :class:`Outcome`, recorded by the :class:`~batchsync.ledger.Ledger`.
Time comes from ``anyio.current_time``/``anyio.sleep`` only, so tests run it under a
virtual clock.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import IntEnum
from typing import Any, cast

import anyio

from batchsync.api import AccountApi, Api
from batchsync.diff import Diff, MappingChange, diff, everything_added, mapping_diff, mapping_guard
from batchsync.ledger import Ledger, Reached
from batchsync.limits import Bucket
from batchsync.model import FLOOR, PRESTASHOP_V2, Account, Job
from batchsync.outcome import AccountStats, ErrorInfo, ErrorKind, Outcome, Result, Summary
from batchsync.sendcloud.errors import (
    ApiError,
    AuthError,
    InvalidResponseError,
    ServerError,
    ThrottledError,
    TransportError,
)
from batchsync.sendcloud.listing import ListBoundError, Listing
from batchsync.settings import Options
from batchsync.wire import CurrentMapping, CurrentStatus, Integration, ListedPage

log = logging.getLogger("batchsync.engine")


class Op(IntEnum):
    PAGE = 0  # GET /integrations (pre-flight), one page
    GET_STATUSES = 1
    GET_MAPPING = 2
    POST_STATUSES = 3
    POST_MAPPING = 4


# The members by plain names: looking a member up on its enum class costs several times
# the comparison it is used in, and the engine compares steps' ops on every request.
_PAGE, _GET_STATUSES, _GET_MAPPING, _POST_STATUSES, _POST_MAPPING = (
    Op.PAGE,
    Op.GET_STATUSES,
    Op.GET_MAPPING,
    Op.POST_STATUSES,
    Op.POST_MAPPING,
)
_WRITES = (_POST_STATUSES, _POST_MAPPING)


class _Work:
    """One integration in progress: what has been read, what remains to write."""

    __slots__ = ("attempts", "change", "job", "mapping_changes", "started", "statuses_written", "warnings")

    def __init__(self, job: Job, now: float) -> None:
        self.job = job
        self.attempts = 0
        self.started = now
        self.change: Diff | None = None
        self.mapping_changes: tuple[MappingChange, ...] = ()
        self.statuses_written = False
        self.warnings: list[str] = []


class _Step:
    """One request to make: which, for whom, and since when it is being tried."""

    __slots__ = ("acc", "first", "op", "page_url", "sent", "tries", "work")

    def __init__(self, op: Op, acc: _Account, work: _Work | None, page_url: str | None = None) -> None:
        self.op = op
        self.acc = acc
        self.work = work
        self.page_url = page_url
        self.first = -1.0  # when its first attempt started
        self.sent = -1.0  # when its latest attempt started
        self.tries = 0


class _Account:
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
        self.read_q: deque[_Step] = deque()  # reads ready to go: follow-ups, retries that are due
        self.write_q: deque[_Step] = deque()
        self.delayed: list[tuple[float, int, _Step]] = []  # retries waiting for their time
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


def backend_clock() -> Callable[[], float]:
    """``anyio.current_time`` without its lookup of the running backend on every call (a
    microsecond, several times per request): the event loop's own clock under asyncio;
    anyio's function elsewhere (trio, whose clock the tests make virtual)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # not asyncio (trio, in the tests)
        return anyio.current_time


def _kind(error: ApiError) -> ErrorKind:
    return cast("ErrorKind", error.kind)


PRIOR = 10.0  # reads of the whole run's drift an account's own estimate starts with

_EMPTY_REFUSED = (
    "the desired list is empty: writing it would delete every status of this integration; "
    "pass --allow-delete-all to do so"
)


class Engine:
    """Runs jobs to outcomes. ``stop()`` starts nothing new; cancelling the caller's
    scope ends what is in flight; either way every job still gets its outcome."""

    def __init__(
        self,
        accounts: Mapping[str, Account],
        api: Api,
        options: Options,
        on_outcome: Callable[[Outcome], None],
        *,
        rng: random.Random | None = None,
        sanitize: Callable[[Outcome], Outcome] | None = None,
        on_snapshot: Callable[[Job, tuple[CurrentStatus, ...], CurrentMapping], None] | None = None,
    ) -> None:
        """``on_snapshot`` makes it a read-only snapshot (``batchsync import``): every
        integration's statuses and mapping are read and handed to it, nothing is compared
        or written, and a read integration's outcome is ``unchanged``."""
        self.accounts = accounts
        self.api = api
        self.on_snapshot = on_snapshot
        self.options = options
        self.on_outcome = on_outcome
        self.sanitize = sanitize
        self.rng = rng or random.Random()
        self.stopping: str | None = None
        self.ledger = Ledger((), on_outcome, sanitize=sanitize)
        self.accts: dict[str, _Account] = {}
        self._rheap: list[tuple[float, int, _Account]] = []
        self._wheap: list[tuple[float, int, _Account]] = []
        self._timers: list[tuple[float, int, _Account]] = []
        self._seq = 0
        self._idlers: list[anyio.Event] = []
        self._timer_wake = anyio.Event()
        self._timer_target = math.inf
        self._in_flight: dict[int, _Step] = {}  # by id(step): what a cancellation leaves unfinished
        self._clock: Callable[[], float] = anyio.current_time
        self._t0 = 0.0
        self._wall0 = 0.0
        self._total = 0
        self._throttled: set[str] = set()  # accounts waiting on their budget right now
        # Past this many requests in flight, only the accounts that set the run's length
        # start reads (see _pick); the others wait for a completion.
        self._soft_cap = max(8, options.concurrency // 4)
        self._critical_at = -math.inf
        self._critical_s = 0.0
        self._warnings: dict[int, str] = {}  # pre-flight warnings, until the outcome takes them
        self._reads_done = 0
        self._writes_found = 0
        self._snapshots: dict[int, tuple[CurrentStatus, ...]] = {}  # statuses read, mapping not yet
        # Per account: (age, read tokens, write tokens) an earlier run on this host left of
        # its buckets (batchsync.budget); set before run().
        self.carried: Mapping[str, tuple[float, float, float]] = {}

    @property
    def summary(self) -> Summary:
        return self.ledger.summary

    # -- public --------------------------------------------------------------------

    def stop(self, reason: str = "interrupted") -> None:
        """Start nothing new; requests in flight finish; whatever waits is skipped."""
        if self.stopping is None:
            self.stopping = reason
            self.summary.stopped = reason
            self._wake_all()

    def budget_left(self) -> dict[str, tuple[float, float]]:
        """Per account: the (read, write) tokens its buckets hold now (for the next run)."""
        now = self._clock()
        return {name: (acc.reads.left(now), acc.writes.left(now)) for name, acc in self.accts.items()}

    def throttled_accounts(self) -> list[str]:
        """Accounts whose work waits for their budget right now (a 429 pause included)."""
        return sorted(self._throttled)

    async def run(self, jobs: Sequence[Job]) -> Summary:
        self._clock = backend_clock()
        self._t0 = self._clock()
        self._wall0 = time.time()
        by_account: dict[str, list[Job]] = {}
        for job in jobs:
            by_account.setdefault(job.account, []).append(job)
        opts = self.options
        limits: dict[str, int] = {}
        if opts.max_failures_per_account is not None:
            limits = {name: opts.max_failures_per_account.limit(len(js)) for name, js in by_account.items()}
        # The recap and the metrics speak of the accounts this run selected, no others.
        self.ledger = Ledger(
            by_account, self.on_outcome, max_failures=opts.max_failures, account_limits=limits, sanitize=self.sanitize
        )
        self.summary.started_at = self._wall0
        self._total = len(jobs)
        now = self._t0
        try:
            async with anyio.create_task_group() as tg:
                # The busiest account first: its first requests start before anything else
                # is even set up.
                for name in sorted(by_account, key=lambda n: -len(by_account[n])):
                    account = self.accounts[name]
                    acc = _Account(account, self.api.account(account), now, self.ledger.stats(name))
                    carried = self.carried.get(name)
                    if carried is not None:
                        age, reads, writes = carried
                        acc.reads.carry(reads, age)
                        acc.writes.carry(writes, age)
                    self.accts[name] = acc
                    if opts.preflight:
                        acc.unconfirmed = {j.integration_id: j for j in by_account[name]}
                        acc.listing = Listing(opts.list_bounds, now)
                        acc.read_q.append(_Step(_PAGE, acc, None))
                    else:
                        for job in by_account[name]:
                            self._enlist(acc, job)
                    self._evaluate(acc, now)
                    if len(self.accts) == 1:
                        tg.start_soon(self._worker)
                tg.start_soon(self._timekeeper)
                for _ in range(max(0, min(opts.concurrency, self._total + len(self.accts)) - 1)):
                    tg.start_soon(self._worker)
        finally:
            with anyio.CancelScope(shield=True):
                self._finish(jobs)
        return self.summary

    def _enlist(self, acc: _Account, job: Job) -> None:
        """Queue a job not yet started: for a read first, or (``--no-read`` with a declared
        mapping: nothing to read at all) straight for its write."""
        if self.options.read_first or job.mapping is None:
            acc.pending.append(job)
        else:
            acc.direct.append(job)

    # -- the pool ------------------------------------------------------------------

    def _over(self) -> bool:
        return self.stopping is not None or len(self.ledger.finished) >= self._total

    async def _worker(self) -> None:
        while not self._over():
            step = self._pick(self._clock())
            if step is None:
                event = anyio.Event()
                self._idlers.append(event)
                await event.wait()
                continue
            await self._execute(step)
        self._wake_all()

    async def _timekeeper(self) -> None:
        """Sleeps until the earliest moment an account's budget, pause or retry is due,
        then makes it ready and wakes as many idle workers as there is ready work."""
        while not self._over():
            now = self._clock()
            while self._timers and self._timers[0][0] <= now:
                when, _, acc = heapq.heappop(self._timers)
                if when != acc.timer_at:
                    continue  # superseded by an earlier wake-up, whose evaluation rescheduled it
                acc.timer_at = math.inf
                self._evaluate(acc, now)  # what is ready now wakes a worker
            target = self._timers[0][0] if self._timers else math.inf
            self._timer_target = target
            if self._timer_wake.is_set():
                self._timer_wake = anyio.Event()
            with anyio.move_on_after(target - now):
                await self._timer_wake.wait()

    def _wake(self, n: int) -> None:
        while n > 0 and self._idlers:
            self._idlers.pop().set()
            n -= 1

    def _wake_all(self) -> None:
        self._wake(len(self._idlers))
        self._timer_wake.set()

    def _at(self, acc: _Account, when: float) -> None:
        """Re-evaluate ``acc`` at ``when``. Only its earliest wake-up counts: each evaluation
        schedules the next one it needs."""
        if when >= acc.timer_at:
            return
        acc.timer_at = when
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, acc))
        if when < self._timer_target:
            self._timer_target = when
            self._timer_wake.set()

    def _push_write(self, acc: _Account) -> None:
        key = -acc.write_time()
        if acc.in_w and key >= acc.wkey * 0.9:
            return  # its entry is there, and it is not much more urgent now than then
        acc.in_w = True
        acc.wkey = key
        self._seq += 1
        heapq.heappush(self._wheap, (key, self._seq, acc))
        if self._idlers:  # ready work and an idle worker: wake it (it may find another took it)
            self._idlers.pop().set()

    def _push_read(self, acc: _Account, wake: bool = True) -> None:
        if acc.in_r:
            return
        acc.in_r = True
        acc.rkey = -acc.remaining_time(self._drift())
        self._seq += 1
        heapq.heappush(self._rheap, (acc.rkey, self._seq, acc))
        if wake and self._idlers:
            self._idlers.pop().set()

    def _evaluate(self, acc: _Account, now: float) -> None:
        """Put ``acc`` in the heaps it is ready for now, or a timer for when it will be."""
        if not acc.open() or self.stopping is not None:
            return
        while acc.delayed and acc.delayed[0][0] <= now:
            step = heapq.heappop(acc.delayed)[2]
            (acc.write_q if step.op in _WRITES else acc.read_q).appendleft(step)
        if acc.delayed:
            self._at(acc, acc.delayed[0][0])
        if acc.in_flight >= acc.cap:
            return  # the completion of one of its requests re-evaluates it
        if now < acc.paused_until:
            self._throttled.add(acc.name)
            self._at(acc, acc.paused_until)
            return
        waiting = False
        if acc.has_writes():
            t = acc.writes.ready_at(now)
            if t <= now:
                self._push_write(acc)
            else:
                waiting = True
                self._at(acc, t)
        # Already in the read heap: whoever pops it checks its budget then.
        if not acc.in_r and acc.has_reads():
            t = acc.reads.ready_at(now)
            if t <= now:
                self._push_read(acc)
            else:
                waiting = True
                self._at(acc, t)
        if waiting:
            self._throttled.add(acc.name)
        else:
            self._throttled.discard(acc.name)

    def _critical(self, now: float) -> float:
        """The most remaining work of any account, in seconds of its budget (recomputed
        every 0.2 s: it moves slowly, and a pass costs a step per account)."""
        if now - self._critical_at >= 0.2:
            drift = self._drift()
            self._critical_at = now
            self._critical_s = max(
                (acc.remaining_time(drift) for acc in self.accts.values() if acc.open()), default=0.0
            )
        return self._critical_s

    def _drift(self) -> float:
        """The share of reads that found a difference so far, over all accounts (1/2 before any)."""
        return (self._writes_found + 0.5) / (self._reads_done + 1.0)

    def _ready(self, acc: _Account, now: float) -> bool:
        return acc.fatal is None and acc.stopped is None and acc.in_flight < acc.cap and now >= acc.paused_until

    def _pick(self, now: float) -> _Step | None:
        """The request to start now, by the priority in the module's docstring, or None.

        Its account's token and slot are taken: the caller must send it."""
        if self.stopping is not None:
            return None
        wheap = self._wheap
        while wheap:
            key, _, acc = heapq.heappop(wheap)
            if not acc.in_w or key != acc.wkey:
                continue  # an older entry of an account pushed again since
            acc.in_w = False
            if not (acc.has_writes() and self._ready(acc, now)):
                continue  # whatever made it unready re-evaluates it when it changes
            if acc.writes.ready_at(now) > now:
                self._evaluate(acc, now)
                continue
            step = acc.write_q.popleft() if acc.write_q else self._direct(acc, now)
            if step is None:
                self._evaluate(acc, now)
                continue
            acc.writes.take()
            acc.in_flight += 1
            self._evaluate(acc, now)
            return step
        rheap = self._rheap
        while rheap:
            key, _, acc = heapq.heappop(rheap)
            acc.in_r = False
            if not (acc.has_reads() and self._ready(acc, now)):
                continue
            if acc.reads.ready_at(now) > now:
                self._evaluate(acc, now)
                continue
            remaining = acc.remaining_time(self._drift())
            if rheap and -remaining > rheap[0][0]:
                # Its work shrank since it was queued: another account is further behind now.
                self._push_read(acc)
                continue
            if len(self._in_flight) >= self._soft_cap and remaining < 0.5 * self._critical(now):
                # Many requests in flight already, and this account (the most behind of
                # those ready) has plenty of slack: it waits rather than slow the event
                # loop for the account that sets the run's length. A completion frees it
                # (the worker that completes picks again); waking an idle worker for it
                # now would only have it decline again.
                self._push_read(acc, wake=False)
                return None
            step = acc.read_q.popleft() if acc.read_q else self._start(acc, now)
            acc.reads.take()
            acc.in_flight += 1
            self._evaluate(acc, now)
            return step
        return None

    def _start(self, acc: _Account, now: float) -> _Step:
        """The first request of the next pending job: a read."""
        job = acc.pending.popleft()
        work = _Work(job, now)
        if self.options.read_first:
            return _Step(_GET_STATUSES, acc, work)
        # --no-read, no declared mapping: nothing to diff against, but the mapping is read
        # all the same: the guard must know whether the write would break it.
        work.change = everything_added(job.desired.index)
        return _Step(_GET_MAPPING, acc, work)

    def _direct(self, acc: _Account, now: float) -> _Step | None:
        """``--no-read`` with a declared mapping: statuses, then the whole mapping, unread."""
        while acc.direct:
            job = acc.direct.popleft()
            work = _Work(job, now)
            work.change = everything_added(job.desired.index)
            if job.mapping is not None:
                work.mapping_changes = tuple(MappingChange(c, None, e) for c, e in job.mapping.items)
            if not job.desired.statuses and not self.options.allow_delete_all:
                self._fail_info(acc, work, ErrorInfo("refused", detail=_EMPTY_REFUSED), now)
                continue
            return _Step(_POST_STATUSES, acc, work)
        return None

    # -- one request ---------------------------------------------------------------

    async def _execute(self, step: _Step) -> None:
        acc = step.acc
        work = step.work
        now = self._clock()
        if step.tries == 0:
            step.first = now
        step.sent = now
        step.tries += 1
        if work is not None:
            work.attempts += 1
        write = step.op >= _POST_STATUSES
        bucket = acc.writes if write else acc.reads
        stats = acc.stats
        stats.requests += 1
        if write:
            stats.writes += 1
        else:
            stats.reads += 1
        key = id(step)
        self._in_flight[key] = step
        result: Any = None
        error: ApiError | None = None
        try:
            result = await self._send(acc.api, step)
        except ApiError as exc:
            # Keep the error, not the frames it was raised through: its traceback holds
            # this frame (which holds the error: a cycle) and the client's frames with the
            # body read so far, which the rare collections of a run would free late.
            exc.__traceback__ = None
            exc.__context__ = None
            error = exc
        except Exception as exc:  # a bug of ours must cost one integration, not the run
            end = self._clock()
            bucket.give_back(end)
            acc.in_flight -= 1
            del self._in_flight[key]
            self._internal(acc, step, exc, end)
            self._evaluate(acc, end)
            return
        except BaseException:
            # Cancelled in flight (a second signal, the grace period is over): the
            # finaliser records its integration as skipped.
            bucket.give_back(self._clock())
            acc.in_flight -= 1
            raise
        end = self._clock()
        bucket.give_back(end)
        acc.in_flight -= 1
        del self._in_flight[key]
        try:
            if error is None:
                acc.consecutive = 0
                acc.breaker_trips = 0
                self._advance(acc, step, result, end)
            else:
                self._failed_attempt(acc, step, error, end)
        except Exception as exc:  # a bug of ours in handling the answer: one integration too
            self._internal(acc, step, exc, end)
        self._evaluate(acc, end)

    def _send(self, api: AccountApi, step: _Step) -> Awaitable[Any]:
        """The request of ``step``, to await (not a coroutine of its own: one layer less
        per request)."""
        op = step.op
        if op == _PAGE:
            return api.list_integrations_page(step.page_url)
        work = step.work
        assert work is not None
        job = work.job
        if op == _GET_STATUSES:
            return api.get_statuses(job.integration_id)
        if op == _GET_MAPPING:
            return api.get_mapping(job.integration_id)
        if op == _POST_STATUSES:
            return api.post_statuses(job.desired.body(job.integration_id))
        assert job.mapping is not None
        return api.post_mapping(job.mapping.body(job.integration_id))

    # -- what a response leads to --------------------------------------------------

    def _advance(self, acc: _Account, step: _Step, result: Any, now: float) -> None:
        op = step.op
        if op == _PAGE:
            self._on_page(acc, result, now)
            return
        work = step.work
        assert work is not None
        job = work.job
        if op == _GET_STATUSES:
            acc.reads_done += 1
            self._reads_done += 1
            if self.on_snapshot is not None:
                self._snapshots[job.integration_id] = result
                self._follow(acc, _Step(_GET_MAPPING, acc, work), now)
                return
            change = work.change = diff(job.desired.index, result)
            if change:
                acc.writes_found += 1
                self._writes_found += 1
            # The mapping costs a read only where it matters: a declared one to compare,
            # or a removal that the current mapping may point at.
            if job.mapping is not None or (change and change.removed):
                self._follow(acc, _Step(_GET_MAPPING, acc, work), now)
                return
            self._decide(acc, work, None, now)
        elif op == _GET_MAPPING:
            if self.on_snapshot is not None:
                self.on_snapshot(job, self._snapshots.pop(job.integration_id), result)
                self._finish_work(acc, work, "unchanged", now)
                return
            self._decide(acc, work, result, now)
        elif op == _POST_STATUSES:
            work.statuses_written = True
            if work.mapping_changes:
                self._follow(acc, _Step(_POST_MAPPING, acc, work), now)
            else:
                self._finish_work(acc, work, "changed", now)
        else:  # POST_MAPPING
            acc.stats.mappings_written += 1
            self._finish_work(acc, work, "changed", now)

    def _decide(self, acc: _Account, work: _Work, mapping: CurrentMapping | None, now: float) -> None:
        """After the reads: refuse, report, or queue the writes."""
        opts = self.options
        job = work.job
        change = work.change
        assert change is not None
        if mapping is not None:
            if job.mapping is not None:
                # What the statuses write adds back (a "+" of this diff) revalidates the items
                # that point at it: no mapping write for those.
                revived = {c.external_id for c in change.changes if c.op == "+"}
                work.mapping_changes = mapping_diff(job.mapping.as_dict(), mapping, revived)
            else:
                for item in mapping.mapping:
                    if item.external_id is not None and not item.is_valid:
                        work.warnings.append(
                            f"mapping {item.status_category} points at {item.external_id!r}, a status that "
                            "no longer exists: declare a mapping to repair it"
                        )
                broken = mapping_guard(mapping, job.desired.index.keys()) if change else ()
                if broken:
                    which = ", ".join(f"{m.category} -> {m.before!r}" for m in broken)
                    if not opts.allow_invalid_mapping:
                        acc.stats.refused += 1
                        detail = (
                            f"writing these statuses would leave the shop's mapping invalid ({which}, "
                            "removed by the write): declare a mapping for this integration that repairs it, "
                            "or pass --allow-invalid-mapping"
                        )
                        self._fail_info(acc, work, ErrorInfo("refused", detail=detail), now)
                        return
                    work.warnings.append(f"the write leaves the mapping invalid ({which}): --allow-invalid-mapping")
        if not change and not work.mapping_changes and opts.read_first:
            self._finish_work(acc, work, "unchanged", now)
            return
        if (change or not opts.read_first) and not job.desired.statuses and not opts.allow_delete_all:
            self._fail_info(acc, work, ErrorInfo("refused", detail=_EMPTY_REFUSED), now)
            return
        if not opts.write:
            self._finish_work(acc, work, "changed", now)
            return
        # Statuses first: a mapping may point at a status this very write adds. Unread
        # (--no-read), the statuses are written whatever they are.
        first = _POST_STATUSES if change or not opts.read_first else _POST_MAPPING
        self._follow(acc, _Step(first, acc, work), now, last=True)

    def _follow(self, acc: _Account, step: _Step, now: float, at: float = -math.inf, last: bool = False) -> None:
        """Queue the next request of an integration already begun: first in line among the
        account's reads or writes (``last``: behind them), or at ``at`` for a retry.

        An account closed meanwhile (its credentials refused, its failure budget spent,
        while this request was in flight) takes nothing more: the integration ends here.
        """
        if acc.fatal is not None or acc.stopped is not None:
            if step.work is not None:
                if acc.fatal is not None:
                    self._fail(acc, step.work, acc.fatal, now)
                else:
                    self._skip(step.work, acc.stopped or "", now)
            return
        if at > now:
            self._seq += 1
            heapq.heappush(acc.delayed, (at, self._seq, step))
        elif step.op >= _POST_STATUSES:
            (acc.write_q.append if last else acc.write_q.appendleft)(step)
        else:
            (acc.read_q.append if last else acc.read_q.appendleft)(step)

    def _on_page(self, acc: _Account, page: ListedPage, now: float) -> None:
        items, next_url = page.items, page.next_url
        for item in items:
            job = acc.unconfirmed.pop(item.id, None)
            if job is not None:
                self._confirm(acc, job, item, now)
        if next_url and acc.unconfirmed:
            try:  # the same bounds as import's: a list that does not end is no list
                if acc.listing is not None:
                    acc.listing.add(page, now)
            except ListBoundError as exc:
                self._end_preflight(acc, now, exc)
                return
            self._follow(acc, _Step(_PAGE, acc, None, next_url), now)
            return
        self._end_preflight(acc, now, None)

    def _confirm(self, acc: _Account, job: Job, item: Integration, now: float) -> None:
        if item.system is not None and item.system != PRESTASHOP_V2:
            detail = (
                f"integration {job.integration_id} is a {item.system} integration: only PrestaShop V2 "
                "integrations have shop order statuses"
            )
            self._fail_info(acc, _Work(job, now), ErrorInfo("not_supported", detail=detail), now)
            return
        if item.failing_since:
            self._warnings[job.integration_id] = (
                f"the shop connection has been failing since {item.failing_since}: "
                "its statuses may not matter until it is fixed"
            )
        self._enlist(acc, job)

    def _end_preflight(self, acc: _Account, now: float, error: ApiError | None) -> None:
        rest = list(acc.unconfirmed.values())
        acc.unconfirmed.clear()
        acc.listing = None
        if error is not None:
            log.warning(
                "account %s: cannot list its integrations (%s); going on without the pre-flight check",
                acc.name,
                error,
                extra={"fields": {"account": acc.name}},
            )
            for job in rest:
                self._enlist(acc, job)
            return
        for job in rest:
            detail = f"integration {job.integration_id} is not one of account {acc.name}'s integrations"
            self._fail_info(acc, _Work(job, now), ErrorInfo("not_found", detail=detail), now)

    # -- failures ------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        opts = self.options
        ceiling = min(opts.backoff_max, opts.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _failed_attempt(self, acc: _Account, step: _Step, error: ApiError, now: float) -> None:
        opts = self.options
        if isinstance(error, AuthError):
            self._account_fatal(acc, error, now)
            self._give_up(acc, step, error, now)
            return
        if not error.retryable or (step.op == _PAGE and isinstance(error, InvalidResponseError)):
            # A list in a shape we do not know will not change shape on a retry: go on
            # without the pre-flight at once rather than hold up the account's reads.
            self._give_up(acc, step, error, now)
            return
        elapsed = now - step.first
        left = opts.retry_max_time - elapsed
        write = step.op >= _POST_STATUSES
        if isinstance(error, ThrottledError):
            bucket = acc.writes if write else acc.reads
            acc.stats.throttled += 1
            # Never parked past what is left of --retry-max-time, whatever Retry-After says.
            pause = min(error.retry_after if error.retry_after is not None else 1.0 / bucket.rate, max(0.0, left))
            if bucket.on_throttled(now, step.sent, pause):
                kind = "writes" if write else "reads"
                log.warning(
                    "account %s: 429 on %s: slowing its %s to %.0f a minute (declared %.0f; the floor is %.0f)",
                    acc.name,
                    kind,
                    kind,
                    bucket.rate * 60,
                    bucket.declared * 60,
                    bucket.declared * 60 * FLOOR,
                    extra={"fields": {"account": acc.name, "meter": kind, "rate_per_minute": round(bucket.rate * 60)}},
                )
        elif isinstance(error, (ServerError, TransportError)):
            # A request sent before the breaker last tripped is part of the failures that
            # tripped it: one incident pauses the account once, not once per request in flight.
            if step.sent >= acc.tripped_at:
                acc.consecutive += 1
            if acc.consecutive >= opts.breaker_threshold:
                acc.breaker_trips += 1
                acc.consecutive = 0
                acc.tripped_at = now
                pause = min(opts.backoff_max, opts.breaker_pause * 2.0 ** (acc.breaker_trips - 1))
                acc.paused_until = max(acc.paused_until, now + pause)
                log.warning(
                    "account %s: %d server-side failures in a row; pausing it for %.1fs",
                    acc.name,
                    opts.breaker_threshold,
                    pause,
                    extra={"fields": {"account": acc.name, "delay": round(pause, 3)}},
                )
        delay = error.retry_after if error.retry_after is not None else self._backoff(step.tries)
        if step.tries >= opts.max_attempts or elapsed + delay > opts.retry_max_time:
            self._give_up(acc, step, error, now)
            return
        fields: dict[str, object] = {"account": acc.name, "attempt": step.tries + 1, "delay": round(delay, 3)}
        if step.work is not None:
            fields["integration_id"] = step.work.job.integration_id
        log.info(
            "%s %s: %s; retrying in %.2fs (attempt %d of %d)",
            error.method,
            error.url,
            error,
            delay,
            step.tries + 1,
            opts.max_attempts,
            extra={"fields": fields},
        )
        self._follow(acc, step, now, at=now + delay)

    def _give_up(self, acc: _Account, step: _Step, error: ApiError, now: float) -> None:
        if step.work is not None:
            self._fail(acc, step.work, error, now)
        elif step.op == _PAGE and acc.fatal is None:
            self._end_preflight(acc, now, error)

    def _account_fatal(self, acc: _Account, error: AuthError, now: float) -> None:
        if acc.fatal is not None:
            return
        acc.fatal = error
        log.error(
            "account %s: credentials refused (%s); its other integrations are not attempted",
            acc.name,
            error.detail,
            extra={"fields": {"account": acc.name}},
        )
        info = ErrorInfo(
            _kind(error),
            error.http_status,
            error.code,
            f"not attempted: the account's credentials were refused earlier in this run ({error.detail})",
            error.pointer,
        )
        for work in self._drain(acc, now):
            self._fail_info(acc, work, info, now)

    def _drain(self, acc: _Account, now: float) -> list[_Work]:
        """Every integration of ``acc`` that is neither in flight nor done, taken off its queues."""
        works: list[_Work] = []
        for q in (acc.read_q, acc.write_q):
            works.extend(s.work for s in q if s.work is not None)
            q.clear()
        works.extend(s.work for _, _, s in acc.delayed if s.work is not None)
        acc.delayed.clear()
        for jobs in (acc.pending, acc.direct):
            works.extend(_Work(j, now) for j in jobs)
            jobs.clear()
        works.extend(_Work(j, now) for j in acc.unconfirmed.values())
        acc.unconfirmed.clear()
        self._throttled.discard(acc.name)
        return works

    def _fail(self, acc: _Account, work: _Work, error: ApiError, now: float) -> None:
        info = ErrorInfo(_kind(error), error.http_status, error.code, error.detail, error.pointer)
        self._fail_info(acc, work, info, now)

    def _internal(self, acc: _Account, step: _Step, exc: Exception, now: float) -> None:
        iid = step.work.job.integration_id if step.work is not None else None
        log.exception(
            "account %s: internal error", acc.name, extra={"fields": {"account": acc.name, "integration_id": iid}}
        )
        detail = f"internal error, please report it: {type(exc).__name__}: {exc}"[:300]
        if step.work is not None:
            self._fail_info(acc, step.work, ErrorInfo("internal", detail=detail), now)
        elif step.op == _PAGE:
            self._end_preflight(acc, now, ApiError(detail))

    # -- outcomes ------------------------------------------------------------------

    def _outcome(
        self, work: _Work, result: Result, now: float, error: ErrorInfo | None = None, reason: str | None = None
    ) -> Outcome:
        change = work.change
        warnings = tuple(work.warnings)
        pre = self._warnings.pop(work.job.integration_id, None) if self._warnings else None
        if pre is not None:
            warnings = (pre, *warnings)
        job = work.job
        t0 = self._wall0 - self._t0
        # Positional, in the struct's field order, and rounded by int(): an outcome per
        # integration, and keywords and round() cost more than the rest of it together.
        # Times are never negative, so int(x + 0.5) rounds to nearest.
        return Outcome(
            job.integration_id,
            job.account,
            result,
            change.added if change is not None else 0,
            change.changed if change is not None else 0,
            change.removed if change is not None else 0,
            work.attempts,
            int((now - work.started) * 10_000 + 0.5) / 10,  # duration_ms, to 0.1 ms
            error,
            reason,
            change.changes if change is not None else (),
            work.mapping_changes,
            warnings,
            job.tags,
            int((t0 + work.started) * 1000 + 0.5) / 1000,  # started_at, to the ms
            int((t0 + now) * 1000 + 0.5) / 1000,  # ended_at
        )

    def _finish_work(self, acc: _Account, work: _Work, result: Result, now: float) -> None:
        self._record(acc, self._outcome(work, result, now))

    def _fail_info(self, acc: _Account, work: _Work, info: ErrorInfo, now: float) -> None:
        self._record(acc, self._outcome(work, "failed", now, info))

    def _record(self, acc: _Account, outcome: Outcome) -> None:
        reached: Reached = self.ledger.record(outcome)
        if reached == "run":
            self.stop(f"stopped after {self.ledger.failures} failures (--max-failures)")
        elif reached == "account" and acc.stopped is None:
            budget = self.options.max_failures_per_account
            reason = f"account {acc.name} reached --max-failures-per-account {budget}"
            acc.stopped = reason
            log.warning(
                "%s (%d failed); its remaining integrations are skipped",
                reason,
                self.ledger.account_failures(acc.name),
                extra={"fields": {"account": acc.name}},
            )
            now = self._clock()
            for work in self._drain(acc, now):
                self._skip(work, reason, now)
        if len(self.ledger.finished) >= self._total:
            self._wake_all()

    def _skip(self, work: _Work, reason: str, now: float) -> None:
        if work.statuses_written:
            reason += " (its statuses were written; its mapping was not)"
        self.ledger.record(self._outcome(work, "skipped", now, reason=reason))

    def _finish(self, jobs: Sequence[Job]) -> None:
        """Whatever ended the run (done, stopped, cancelled, a bug), every job gets its line."""
        now = self._clock()
        reason = self.stopping or "interrupted"
        for acc in self.accts.values():
            for work in self._drain(acc, now):
                self._skip(work, acc.stopped or reason, now)
        for step in list(self._in_flight.values()):
            if step.work is not None:
                write = step.op >= _POST_STATUSES
                cut = " (cancelled in flight: it may or may not have been applied)" if write else ""
                self._skip(step.work, reason + cut, now)
        self._in_flight.clear()
        for job in jobs:
            if not self.ledger.done(job.integration_id):
                self._skip(_Work(job, now), reason, now)
        for name, acc in self.accts.items():
            stats = self.ledger.stats(name)
            if acc.reads.slowed:
                stats.read_rate = round(acc.reads.rate * 60, 1)
            if acc.writes.slowed:
                stats.write_rate = round(acc.writes.rate * 60, 1)
        self.summary.duration_s = now - self._t0
