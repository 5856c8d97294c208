"""What a run produces: one :class:`Outcome` per integration and a :class:`Summary` per run.

Plain data, shared by the engine (which makes them) and every sink (report, progress,
JUnit, metrics, HTML), so that none of those needs the engine or aiohttp to read them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from batchsync.diff import Change, MappingChange
from batchsync.health import Health
from batchsync.text import display, quoted
from batchsync.wire import IntegrationId

Result = Literal["unchanged", "changed", "failed", "skipped"]
RESULTS: tuple[Result, ...] = ("unchanged", "changed", "failed", "skipped")

ErrorKind = Literal[
    "transport",  # no usable response: connection refused or reset, DNS
    "timeout",  # no complete response within --timeout
    "tls",  # the server's certificate or handshake was refused: no retry can fix it
    "throttled",  # 429, and no more time to wait for the budget
    "server",  # 5xx
    "invalid_response",  # a 2xx the API does not document, or a body over the size cap
    "client",  # another 4xx, or a redirect (never followed)
    "auth",  # 401: the account's credentials were refused
    "not_found",  # the integration is not one of the account's
    "not_supported",  # the integration is not PrestaShop V2
    "refused",  # batchsync refused to send it (empty list, mapping guard)
    "stale_plan",  # apply --plan: the integration moved since the plan read it
    "internal",  # a bug of ours: that integration fails, the run goes on
    "credentials",  # the account's credentials could not be resolved or were refused at the start
]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "transport",
    "timeout",
    "tls",
    "throttled",
    "server",
    "invalid_response",
    "client",
    "auth",
    "not_found",
    "not_supported",
    "refused",
    "stale_plan",
    "internal",
    "credentials",
)


class ErrorInfo(msgspec.Struct, frozen=True, gc=False):
    """Why an integration failed: the kind, and the API's own words where it gave some."""

    kind: ErrorKind
    http_status: int | None = None
    code: str | None = None
    detail: str = ""
    pointer: str | None = None


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """What happened to one integration; one JSON line of the report.

    ``added``/``changed``/``removed`` count status changes; ``mapping_changes`` lists the
    categories whose mapping changed (or would). ``started_at``/``ended_at`` are Unix times.
    """

    integration_id: IntegrationId  # checked where a report is read back (report merge)
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
    mapping_changes: tuple[MappingChange, ...] = ()
    warnings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    started_at: float = 0.0
    ended_at: float = 0.0
    # The shop's name as the inventory gives it (None: it gives none). Defaulted, so reports
    # written before it read back unchanged.
    name: str | None = None

    # The shop's exception logs since the last run (--with-health). Unset (not asked): left
    # out of the report line and the JSON, which stay as they were without --with-health.
    health: Health | msgspec.UnsetType = msgspec.UNSET

    @property
    def shop_health(self) -> Health | None:
        """``health`` when the run read it, else None."""
        return self.health if isinstance(self.health, Health) else None


def shop(integration_id: int, name: str | None) -> str:
    """An integration as every text output names it: ``integration 340301 "Café Ö"``, or
    ``integration 340301`` when the inventory gives it no name (the name quoted, and any
    character of the rule spelled out: a merged report's name is whatever its file says)."""
    return f"integration {integration_id} {quoted(name)}" if name else f"integration {integration_id}"


def label(outcome: Outcome) -> str:
    """``integration 340301 "Café Ö" (acme)``: :func:`shop` and the account."""
    return f"{shop(outcome.integration_id, outcome.name)} ({display(outcome.account)})"


class Undeclared(msgspec.Struct, frozen=True):
    """A PrestaShop V2 integration a declared account has and the inventory does not
    declare (nor lists in the account's ``ignore_integrations``): fleet drift."""

    account: str
    integration_id: int
    name: str | None = None
    shop_url: str | None = None


class AccountStats(msgspec.Struct):
    """Counters of one account over a run."""

    unchanged: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    throttled: int = 0  # 429 answers
    requests: int = 0  # requests sent (reads and writes)
    reads: int = 0
    writes: int = 0
    mappings_written: int = 0
    refused: int = 0  # integrations the mapping guard refused
    # The rates the run settled on after 429s, per minute; None when the declared rate held.
    read_rate: float | None = None
    write_rate: float | None = None
    # The rates the inventory declares, per minute (None: not known, as in a merged report).
    read_declared: float | None = None
    write_declared: float | None = None

    def count(self, result: Result) -> int:
        if result == "unchanged":
            return self.unchanged
        if result == "changed":
            return self.changed
        if result == "failed":
            return self.failed
        return self.skipped

    def add(self, result: Result) -> None:
        if result == "unchanged":
            self.unchanged += 1
        elif result == "changed":
            self.changed += 1
        elif result == "failed":
            self.failed += 1
        else:
            self.skipped += 1


class Summary(msgspec.Struct):
    """The whole run: per-account counters, how long it took, and why it stopped early, if it did."""

    accounts: dict[str, AccountStats]
    duration_s: float = 0.0
    stopped: str | None = None
    started_at: float = 0.0
    # What the pre-flight's listing found that the inventory does not declare (as far as it read).
    undeclared: list[Undeclared] = msgspec.field(default_factory=list)

    def total(self, result: Result) -> int:
        return sum(a.count(result) for a in self.accounts.values())

    def requests(self) -> int:
        return sum(a.requests for a in self.accounts.values())
