"""``batchsync report merge``: the ``--report`` files of a sharded run read as one run, and
written through the same sinks a run has (the terminal, JUnit, metrics, HTML), with the
run's policy for an output that cannot be written (named, exit 5)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import msgspec

from batchsync.commands._arguments import add_history_arguments, duration, history_location
from batchsync.exitcodes import EXIT_NOT_STARTED
from batchsync.usage import UsageError

if TYPE_CHECKING:
    from batchsync.outputs.build import OutputSettings

NAME = "report merge"
SUMMARY = "read the reports of a sharded run as one run: one recap, one exit code"
EXAMPLES = (
    "batchsync report merge '/reports/shard-*.jsonl' --max-age 4h --junit merged.xml",
    "batchsync report merge shard-0.jsonl shard-1.jsonl --format json",
)


class MergeSettings(msgspec.Struct, frozen=True):
    reports: tuple[str, ...]  # paths or patterns, expanded by the command itself
    outputs: OutputSettings
    max_age: float | None = None  # seconds: a report whose run started longer ago is an earlier run's
    history: str | None = None  # --history as given
    no_history: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "reports",
        nargs="+",
        metavar="REPORT",
        help="each shard's --report file; a pattern (shard-*.jsonl) is expanded by batchsync itself",
    )
    p.add_argument(
        "--junit", metavar="PATH", help="write JUnit XML for the whole run, a failing case per shard missing"
    )
    p.add_argument("--metrics", metavar="PATH", help="write Prometheus metrics for the whole run (atomically)")
    p.add_argument("--html", metavar="PATH", help="write the whole run's report for people: one HTML page")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="text: the shards and a recap; json: one object"
    )
    p.add_argument(
        "--max-age",
        metavar="DURATION",
        help="a report whose run started longer ago (90m, 4h, 1d) is an earlier run's: count its shard as missing",
    )
    add_history_arguments(p)


def settings(args: argparse.Namespace) -> MergeSettings:
    from batchsync.outputs.build import OutputSettings

    age = duration(args.max_age, "--max-age") if args.max_age is not None else None
    outputs = OutputSettings(format=args.format, junit=args.junit, metrics=args.metrics, html=args.html)
    return MergeSettings(
        tuple(args.reports), outputs, age, getattr(args, "history", None), getattr(args, "no_history", False)
    )


def run(
    settings: MergeSettings, *, out: IO[str] | None = None, err: IO[str] | None = None, now: float | None = None
) -> int:
    """Read, merge, write every output; the merged run's exit code (``out``, ``err`` and
    ``now`` stand in for stdout, stderr and the clock in tests)."""
    from batchsync.outputs.build import build_sinks, check_outputs
    from batchsync.outputs.merge import MergeError, expand, merge
    from batchsync.outputs.report import read_report
    from batchsync.outputs.sink import End, Lost, OutputError, Start, close_all
    from batchsync.outputs.terminal import Screen

    stdout = sys.stdout if out is None else out
    stderr = sys.stderr if err is None else err
    paths = expand(settings.reports)
    if not paths:
        print("batchsync: report merge: name at least one report", file=stderr)
        return EXIT_NOT_STARTED
    try:
        check_outputs(settings.outputs, paths, reader="report merge")
    except OutputError as exc:
        print(f"batchsync: {exc}", file=stderr)
        return EXIT_NOT_STARTED
    try:
        where = history_location(settings.history, settings.no_history)
    except UsageError as exc:
        print(f"batchsync: {exc}", file=stderr)
        return EXIT_NOT_STARTED
    try:
        reports = [read_report(p) for p in paths]
        merged = merge(reports, now=now, max_age=settings.max_age)
    except MergeError as exc:
        print(f"batchsync: report merge: {exc}; nothing merged", file=stderr)
        return EXIT_NOT_STARTED
    screen = Screen(stdout)
    lost = Lost(screen)
    started, ended = merged.span()
    headers = [r.header for r in reports if r.header is not None]
    group = next((h.group for h in headers if h.group), "")
    inventory = next((h.inventory for h in headers if h.inventory), "")
    start = Start(mode=merged.mode, started_at=started, parts=tuple(merged.parts), group=group, inventory=inventory)
    outputs = msgspec.structs.replace(settings.outputs, history_at=where)
    redact: Callable[[str], str] = str
    if where is not None and where.secrets:
        from batchsync.redact import Redactor

        redact = Redactor(where.secrets)
    ran = merged.exit_code
    sinks = build_sinks(
        outputs,
        start,
        lost,
        out=screen,
        err=stderr,
        redact=redact,
        history_command="report merge",
        history_key=merge_key(group, headers, [(o.integration_id, o.result) for o in merged.outcomes], ran),
    )
    for outcome in merged.outcomes:
        for sink in sinks:
            sink.add(outcome)
    close_all(sinks, End(summary=merged.summary, code=lambda: lost.exit_code(ran), started_at=started, ended_at=ended))
    return lost.exit_code(ran)


def merge_key(group: str, headers: list[Any], results: list[tuple[int, str]], exit_code: int) -> str:
    """What records a merged run once however often the same reports are merged: the
    shards' group (or, reports without one, the runs' start times) and what the merge
    found (each integration's result, the exit code). A merge of other content for the
    same night (the shard that was missing has reported since; a retry fixed a failure)
    is recorded too: the first merge of a night does not stand for it for good. Its
    streaks still count once: they go by the group."""
    import hashlib

    content = hashlib.sha256(msgspec.json.encode([exit_code, sorted(results)])).hexdigest()[:32]
    if group:
        return f"merge:{group}:{content}"
    starts = sorted(h.started_at or 0.0 for h in headers)
    return "merge:" + hashlib.sha256(msgspec.json.encode([starts, content])).hexdigest()[:32]
