"""The outcome ledger of a run: one outcome per integration, the counters, the failure budgets.

The engine hands every outcome here; the ledger keeps it from being recorded twice,
passes it through the run's sanitiser (redaction, control characters) before any sink
sees it, counts it, and says when a failure budget (the run's, or an account's) is
reached. It knows nothing of scheduling or HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from batchsync.outcome import AccountStats, Outcome, Summary

Reached = Literal["run", "account"] | None


class Ledger:
    """Records outcomes. ``record`` returns which failure budget this outcome reached, if any."""

    __slots__ = (
        "_account_failures",
        "_account_limits",
        "_failures",
        "_max_failures",
        "_on_outcome",
        "_sanitize",
        "finished",
        "summary",
    )

    def __init__(
        self,
        accounts: Iterable[str],
        on_outcome: Callable[[Outcome], None],
        *,
        max_failures: int | None = None,
        account_limits: Mapping[str, int] | None = None,
        sanitize: Callable[[Outcome], Outcome] | None = None,
    ) -> None:
        self.summary = Summary({name: AccountStats() for name in accounts})
        self.finished: set[int] = set()
        self._on_outcome = on_outcome
        self._sanitize = sanitize
        self._max_failures = max_failures
        self._account_limits = dict(account_limits or {})
        self._failures = 0
        self._account_failures: dict[str, int] = {}

    def stats(self, account: str) -> AccountStats:
        found = self.summary.accounts.get(account)
        if found is None:
            found = self.summary.accounts[account] = AccountStats()
        return found

    def done(self, integration_id: int) -> bool:
        return integration_id in self.finished

    def record(self, outcome: Outcome) -> Reached:
        """Count and hand on ``outcome`` unless this integration already has one."""
        if outcome.integration_id in self.finished:
            return None
        self.finished.add(outcome.integration_id)
        # What a server wrote (an error, a warning, the "before" of a diff) is made safe;
        # an outcome with none of it (unchanged, no warning: most of a run) needs nothing.
        o = outcome
        from_server = o.error is not None or o.reason or o.warnings or o.changes or o.mapping_changes
        if self._sanitize is not None and from_server:
            outcome = self._sanitize(outcome)
        self.stats(outcome.account).add(outcome.result)
        reached: Reached = None
        if outcome.result == "failed":
            self._failures += 1
            limit = self._account_limits.get(outcome.account)
            if limit is not None:
                n = self._account_failures.get(outcome.account, 0) + 1
                self._account_failures[outcome.account] = n
                if n == limit:
                    reached = "account"
            if self._max_failures is not None and self._failures == self._max_failures:
                reached = "run"
        self._on_outcome(outcome)
        return reached

    @property
    def failures(self) -> int:
        return self._failures

    def account_failures(self, account: str) -> int:
        return self._account_failures.get(account, 0)
