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
from batchsync.health import FUTURE_SKEW, Health, no_history, since_for
from batchsync.model import Inventory, Job
from batchsync.outcome import Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable

    from batchsync.engine.api import Api
    from batchsync.engine.options import Options
    from batchsync.history.location import Location

# Since when an account's exception logs count, failing --since: when the last run on the
# account started (a run history), or None (then 24 h). Passed in by the command.
LastRunStart = Callable[[str], "datetime | None"]


def from_history(
    where: Location | None,
    accounts: Iterable[str],
    redact: Callable[[str], str] = str,
    warn: Callable[[str], None] | None = None,
    inventory: str = "",
    now: datetime | None = None,
) -> LastRunStart:
    """The lookup of the run history: when the last recorded run of each account (of
    ``inventory``: an account is a name in one inventory) started,
    read once, before the run (one indexed query per account). No history, or none made
    yet: no earlier run is known (24 h). A store asked for that cannot be read is said
    through ``warn`` and counts as none: health is information, it costs the run nothing."""
    if where is None:
        return no_history
    from batchsync.history.db import HistoryError, connect
    from batchsync.history.queries import last_start

    found: dict[str, datetime] = {}
    try:
        db = connect(where, redact, create=False, read_only=True)
    except HistoryError as exc:
        if not where.implicit and warn is not None:
            warn(f"batchsync: warning: the run history could not be read ({redact(str(exc))}): health since 24 h")
        return no_history
    now = now or datetime.now(UTC)
    ahead: list[str] = []
    try:
        for account in sorted(set(accounts)):
            at = last_start(db, account, inventory)
            if at:
                moment = datetime.fromisoformat(at).astimezone(UTC)
                if moment > now + FUTURE_SKEW:  # a run recorded by a host whose clock ran ahead
                    ahead.append(account)  # would hide every log until this clock got there
                    continue
                found[account] = moment
    except Exception as exc:  # a store that breaks mid-read: what was read stands
        if warn is not None:
            warn(f"batchsync: warning: the run history could not be read ({redact(' '.join(str(exc).split()))})")
    finally:
        db.close()
    if ahead and warn is not None:
        warn(
            f"batchsync: warning: the run history's last run of {', '.join(map(repr, ahead))} started in the future "
            "of this machine's clock: health since 24 h there"
        )
    return found.get


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
