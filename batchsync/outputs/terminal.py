"""The run for a person at a terminal: an outcome's lines as it finishes, the recap (per
account or per tag), the budget table of a plan, the run's summary document,
:class:`Screen`, the buffered stdout those lines go through, and :class:`Terminal`, the
sink that writes them.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

import msgspec

from batchsync.diff import Change, MappingChange
from batchsync.model import FLOOR, Limits
from batchsync.outcome import RESULTS, Outcome, Summary, Undeclared, label, shop
from batchsync.outputs.health import HealthSeen, column
from batchsync.outputs.sink import End, Lost, Start
from batchsync.outputs.spool import Spool
from batchsync.outputs.streams import discard_stdout, json_for
from batchsync.text import display, escape_controls, quoted

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from batchsync.outputs.history import Recall

UNTAGGED = "(untagged)"  # the recap-by-tag row of integrations without a tag

# Past this much text waiting to be printed (a fleet's first run, or -v), the waiting lines
# go to an unnamed temp file (TMPDIR) and memory keeps three numbers per outcome; a temp
# file that cannot be written (a full disk) keeps the rest in memory, as before.
SPILL_CHARS = 4 << 20


class TagTally:
    """Result counts per tag, fed one outcome at a time (``--recap-by tag``).

    An integration with several tags counts under each, one with none under
    :data:`UNTAGGED`: the rows answer "what happened to client X", so together they may
    add up to more than the run's total.
    """

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, int]] = {}

    def add(self, outcome: Outcome) -> None:
        for tag in dict.fromkeys(outcome.tags) or (UNTAGGED,):
            counts = self.groups.get(tag)
            if counts is None:
                counts = self.groups[tag] = dict.fromkeys(RESULTS, 0)
            counts[outcome.result] += 1


def _group_order(name: str) -> tuple[bool, str]:
    return (name == UNTAGGED, name)


def _rate(per_minute: float) -> str:
    return f"{per_minute:.0f}" if per_minute >= 10 else f"{per_minute:.2g}"


def limits_too_high(summary: Summary) -> list[dict[str, Any]]:
    """The meters that 429s slowed below the rate the inventory declares, with the rate the
    run settled on: one entry per account and meter, each with its recap line (``text``)."""
    out: list[dict[str, Any]] = []
    for name in sorted(summary.accounts):
        stats = summary.accounts[name]
        for meter, worked, declared in (
            ("reads", stats.read_rate, stats.read_declared),
            ("writes", stats.write_rate, stats.write_declared),
        ):
            if worked is None:
                continue
            setting = f"{meter}_per_minute"
            # The engine never goes below FLOOR of the declared rate (rounded to 0.1 a minute).
            at_floor = declared is not None and worked <= round(declared * FLOOR, 1) + 1e-6
            said = f"declared {_rate(declared)}/min, " if declared is not None else ""
            how = f"slowed to its floor, {_rate(worked)}/min" if at_floor else f"worked at {_rate(worked)}/min"
            out.append(
                {
                    "account": name,
                    "meter": meter,
                    "declared_per_minute": declared,
                    "worked_per_minute": worked,
                    "at_floor": at_floor,
                    "setting": setting,
                    "text": f"{display(name)}: 429s on {meter}: {said}{how}: lower {setting}",
                }
            )
    return out


def summary_document(
    summary: Summary, mode: str, by_tag: Mapping[str, Mapping[str, int]] | None = None
) -> dict[str, Any]:
    """The run as one JSON object: totals, per-account stats, the recap's groups (per
    account, or per tag when ``by_tag`` is given) and the limits that proved too high."""
    totals: dict[str, int] = {r: summary.total(r) for r in RESULTS}
    if by_tag is not None:
        groups = {tag: dict(by_tag[tag]) for tag in sorted(by_tag, key=_group_order)}
    else:
        groups = {name: {r: a.count(r) for r in RESULTS} for name, a in sorted(summary.accounts.items())}
    return {
        "summary": True,
        "mode": mode,
        "totals": totals,
        "accounts": {k: msgspec.to_builtins(v) for k, v in summary.accounts.items()},
        "duration_s": round(summary.duration_s, 3),
        "stopped": summary.stopped,
        "recap_by": "tag" if by_tag is not None else "account",
        "groups": groups,
        "limits_too_high": limits_too_high(summary),
        "undeclared": [msgspec.to_builtins(u) for u in sorted_undeclared(summary)],
    }


def sorted_undeclared(summary: Summary) -> list[Undeclared]:
    return sorted(summary.undeclared, key=lambda u: (u.account, u.integration_id))


def print_undeclared(summary: Summary, out: SupportsWrite[str]) -> None:
    """After the recap: the PrestaShop V2 integrations of declared accounts that the
    inventory does not declare (add them, or list them in the account's ignore_integrations)."""
    found = sorted_undeclared(summary)
    if not found:
        return
    print(
        f"\nUNDECLARED: {len(found)} PrestaShop V2 integration{'s' if len(found) != 1 else ''} of declared "
        "accounts the inventory does not declare (declare them, or list them in the account's ignore_integrations)",
        file=out,
    )
    for u in found:
        url = f" {display(u.shop_url)}" if u.shop_url else ""
        print(f"  {shop(u.integration_id, u.name)} ({display(u.account)}){url}", file=out)


def _names(d: dict[str, str] | None) -> str:
    return ", ".join(f"{display(lang)} {quoted(name)}" for lang, name in (d or {}).items())


def _change_lines(change: Change, mode: str) -> list[str]:
    if change.op == "+":
        return [f"    + {change.external_id!r}: {_names(change.after)}"]
    elif change.op == "-":
        gone = "will be deleted" if mode == "plan" else "deleted"
        return [f"    - {change.external_id!r}: {_names(change.before)}  ({gone})"]
    else:
        before, after = change.before or {}, change.after or {}
        parts = []
        for lang in sorted(before.keys() | after.keys()):
            b, a = before.get(lang), after.get(lang)
            if b == a:
                continue
            if b is None:
                parts.append(f"{display(lang)} + {quoted(a)}")
            elif a is None:
                parts.append(f"{display(lang)} - {quoted(b)}")
            else:
                parts.append(f"{display(lang)} {quoted(b)} -> {quoted(a)}")
        return [f"    ~ {change.external_id!r}: {'; '.join(parts)}"]


def _mapping_line(change: MappingChange) -> str:
    before = "(not mapped)" if change.before is None else repr(change.before)
    if change.before is not None and not change.was_valid:
        before += " (invalid)"
    after = "(not mapped)" if change.after is None else repr(change.after)
    return f"    = {change.category}: {before} -> {after}"


def print_outcome(outcome: Outcome, mode: str, out: SupportsWrite[str] = sys.stdout, verbose: bool = False) -> None:
    """One integration's result as text: the diff for changes, the reason for failures.

    Its lines go out in one write (an outcome is a few lines, and a run has many)."""
    lines = outcome_lines(outcome, mode, verbose)
    if lines:
        out.write("\n".join(lines) + "\n")


def outcome_lines(outcome: Outcome, mode: str, verbose: bool = False) -> list[str]:
    """The lines :func:`print_outcome` writes (none for an unchanged integration, unless
    ``verbose`` or it has a warning)."""
    where = label(outcome)
    lines: list[str] = []
    if outcome.result == "failed" and outcome.error is not None:
        e = outcome.error
        status = f" {e.http_status}" if e.http_status else ""
        pointer = f" at {escape_controls(e.pointer)}" if e.pointer else ""
        attempts = f" ({outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''})"
        # A run's server text is clean already (batchsync.outputs.sanitize); a merged report's is
        # whatever its file says.
        lines.append(f"! {where}: failed: {e.kind}{status}: {escape_controls(e.detail)}{pointer}{attempts}")
        if mode == "plan":
            for change in outcome.changes:
                lines.extend(_change_lines(change, mode))
            lines.extend(_mapping_line(m) for m in outcome.mapping_changes)
    elif outcome.result == "skipped":
        if verbose:
            lines.append(f"  {where}: skipped: {escape_controls(outcome.reason or '')}")
        return lines
    elif outcome.result == "unchanged":
        if verbose or outcome.warnings:
            lines.append(f"  {where}: unchanged")
    else:
        verb = "will change" if mode == "plan" else "changed"
        counts = f"+{outcome.added} ~{outcome.changed} -{outcome.removed}"
        if outcome.mapping_changes:
            counts += f", mapping {len(outcome.mapping_changes)}"
        lines.append(f"~ {where} {verb} ({counts})")
        for change in outcome.changes:
            lines += _change_lines(change, mode)
        if outcome.mapping_changes:
            lines.extend(_mapping_line(m) for m in outcome.mapping_changes)
    if outcome.warnings:
        lines.extend(f"    warning: {escape_controls(warning)}" for warning in outcome.warnings)
    if outcome.shop_health is not None:
        _health_column(outcome, where, lines)
    return lines


def _health_column(outcome: Outcome, where: str, lines: list[str]) -> None:
    """``--with-health``: the column on the outcome's first line; an unchanged shop that is
    failing gets its line for it."""
    health = outcome.shop_health
    assert health is not None
    if not lines:
        if outcome.result != "unchanged" or not (health.count or health.unknown):
            return
        lines.append(f"  {where}: unchanged")
    lines[0] += " " + column(health)


class Budget:
    """What an ``apply`` of a plan will spend, per account: fed the plan's outcomes.

    Reads are the requests the plan itself made (apply reads the same); writes are one
    per integration whose statuses change, plus one per mapping that changes.
    """

    def __init__(self) -> None:
        self.writes: dict[str, int] = {}

    def add(self, outcome: Outcome) -> None:
        n = (1 if outcome.changes else 0) + (1 if outcome.mapping_changes else 0)
        if n and outcome.result == "changed":
            self.writes[outcome.account] = self.writes.get(outcome.account, 0) + n

    def rows(self, summary: Summary, limits: Mapping[str, Limits]) -> list[dict[str, Any]]:
        """Per account: reads, writes and the least time they take at its declared limits."""
        rows = []
        for name in sorted(summary.accounts):
            lim = limits.get(name)
            if lim is None:
                continue
            reads = summary.accounts[name].reads
            writes = self.writes.get(name, 0)
            least = max(
                max(0, reads - lim.write_burst) / (lim.reads_per_minute / 60.0),
                max(0, writes - lim.write_burst) / (lim.writes_per_minute / 60.0),
            )
            rows.append(
                {
                    "account": name,
                    "reads": reads,
                    "writes": writes,
                    "least_seconds": round(least, 1),
                    "writes_per_minute": lim.writes_per_minute,
                    "reads_per_minute": lim.reads_per_minute,
                }
            )
        return rows

    def print(self, summary: Summary, limits: Mapping[str, Limits], out: SupportsWrite[str]) -> None:
        rows = self.rows(summary, limits)
        if not rows:
            return
        width = max(len(r["account"]) for r in rows)
        print("\nBUDGET of an apply (at each account's declared limits)", file=out)
        for r in rows:
            print(
                f"{r['account']:<{width}}  {r['reads']:,} reads, {r['writes']:,} writes, at least "
                f"{_duration(r['least_seconds'])} at {r['writes_per_minute']:g} writes/min and "
                f"{r['reads_per_minute']:g} reads/min",
                file=out,
            )
        busiest = max(rows, key=lambda r: r["least_seconds"])
        print(f"the run: at least {_duration(busiest['least_seconds'])} (set by {busiest['account']})", file=out)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def print_mapping_totals(summary: Summary, out: SupportsWrite[str]) -> None:
    """After the recap: mappings written and integrations the mapping guard refused."""
    written = sum(a.mappings_written for a in summary.accounts.values())
    refused = sum(a.refused for a in summary.accounts.values())
    if written or refused:
        print(f"mappings written: {written}; refused by the mapping guard: {refused}", file=out)


def print_recap(
    summary: Summary,
    mode: str,
    out: SupportsWrite[str] = sys.stdout,
    by_tag: Mapping[str, Mapping[str, int]] | None = None,
) -> None:
    """Ansible's recap: a line per account (or per tag, given ``by_tag``), then totals,
    then the accounts whose declared limits were too high."""
    changed = "to change" if mode == "plan" else "changed"
    rows: list[tuple[str, Mapping[str, int], str]] = []
    if by_tag is not None:
        for tag in sorted(by_tag, key=_group_order):
            rows.append((display(tag), by_tag[tag], ""))
    else:
        for name in sorted(summary.accounts):
            a = summary.accounts[name]
            note = f"throttled={a.throttled}" if a.throttled else ""
            rows.append((display(name), {r: a.count(r) for r in RESULTS}, note))
    totals: dict[str, int] = {r: summary.total(r) for r in RESULTS}
    width = max([len("TOTAL"), *(len(name) for name, _, _ in rows)])

    def row(name: str, counts: Mapping[str, int], note: str) -> str:
        return (
            f"{name:<{width}}  unchanged={counts['unchanged']:<6} {changed}={counts['changed']:<6} "
            f"failed={counts['failed']:<6} skipped={counts['skipped']:<6} {note}"
        ).rstrip()

    print("\nRECAP" + (" by tag" if by_tag is not None else ""), file=out)
    for name, counts, note in rows:
        print(row(name, counts, note), file=out)
    print(row("TOTAL", totals, f"in {summary.duration_s:.1f}s"), file=out)
    if by_tag is not None and sum(sum(c.values()) for c in by_tag.values()) > sum(totals.values()):
        print("(an integration with several tags counts under each)", file=out)
    if summary.stopped:
        print(f"stopped early: {escape_controls(summary.stopped)}", file=out)
    too_high = limits_too_high(summary)
    if too_high:
        print("declared limits too high (the API answered 429; fix them in the inventory):", file=out)
        for entry in too_high:
            print(f"  {entry['text']}", file=out)
    if mode == "plan":
        print(
            "plan only: nothing was written"
            + (
                "; every integration is in its desired state"
                if totals["changed"] == totals["failed"] == totals["skipped"] == 0
                else ""
            ),
            file=out,
        )


SHOWN = 20  # failures or recoveries named per kind in the recap; the rest counted


def _who(o: Outcome) -> str:
    name = f" {quoted(o.name)}" if o.name else ""
    return f"{o.integration_id}{name} ({display(o.account)})"


def print_memory(memory: Mapping[str, Any], out: SupportsWrite[str]) -> None:
    """After the recap, what the run history adds: which failures are new, which go on
    ("failing since <date> (N runs)"), which integrations recovered."""
    from batchsync.outputs.history import since_text

    def order(o: Outcome) -> tuple[str, int]:  # as the outcome lines are sorted, not as they came
        return o.account, o.integration_id

    ongoing = sorted(memory["ongoing"], key=lambda e: order(e[0]))
    recovered = sorted(memory["recovered"], key=lambda e: order(e[0]))
    sections: list[tuple[str, list[str]]] = [
        ("new failures", [f"  ! {_who(o)}: new" for o in sorted(memory["new"], key=order)]),
        ("still failing", [f"  ! {_who(o)}: {since_text(since, runs)}" for o, since, runs in ongoing]),
        ("recovered", [f"  + {_who(o)}: recovered ({since_text(since, runs)})" for o, since, runs in recovered]),
    ]
    for title, lines in sections:
        if lines:
            print(f"{title}: {len(lines)}", file=out)
            for line in lines[:SHOWN]:
                print(line, file=out)
            if len(lines) > SHOWN:
                print(f"  ... and {len(lines) - SHOWN} more (batchsync history failing)", file=out)


def memory_document(memory: Mapping[str, Any]) -> dict[str, Any]:
    """The same for ``--format json``: integration ids, and each streak's since and runs."""
    return {
        "new": [o.integration_id for o in memory["new"]],
        "still_failing": [
            {"integration_id": o.integration_id, "since": since, "runs": runs} for o, since, runs in memory["ongoing"]
        ],
        "recovered": [
            {"integration_id": o.integration_id, "since": since, "runs": runs} for o, since, runs in memory["recovered"]
        ],
    }


class Screen(io.TextIOBase):
    """stdout for a run's lines: buffered, and written in one piece when flushed.

    A run flushes it a few times a second and at its end, whatever ``PYTHONUNBUFFERED``
    says (containers often set it, and then every line was one ``write()``): the cost of
    an outcome line is an append. ``before_write`` runs before each write (the progress
    line erases itself there). It outlives its reader: ``batchsync apply ... | head``
    must not turn a closed pipe into failed integrations; once the pipe is gone, output
    is dropped. Nor must a full disk (``>> /var/log/batchsync.log``): the first write that
    fails is kept in ``failure`` for the run to name at its end, and output is dropped.
    """

    LIMIT = 1 << 16  # characters kept before a write, whatever the timer

    def __init__(self, stream: IO[str]) -> None:
        self.stream: IO[str] | None = stream
        self.before_write: Callable[[], None] | None = None
        self.failure: OSError | None = None  # why the stream was dropped (not a closed pipe)
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size > self.LIMIT:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        if self.stream is None:
            return
        if self.before_write is not None:
            self.before_write()
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.stream = None
        except OSError as exc:  # ENOSPC, EFBIG, EIO: what was not written is lost, the run goes on
            self.stream = None
            self.failure = exc


class Terminal:
    """The sink of stdout and stderr: each outcome's lines as it finishes (``-q``: only the
    failed ones, on stderr), then the recap (and a plan's budget table), or with ``--format
    json`` one document at the end. A merged run (``start.parts``) is headed by a line per
    part and repeats only its failed outcomes: each was shown by its shard's run."""

    def __init__(
        self,
        start: Start,
        out: Screen,
        err: IO[str],
        lost: Lost,
        *,
        as_json: bool = False,
        quiet: bool = False,
        verbose: bool = False,
        json_logs: bool = False,
        by_tag: bool = False,
        recall: Recall | None = None,
    ) -> None:
        self.start, self.out, self.err, self.lost = start, out, err, lost
        # With a history: the failures and recoveries, for the recap's "failing since".
        self.recall = recall if recall is not None and recall.on else None
        self.remembered: list[Outcome] = []
        self.target = out.stream  # what the JSON is encoded for
        self.mode = start.mode
        self.as_json, self.quiet, self.verbose, self.json_logs = as_json, quiet, verbose, json_logs
        self.credentials: dict[str, int] = {}  # -q: each account's integrations failed on its credentials
        self.merged = start.parts is not None
        self.collected: list[Outcome] | None = [] if as_json else None
        self.health = HealthSeen()
        # The lines to print, printed at the end sorted by account then id, so that two runs
        # diff alike: only outcomes that print something are kept, as their text.
        self.printed: list[tuple[str, int, str]] = []
        self._held = 0  # characters in printed
        self._spool: Spool | None = None  # what was printed past SPILL_CHARS
        self._spilling = True  # until a temp file fails
        self.not_found = 0  # failed as not_found: declared, but no longer the account's (the recap counts them apart)
        self.tags = TagTally() if by_tag else None
        # What an apply of a plan will spend needs the declared limits (unknown to a merge).
        self.budget = Budget() if start.mode == "plan" and start.limits else None
        if self.merged and not (as_json or quiet):
            for part in start.parts or ():
                print(("  " if part.state == "complete" else "! ") + part.describe(), file=out)

    def add(self, outcome: Outcome) -> None:
        if outcome.shop_health is not None:
            self.health.add(outcome)
        if outcome.error is not None and outcome.error.kind == "not_found":
            self.not_found += 1
        if self.collected is not None:
            self.collected.append(outcome)
        if self.recall is not None and (outcome.result == "failed" or outcome.integration_id in self.recall.known):
            self.remembered.append(outcome)
        if self.budget is not None:
            self.budget.add(outcome)
        if self.tags is not None:
            self.tags.add(outcome)
        if self.quiet:
            if outcome.result == "failed":
                if self.json_logs:  # a log shipper gets JSON on stderr, nothing else
                    logging.getLogger("batchsync").error("%s", "\n".join(outcome_lines(outcome, self.mode)))
                elif outcome.error is not None and outcome.error.kind == "credentials":
                    # An account's credentials fail each of its integrations alike: its first
                    # said, the others counted (a cron mail of 500 copies of one line is none).
                    seen = self.credentials.get(outcome.account, 0)
                    self.credentials[outcome.account] = seen + 1
                    if not seen:
                        print_outcome(outcome, self.mode, self.err)
                else:
                    print_outcome(outcome, self.mode, self.err)
        elif not self.as_json and (not self.merged or outcome.result == "failed"):
            lines = outcome_lines(outcome, self.mode, self.verbose)
            if lines:
                text = "\n".join(lines) + "\n"
                self.printed.append((outcome.account, outcome.integration_id, text))
                self._held += len(text)
                if self._held >= SPILL_CHARS and self._spilling:
                    self._spill()

    def settle(self) -> None:
        """The outcome lines, sorted by account then id, written and flushed: before any
        sink closes (batchsync.outputs.sink.close_all)."""
        self._print_sorted()
        self.out.flush()

    def _spill(self) -> None:
        """What waits to be printed, to the temp file (made at the first spill)."""
        try:
            if self._spool is None:
                import tempfile  # only a run that prints this much pays for its import

                self._spool = Spool(tempfile.gettempdir(), buffered=False)
            self._spool.add_all([(a, i, text.encode("utf-8", "surrogatepass")) for a, i, text in self.printed])
        except OSError as exc:
            self._spilling = False
            logging.getLogger("batchsync").warning(
                "the outcome lines to print could not go to a temp file (%s): held in memory until the end",
                exc.strerror or type(exc).__name__,
            )
            return
        self.printed.clear()
        self._held = 0

    def _print_sorted(self) -> None:
        self.printed.sort(key=lambda entry: entry[:2])
        spool, self._spool = self._spool, None
        try:
            for text in self._sorted(spool):
                self.out.write(text)
        except OSError as exc:  # the temp file could not be read back: what is left of it is lost
            self.lost.record("stdout", "", exc)
        finally:
            if spool is not None:
                spool.close()
            self.printed.clear()
            self._held = 0

    def _sorted(self, spool: Spool | None) -> Iterator[str]:
        """Every waiting text by account then id: the spooled ones merged with the held ones
        (equal keys: the spooled first, they came first)."""
        if spool is None:
            for _, _, text in self.printed:
                yield text
            return
        import heapq

        held: dict[str, list[tuple[int, str]]] = {}
        for account, key, text in self.printed:
            held.setdefault(account, []).append((key, text))
        for account in sorted(held.keys() | set(spool.groups())):
            spooled = ((key, data.decode("utf-8", "surrogatepass")) for key, data in spool.items(account))
            for _, text in heapq.merge(spooled, held.get(account, ()), key=lambda item: item[0]):
                yield text

    def flush(self) -> None:
        pass  # the run's timer flushes the screen itself, below its progress line

    def close(self, end: End | None) -> None:
        self._print_sorted()
        for account, n in sorted(self.credentials.items()):
            if n > 1:
                more = f"{n - 1} more integration{'s' if n > 2 else ''}"
                print(f"! account {display(account)}: {more} failed the same way (credentials)", file=self.err)
        if end is None:
            return
        summary, mode, out = end.summary, self.mode, self.out
        by_tag = self.tags.groups if self.tags is not None else None
        if self.collected is not None:
            doc = summary_document(summary, mode, by_tag)
            if self.budget is not None:
                doc["budget"] = self.budget.rows(summary, self.start.limits)
            if self.start.plan is not None:
                doc["plan"] = self.start.plan
            if self.merged:
                doc["not_done"] = self.start.not_done
                doc["exit_code"] = end.code()
                doc["parts"] = [msgspec.to_builtins(p) for p in self.start.parts or ()]
            if self.health.asked:
                doc["failing_shops"] = [iid for iid, _, _ in self.health.ranked()]
            self.collected.sort(key=lambda o: (o.account, o.integration_id))
            if self.recall is not None:
                doc["history"] = memory_document(self.recall.summarize(self.remembered))
            doc["outcomes"] = self.collected
            out.write(json_for(self.target, msgspec.json.encode(doc).decode()) + "\n")
        elif not self.quiet:
            print_recap(summary, mode, out, by_tag)
            if self.not_found:
                print(
                    f"not found: {self.not_found} declared integration{'s' if self.not_found != 1 else ''} no longer "
                    "the account's (counted in failed; kind not_found)",
                    file=out,
                )
            print_undeclared(summary, out)
            print_mapping_totals(summary, out)
            for line in self.health.recap_lines():
                print(line, file=out)
            if self.recall is not None:
                print_memory(self.recall.summarize(self.remembered), out)
            if self.budget is not None:
                self.budget.print(summary, self.start.limits, out)
            if self.start.not_done:
                print(
                    f"not done: {self.start.not_done} integrations no report accounts for (counted as skipped)",
                    file=out,
                )
        out.flush()
        if out.failure is not None:  # a full disk under stdout: the run went on, the loss is said
            self.lost.record("stdout", "", out.failure)
            discard_stdout()  # what it still buffers would fail again at exit
