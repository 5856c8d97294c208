"""What each answer leads to, for one integration: the next request, a retry, or its outcome.

The per-integration half of :class:`~batchsync.engine.engine.Engine` (a base class of it,
so that a step costs a method call as before): after a read, the diff and the mapping
guard decide the writes; after a failure, a retry on the account's budget, the breaker,
or the integration's end; every integration ends in exactly one outcome, recorded by the
ledger.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from batchsync.diff import diff, mapping_diff, mapping_guard
from batchsync.engine.accounts import (
    EMPTY_REFUSED,
    GET_MAPPING,
    GET_STATUSES,
    PAGE,
    POST_MAPPING,
    POST_STATUSES,
    AccountState,
    Step,
    Work,
    error_kind,
)
from batchsync.engine.ledger import Ledger, Reached
from batchsync.engine.limits import log_slowed
from batchsync.engine.options import Options
from batchsync.model import PRESTASHOP_V2, Job
from batchsync.outcome import ErrorInfo, Outcome, Result, Summary, Undeclared
from batchsync.sendcloud.errors import (
    ApiError,
    AuthError,
    InvalidResponseError,
    ServerError,
    ThrottledError,
    TransportError,
)
from batchsync.sendcloud.listing import ListBoundError
from batchsync.text import one_line
from batchsync.wire import CurrentMapping, CurrentStatus, Integration, ListedPage

log = logging.getLogger("batchsync.engine")

# A saved plan's one step (see Engine): the integration, the statuses read (None: exactly
# its desired ones, the diff found none to change), the mapping read; an ErrorInfo fails it.
BeforeWrite = Callable[[Job, "tuple[CurrentStatus, ...] | None", CurrentMapping], "ErrorInfo | None"]


class Steps:
    """The integration's steps; :class:`~batchsync.engine.engine.Engine` holds the state they use."""

    # Set by Engine.__init__ and Engine.run.
    options: Options
    ledger: Ledger
    accts: dict[str, AccountState]
    rng: random.Random
    stopping: str | None
    on_snapshot: Callable[[Job, tuple[CurrentStatus, ...], CurrentMapping], None] | None
    before_write: BeforeWrite | None
    _clock: Callable[[], float]
    _t0: float
    _wall0: float
    _seq: int
    _total: int
    _in_flight: dict[int, Step]
    _throttled: set[str]
    _warnings: dict[int, str]
    _snapshots: dict[int, tuple[CurrentStatus, ...]]
    _reads_done: int
    _writes_found: int
    declared: Mapping[str, frozenset[int]] | None
    redact: Callable[[str], str] | None  # what a server wrote that no outcome carries (undeclared shops)

    if TYPE_CHECKING:  # the scheduler's, in Engine

        @property
        def summary(self) -> Summary: ...

        def stop(self, reason: str = "interrupted") -> None: ...

        def _wake_all(self) -> None: ...

        def _enlist(self, acc: AccountState, job: Job) -> None: ...

    # -- what a response leads to --------------------------------------------------

    def _advance(self, acc: AccountState, step: Step, result: Any, now: float) -> None:
        op = step.op
        if op == PAGE:
            self._on_page(acc, result, now)
            return
        work = step.work
        assert work is not None
        job = work.job
        if op == GET_STATUSES:
            acc.reads_done += 1
            self._reads_done += 1
            if self.on_snapshot is not None:
                self._snapshots[job.integration_id] = result
                self._follow(acc, Step(GET_MAPPING, acc, work), now)
                return
            change = work.change = diff(job.desired.index, result)
            if change.changes:  # not `if change:`, a call of Diff.__bool__ per read
                acc.writes_found += 1
                self._writes_found += 1
                if self.before_write is not None:  # a saved plan: it needs what was read, the mapping too
                    work.current = result
                    self._follow(acc, Step(GET_MAPPING, acc, work), now)
                    return
            # The mapping costs a read only where it matters: a declared one to compare,
            # or a removal that the current mapping may point at.
            if job.mapping is not None or change.removed:
                self._follow(acc, Step(GET_MAPPING, acc, work), now)
                return
            self._decide(acc, work, None, now)
        elif op == GET_MAPPING:
            if self.on_snapshot is not None:
                self.on_snapshot(job, self._snapshots.pop(job.integration_id), result)
                self._finish_work(acc, work, "unchanged", now)
                return
            self._decide(acc, work, result, now)
        elif op == POST_STATUSES:
            work.statuses_written = True
            if work.mapping_changes:
                self._follow(acc, Step(POST_MAPPING, acc, work), now)
            else:
                self._finish_work(acc, work, "changed", now)
        else:  # POST_MAPPING
            acc.stats.mappings_written += 1
            self._finish_work(acc, work, "changed", now)

    def _decide(self, acc: AccountState, work: Work, mapping: CurrentMapping | None, now: float) -> None:
        """After the reads: refuse, report, or queue the writes."""
        opts = self.options
        job = work.job
        change = work.change
        assert change is not None
        changed = change.changes  # what `if change:` tests, without a call of Diff.__bool__
        if mapping is not None:
            if job.mapping is not None:
                # What the statuses write adds back (a "+" of this diff) revalidates the items
                # that point at it: no mapping write for those.
                revived = {c.external_id for c in change.changes if c.op == "+"}
                work.mapping_changes = mapping_diff(job.mapping.as_dict(), mapping, revived)
                for m in work.mapping_changes:
                    if m.after is None and m.before is not None and m.was_valid:
                        # Often a set's mapping line removed, not meant for every shop on it.
                        work.warnings.append(
                            f"the mapping write unmaps {m.category} (mapped to {m.before!r} now): that category "
                            "no longer reaches the shop; if it is meant, nothing to do"
                        )
            else:
                for item in mapping.mapping:
                    if item.external_id is not None and not item.is_valid:
                        work.warnings.append(
                            f"mapping {item.status_category} points at {item.external_id!r}, a status that "
                            "no longer exists: declare a mapping to repair it"
                        )
                broken = mapping_guard(mapping, job.desired.index.keys()) if changed else ()
                if broken:
                    which = ", ".join(f"{m.category} -> {m.before!r}" for m in broken)
                    if not opts.allow_invalid_mapping:
                        acc.stats.refused += 1
                        detail = (
                            f"writing these statuses would leave the shop's mapping invalid ({which}, "
                            "removed by the write): declare a mapping for this integration that repairs it, "
                            "or pass --allow-invalid-mapping"
                        )
                        self._fail_info(acc, work, ErrorInfo("refused", detail=detail), now)
                        return
                    work.warnings.append(f"the write leaves the mapping invalid ({which}): --allow-invalid-mapping")
        if not changed and not work.mapping_changes and opts.read_first:
            self._finish_work(acc, work, "unchanged", now)
            return
        if (changed or not opts.read_first) and not job.desired.count and not opts.allow_delete_all:
            self._fail_info(acc, work, ErrorInfo("refused", detail=EMPTY_REFUSED), now)
            return
        if self.before_write is not None:
            assert mapping is not None  # read whenever there is something to change (above)
            refused = self.before_write(job, work.current if changed else None, mapping)
            if refused is not None:
                self._fail_info(acc, work, refused, now)
                return
        if not opts.write:
            self._finish_work(acc, work, "changed", now)
            return
        # Statuses first: a mapping may point at a status this very write adds. Unread
        # (--no-read), the statuses are written whatever they are.
        first = POST_STATUSES if changed or not opts.read_first else POST_MAPPING
        self._follow(acc, Step(first, acc, work), now, last=True)

    def _follow(self, acc: AccountState, step: Step, now: float, at: float = -math.inf, last: bool = False) -> None:
        """Queue the next request of an integration already begun: first in line among the
        account's reads or writes (``last``: behind them), or at ``at`` for a retry.

        An account closed meanwhile (its credentials refused, its failure budget spent,
        while this request was in flight) takes nothing more: the integration ends here.
        """
        if acc.fatal is not None or acc.stopped is not None:
            if step.work is not None:
                if acc.fatal is not None:
                    self._fail(acc, step.work, acc.fatal, now)
                else:
                    self._skip(step.work, acc.stopped or "", now)
            return
        if at > now:
            self._seq += 1
            heapq.heappush(acc.delayed, (at, self._seq, step))
        elif step.op >= POST_STATUSES:
            (acc.write_q.append if last else acc.write_q.appendleft)(step)
        else:
            (acc.read_q.append if last else acc.read_q.appendleft)(step)

    def _on_page(self, acc: AccountState, page: ListedPage, now: float) -> None:
        items, next_url = page.items, page.next_url
        declared = self.declared.get(acc.name) if self.declared is not None else None
        for item in items:
            job = acc.unconfirmed.pop(item.id, None)
            if job is not None:
                self._confirm(acc, job, item, now)
            elif declared is not None and item.system == PRESTASHOP_V2 and item.id not in declared:
                self._undeclared(acc, item)
        try:  # the same bounds as import's, the last page's ids too: an id listed twice is no list
            if acc.listing is not None:
                acc.listing.add(page, now)
        except ListBoundError as exc:
            if declared is not None:  # nor are what it said undeclared
                self.summary.undeclared[:] = [u for u in self.summary.undeclared if u.account != acc.name]
            self._end_preflight(acc, now, exc)
            return
        if next_url and (acc.unconfirmed or declared is not None):
            self._follow(acc, Step(PAGE, acc, None, next_url), now)
            return
        self._end_preflight(acc, now, None)

    def _undeclared(self, acc: AccountState, item: Integration) -> None:
        if item.id in acc.account.ignore_integrations:
            return
        name = one_line(item.shop_name, self.redact, limit=200) if item.shop_name else None
        url = one_line(item.shop_url, self.redact, limit=500) if item.shop_url else None
        self.summary.undeclared.append(Undeclared(acc.name, item.id, name or None, url or None))

    def _confirm(self, acc: AccountState, job: Job, item: Integration, now: float) -> None:
        if item.system is not None and item.system != PRESTASHOP_V2:
            detail = (
                f"integration {job.integration_id} is a {item.system} integration: only PrestaShop V2 "
                "integrations have shop order statuses"
            )
            self._fail_info(acc, Work(job, now), ErrorInfo("not_supported", detail=detail), now)
            return
        if item.failing_since:
            self._warnings[job.integration_id] = (
                f"the shop connection has been failing since {item.failing_since}: "
                "its statuses may not matter until it is fixed"
            )
        self._enlist(acc, job)

    def _end_preflight(self, acc: AccountState, now: float, error: ApiError | None) -> None:
        rest = list(acc.unconfirmed.values())
        acc.unconfirmed.clear()
        acc.listing = None
        if error is not None:
            log.warning(
                "account %s: cannot list its integrations (%s); going on without the pre-flight check",
                acc.name,
                error,
                extra={"fields": {"account": acc.name}},
            )
            for job in rest:
                self._enlist(acc, job)
            return
        for job in rest:
            detail = f"integration {job.integration_id} is not one of account {acc.name}'s integrations"
            self._fail_info(acc, Work(job, now), ErrorInfo("not_found", detail=detail), now)

    # -- failures ------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        opts = self.options
        ceiling = min(opts.backoff_max, opts.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def _failed_attempt(self, acc: AccountState, step: Step, error: ApiError, now: float) -> None:
        opts = self.options
        if isinstance(error, AuthError):
            self._account_fatal(acc, error, now)
            self._give_up(acc, step, error, now)
            return
        if not error.retryable or (step.op == PAGE and isinstance(error, InvalidResponseError)):
            # A list in a shape we do not know will not change shape on a retry: go on
            # without the pre-flight at once rather than hold up the account's reads.
            self._give_up(acc, step, error, now)
            return
        elapsed = now - step.first
        left = opts.retry_max_time - elapsed
        write = step.op >= POST_STATUSES
        if isinstance(error, ThrottledError):
            bucket = acc.writes if write else acc.reads
            acc.stats.throttled += 1
            # Never parked past what is left of --retry-max-time, whatever Retry-After says.
            pause = min(error.retry_after if error.retry_after is not None else 1.0 / bucket.rate, max(0.0, left))
            if bucket.on_throttled(now, step.sent, pause):
                log_slowed(log, acc.name, "writes" if write else "reads", bucket)
        elif isinstance(error, (ServerError, TransportError)):
            # A request sent before the breaker last tripped is part of the failures that
            # tripped it: one incident pauses the account once, not once per request in flight.
            if step.sent >= acc.tripped_at:
                acc.consecutive += 1
            if acc.consecutive >= opts.breaker_threshold:
                acc.breaker_trips += 1
                acc.consecutive = 0
                acc.tripped_at = now
                pause = min(opts.backoff_max, opts.breaker_pause * 2.0 ** (acc.breaker_trips - 1))
                acc.paused_until = max(acc.paused_until, now + pause)
                log.warning(
                    "account %s: %d server-side failures in a row; pausing it for %.1fs",
                    acc.name,
                    opts.breaker_threshold,
                    pause,
                    extra={"fields": {"account": acc.name, "delay": round(pause, 3)}},
                )
        delay = error.retry_after if error.retry_after is not None else self._backoff(step.tries)
        if step.tries >= opts.max_attempts or elapsed + delay > opts.retry_max_time:
            self._give_up(acc, step, error, now)
            return
        fields: dict[str, object] = {"account": acc.name, "attempt": step.tries + 1, "delay": round(delay, 3)}
        if step.work is not None:
            fields["integration_id"] = step.work.job.integration_id
        log.info(
            "%s %s: %s; retrying in %.2fs (attempt %d of %d)",
            error.method,
            error.url,
            error,
            delay,
            step.tries + 1,
            opts.max_attempts,
            extra={"fields": fields},
        )
        self._follow(acc, step, now, at=now + delay)

    def _give_up(self, acc: AccountState, step: Step, error: ApiError, now: float) -> None:
        if step.work is not None:
            self._fail(acc, step.work, error, now)
        elif step.op == PAGE and acc.fatal is None:
            self._end_preflight(acc, now, error)

    def _account_fatal(self, acc: AccountState, error: AuthError, now: float) -> None:
        if acc.fatal is not None:
            return
        acc.fatal = error
        log.error(
            "account %s: credentials refused (%s); its other integrations are not attempted",
            acc.name,
            error.detail,
            extra={"fields": {"account": acc.name}},
        )
        info = ErrorInfo(
            error_kind(error),
            error.http_status,
            error.code,
            f"not attempted: the account's credentials were refused earlier in this run ({error.detail})",
            error.pointer,
        )
        for work in self._drain(acc, now):
            self._fail_info(acc, work, info, now)

    def _drain(self, acc: AccountState, now: float) -> list[Work]:
        """Every integration of ``acc`` that is neither in flight nor done, taken off its queues."""
        works: list[Work] = []
        for q in (acc.read_q, acc.write_q):
            works.extend(s.work for s in q if s.work is not None)
            q.clear()
        works.extend(s.work for _, _, s in acc.delayed if s.work is not None)
        acc.delayed.clear()
        for jobs in (acc.pending, acc.direct):
            works.extend(Work(j, now) for j in jobs)
            jobs.clear()
        works.extend(Work(j, now) for j in acc.unconfirmed.values())
        acc.unconfirmed.clear()
        self._throttled.discard(acc.name)
        return works

    def _fail(self, acc: AccountState, work: Work, error: ApiError, now: float) -> None:
        info = ErrorInfo(error_kind(error), error.http_status, error.code, error.detail, error.pointer)
        self._fail_info(acc, work, info, now)

    def _internal(self, acc: AccountState, step: Step, exc: Exception, now: float) -> None:
        iid = step.work.job.integration_id if step.work is not None else None
        log.exception(
            "account %s: internal error", acc.name, extra={"fields": {"account": acc.name, "integration_id": iid}}
        )
        detail = f"internal error, please report it: {type(exc).__name__}: {exc}"[:300]
        if step.work is not None:
            self._fail_info(acc, step.work, ErrorInfo("internal", detail=detail), now)
        elif step.op == PAGE:
            self._end_preflight(acc, now, ApiError(detail))

    # -- outcomes ------------------------------------------------------------------

    def _outcome(
        self, work: Work, result: Result, now: float, error: ErrorInfo | None = None, reason: str | None = None
    ) -> Outcome:
        change = work.change
        warnings = tuple(work.warnings)
        pre = self._warnings.pop(work.job.integration_id, None) if self._warnings else None
        if pre is not None:
            warnings = (pre, *warnings)
        job = work.job
        t0 = self._wall0 - self._t0
        # Positional, in the struct's field order, and rounded by int(): an outcome per
        # integration, and keywords and round() cost more than the rest of it together.
        # Times are never negative, so int(x + 0.5) rounds to nearest.
        return Outcome(
            job.integration_id,
            job.account,
            result,
            change.added if change is not None else 0,
            change.changed if change is not None else 0,
            change.removed if change is not None else 0,
            work.attempts,
            int((now - work.started) * 10_000 + 0.5) / 10,  # duration_ms, to 0.1 ms
            error,
            reason,
            change.changes if change is not None else (),
            work.mapping_changes,
            warnings,
            job.tags,
            int((t0 + work.started) * 1000 + 0.5) / 1000,  # started_at, to the ms
            int((t0 + now) * 1000 + 0.5) / 1000,  # ended_at
            job.name,
        )

    def _finish_work(self, acc: AccountState, work: Work, result: Result, now: float) -> None:
        self._record(acc, self._outcome(work, result, now))

    def _fail_info(self, acc: AccountState, work: Work, info: ErrorInfo, now: float) -> None:
        self._record(acc, self._outcome(work, "failed", now, info))

    def _record(self, acc: AccountState, outcome: Outcome) -> None:
        reached: Reached = self.ledger.record(outcome)
        if reached == "run":
            self.stop(f"stopped after {self.ledger.failures} failures (--max-failures)")
        elif reached == "account" and acc.stopped is None:
            budget = self.options.max_failures_per_account
            reason = f"account {acc.name} reached --max-failures-per-account {budget}"
            acc.stopped = reason
            log.warning(
                "%s (%d failed); its remaining integrations are skipped",
                reason,
                self.ledger.account_failures(acc.name),
                extra={"fields": {"account": acc.name}},
            )
            now = self._clock()
            for work in self._drain(acc, now):
                self._skip(work, reason, now)
        if len(self.ledger.finished) >= self._total:
            self._wake_all()

    def _skip(self, work: Work, reason: str, now: float) -> None:
        if work.statuses_written:
            reason += " (its statuses were written; its mapping was not)"
        self.ledger.record(self._outcome(work, "skipped", now, reason=reason))

    def _finish(self, jobs: Sequence[Job]) -> None:
        """Whatever ended the run (done, stopped, cancelled, a bug), every job gets its line."""
        now = self._clock()
        reason = self.stopping or "interrupted"
        for acc in self.accts.values():
            for work in self._drain(acc, now):
                self._skip(work, acc.stopped or reason, now)
        for step in list(self._in_flight.values()):
            if step.work is not None:
                write = step.op >= POST_STATUSES
                cut = " (cancelled in flight: it may or may not have been applied)" if write else ""
                self._skip(step.work, reason + cut, now)
        self._in_flight.clear()
        for job in jobs:
            if not self.ledger.done(job.integration_id):
                self._skip(Work(job, now), reason, now)
        for name, acc in self.accts.items():
            stats = self.ledger.stats(name)
            if acc.reads.slowed:
                stats.read_rate = round(acc.reads.rate * 60, 1)
            if acc.writes.slowed:
                stats.write_rate = round(acc.writes.rate * 60, 1)
        self.summary.duration_s = now - self._t0
