"""An in-memory Sendcloud for engine tests: the engine's ``Api`` with no HTTP at all.

It keeps statuses and mappings per integration with the API's semantics (overwrite with
soft delete, ``is_valid`` computed from what exists), answers the errors the real client
raises (404, 400 for another system), and lets a test add latency and faults per call and
read back every call with its start and end time. Time is ``anyio``'s, so under a virtual
clock (``run_virtual``) latency and backoff cost no real time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import msgspec
from trio.testing import MockClock

from batchsync import wire
from batchsync.model import Account, Inventory, Job
from batchsync.sendcloud.errors import ApiError, NotFoundError, NotSupportedError

T = TypeVar("T")

STATUSES_URL = "fake://api/shop-order-statuses"


def run_virtual(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, limit: float = 1e6) -> T:
    """Run ``fn(*args)`` on trio with a clock that jumps whenever every task sleeps.

    A deadlock (every task waiting for something that never comes) would otherwise hang
    forever, since a virtual clock with no deadline never moves: ``limit`` virtual seconds
    is that deadline, and reaching it fails the test."""

    async def guarded() -> T:
        with anyio.fail_after(limit):
            return await fn(*args)

    return anyio.run(guarded, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


@dataclass
class Shop:
    """One integration as the fake API holds it."""

    account: str
    statuses: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # live: id -> (lang, name)...
    deleted: set[str] = field(default_factory=set)
    mapping: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(wire.STATUS_CATEGORIES))
    system: str = "prestashop_v2"
    failing_since: str | None = None


@dataclass
class Call:
    account: str
    op: str  # get_statuses, post_statuses, get_mapping, post_mapping, list
    integration_id: int | None
    start: float
    end: float = -1.0
    error: str | None = None


Fault = Callable[[Call], ApiError | None]


def shop_from(statuses: Iterable[wire.Status], account: str) -> Shop:
    return Shop(account, {s.external_id: tuple((t.language, t.status) for t in s.translations) for s in statuses})


class FakeApi:
    """The engine's Api. ``latency`` (seconds, or a function of the call) and ``fault``
    (a function of the call returning an ApiError to raise, or None) apply to every call."""

    def __init__(
        self,
        shops: dict[int, Shop],
        *,
        latency: float | Callable[[Call], float] = 0.01,
        fault: Fault | None = None,
        page_size: int = 100,
    ) -> None:
        self.shops = shops
        self.latency = latency
        self.fault = fault
        self.page_size = page_size
        self.calls: list[Call] = []
        # Exception logs per account, newest first (GET /integrations/logs), paged by page_size;
        # endless_logs: a list that never ends.
        self.logs: dict[str, list[wire.LogRecord]] = {}
        self.endless_logs = False
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.tokens: list[str] = []

    @classmethod
    def from_inventory(cls, inv: Inventory, drifted: Iterable[int] = (), **kw: Any) -> FakeApi:
        """Every integration of ``inv``, in sync except ``drifted`` (which start empty)."""
        gone = set(drifted)
        shops = {
            j.integration_id: shop_from(() if j.integration_id in gone else j.desired.statuses, j.account)
            for j in inv.jobs
        }
        return cls(shops, **kw)

    def account(self, account: Account) -> FakeAccountApi:
        return FakeAccountApi(self, account.name)

    def secrets(self) -> tuple[str, ...]:
        return ()

    def count(self, op: str, account: str | None = None) -> int:
        return sum(1 for call in self.calls if call.op == op and (account is None or call.account == account))

    def live(self, integration_id: int) -> dict[str, tuple[tuple[str, str], ...]]:
        return dict(self.shops[integration_id].statuses)

    def mapping_view(self, integration_id: int) -> wire.CurrentMapping:
        shop = self.shops[integration_id]
        items = tuple(
            wire.CurrentMappingItem(cat, ext, ext is None or ext in shop.statuses)  # type: ignore[arg-type]
            for cat, ext in shop.mapping.items()
        )
        return wire.CurrentMapping(integration_id, items)


class FakeAccountApi:
    def __init__(self, api: FakeApi, account: str) -> None:
        self.api = api
        self.name = account

    async def _call(self, op: str, integration_id: int | None) -> Call:
        api = self.api
        call = Call(self.name, op, integration_id, anyio.current_time())
        api.calls.append(call)
        api.in_flight[self.name] = n = api.in_flight.get(self.name, 0) + 1
        api.peak[self.name] = max(api.peak.get(self.name, 0), n)
        try:
            delay = api.latency(call) if callable(api.latency) else api.latency
            if delay:
                await anyio.sleep(delay)
        finally:
            api.in_flight[self.name] -= 1
            call.end = anyio.current_time()
        error = api.fault(call) if api.fault is not None else None
        if error is not None:
            call.error = error.kind
            raise error
        return call

    def _shop(self, integration_id: int, method: str) -> Shop:
        shop = self.api.shops.get(integration_id)
        if shop is None or shop.account != self.name:
            raise NotFoundError(f"Integration {integration_id} was not found.", method=method, http_status=404)
        if shop.system != "prestashop_v2":
            raise NotSupportedError("Only the Prestashop V2 integration is supported", method=method, http_status=400)
        return shop

    async def get_statuses(self, integration_id: int) -> tuple[wire.CurrentStatus, ...]:
        await self._call("get_statuses", integration_id)
        shop = self._shop(integration_id, "GET")
        return tuple(
            wire.CurrentStatus(ext, tuple(wire.CurrentTranslation(name, lang) for lang, name in trs))
            for ext, trs in shop.statuses.items()
        )

    async def post_statuses(self, body: bytes) -> None:
        decoded = msgspec.json.decode(body, type=wire.PostShopOrderStatuses)
        await self._call("post_statuses", decoded.integration_id)
        shop = self._shop(decoded.integration_id, "POST")
        new: dict[str, tuple[tuple[str, str], ...]] = {
            s.external_id: tuple((t.language, t.status) for t in s.translations) for s in decoded.statuses
        }
        shop.deleted |= set(shop.statuses) - set(new)
        shop.deleted -= set(new)
        shop.statuses = new

    async def get_mapping(self, integration_id: int) -> wire.CurrentMapping:
        await self._call("get_mapping", integration_id)
        self._shop(integration_id, "GET")
        return self.api.mapping_view(integration_id)

    async def post_mapping(self, body: bytes) -> None:
        decoded = msgspec.json.decode(body, type=wire.PostMapping)
        await self._call("post_mapping", decoded.integration_id)
        shop = self._shop(decoded.integration_id, "POST")
        assert [m.status_category for m in decoded.mapping] == list(wire.STATUS_CATEGORIES)
        shop.mapping = {m.status_category: m.external_id for m in decoded.mapping}

    async def list_integrations_page(self, next_url: str | None = None) -> wire.ListedPage:
        await self._call("list", None)
        mine = sorted(i for i, s in self.api.shops.items() if s.account == self.name)
        start = int(next_url) if next_url else 0
        page = mine[start : start + self.api.page_size]
        items = tuple(
            wire.Integration(i, f"Shop {i}", None, self.api.shops[i].system, self.api.shops[i].failing_since, None)
            for i in page
        )
        nxt = start + self.api.page_size
        return wire.ListedPage(items, str(nxt) if nxt < len(mine) else None, 100 * len(items))

    async def list_logs_page(self, next_url: str | None = None, integration_id: int | None = None) -> wire.LogsPage:
        await self._call("logs", integration_id)
        start = int(next_url) if next_url else 0
        size = self.api.page_size
        if self.api.endless_logs:
            now = "2030-01-01T00:00:00+00:00"
            page = tuple(wire.LogRecord(integration_id=0, id=start + k + 1, created_at=now) for k in range(size))
            return wire.LogsPage(page, str(start + size), 100 * size)
        mine = [
            r for r in self.api.logs.get(self.name, []) if integration_id is None or r.integration_id == integration_id
        ]
        page = tuple(mine[start : start + size])
        nxt = start + size
        return wire.LogsPage(page, str(nxt) if nxt < len(mine) else None, 100 * len(page))


def jobs_by_id(jobs: Iterable[Job]) -> dict[int, Job]:
    return {j.integration_id: j for j in jobs}
