"""Notification routes of the inventory (``[[notify]]``): each route's webhook gets a summary
of its own integrations only (counts, failures, exit code over that subset), so each
client's channel hears about that client alone. ``--notify`` (the whole run) is
:mod:`batchsync.outputs.notify`; both are sent after every file is written.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase

import msgspec

from batchsync.exitcodes import EXIT_OK, EXIT_OUTPUT_LOST, exit_code
from batchsync.model import NotifyRoute
from batchsync.outcome import AccountStats, Outcome, Summary
from batchsync.outputs.history import Recall
from batchsync.outputs.notify import (
    MAX_FAILED,
    RESERVE,
    Delivery,
    NotifyFormat,
    NotifyOn,
    Webhook,
    _send,
    json_message,
    log_deliveries,
    slack_message,
    wanted,
)
from batchsync.outputs.sink import End, Start

log = logging.getLogger("batchsync.notify")


def route_matches(route: NotifyRoute, outcome: Outcome) -> bool:
    """Whether ``outcome``'s integration is the route's: its account matches one of the
    route's ``accounts`` patterns or one of its tags one of its ``tags`` patterns (shell-style,
    as ``--limit``); a route that names neither takes every integration."""
    if not route.tags and not route.accounts:
        return True
    if any(fnmatchcase(outcome.account, p) for p in route.accounts):
        return True
    return any(fnmatchcase(tag, p) for p in route.tags for tag in outcome.tags)


class _Share:
    """One route's part of the run: its counters and first failures; with ``on = "new"``
    and a run history, its failures and recoveries too (what started or stopped failing)."""

    __slots__ = ("accounts", "failures", "hook", "remembered", "route")

    def __init__(self, route: NotifyRoute, hook: Webhook) -> None:
        self.route, self.hook = route, hook
        self.accounts: dict[str, AccountStats] = {}
        self.failures: list[Outcome] = []
        self.remembered: list[Outcome] | None = None


class RoutedNotify:
    """The sink of the inventory's routes: each outcome counted in every route it matches."""

    def __init__(
        self,
        routes: Sequence[tuple[NotifyRoute, Webhook]],
        start: Start,
        *,
        timeout: float,
        redact: Callable[[str], str] = str,
        recall: Recall | None = None,
    ) -> None:
        self.shares = [_Share(route, hook) for route, hook in routes]
        self.start, self.timeout, self.redact = start, timeout, redact
        # ``on = "new"`` needs what the history knew as the run started; without one, such a
        # route is sent as ``failure`` (as --notify-on new is).
        self.recall = recall if recall is not None and recall.on else None
        if self.recall is not None:
            for share in self.shares:
                if share.route.on == "new":
                    share.remembered = []

    def add(self, outcome: Outcome) -> None:
        for share in self.shares:
            if route_matches(share.route, outcome):
                stats = share.accounts.get(outcome.account)
                if stats is None:
                    stats = share.accounts[outcome.account] = AccountStats()
                stats.add(outcome.result)
                if outcome.result == "failed" and len(share.failures) < MAX_FAILED:
                    share.failures.append(outcome)
                if share.remembered is not None and self.recall is not None and self.recall.concerns(outcome):
                    share.remembered.append(outcome)

    def flush(self) -> None:
        pass

    def close(self, end: End | None) -> None:
        if end is None:
            return
        messages: list[tuple[Webhook, bytes]] = []
        mode = self.start.mode
        for share in self.shares:
            whole = end.summary
            summary = Summary(
                accounts=share.accounts,
                duration_s=whole.duration_s,
                stopped=whole.stopped,
                started_at=whole.started_at,
                undeclared=[u for u in whole.undeclared if u.account in share.accounts],
            )
            on: NotifyOn = share.route.on  # type: ignore[assignment]  # checked by the loader
            memory = self.recall.summarize(share.remembered) if self.recall and share.remembered is not None else None
            if not wanted(on, summary, memory):
                continue
            code = exit_code(summary, mode, False)
            if code == EXIT_OK and end.code() == EXIT_OUTPUT_LOST:
                code = EXIT_OUTPUT_LOST  # an output lost is every route's news
            fmt: NotifyFormat = share.route.format  # type: ignore[assignment]
            build = slack_message if fmt == "slack" else json_message
            doc = build(
                summary,
                mode,
                code,
                list(itertools.islice(share.failures, MAX_FAILED)),
                inventory=self.start.inventory,
                redact=self.redact,
                memory=memory,
            )
            messages.append((share.hook, msgspec.json.encode(doc)))
        if messages:
            send_each(messages, self.timeout)


def send_each(messages: Sequence[tuple[Webhook, bytes]], timeout: float) -> list[Delivery]:
    """Each message to its own webhook, side by side, all within ``timeout``; logged, never raised."""
    import anyio

    total = timeout if math.isfinite(timeout) and timeout > 0 else 5.0

    async def all_of() -> list[Delivery]:
        out: list[Delivery] = [Delivery(h.host, False, 0, None, "timed out") for h, _ in messages]

        async def one(i: int, hook: Webhook, body: bytes) -> None:
            [out[i]] = await _send([hook], body, total - min(RESERVE, total * 0.1))

        async with anyio.create_task_group() as tg:
            for i, (hook, body) in enumerate(messages):
                tg.start_soon(one, i, hook, body)
        return out

    try:
        deliveries = anyio.run(all_of)  # asyncio's own loop, as every notification (notify.notify)
    except Exception as exc:  # a bug of ours must not cost the run its exit code
        log.error("notification not sent: internal error (%s); the run's exit code is unchanged", type(exc).__name__)
        return []
    log_deliveries(deliveries)
    return deliveries
