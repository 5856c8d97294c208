"""What ``batchsync import`` reads: each account's list of integrations, page by page on its
read budget, then every PrestaShop V2 integration's statuses and mapping through the
engine's snapshot mode (same budget, retries and outcomes as ``apply``).

Grouping what was read into an inventory is :mod:`batchsync.inventory.grouping`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchsync.engine.api import AccountApi, Api
    from batchsync.engine.engine import Engine
    from batchsync.engine.limits import Bucket
    from batchsync.engine.options import Options
    from batchsync.inventory.grouping import Current, NotImportable, Shop
    from batchsync.model import Account
    from batchsync.outcome import Outcome, Summary
    from batchsync.sendcloud.listing import ListBoundError
    from batchsync.wire import ListedPage


class Fleet:
    """What an import read, filled as it goes (an interrupted one keeps what it has)."""

    def __init__(self) -> None:
        self.listings: dict[str, list[Shop]] = {}  # accounts listed to the end
        self.list_errors: dict[str, str] = {}  # accounts whose list failed: why
        self.unbounded: dict[str, ListBoundError] = {}  # accounts whose list went past a bound: nothing is written
        self.pages: dict[str, int] = {}  # pages read, accounts listed to the end
        self.list_requests: dict[str, int] = {}  # GET /integrations sent: retries and failed lists too
        self.duplicates: list[tuple[int, str, str]] = []  # (id, account skipped, account read)
        self.snapshots: list[Current | NotImportable] = []
        self.failed: list[Outcome] = []
        self.summary: Summary | None = None
        self.engine: Engine | None = None
        self.listed_in = 0.0  # seconds the lists took (with the wait for the budget to refill)
        self.to_read = 0  # integrations the engine reads


def _now() -> float:
    """The time on the buckets' clock (:func:`~batchsync.engine.limits.backend_clock`)."""
    from batchsync.engine.limits import backend_clock

    return backend_clock()()


async def _page(
    api: AccountApi, bucket: Bucket, url: str | None, options: Options, account: str, sent: dict[str, int] | None = None
) -> ListedPage:
    """One page, on the read budget, retried like any read of the engine; each request
    sent (a retry, one that failed) counted in ``sent[account]``."""
    import logging
    import random

    import anyio

    from batchsync.sendcloud.errors import ApiError, BodyTooLarge, ThrottledError
    from batchsync.sendcloud.listing import ListBoundError

    log = logging.getLogger("batchsync.import")
    first = _now()
    attempt = 0
    while True:
        attempt += 1
        now = _now()
        while (ready := bucket.ready_at(now)) > now:  # the loop's timer may wake it a little early
            await anyio.sleep(ready - now)
            now = _now()
        bucket.take()
        started = now
        if sent is not None:
            sent[account] = sent.get(account, 0) + 1
        try:
            result = await api.list_integrations_page(url)
        except BodyTooLarge as exc:
            # One page past what an answer may be (a page that never ends, or 30,000 ids at
            # once): the list cannot be read whole, and a retry reads the same.
            bucket.give_back(_now())
            raise ListBoundError(
                f"the list of integrations has a page larger than an answer may be ({exc.detail}); not read further",
                "page",
            ) from None
        except ApiError as exc:
            end = _now()
            bucket.give_back(end)
            if isinstance(exc, ThrottledError):
                bucket.on_throttled(end, started, exc.retry_after if exc.retry_after is not None else 1.0 / bucket.rate)
            ceiling = min(options.backoff_max, options.backoff_base * 2.0 ** (attempt - 1))
            delay = exc.retry_after if exc.retry_after is not None else ceiling / 2 + random.uniform(0, ceiling / 2)
            if not exc.retryable or attempt >= options.max_attempts or end - first + delay > options.retry_max_time:
                raise
            log.info(
                "account %s: GET /integrations: %s; retrying in %.2fs (attempt %d of %d)",
                account,
                exc,
                delay,
                attempt + 1,
                options.max_attempts,
                extra={"fields": {"account": account, "attempt": attempt + 1, "delay": round(delay, 3)}},
            )
            await anyio.sleep(delay)
            continue
        except BaseException:
            bucket.give_back(_now())
            raise
        bucket.give_back(_now())
        return result


TEXT_MAX = 300  # characters kept of a listed shop's name, URL, system: a comment, not a store


def _text(value: str | None, redact: Callable[[str], str] | None) -> str | None:
    """A listed shop's text, redacted before it is cut (so that no half of a secret stays)."""
    if value is not None and redact is not None:
        value = redact(value)
    return value if value is None or len(value) <= TEXT_MAX else value[: TEXT_MAX - 1] + "…"


