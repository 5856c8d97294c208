"""Plan and apply: the only place that knows about concurrency.

One pool of workers, bounded by ``--concurrency``, serves every account. Per account
there is only a queue of pending work, two token buckets (reads, writes) and one cap on
requests in flight shared by both (Sendcloud's burst allowance). Which request starts
next is decided in one place, :meth:`Engine._pick`:

1. a write whose account has a write token and a free slot (the scarce budget never idles);
2. else a read of the account with the most remaining work per unit of its budget
   (longest processing time first), so the account that sets the run's length is never
   behind its own budget while the others fill the slots it leaves.

The worker that handles an answer sends what it leads to at once when that is what
:meth:`Engine._pick` would choose for the account anyway (:meth:`Engine._next_of`): the
integration's write or mapping read, the account's next read while it is the most behind.
Most requests then start without a round through the heaps.

An integration goes through a few steps (pre-flight check, read statuses, read the
mapping when it matters, write statuses, write the mapping), each one request; the
mapping guard refuses writes that would break a shop's mapping. Every integration ends
with exactly one :class:`Outcome`, recorded by the :class:`~batchsync.engine.ledger.Ledger`.
Time comes from :func:`~batchsync.engine.limits.backend_clock` and ``anyio.sleep`` only,
so tests run it under a virtual clock.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from batchsync.diff import MappingChange, everything_added
from batchsync.engine.accounts import (
    EMPTY_REFUSED,
    GET_MAPPING,
    GET_STATUSES,
    PAGE,
    POST_STATUSES,
    WRITES,
    AccountState,
    Step,
    Work,
)
from batchsync.engine.api import Api
from batchsync.engine.ledger import Ledger
from batchsync.engine.limits import Bucket, backend_clock
from batchsync.engine.options import Options
from batchsync.engine.steps import BeforeWrite, Steps
from batchsync.model import Account, Job
from batchsync.outcome import ErrorInfo, Outcome, Summary
from batchsync.sendcloud.errors import ApiError
from batchsync.sendcloud.listing import Listing
from batchsync.wire import CurrentMapping, CurrentStatus

log = logging.getLogger("batchsync.engine")


class Engine(Steps):
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
        before_write: BeforeWrite | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        """``on_snapshot`` makes it a read-only snapshot (``batchsync import``): every
        integration's statuses and mapping are read and handed to it, nothing is compared
        or written, and a read integration's outcome is ``unchanged``.

        ``before_write`` (a saved plan: ``plan --out`` records, ``apply --plan`` checks)
        is called once for each integration that has something to change, after its reads
        and the mapping guard, before its first write (or, in a plan, before it is counted
        ``changed``), with what was read; an :class:`~batchsync.outcome.ErrorInfo` it
        returns fails the integration instead. Its mapping is always read then.

        ``redact`` (the run's redactor) cleans what a server wrote that no outcome carries
        (the undeclared shops' names and URLs): ``sanitize`` cleans the outcomes."""
        self.accounts = accounts
        self.redact = redact
        self.api = api
        self.on_snapshot = on_snapshot
        self.before_write = before_write
        self.options = options
        self.on_outcome = on_outcome
        self.sanitize = sanitize
        self.rng = rng or random.Random()
        self.stopping: str | None = None
        self.ledger = Ledger((), on_outcome, sanitize=sanitize)
        self.accts: dict[str, AccountState] = {}
        self._rheap: list[tuple[float, int, AccountState]] = []
        self._wheap: list[tuple[float, int, AccountState]] = []
        self._timers: list[tuple[float, int, AccountState]] = []
        self._seq = 0
        self._idlers: list[anyio.Event] = []
        self._timer_wake = anyio.Event()
        self._timer_target = math.inf
        self._in_flight: dict[int, Step] = {}  # by id(step): what a cancellation leaves unfinished
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
        # its buckets (batchsync.engine.budget); set before run().
        self.carried: Mapping[str, tuple[float, float, float]] = {}
        # Per account, the read bucket of what this run read before (the exception logs): a
        # 429 there cut its rate and paused it, and the engine goes on from that.
        self.adopted: Mapping[str, Bucket] = {}
        # Per account: every integration id the inventory declares (selected or not). Set
        # before run(), the pre-flight reads each list to its end and records in the
        # summary the PrestaShop V2 integrations it holds beyond these (``undeclared``).
        self.declared: Mapping[str, frozenset[int]] | None = None

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
                    acc = AccountState(account, self.api.account(account), now, self.ledger.stats(name))
                    carried = self.carried.get(name)
                    if carried is not None:
                        age, reads, writes = carried
                        acc.reads.carry(reads, age)
                        acc.writes.carry(writes, age)
                    before = self.adopted.get(name)
                    if before is not None:
                        acc.reads.adopt(before)
                    self.accts[name] = acc
                    if opts.preflight:
                        acc.unconfirmed = {j.integration_id: j for j in by_account[name]}
                        acc.listing = Listing(opts.list_bounds, now)
                        acc.read_q.append(Step(PAGE, acc, None))
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

    def _enlist(self, acc: AccountState, job: Job) -> None:
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
        finished, total, clock = self.ledger.finished, self._total, self._clock  # set by run(), before any worker
        while self.stopping is None and len(finished) < total:  # not self._over(), inline: once per request
            step = self._pick(clock())
            if step is None:
                event = anyio.Event()
                self._idlers.append(event)
                await event.wait()
                continue
            while step is not None:  # what its answer lets it send at once (_next_of)
                step = await self._execute(step)
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

    def _at(self, acc: AccountState, when: float) -> None:
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

    def _push_write(self, acc: AccountState) -> None:
        key = -acc.write_time()
        if acc.in_w and key >= acc.wkey * 0.9:
            return  # its entry is there, and it is not much more urgent now than then
        acc.in_w = True
        acc.wkey = key
        self._seq += 1
        heapq.heappush(self._wheap, (key, self._seq, acc))
        if self._idlers:  # ready work and an idle worker: wake it (it may find another took it)
            self._idlers.pop().set()

    def _push_read(self, acc: AccountState, wake: bool = True) -> None:
        if acc.in_r:
            return
        acc.in_r = True
        acc.rkey = -acc.remaining_time((self._writes_found + 0.5) / (self._reads_done + 1.0))  # _drift()
        self._seq += 1
        heapq.heappush(self._rheap, (acc.rkey, self._seq, acc))
        # An idle worker is woken for it unless _pick would only hold it back (the soft cap):
        # woken, it would decline and wait again. The requests in flight pick it up as they end.
        if (
            wake
            and self._idlers
            and not (len(self._in_flight) >= self._soft_cap and acc.rkey > -0.5 * self._critical_s)
        ):
            self._idlers.pop().set()

    def _evaluate(self, acc: AccountState, now: float) -> None:
        """Put ``acc`` in the heaps it is ready for now, or a timer for when it will be.

        Twice per request: the account's predicates (open, has_writes, has_reads) inline."""
        if acc.fatal is not None or acc.stopped is not None or self.stopping is not None:
            return
        while acc.delayed and acc.delayed[0][0] <= now:
            step = heapq.heappop(acc.delayed)[2]
            (acc.write_q if step.op in WRITES else acc.read_q).appendleft(step)
        if acc.delayed:
            self._at(acc, acc.delayed[0][0])
        if acc.in_flight >= acc.cap:
            return  # the completion of one of its requests re-evaluates it
        if now < acc.paused_until:
            self._throttled.add(acc.name)
            self._at(acc, acc.paused_until)
            return
        waiting = False
        if acc.write_q or acc.direct:
            t = acc.writes.ready_at(now)
            if t <= now:
                self._push_write(acc)
            else:
                waiting = True
                self._at(acc, t)
        # Already in the read heap: whoever pops it checks its budget then.
        if not acc.in_r and (acc.read_q or acc.pending):
            t = acc.reads.ready_at(now)
            if t <= now:
                self._push_read(acc)
            else:
                waiting = True
                self._at(acc, t)
        if waiting:
            self._throttled.add(acc.name)
        elif self._throttled:
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

    def _ready(self, acc: AccountState, now: float) -> bool:
        return acc.fatal is None and acc.stopped is None and acc.in_flight < acc.cap and now >= acc.paused_until

    def _pick(self, now: float) -> Step | None:
        """The request to start now, by the priority in the module's docstring, or None.

        Its account's token and slot are taken: the caller must send it. Once per request:
        the account's predicates (has_writes, has_reads, _ready) are inline."""
        if self.stopping is not None:
            return None
        wheap = self._wheap
        while wheap:
            key, _, acc = heapq.heappop(wheap)
            if not acc.in_w or key != acc.wkey:
                continue  # an older entry of an account pushed again since
            acc.in_w = False
            if not (
                (acc.write_q or acc.direct)
                and acc.fatal is None
                and acc.stopped is None
                and acc.in_flight < acc.cap
                and now >= acc.paused_until
            ):
                continue  # whatever made it unready re-evaluates it when it changes
            if acc.writes.ready_at(now) > now:
                self._evaluate(acc, now)
                continue
            step = acc.write_q.popleft() if acc.write_q else self._direct(acc, now)
            if step is None:
                self._evaluate(acc, now)
                continue
            acc.writes.reserved += 1  # take()
            acc.in_flight += 1
            self._evaluate(acc, now)
            return step
        rheap = self._rheap
        while rheap:
            key, _, acc = heapq.heappop(rheap)
            acc.in_r = False
            if not (
                (acc.read_q or acc.pending)
                and acc.fatal is None
                and acc.stopped is None
                and acc.in_flight < acc.cap
                and now >= acc.paused_until
            ):
                continue
            if acc.reads.ready_at(now) > now:
                self._evaluate(acc, now)
                continue
            remaining = acc.remaining_time((self._writes_found + 0.5) / (self._reads_done + 1.0))  # _drift()
            if rheap and -remaining > rheap[0][0]:
                # Its work shrank since it was queued: another account is further behind now.
                self._push_read(acc)
                continue
            if len(self._in_flight) >= self._soft_cap and remaining < 0.5 * (
                self._critical_s if now - self._critical_at < 0.2 else self._critical(now)
            ):
                # Many requests in flight already, and this account (the most behind of
                # those ready) has plenty of slack: it waits rather than slow the event
                # loop for the account that sets the run's length. A completion frees it
                # (the worker that completes picks again); waking an idle worker for it
                # now would only have it decline again.
                self._push_read(acc, wake=False)
                return None
            step = acc.read_q.popleft() if acc.read_q else self._start(acc, now)
            acc.reads.reserved += 1  # take()
            acc.in_flight += 1
            self._evaluate(acc, now)
            return step
        return None

    def _start(self, acc: AccountState, now: float) -> Step:
        """The first request of the next pending job: a read."""
        job = acc.pending.popleft()
        work = Work(job, now)
        if self.options.read_first:
            return Step(GET_STATUSES, acc, work)
        # --no-read, no declared mapping: nothing to diff against, but the mapping is read
        # all the same: the guard must know whether the write would break it.
        work.change = everything_added(job.desired.index)
        return Step(GET_MAPPING, acc, work)

    def _direct(self, acc: AccountState, now: float) -> Step | None:
        """``--no-read`` with a declared mapping: statuses, then the whole mapping, unread."""
        while acc.direct:
            job = acc.direct.popleft()
            work = Work(job, now)
            work.change = everything_added(job.desired.index)
            if job.mapping is not None:
                work.mapping_changes = tuple(MappingChange(c, None, e) for c, e in job.mapping.items)
            if not job.desired.count and not self.options.allow_delete_all:
                self._fail_info(acc, work, ErrorInfo("refused", detail=EMPTY_REFUSED), now)
                continue
            return Step(POST_STATUSES, acc, work)
        return None

    # -- one request ---------------------------------------------------------------

    def _next_of(self, acc: AccountState, done: Step, now: float) -> Step | None:
        """The request the worker that just handled ``done``, an answer of ``acc``, sends
        next without the round through the heaps, when it is one :meth:`_pick` would start
        now and the account may start it (its token and slot are then taken):

        - the write the answer queued, when nothing of the account's is ahead of it;
        - else, while no account's write waits, the integration's own next read (the
          mapping the answer called for; the pre-flight's next page);
        - else the account's next read (a retry that is due, the first of its next
          integration) when no other account is further behind and the soft cap lets it
          start: :meth:`_pick`'s tests for the account it would pop.

        Otherwise None, and the worker picks as before. Another account's work is not held
        back: its budget and slots are its own, and the next free worker picks it first."""
        if (
            self.stopping is not None
            or acc.fatal is not None
            or acc.stopped is not None
            or acc.in_flight >= acc.cap
            or now < acc.paused_until
            or acc.delayed
        ):
            return None
        wq = acc.write_q
        if wq or acc.direct:
            if len(wq) == 1 and not acc.direct and acc.writes.ready_at(now) <= now:
                acc.writes.reserved += 1  # take()
                acc.in_flight += 1
                return wq.popleft()
            return None
        if self._wheap:
            return None  # a write may be waiting: writes first (_pick)
        rq = acc.read_q
        if not (rq or acc.pending):
            return None
        head = rq[0] if rq else None
        own = head is not None and (head.work is done.work if done.work is not None else head.op == PAGE == done.op)
        rheap = self._rheap
        if not own and acc.in_r and rheap[0][0] < acc.rkey:
            # Another account was further behind than this one even when this one was last
            # queued (with more to do): the usual case among many accounts, decided without
            # computing anything.
            return None
        if acc.reads.ready_at(now) > now:
            return None
        if not own:
            remaining = acc.remaining_time((self._writes_found + 0.5) / (self._reads_done + 1.0))  # _drift()
            if rheap:
                # The most behind of the others: the heap's first, or, when that is its own
                # entry (queued when it had more to do), the lesser of the first's two children.
                first: tuple[float, int, AccountState] | None = rheap[0]
                if rheap[0][2] is acc:
                    n = len(rheap)
                    first = rheap[1] if n == 2 else min(rheap[1], rheap[2]) if n > 2 else None
                if first is not None and -remaining > first[0]:
                    return None  # another account is further behind
            if len(self._in_flight) >= self._soft_cap and remaining < 0.5 * (
                self._critical_s if now - self._critical_at < 0.2 else self._critical(now)
            ):
                return None
        step = rq.popleft() if rq else self._start(acc, now)
        acc.reads.reserved += 1  # take()
        acc.in_flight += 1
        return step

    async def _execute(self, step: Step) -> Step | None:
        """Sends ``step`` and handles its answer; returns the integration's next request when
        its worker may send it at once (its token and slot taken), else None."""
        acc = step.acc
        work = step.work
        now = self._clock()
        if step.tries == 0:
            step.first = now
        step.sent = now
        step.tries += 1
        if work is not None:
            work.attempts += 1
        write = step.op >= POST_STATUSES
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
            # The request of ``step`` (what was _send(), inline: once per request).
            op = step.op
            api = acc.api
            call: Awaitable[Any]
            if op == PAGE:
                call = api.list_integrations_page(step.page_url)
            else:
                assert work is not None
                job = work.job
                if op == GET_STATUSES:
                    call = api.get_statuses(job.integration_id)
                elif op == POST_STATUSES:
                    call = api.post_statuses(job.desired.body(job.integration_id))
                elif op == GET_MAPPING:
                    call = api.get_mapping(job.integration_id)
                else:
                    assert job.mapping is not None
                    call = api.post_mapping(job.mapping.body(job.integration_id))
            result = await call
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
            return None
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
        chained: Step | None = None
        try:
            if error is None:
                acc.consecutive = 0
                acc.breaker_trips = 0
                self._advance(acc, step, result, end)
                chained = self._next_of(acc, step, end)
            else:
                self._failed_attempt(acc, step, error, end)
        except Exception as exc:  # a bug of ours in handling the answer: one integration too
            self._internal(acc, step, exc, end)
        if not acc.in_r or acc.write_q or acc.direct or acc.delayed or self._throttled:
            self._evaluate(acc, end)  # else it is in the read heap already, and has nothing else to put anywhere
        return chained
