"""Plan and apply: the only place that knows about concurrency.

Per account, a pool of readers GETs the current statuses (the cheap budget) and diffs
them; what differs goes through a short queue to a pool of writers that POST (the
scarce budget). Each account's meters pace its own requests, so a throttled or slow
account never holds up another; one global limiter bounds requests in flight. Every
job ends with exactly one :class:`Outcome`, handed to ``on_outcome`` as it happens.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Literal, TypeVar

import aiohttp
import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchsync.client import ApiError, AuthError, Client, ThrottledError
from batchsync.diff import Change, Diff, diff, everything_added
from batchsync.inventory import Account, BasicCredentials, Job
from batchsync.limits import AccountLimiter, Meter
from batchsync.secrets import basic_auth

T = TypeVar("T")
log = logging.getLogger("batchsync.engine")

Result = Literal["unchanged", "changed", "failed", "skipped"]
RESULTS: tuple[Result, ...] = ("unchanged", "changed", "failed", "skipped")


class ErrorInfo(msgspec.Struct, frozen=True):
    kind: str
    http_status: int | None = None
    code: str | None = None
    detail: str = ""
    pointer: str | None = None

    @classmethod
    def of(cls, exc: ApiError) -> ErrorInfo:
        return cls(exc.kind, exc.http_status, exc.code, exc.detail, exc.pointer)


class Outcome(msgspec.Struct, frozen=True):
    """What happened to one integration; one JSON line of the report."""

    integration_id: int
    account: str
    result: Result
    added: int = 0
    changed: int = 0
    removed: int = 0
    attempts: int = 0
    duration_ms: float = 0.0
    error: ErrorInfo | None = None
    reason: str | None = None
    changes: tuple[Change, ...] = ()


class Options(msgspec.Struct, frozen=True):
    """How a run behaves; the command line fills it."""

    write: bool = True  # False: plan (read and diff only)
    read_first: bool = True  # False: --no-read, write every selected integration
    allow_delete_all: bool = False
    concurrency: int = 64  # requests in flight over all accounts
    timeout: float = 30.0  # seconds per request
    max_attempts: int = 6
    retry_max_time: float = 300.0  # seconds, all attempts of one request together
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_failures: int | None = None  # stop starting new work after this many failures
    base_url: str | None = None  # replaces every account's


class AccountStats(msgspec.Struct):
    unchanged: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    throttled: int = 0
    requests: int = 0


class Summary(msgspec.Struct):
    accounts: dict[str, AccountStats]
    duration_s: float = 0.0
    stopped: str | None = None  # why the run stopped early, if it did

    def total(self, result: str) -> int:
        return sum(getattr(a, result) for a in self.accounts.values())


_gc_depth = 0  # runs inside _rare_gc now (engines may run side by side)
_gc_saved: tuple[int, ...] = ()  # the thresholds to restore when the last one ends
GC_THRESHOLD = 20_000  # allocations between young collections during a run (Python's default: 700)


@contextmanager
def _rare_gc() -> Iterator[None]:
    """Collect cycles rarely while a run lasts.

    Each request allocates and frees a few hundred objects, none of them in a cycle; at
    Python's default threshold the cyclic GC ran every few requests and took about a
    tenth of the CPU of a run with limits off. What was loaded before (the inventory) is
    frozen out of full collections for the run's length.
    """
    global _gc_depth, _gc_saved
    if _gc_depth == 0:
        gc.collect()
        gc.freeze()
        _gc_saved = gc.get_threshold()
        gc.set_threshold(max(_gc_saved[0], GC_THRESHOLD), *_gc_saved[1:])
    _gc_depth += 1
    try:
        yield
    finally:
        _gc_depth -= 1
        if _gc_depth == 0:
            gc.set_threshold(*_gc_saved)
            gc.unfreeze()


class _Interrupted(Exception):
    """Raised instead of starting a request once the run is stopping."""


class _Tracker:
    """Per-job attempt count and start time."""

    __slots__ = ("attempts", "started")

    def __init__(self) -> None:
        self.attempts = 0
        self.started = time.monotonic()


class _AccountRun:
    def __init__(self, account: Account, client: Client, jobs: Sequence[Job]) -> None:
        self.account = account
        self.client = client
        self.jobs = jobs
        lim = account.limits
        self.limiter = AccountLimiter(lim.writes_per_minute, lim.write_burst, lim.reads_per_minute)
        self.fatal: ApiError | None = None


class Engine:
    """Runs jobs to outcomes. ``stop()`` starts nothing new; cancelling the caller's
    scope ends what is in flight; either way every job still gets its outcome."""

    def __init__(
        self,
        accounts: dict[str, Account],
        options: Options,
        on_outcome: Callable[[Outcome], None],
        rng: random.Random | None = None,
    ) -> None:
        self.accounts = accounts
        self.options = options
        self.on_outcome = on_outcome
        self.rng = rng or random.Random()
        self.stopping: str | None = None
        self.summary = Summary({name: AccountStats() for name in accounts})
        self.runs: dict[str, _AccountRun] = {}
        self._finished: set[int] = set()
        self._failures = 0
        # A semaphore rather than a CapacityLimiter: no per-task borrower bookkeeping, and
        # its uncontended acquire takes no checkpoint (fast_acquire).
        self._global = anyio.Semaphore(max(1, options.concurrency), fast_acquire=True)
        self._waits: set[anyio.CancelScope] = set()

    # -- public --------------------------------------------------------------------

    def stop(self, reason: str = "interrupted") -> None:
        """Start nothing new; work in flight finishes."""
        if self.stopping is None:
            self.stopping = reason
            self.summary.stopped = reason
            for scope in self._waits:  # wake whoever waits for a token or a backoff
                scope.cancel()

    def throttled_accounts(self) -> list[str]:
        """Accounts whose requests wait for their budget right now, or that got a 429."""
        now = time.monotonic()
        return [
            name
            for name, run in self.runs.items()
            if any(m.waiting or m.paused_until > now for m in (run.limiter.reads, run.limiter.writes))
        ]

    async def _wait(self, waiting: Awaitable[None]) -> None:
        """Await a token or a backoff, unless and until the run stops."""
        if self.stopping is None:
            with anyio.CancelScope() as scope:
                self._waits.add(scope)
                try:
                    await waiting
                    return
                finally:
                    self._waits.discard(scope)
        if isinstance(waiting, Coroutine):
            waiting.close()
        raise _Interrupted

    async def run(self, jobs: Sequence[Job]) -> Summary:
        with _rare_gc():
            return await self._run(jobs)

    async def _run(self, jobs: Sequence[Job]) -> Summary:
        started = time.monotonic()
        by_account: dict[str, list[Job]] = {}
        for job in jobs:
            by_account.setdefault(job.account, []).append(job)
        # The recap and the metrics speak of the accounts this run selected, no others.
        self.summary.accounts = {name: AccountStats() for name in by_account}
        connector = aiohttp.TCPConnector(limit=max(1, self.options.concurrency), limit_per_host=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                for name, account_jobs in by_account.items():
                    account = self.accounts[name]
                    creds = account.credentials
                    if not isinstance(creds, BasicCredentials):  # MERGE: OAuth2 tokens (issue 12); cli refuses it
                        raise ValueError(f"account {name}: auth = 'oauth2' needs the token flow")
                    client = Client(
                        session,
                        self.options.base_url or account.base_url,
                        basic_auth(creds.public_key, creds.secret_key),
                        timeout=self.options.timeout,
                    )
                    self.runs[name] = _AccountRun(account, client, account_jobs)
                async with anyio.create_task_group() as tg:
                    for run in self.runs.values():
                        tg.start_soon(self._run_account, run)
        finally:
            # Whatever ended the run (done, stopped, cancelled, a bug), every job
            # gets its line.
            with anyio.CancelScope(shield=True):
                reason = self.stopping or "interrupted"
                for job in jobs:
                    if job.integration_id not in self._finished:
                        self._emit(Outcome(job.integration_id, job.account, "skipped", reason=reason))
                for name, run in self.runs.items():
                    stats = self.summary.accounts[name]
                    stats.throttled = run.limiter.reads.throttled + run.limiter.writes.throttled
            self.summary.duration_s = time.monotonic() - started
        return self.summary

    # -- per account ---------------------------------------------------------------

    async def _run_account(self, run: _AccountRun) -> None:
        burst = run.account.limits.write_burst
        # More workers than requests that may be in flight (the account's burst, the
        # global bound) would only wait: each one costs a task and its memory.
        workers = max(1, min(burst, self.options.concurrency))
        send, receive = anyio.create_memory_object_stream[tuple[Job, Diff, _Tracker]](burst * 2)
        pending: Iterator[Job] = iter(run.jobs)
        async with anyio.create_task_group() as tg:
            if self.options.write:
                for _ in range(workers):
                    tg.start_soon(self._writer, run, receive.clone())
            receive.close()
            async with send, anyio.create_task_group() as readers:
                for _ in range(min(workers, len(run.jobs))):
                    readers.start_soon(self._reader, run, pending, send.clone())

    async def _reader(
        self,
        run: _AccountRun,
        pending: Iterator[Job],
        send: MemoryObjectSendStream[tuple[Job, Diff, _Tracker]],
    ) -> None:
        async with send:
            for job in pending:
                if self.stopping is not None:
                    return  # the finaliser records the rest as skipped
                tracker = _Tracker()
                try:
                    if not await self._read_one(run, job, tracker, send):
                        return
                except Exception as exc:  # a bug of ours must cost one integration, not the run
                    self._internal(job, exc, tracker)

    async def _read_one(
        self,
        run: _AccountRun,
        job: Job,
        tracker: _Tracker,
        send: MemoryObjectSendStream[tuple[Job, Diff, _Tracker]],
    ) -> bool:
        """Read, diff, and write or queue one job; False when the run is stopping."""
        if run.fatal is not None:
            self._fail(job, run.fatal, tracker, early=True)
            return True
        desired = job.desired.index
        if self.options.read_first:
            try:
                current = await self._call(
                    run,
                    run.limiter.reads,
                    tracker,
                    partial(run.client.get_statuses, job.integration_id),
                )
            except ApiError as exc:
                self._fail(job, exc, tracker)
                return True
            except _Interrupted:
                return False
            change = diff(desired, current)
        else:
            change = everything_added(desired)  # not read: what we write counts as added
        if not change and self.options.read_first:
            self._done(job, "unchanged", change, tracker)
            return True
        if not desired and not self.options.allow_delete_all:
            self._emit_failure(
                job,
                ErrorInfo(
                    "refused",
                    detail="the desired list is empty: writing it would delete every "
                    "status of this integration; pass --allow-delete-all to do so",
                ),
                tracker,
                change,
            )
            return True
        if not self.options.write:
            self._done(job, "changed", change, tracker)
            return True
        if self.stopping is None and run.limiter.writes.try_acquire():
            # The write budget is free right now (always, when limits do not bind):
            # write here, sparing the hand-off to a writer task.
            await self._write(run, job, change, tracker, held=True)
            return True
        await send.send((job, change, tracker))
        return True

    async def _writer(self, run: _AccountRun, receive: MemoryObjectReceiveStream[tuple[Job, Diff, _Tracker]]) -> None:
        async with receive:
            async for job, change, tracker in receive:
                if self.stopping is not None:
                    continue
                try:
                    await self._write(run, job, change, tracker)
                except Exception as exc:  # a bug of ours must cost one integration, not the run
                    self._internal(job, exc, tracker)

    async def _write(self, run: _AccountRun, job: Job, change: Diff, tracker: _Tracker, held: bool = False) -> None:
        """POST one job's desired list; ``held``: the caller already holds a write token."""
        if run.fatal is not None:
            if held:
                run.limiter.writes.release(used=False)
            self._fail(job, run.fatal, tracker, early=True)
            return
        body = job.desired.body(job.integration_id)
        try:
            await self._call(run, run.limiter.writes, tracker, partial(run.client.post_statuses, body), held)
        except ApiError as exc:
            self._fail(job, exc, tracker, change)
            return
        except _Interrupted:
            return
        self._done(job, "changed", change, tracker)

    # -- one request, retried ------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.options.backoff_max, self.options.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    async def _call(
        self,
        run: _AccountRun,
        meter: Meter,
        tracker: _Tracker,
        send: Callable[[], Awaitable[T]],
        held: bool = False,
    ) -> T:
        """``send()`` under the account's meter and the global limit, retried while a
        retry can help, within ``max_attempts`` and ``retry_max_time``. ``held``: the
        first attempt's meter token is already taken (``meter.try_acquire()``)."""
        opts = self.options
        first = time.monotonic()
        stats = self.summary.accounts[run.account.name]
        attempt = 0
        while True:
            if run.fatal is not None:
                if held:
                    meter.release(used=False)
                raise run.fatal
            # The synchronous fast paths skip the task switches and cancel scopes of a
            # wait when a token and a slot are free, as they are when limits do not bind.
            if held:
                held = False
            elif self.stopping is not None or not meter.try_acquire():
                await self._wait(meter.acquire())
            # The meter's slot is ours now; the global one may still have to be waited
            # for. value > 0 means nobody waits (a release hands the slot to a waiter);
            # testing it beats catching WouldBlock, whose traceback feeds the GC.
            if self._global.value:
                self._global.acquire_nowait()
            else:
                await self._global.acquire()
            if self.stopping is not None:  # stopped while this request waited: never sent
                self._global.release()
                meter.release(used=False)
                raise _Interrupted
            attempt += 1
            tracker.attempts += 1
            try:
                try:
                    stats.requests += 1
                    return await send()
                finally:
                    self._global.release()
            except ApiError as exc:
                error = exc
            finally:
                meter.release()
            if isinstance(error, AuthError):
                if run.fatal is None:
                    log.error(
                        "account %s: credentials refused (%s); its other integrations are not attempted",
                        run.account.name,
                        error.detail,
                    )
                run.fatal = error
                raise error
            if not error.retryable:
                raise error
            if isinstance(error, ThrottledError):
                meter.on_throttled(error.retry_after)
                log.warning(
                    "account %s: 429 from the API; slowing to %.0f requests a minute (its limits may be set too high)",
                    run.account.name,
                    meter.rate * 60,
                )
            delay = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            elapsed = time.monotonic() - first
            if attempt >= opts.max_attempts or elapsed + delay > opts.retry_max_time:
                raise error
            log.info(
                "%s %s: %s; retrying in %.2fs (attempt %d of %d)",
                error.method,
                error.url,
                error,
                delay,
                attempt + 1,
                opts.max_attempts,
            )
            try:
                await self._wait(anyio.sleep(delay))
            except _Interrupted:
                raise error from None

    # -- outcomes ------------------------------------------------------------------

    def _done(self, job: Job, result: Result, change: Diff, tracker: _Tracker) -> None:
        self._emit(
            Outcome(
                job.integration_id,
                job.account,
                result,
                change.added,
                change.changed,
                change.removed,
                tracker.attempts,
                round((time.monotonic() - tracker.started) * 1000, 1),
                changes=change.changes,
            )
        )

    def _fail(
        self, job: Job, exc: ApiError, tracker: _Tracker, change: Diff | None = None, early: bool = False
    ) -> None:
        info = ErrorInfo.of(exc)
        if early:
            info = ErrorInfo(
                exc.kind,
                exc.http_status,
                exc.code,
                f"not attempted: the account's credentials were refused earlier in this run ({exc.detail})",
                exc.pointer,
            )
        self._emit_failure(job, info, tracker, change)

    def _internal(self, job: Job, exc: Exception, tracker: _Tracker) -> None:
        log.exception("integration %d: internal error", job.integration_id)
        detail = f"internal error, please report it: {type(exc).__name__}: {exc}"[:300]
        self._emit_failure(job, ErrorInfo("internal", detail=detail), tracker, None)

    def _emit_failure(self, job: Job, info: ErrorInfo, tracker: _Tracker, change: Diff | None) -> None:
        self._emit(
            Outcome(
                job.integration_id,
                job.account,
                "failed",
                change.added if change else 0,
                change.changed if change else 0,
                change.removed if change else 0,
                tracker.attempts,
                round((time.monotonic() - tracker.started) * 1000, 1),
                error=info,
                changes=change.changes if change else (),
            )
        )

    def _emit(self, outcome: Outcome) -> None:
        if outcome.integration_id in self._finished:
            return
        self._finished.add(outcome.integration_id)
        setattr(
            self.summary.accounts[outcome.account],
            outcome.result,
            getattr(self.summary.accounts[outcome.account], outcome.result) + 1,
        )
        if outcome.result == "failed":
            self._failures += 1
            limit = self.options.max_failures
            if limit is not None and self._failures >= limit:
                self.stop(f"stopped after {self._failures} failures (--max-failures)")
        self.on_outcome(outcome)
