"""The exception-log side of a run: ``plan``/``apply --with-health`` and ``batchsync health``.

Since when (:func:`batchsync.health.since_for`: ``--since``; else the last run's start,
from the lookup the command passes in; else 24 h), the read itself
(:func:`batchsync.engine.health.read_health`, on the accounts' read budgets), and the
outcomes made to carry their integration's health. Imported when a run asks for health.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from batchsync.engine.health import HEALTH_BOUNDS, HealthRead, read_health
from batchsync.health import Health, no_history, since_for
from batchsync.model import Inventory, Job
from batchsync.outcome import Outcome

if TYPE_CHECKING:
    from batchsync.engine.api import Api
    from batchsync.engine.options import Options

# Since when an account's exception logs count, failing --since: when the last run on the
# account started (a run history), or None (then 24 h). Passed in by the command.
LastRunStart = Callable[[str], "datetime | None"]


def moments(
    jobs: Sequence[Job], explicit: datetime | None, last_run_start: LastRunStart | None, now: datetime | None = None
) -> dict[str, datetime]:
    """Per account of ``jobs``: since when its logs count."""
    now = now or datetime.now(UTC)
    lookup = last_run_start or no_history
    return {name: since_for(name, explicit, lookup, now) for name in sorted({j.account for j in jobs})}


async def read_for_run(
    inv: Inventory,
    jobs: Sequence[Job],
    api: Api,
    options: Options,
    *,
    since: datetime | None,
    max_pages: int,
    carried: Mapping[str, tuple[float, float, float]],
    redact: Callable[[str], str],
    last_run_start: LastRunStart | None,
) -> HealthRead:
    """Every selected account's logs, before its statuses: what is left of its budget goes on.
    ``since``: --since (None: the last run's start, else 24 h); ``max_pages``: per account."""
    moment = moments(jobs, since, last_run_start)
    bounds = msgspec.structs.replace(HEALTH_BOUNDS, pages=max_pages)
    return await read_health(inv.accounts, api, jobs, moment, options, bounds=bounds, carried=carried, redact=redact)


def attach(on_outcome: Callable[[Outcome], None], healths: Mapping[int, Health]) -> Callable[[Outcome], None]:
    """``on_outcome`` handed each outcome with its integration's health."""

    def with_health(outcome: Outcome) -> None:
        found = healths.get(outcome.integration_id)
        on_outcome(outcome if found is None else msgspec.structs.replace(outcome, health=found))

    return with_health
