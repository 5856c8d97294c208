"""The JSON-lines reports of several shards read as if one run had done it all (``report merge``).

One set of outcomes, one summary and one exit code by a single run's rules, which the
command hands to the sinks a run drives. A shard whose report is missing, unusable, from
an earlier run or cut short is named, and the integrations it should have covered (known
from the ``shard`` block of any report's header) count as not done: skipped, exit 3.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Iterable, Sequence

import msgspec

from batchsync.exitcodes import EXIT_CHANGES, EXIT_INTERRUPTED, exit_code
from batchsync.outcome import RESULTS, AccountStats, Outcome, Result, Summary
from batchsync.outputs.report import Report
from batchsync.outputs.sink import Part, State
from batchsync.text import display


class MergeError(ValueError):
    """The reports cannot be read as one run (different splits, modes, a shard twice...): exit 2."""


_GLOB = re.compile(r"[*?[]")


def expand(patterns: Iterable[str]) -> list[str]:
    """REPORT arguments to paths. A pattern is expanded here too (a Kubernetes container's
    args pass through no shell); one that matches nothing stays, to be named as missing."""
    paths: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        found = [pattern] if os.path.lexists(pattern) or not _GLOB.search(pattern) else sorted(glob.glob(pattern))
        for path in found or [pattern]:
            key = os.path.realpath(path)
            if key not in seen:  # the same file named twice is read once
                seen.add(key)
                paths.append(path)
    return paths


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


class MergedSummary(Summary):
    """A run's summary plus what no report accounts for, counted as skipped (not done)."""

    not_done: int = 0

    def total(self, result: Result) -> int:
        return super().total(result) + (self.not_done if result == "skipped" else 0)


class Merged(msgspec.Struct):
    mode: str
    summary: MergedSummary
    outcomes: list[Outcome]
    parts: list[Part]
    detailed: bool = False  # a plan report used --detailed-exitcode
    unknown: bool = False  # a missing part's share of the work is unknown

    def span(self) -> tuple[float, float]:
        """(first start, last end) of the outcomes' times; (0, 0) when none has times."""
        starts = [o.started_at for o in self.outcomes if o.started_at]
        ends = [o.ended_at for o in self.outcomes if o.ended_at]
        started = min(starts, default=0.0)
        return started, max([*ends, started + self.summary.duration_s]) if started else 0.0

    @property
    def exit_code(self) -> int:
        if self.unknown or any(p.state == "cut short" for p in self.parts):
            return EXIT_INTERRUPTED
        return exit_code(self.summary, self.mode, self.detailed)


def _consistent(usable: Sequence[Report], broken: Sequence[Report]) -> None:
    """Refuse reports that cannot be one run: checked on every current report whose header was read."""
    reports = [*usable, *broken]
    modes = {r.mode for r in reports if r.mode is not None}
    if len(modes) > 1:
        raise MergeError(f"the reports mix {' and '.join(sorted(modes))} runs")
    sharded = [r for r in reports if r.shard is not None]
    if not sharded:
        return
    first = sharded[0]
    assert first.shard is not None
    for r in usable:
        if r.shard is None:
            kind = "has no header (an older report)" if r.header is None else "is not a shard's report"
            raise MergeError(f"{display(r.path)} {kind}, {display(first.path)} is: not one sharded run")
    by_index: dict[int, Report] = {}
    for r in sharded:
        s = r.shard
        assert s is not None
        if (s.count, s.integrations) != (first.shard.count, first.shard.integrations):
            raise MergeError(
                f"{display(r.path)} and {display(first.path)} come from different splits "
                f"({s.count} shards {list(s.integrations)} vs {first.shard.count} shards "
                f"{list(first.shard.integrations)}): not one run"
            )
        if s.index in by_index:
            raise MergeError(
                f"shard {s.index}/{s.count} has two reports: {display(by_index[s.index].path)} and {display(r.path)}"
            )
        by_index[s.index] = r


def _tag(r: Report) -> str | None:
    return f"{r.shard.index}/{r.shard.count}" if r.shard is not None else None