async def list_account(
    api: AccountApi,
    bucket: Bucket,
    options: Options,
    account: str,
    sent: dict[str, int] | None = None,
    redact: Callable[[str], str] | None = None,
) -> tuple[list[Shop], int]:
    """Every integration the account lists, following the next-page links; (shops, pages).
    ``sent[account]`` counts the requests (see :func:`_page`), a list that fails included;
    ``redact`` cleans the shops' names, URLs and systems (what a server wrote).

    ApiError when a page fails for good; :class:`batchsync.sendcloud.listing.ListBoundError` when the
    list goes past a bound of ``options.list_bounds`` (pages, integrations, bytes, time) or
    lists an id again. An item that is not an integration is left out, with a warning."""
    import logging

    import anyio

    from batchsync.inventory.grouping import Shop
    from batchsync.sendcloud.listing import ListBoundError, Listing

    log = logging.getLogger("batchsync.import")
    bounds = options.list_bounds
    shops: list[Shop] = []
    listing = Listing(bounds, _now())
    url: str | None = None
    with anyio.move_on_after(bounds.seconds) as scope:
        while True:
            page = await _page(api, bucket, url, options, account, sent)
            listing.add(page, _now())
            for why in page.rejected:
                log.warning(
                    "account %s: GET /integrations, page %d: %s; left out of the import",
                    account,
                    listing.pages,
                    why,
                    extra={"fields": {"account": account}},
                )
            shops.extend(
                Shop(
                    i.id,
                    account,
                    _text(i.shop_name, redact),
                    _text(i.shop_url, redact),
                    _text(i.system, redact),
                    _text(i.failing_since, redact),
                )
                for i in page.items
            )
            if page.next_url is None:
                return shops, listing.pages
            url = page.next_url
    assert scope.cancelled_caught
    raise ListBoundError(
        f"the list of integrations took more than {bounds.seconds:g} s to read "
        f"(at page {listing.pages + 1:,}); not read further",
        "time",
    )


class Lists:
    """The accounts' lists an import or a pre-flight of new clients (:func:`list_undeclared`)
    reads, each on a read bucket of its own started from what the last run on this host
    left of it (``carried``, as :func:`batchsync.engine.budget.load` gives it), and what
    they leave for the next run. ``sent``: where the requests are counted, per account."""

    def __init__(
        self,
        accounts: Mapping[str, Account],
        carried: Mapping[str, tuple[float, float, float]],
        sent: dict[str, int] | None = None,
    ) -> None:
        self.accounts = accounts
        self.carried = carried
        self.start = _now()
        self.buckets: dict[str, Bucket] = {}
        self.sent: dict[str, int] = {} if sent is None else sent  # GET /integrations sent: retries too

    def bucket(self, name: str) -> Bucket:
        from batchsync.engine.limits import Bucket

        lim = self.accounts[name].limits
        now = _now()
        bucket = self.buckets[name] = Bucket(lim.reads_per_minute, lim.write_burst, now)
        if name in self.carried:
            age, reads, _ = self.carried[name]
            bucket.carry(reads, age + now - self.start)
        return bucket

    def left(self) -> dict[str, tuple[float, float]]:
        """(read, write) tokens left now, per account listed (its writes as carried: a list
        spends none, but must not record them full either)."""
        from batchsync.engine.limits import Bucket

        now = _now()
        left = {}
        for name, reads in self.buckets.items():
            lim = self.accounts[name].limits
            writes = Bucket(lim.writes_per_minute, lim.write_burst, now)
            if name in self.carried:
                age, _, w = self.carried[name]
                writes.carry(w, age + now - self.start)
            left[name] = (reads.left(now), writes.left(now))
        return left


async def list_undeclared(
    lists: Lists,
    names: Collection[str],
    api: Api,
    options: Options,
    summary: Callable[[], Summary],
    redact: Callable[[str], str] | None = None,
) -> None:
    """The pre-flight of declared accounts that have no integration in the inventory (a new
    client declared before its first import): each one's list read to its end, on its read
    budget (``lists``), and every PrestaShop V2 integration it holds (that it does not
    ignore) added to the run's ``summary().undeclared`` (the engine's, made as its run
    starts). Its requests and 429s are the account's in the summary, like any other
    account's. An account whose list cannot be read is said, and costs nothing else."""
    import logging

    import anyio

    from batchsync.model import PRESTASHOP_V2
    from batchsync.outcome import AccountStats, Undeclared
    from batchsync.sendcloud.errors import ApiError
    from batchsync.sendcloud.listing import ListBoundError
    from batchsync.text import one_line

    log = logging.getLogger("batchsync.engine")
    limit = anyio.Semaphore(max(1, options.concurrency))

    async def one(name: str) -> None:
        account = lists.accounts[name]
        bucket = lists.bucket(name)
        shops: list[Shop] = []
        try:
            async with limit:
                shops, _ = await list_account(api.account(account), bucket, options, name, lists.sent, redact)
        except (ApiError, ListBoundError) as exc:
            log.warning(
                "account %s: cannot list its integrations (%s); its undeclared ones are not known",
                name,
                exc,
                extra={"fields": {"account": name}},
            )
        finally:  # cut short too: what was sent was sent
            stats = summary().accounts.setdefault(name, AccountStats())
            sent = lists.sent.get(name, 0)
            stats.requests += sent
            stats.reads += sent
            stats.throttled += bucket.throttled
            if bucket.slowed:
                stats.read_rate = round(bucket.rate * 60, 1)
        ignored = account.ignore_integrations
        summary().undeclared.extend(
            Undeclared(name, shop.id, shop.name and one_line(shop.name), shop.url and one_line(shop.url))
            for shop in shops
            if shop.system == PRESTASHOP_V2 and shop.id not in ignored
        )

    async with anyio.create_task_group() as tg:
        for name in sorted(names):
            tg.start_soon(one, name)


