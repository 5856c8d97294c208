"""Outcomes for people and programs: the streamed JSON-lines report, the plan, the recap.

The report file starts with a header line (what ran, on how many integrations), then
gets one line per integration as it finishes (flushed at once, so a killed run still
leaves a true record), then a closing summary line. Neither the header nor the summary
has an ``integration_id``; a report without its summary line was cut short.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

import msgspec

from batchsync.diff import Change
from batchsync.outcome import RESULTS, Outcome, Summary

_encoder = msgspec.json.Encoder()
REPORT_VERSION = 2  # 2: a header line; outcomes with tags, times, mapping changes and warnings


class ReportWriter:
    """Appends outcome lines to a file, flushing each so nothing is lost on a kill."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()

    def header(self, mode: str, inventory: str, selected: int, shard: dict[str, Any] | None = None) -> None:
        doc = {
            "header": True,
            "version": REPORT_VERSION,
            "command": mode,
            "started_at": round(time.time(), 3),
            "inventory": inventory,
            "selected": selected,
            "shard": shard,
        }
        self._file.write(_encoder.encode(doc) + b"\n")
        self._file.flush()

    def write(self, outcome: Outcome) -> None:
        self._file.write(_encoder.encode(outcome) + b"\n")
        self._file.flush()

    def close(self, summary: Summary | None = None, mode: str = "apply", exit_code: int | None = None) -> None:
        """The summary line (none if the run never got one), with the run's exit code:
        ``report merge`` reads it."""
        if summary is not None:
            doc = summary_document(summary, mode) | {"exit_code": exit_code}
            self._file.write(_encoder.encode(doc) + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def summary_document(summary: Summary, mode: str) -> dict[str, Any]:
    totals: dict[str, int] = {r: summary.total(r) for r in RESULTS}
    return {
        "summary": True,
        "mode": mode,
        "totals": totals,
        "accounts": {k: msgspec.to_builtins(v) for k, v in summary.accounts.items()},
        "duration_s": round(summary.duration_s, 3),
        "stopped": summary.stopped,
    }


def _names(d: dict[str, str] | None) -> str:
    return ", ".join(f"{lang} {_q(name)}" for lang, name in (d or {}).items())


def _q(name: str | None) -> str:
    """A status name quoted and escaped, so a quote or a newline in it cannot break the line."""
    return _encoder.encode(name).decode()


def _change_lines(change: Change, mode: str) -> Iterable[str]:
    if change.op == "+":
        yield f"    + {change.external_id!r}: {_names(change.after)}"
    elif change.op == "-":
        gone = "will be deleted" if mode == "plan" else "deleted"
        yield f"    - {change.external_id!r}: {_names(change.before)}  ({gone})"
    else:
        before, after = change.before or {}, change.after or {}
        parts = []
        for lang in sorted(set(before) | set(after)):
            b, a = before.get(lang), after.get(lang)
            if b == a:
                continue
            if b is None:
                parts.append(f"{lang} + {_q(a)}")
            elif a is None:
                parts.append(f"{lang} - {_q(b)}")
            else:
                parts.append(f"{lang} {_q(b)} -> {_q(a)}")
        yield f"    ~ {change.external_id!r}: {'; '.join(parts)}"


def print_outcome(outcome: Outcome, mode: str, out: SupportsWrite[str] = sys.stdout, verbose: bool = False) -> None:
    """One integration's result as text: the diff for changes, the reason for failures."""
    where = f"integration {outcome.integration_id} ({outcome.account})"
    if outcome.result == "failed" and outcome.error is not None:
        e = outcome.error
        status = f" {e.http_status}" if e.http_status else ""
        pointer = f" at {e.pointer}" if e.pointer else ""
        attempts = f" ({outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''})"
        print(f"! {where}: failed: {e.kind}{status}: {e.detail}{pointer}{attempts}", file=out)
        for change in outcome.changes if mode == "plan" else ():
            for line in _change_lines(change, mode):
                print(line, file=out)
        return
    if outcome.result == "skipped":
        if verbose:
            print(f"  {where}: skipped: {outcome.reason}", file=out)
        return
    if outcome.result == "unchanged":
        if verbose:
            print(f"  {where}: unchanged", file=out)
        return
    verb = "will change" if mode == "plan" else "changed"
    counts = f"+{outcome.added} ~{outcome.changed} -{outcome.removed}"
    print(f"~ {where} {verb} ({counts})", file=out)
    for change in outcome.changes:
        for line in _change_lines(change, mode):
            print(line, file=out)


def print_recap(summary: Summary, mode: str, out: SupportsWrite[str] = sys.stdout) -> None:
    """Ansible's recap: a line per account, then totals."""
    width = max([len("TOTAL"), *(len(n) for n in summary.accounts)])
    changed = "to change" if mode == "plan" else "changed"

    def row(name: str, counts: Mapping[str, int], note: str) -> str:
        return (
            f"{name:<{width}}  unchanged={counts['unchanged']:<6} {changed}={counts['changed']:<6} "
            f"failed={counts['failed']:<6} skipped={counts['skipped']:<6} {note}"
        ).rstrip()

    print("\nRECAP", file=out)
    for name in sorted(summary.accounts):
        a = summary.accounts[name]
        counts: dict[str, int] = {r: getattr(a, r) for r in RESULTS}
        print(row(name, counts, f"throttled={a.throttled}" if a.throttled else ""), file=out)
    totals: dict[str, int] = {r: summary.total(r) for r in RESULTS}
    print(row("TOTAL", totals, f"in {summary.duration_s:.1f}s"), file=out)
    if summary.stopped:
        print(f"stopped early: {summary.stopped}", file=out)
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