def merge(reports: Sequence[Report], *, now: float | None = None, max_age: float | None = None) -> Merged:
    """Combine reports as if one run had done it all; raises :class:`MergeError`.

    ``max_age`` (seconds): a report whose run started longer ago than that is from an
    earlier run, left behind where this run's report should be, and counts as missing.
    """
    if not reports:
        raise MergeError("no report to merge")
    clock = time.time() if now is None else now
    usable: list[Report] = []
    broken: list[Report] = []  # this run's, but unreadable: missing, not a report, empty
    stale: list[Report] = []  # readable, but from an earlier run
    for r in reports:
        if r.problem is None and r.header is None and not r.outcomes and r.summary is None:
            r = msgspec.structs.replace(r, problem="empty: the run wrote nothing before it stopped")
        if r.problem is None and max_age is not None:
            started = r.header.started_at if r.header is not None and r.header.started_at is not None else r.mtime
            if started is not None and clock - started > max_age:
                reason = f"started {_age(clock - started)} ago (--max-age {_age(max_age)})"
                stale.append(msgspec.structs.replace(r, problem=reason))
                continue
        (usable if r.problem is None else broken).append(r)
    _consistent(usable, broken)

    owner: dict[int, str] = {}
    for r in usable:
        for o in r.outcomes:
            if o.integration_id in owner:
                raise MergeError(
                    f"integration {o.integration_id} is in both {display(owner[o.integration_id])} "
                    f"and {display(r.path)}"
                )
            owner[o.integration_id] = r.path

    block = next((r.shard for r in (*usable, *broken, *stale) if r.shard is not None), None)
    parts: list[Part] = []
    accounts: dict[str, AccountStats] = {}
    stopped: list[str] = []
    covered: set[int] = set()
    left: int | None
    usable.sort(key=lambda r: (r.shard.index if r.shard is not None else -1, r.path))
    for r in usable:
        if r.shard is not None:
            covered.add(r.shard.index)
        # The results are counted from the outcome lines, whatever the summary line says
        # (a report edited, or damaged, must not show failed=0 over a failed line); its
        # requests, 429s and rates only the summary knows.
        summed = r.summary.accounts if r.summary is not None else r.tally
        for name in sorted({*summed, *r.tally}):
            into = accounts.setdefault(name, AccountStats())
            rows = r.tally.get(name)
            if rows is not None:
                for field in RESULTS:
                    setattr(into, field, getattr(into, field) + getattr(rows, field))
            stats = summed.get(name)
            if stats is None:
                continue
            for counter in ("throttled", "requests"):
                setattr(into, counter, getattr(into, counter) + max(0, getattr(stats, counter)))
            # The rates 429s brought an account to, for the recap's "limits too high": an
            # account is in one shard; were it in two, the lower rate is the one that worked.
            for rate, declared in (("read_rate", "read_declared"), ("write_rate", "write_declared")):
                mine, theirs = getattr(into, rate), getattr(stats, rate)
                if theirs is not None:
                    setattr(into, rate, theirs if mine is None else min(mine, theirs))
                if getattr(stats, declared) is not None:
                    setattr(into, declared, getattr(stats, declared))
        if r.summary is not None:
            parts.append(Part(_tag(r), r.path, "complete", recorded=len(r.outcomes)))
            if r.summary.stopped:
                where = f"shard {_tag(r)}" if r.shard is not None else display(r.path)
                stopped.append(f"{where}: {r.summary.stopped}")
            continue
        expected = r.header.selected if r.header is not None else None
        if expected is None and r.shard is not None and r.shard.integrations:
            expected = r.shard.integrations[r.shard.index]
        rest = None if expected is None else max(0, expected - len(r.outcomes))
        parts.append(Part(_tag(r), r.path, "cut short", "no summary line", len(r.outcomes), rest))

    # Every shard that no usable report covers is named, with the files that claimed it.
    placed: set[int] = set()
    leftovers: tuple[tuple[list[Report], State], ...] = ((broken, "unusable"), (stale, "from an earlier run"))
    if block is not None:
        for index in range(block.count):
            if index in covered:
                continue
            left = block.integrations[index] if block.integrations else None
            shard = f"{index}/{block.count}"
            claims = [
                (r, state)
                for rs, state in leftovers
                for r in rs
                if r.shard is not None and (r.shard.index, r.shard.count) == (index, block.count)
            ]
            for r, state in claims:
                placed.add(id(r))
                parts.append(Part(shard, r.path, state, r.problem, 0, left))
                left = 0  # the shard's work is counted once
            if not claims:
                parts.append(Part(shard, None, "missing", "no report", 0, left))
    for rs, state in leftovers:
        for r in rs:
            if id(r) in placed:
                continue
            kind: State = "missing" if r.problem == "no such file" else state
            # With the split known, every shard is accounted for above and this file adds
            # nothing more; without it, what the file should have covered is unknown.
            parts.append(Part(_tag(r), r.path, kind, r.problem, 0, 0 if block is not None else None))
    stopped += [p.describe() for p in parts if p.gap]

    mode = next((r.mode for r in (*usable, *broken, *stale) if r.mode is not None), "apply")
    starts = [r.header.started_at for r in usable if r.header is not None and r.header.started_at is not None]
    if usable and len(starts) == len(usable):
        ends = []
        for r in usable:
            assert r.header is not None and r.header.started_at is not None
            if r.summary is not None:
                ends.append(r.header.started_at + r.summary.duration_s)
            else:
                ends.append(r.last_ended_at if r.last_ended_at is not None else r.header.started_at)
        duration = max(ends) - min(starts)  # the shards ran side by side: first start to last end
    else:
        duration = max((r.summary.duration_s for r in usable if r.summary is not None), default=0.0)
    summary = MergedSummary(
        accounts=accounts,
        duration_s=max(0.0, duration),
        stopped="; ".join(stopped) or None,
        not_done=sum(p.not_done or 0 for p in parts),
        # An account is in one shard; were it listed by two reports, it counts once.
        undeclared=list(
            {(u.account, u.integration_id): u for r in usable if r.summary for u in r.summary.undeclared}.values()
        ),
    )
    return Merged(
        mode,
        summary,
        [o for r in usable for o in r.outcomes],
        parts,
        detailed=any(r.summary is not None and r.summary.exit_code == EXIT_CHANGES for r in usable),
        unknown=any(p.not_done is None for p in parts),
    )