async def read_fleet(
    accounts: Mapping[str, Account],
    api: Api,
    options: Options,
    fleet: Fleet,
    *,
    declared: Collection[int] = (),
    on_outcome: Callable[[Outcome], None] | None = None,
    on_engine: Callable[[Engine], None] | None = None,
    sanitize: Callable[[Outcome], Outcome] | None = None,
    budget_files: Mapping[str, str] | None = None,
    redact: Callable[[str], str] | None = None,
) -> Fleet:
    """List every account's integrations, then read each PrestaShop V2 one not in
    ``declared`` (statuses and mapping) through the engine's snapshot mode.

    ``budget_files``: where the accounts' budgets are recorded (batchsync.engine.budget): the
    lists start from what the last run on this host left, and the import leaves its own.
    ``redact``: the run's redactor, for the shops' names (an outcome's name is not sanitized)."""
    import logging

    import anyio

    from batchsync.engine import budget
    from batchsync.engine.engine import Engine
    from batchsync.inventory.grouping import canonical, is_prestashop
    from batchsync.model import Desired, Job
    from batchsync.sendcloud.errors import ApiError
    from batchsync.sendcloud.listing import ListBoundError
    from batchsync.text import one_line

    log = logging.getLogger("batchsync.import")
    start = _now()
    files = budget_files or {}
    carried = budget.load(files) if files else {}
    lists = Lists(accounts, carried, fleet.list_requests)

    async def one(name: str) -> None:
        bucket = lists.bucket(name)
        try:
            shops, pages = await list_account(api.account(accounts[name]), bucket, options, name, lists.sent, redact)
        except ListBoundError as exc:
            # A list that does not end: what was read of it is no inventory. The import
            # stops here, the other lists with it, and writes nothing.
            fleet.unbounded[name] = exc
            tg.cancel_scope.cancel()
            return
        except ApiError as exc:
            fleet.list_errors[name] = str(exc)
            return
        except Exception as exc:  # a bug of ours costs the account's list, not the import
            log.exception("account %s: internal error while listing", name)
            fleet.list_errors[name] = f"internal error, please report it: {type(exc).__name__}: {exc}"[:300]
            return
        fleet.listings[name] = shops
        fleet.pages[name] = pages

    async with anyio.create_task_group() as tg:
        for name in sorted(accounts):
            tg.start_soon(one, name)
    if fleet.unbounded:
        if files:
            budget.save(lists.left(), files)
        return fleet
    # The engine starts each account with a full bucket: let the server's refill first,
    # which is the time the pages cost on the budget anyway.
    full = max(
        (max(b.paused_until, b.updated + (b.capacity - b.tokens) / b.rate) for b in lists.buckets.values()),
        default=0.0,
    )
    while (wait := full - _now()) > 0:  # the loop's timer may wake it a little early
        await anyio.sleep(wait)
    fleet.listed_in = _now() - start

    nothing = Desired(())
    jobs: list[Job] = []
    shops: dict[int, Shop] = {}
    skip = set(declared)
    for name in sorted(fleet.listings):
        for shop in fleet.listings[name]:
            if not is_prestashop(shop) or shop.id in skip:
                continue
            other = shops.get(shop.id)
            if other is not None:  # two accounts list one id: read it once
                fleet.duplicates.append((shop.id, name, other.account))
                continue
            shops[shop.id] = shop
            # The shop's name as every output shows it: the server's words, one clean line.
            jobs.append(Job(shop.id, name, nothing, name=one_line(shop.name, redact, limit=200) if shop.name else None))

    def snapshot(job: Job, statuses: Any, mapping: Any) -> None:
        fleet.snapshots.append(canonical(shops[job.integration_id], statuses, mapping))

    def outcome(o: Outcome) -> None:
        if o.result == "failed":
            fleet.failed.append(o)
        if on_outcome is not None:
            on_outcome(o)

    fleet.to_read = len(jobs)
    used = {name: accounts[name] for name in {j.account for j in jobs}}
    engine = Engine(used, api, options, outcome, sanitize=sanitize, on_snapshot=snapshot, redact=redact)
    # Its reads start full (the wait above); its writes as the last run left them, which
    # an import does not spend but must not record as full either.
    since = _now() - start
    aged = {name: (age + since, reads, writes) for name, (age, reads, writes) in carried.items()}
    burst = {name: float(account.limits.write_burst) for name, account in used.items()}
    engine.carried = {name: (age, burst[name], writes) for name, (age, _, writes) in aged.items() if name in burst}
    fleet.engine = engine
    if on_engine is not None:
        on_engine(engine)
    try:
        fleet.summary = await engine.run(jobs)
    finally:
        if files:
            budget.save(lists.left() | engine.budget_left(), files)
    return fleet
