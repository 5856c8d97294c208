"""What the engine asks of the Sendcloud API: the seam between scheduling and HTTP.

The engine only knows these protocols. :class:`batchsync.sendcloud.transport.HttpApi`
implements them over aiohttp for real runs; the tests implement them in memory (faults,
latency, a virtual clock). Every method raises a :class:`batchsync.sendcloud.errors.ApiError`
subclass on failure, never anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from batchsync import wire

if TYPE_CHECKING:
    from batchsync.model import Account


class AccountApi(Protocol):
    """One Sendcloud account's endpoints (its base URL and credentials are inside)."""

    async def get_statuses(self, integration_id: int) -> tuple[wire.CurrentStatus, ...]:
        """``GET /shop-order-statuses?integration_id=N``: current statuses, deleted ones included or not."""
        ...

    async def post_statuses(self, body: bytes) -> None:
        """``POST /shop-order-statuses`` with a pre-encoded body: overwrite every status."""
        ...

    async def get_mapping(self, integration_id: int) -> wire.CurrentMapping:
        """``GET /shop-order-statuses/mapping?integration_id=N``."""
        ...

    async def post_mapping(self, body: bytes) -> None:
        """``POST /shop-order-statuses/mapping`` with a pre-encoded body (all four categories)."""
        ...

    async def list_integrations_page(self, next_url: str | None = None) -> wire.ListedPage:
        """One page of ``GET /integrations``: its integrations, the next page's URL (None:
        the last page), its size and the items that are not integrations."""
        ...

    async def list_logs_page(self, next_url: str | None = None, integration_id: int | None = None) -> wire.LogsPage:
        """One page of ``GET /integrations/logs`` (``/integrations/{id}/logs`` for one
        integration): the exception logs, the next page's URL (None: the last page)."""
        ...


class Api(Protocol):
    """Hands out one :class:`AccountApi` per account."""

    def account(self, account: Account) -> AccountApi: ...

    def secrets(self) -> tuple[str, ...]:
        """Every credential value in use so far (tokens included), for the redactor."""
        ...
