"""Reading each account's integration exception logs, on its read budget, within bounds.

``batchsync health`` and ``plan``/``apply --with-health`` read, per account, one listing
(``GET /integrations/logs``, or ``/integrations/{id}/logs`` when one integration of the
account is selected), page after page, and keep per selected integration a
:class:`~batchsync.health.Health` of the records since the account's moment. Each page is
one read of the account's read bucket (an :class:`~batchsync.engine.limits.Bucket`, as
the engine's): a run with ``--with-health`` hands what is left of both buckets to the
engine (:attr:`HealthRead.carried`), so the logs never cost a write token and the
statuses after them start from the same budget; a 429 on the logs hands on its cut rate
and its pause as well (:attr:`HealthRead.reads`). The list is bounded as the pre-flight's
(:class:`~batchsync.sendcloud.listing.Listing`: pages, records, bytes, time, a repeat).

A failure (refused credentials, a bound, a server that keeps failing) costs only that
account's health: each of its integrations gets a ``Health`` with ``unknown`` set to the
reason; nothing is raised.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import anyio
import msgspec

from batchsync.engine.api import AccountApi, Api
from batchsync.engine.limits import Bucket, backend_clock, log_slowed
from batchsync.engine.options import Options
from batchsync.health import FUTURE_SKEW, Health, Tally, parse_time, unknown
from batchsync.model import Account, Job
from batchsync.sendcloud.errors import ApiError, ThrottledError
from batchsync.sendcloud.listing import ListBounds, Listing
from batchsync.wire import LogsPage

log = logging.getLogger("batchsync.health")

__all__ = ["HEALTH_BOUNDS", "HealthRead", "read_health"]

# Exception logs since the last run: a shop failing every minute for a day is 1,440 records;
# a hundred pages of a hundred is room for several such shops per account.
HEALTH_BOUNDS = ListBounds(pages=100, items=10_000, bytes=64 * 1024 * 1024, seconds=90.0)


class HealthRead(msgspec.Struct):
    """What :func:`read_health` found: per integration its health, per account whose logs
    could not be read the reason, the requests made, per account ``(age, read tokens,
    write tokens)`` left, for :attr:`batchsync.engine.engine.Engine.carried`, and per
    account its read bucket (rate, pause, 429s), for :attr:`~batchsync.engine.engine.Engine.adopted`."""

    by_integration: dict[int, Health]
    failed: dict[str, str]
    requests: int = 0
    by_account: dict[str, int] = {}  # requests per account
    carried: dict[str, tuple[float, float, float]] = {}
    reads: dict[str, Bucket] = {}
    # Per account, the records that could not be read (not a record, no readable time): not
    # counted in any shop's health, and said so.
    unreadable: dict[str, int] = {}


async def read_health(
    accounts: Mapping[str, Account],
    api: Api,
    jobs: Sequence[Job],
    since: Mapping[str, datetime],
    options: Options,
    *,
    bounds: ListBounds = HEALTH_BOUNDS,
    carried: Mapping[str, tuple[float, float, float]] | None = None,
    redact: Callable[[str], str] = str,
    rng: random.Random | None = None,
) -> HealthRead:
    """Read the logs of every account of ``jobs`` (at most ``options.concurrency`` accounts
    at once), each since ``since[account]``."""
    by_account: dict[str, list[Job]] = {}
    for job in jobs:
        by_account.setdefault(job.account, []).append(job)
    result = HealthRead({}, {})
    clock = backend_clock()
    limit = anyio.Semaphore(max(1, options.concurrency))
    rng = rng or random.Random()
    prior = carried or {}

    async def one(name: str) -> None:
        async with limit:
            reader = _AccountReader(accounts[name], api.account(accounts[name]), options, bounds, redact, rng, clock)
            earlier = prior.get(name)
            if earlier is not None:
                age, reads, writes = earlier
                reader.reads.carry(reads, age)
                reader.writes.carry(writes, age)
            # The listing's time bound holds for the whole read, retries and hung requests
            # included: an account whose logs hang costs the others (whose statuses wait for
            # every account's logs) this much at most, not its attempts times --timeout.
            with anyio.move_on_after(bounds.seconds) as scope:
                healths, error = await reader.read(by_account[name], since[name])
            if scope.cancelled_caught:
                error = redact(
                    f"the account's exception logs could not be read within {bounds.seconds:g} s; not read further"
                )
                log.warning("account %s: %s", name, error, extra={"fields": {"account": name}})
                healths = {job.integration_id: unknown(since[name], error) for job in by_account[name]}
            if reader.unreadable:
                result.unreadable[name] = reader.unreadable
                log.warning(
                    "account %s: %d exception log record%s could not be read (not a record, or no readable time): "
                    "not counted",
                    name,
                    reader.unreadable,
                    "s" if reader.unreadable != 1 else "",
                    extra={"fields": {"account": name, "unreadable": reader.unreadable}},
                )
            result.by_integration.update(healths)
            result.requests += reader.requests
            result.by_account[name] = reader.requests
            if error is not None:
                result.failed[name] = error
            now = clock()
            result.carried[name] = (0.0, reader.reads.left(now), reader.writes.left(now))
            result.reads[name] = reader.reads

    async with anyio.create_task_group() as tg:
        for name in sorted(by_account):
            tg.start_soon(one, name)
    return result


class _AccountReader:
    def __init__(
        self,
        account: Account,
        api: AccountApi,
        options: Options,
        bounds: ListBounds,
        redact: Callable[[str], str],
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.clock = clock
        now = clock()
        lim = account.limits
        self.name = account.name
        self.api = api
        self.options = options
        self.bounds = bounds
        self.redact = redact
        self.rng = rng
        self.reads = Bucket(lim.reads_per_minute, lim.write_burst, now)
        self.writes = Bucket(lim.writes_per_minute, lim.write_burst, now)  # untouched: handed on
        self.requests = 0
        self.unreadable = 0  # records left out: not a record, or no time that parses

    async def read(self, jobs: Sequence[Job], since: datetime) -> tuple[dict[int, Health], str | None]:
        ids = [job.integration_id for job in jobs]
        tallies = {i: Tally() for i in ids}
        single = ids[0] if len(ids) == 1 else None
        listing = Listing(self.bounds, self.clock(), f"the list of exception logs of account {self.name}", "log record")
        newest_first = True
        previous: datetime | None = None
        next_url: str | None = None
        seen: set[int] = set()  # record ids counted: bounded by the listing's items
        # A record dated ahead of this clock (by more than a clock's skew) would fall in every
        # later window: its shop failing every night from then on. Counted apart, unread.
        latest = datetime.now(UTC) + FUTURE_SKEW
        try:
            while True:
                page = await self._get(next_url, single)
                self.unreadable += page.rejected
                oldest_on_page: datetime | None = None
                fresh: list[int | None] = []
                for record in page.records:
                    if record.id is not None:
                        # Listed again (an offset-paged list while new records arrive push it
                        # onto the next page): counted once, and no sign of a list in a circle.
                        if record.id in seen:
                            continue
                        seen.add(record.id)
                    fresh.append(record.id)
                    at = parse_time(record.created_at)
                    if at is None or at > latest:
                        self.unreadable += 1
                        continue
                    if previous is not None and at > previous:
                        newest_first = False
                    previous = oldest_on_page = at
                    if at < since:
                        continue
                    iid = record.integration_id if record.integration_id is not None else single
                    tally = tallies.get(iid) if iid is not None else None
                    if tally is not None:
                        tally.add(record, at, self.redact)
                if page.next_url is None:
                    break
                listing.add_ids(fresh, page.next_url, page.size, self.clock())
                if newest_first and oldest_on_page is not None and oldest_on_page < since:
                    break  # newest first so far, and past the moment: the rest is older still
                next_url = page.next_url
        except ApiError as exc:
            reason = self.redact(f"the account's exception logs could not be read: {exc}")
            log.warning("account %s: %s", self.name, reason, extra={"fields": {"account": self.name}})
            return {i: unknown(since, reason) for i in ids}, reason
        except Exception as exc:  # a bug of ours on what a server sent costs this account's health, not the run
            reason = self.redact(f"the account's exception logs could not be read: internal error: {exc!r}")
            log.error("account %s: %s", self.name, reason, extra={"fields": {"account": self.name}})
            return {i: unknown(since, reason) for i in ids}, reason
        return {i: tally.health(since, self.redact) for i, tally in tallies.items()}, None

    async def _get(self, next_url: str | None, single: int | None) -> LogsPage:
        """One page on the read budget, retried as the engine retries a read (a 429 pauses
        and slows the bucket; a retryable failure backs off), up to ``--max-attempts`` and
        ``--retry-max-time``."""
        opts = self.options
        clock = self.clock
        first = clock()
        tries = 0
        while True:
            now = clock()
            while (ready := self.reads.ready_at(now)) > now:  # the loop's timer may wake it a little early
                await anyio.sleep(ready - now)
                now = clock()
            self.reads.take()
            sent = now
            tries += 1
            self.requests += 1
            try:
                page = await self.api.list_logs_page(next_url, single)
            except ApiError as exc:
                end = clock()
                self.reads.give_back(end)
                elapsed = end - first
                if isinstance(exc, ThrottledError):
                    pause = exc.retry_after if exc.retry_after is not None else 1.0 / self.reads.rate
                    if self.reads.on_throttled(end, sent, min(pause, max(0.0, opts.retry_max_time - elapsed))):
                        log_slowed(log, self.name, "reads", self.reads)
                if not exc.retryable:
                    raise
                ceiling = min(opts.backoff_max, opts.backoff_base * 2.0 ** (tries - 1))
                delay = (
                    exc.retry_after if exc.retry_after is not None else ceiling / 2 + self.rng.uniform(0, ceiling / 2)
                )
                if tries >= opts.max_attempts or elapsed + delay > opts.retry_max_time:
                    raise
                await anyio.sleep(delay)
                continue
            except BaseException:
                self.reads.give_back(clock())
                raise
            self.reads.give_back(clock())
            return page
