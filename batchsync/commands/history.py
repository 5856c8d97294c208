"""``batchsync history``: what the run history remembers. ``runs`` (newest first), ``show
RUN``, ``integration ID`` (its timeline), ``failing`` (with each streak), ``prune``; text
for people, ``--format json`` for machines. Each reads the default store, or the one
``--history URL`` names."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any, Literal

import msgspec

from batchsync.commands._arguments import add_history_arguments, history_location
from batchsync.exitcodes import EXIT_FAILED, EXIT_NOT_STARTED, EXIT_OK
from batchsync.usage import UsageError

NAME = "history"
SUMMARY = "what the run history remembers: runs, one run, an integration's timeline, what is failing"
EXAMPLES = (
    "batchsync history failing --format json",
    "batchsync history runs --since 7d --failed --history env:BATCHSYNC_HISTORY_URL",
)

SUBCOMMAND_EXAMPLES = {
    "runs": ("batchsync history runs --since 7d --failed", "batchsync history runs --limit 5 --format json"),
    "show": ("batchsync history show 42", "batchsync history show 42 --format json"),
    "integration": (
        "batchsync history integration 1002",
        "batchsync history integration 1002 --format json --history sqlite:////srv/history.sqlite3",
    ),
    "failing": (
        "batchsync history failing",
        "batchsync history failing --format json --history env:BATCHSYNC_HISTORY_URL",
    ),
    "prune": ("batchsync history prune --older-than 90d", "batchsync history prune --older-than 26w --format json"),
}

Verb = Literal["runs", "show", "integration", "failing", "prune"]


class HistorySettings(msgspec.Struct, frozen=True, kw_only=True):
    verb: Verb
    history: str | None = None  # --history as given
    format: Literal["text", "json"] = "text"
    since: str | None = None  # ISO 8601 UTC: runs started at or after
    limit: int | None = None
    failed: bool = False
    run: int | None = None  # show RUN
    integration_id: int | None = None  # integration ID
    before: str | None = None  # prune: runs started before


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="text for people (default), or JSON")
    add_history_arguments(p, reading=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(
        dest="history_verb", metavar="SUBCOMMAND", required=True, help="runs, show, integration, failing or prune"
    )
    runs = sub.add_parser(
        "runs", help="the recorded runs, newest first", description="The recorded runs, newest first."
    )
    runs.add_argument("--since", metavar="WHEN", help="only runs started within this long (7d, 12h) or since a date")
    runs.add_argument("--limit", type=_id, metavar="N", help="at most N runs")
    runs.add_argument("--failed", action="store_true", help="only runs that failed an integration or did not end well")
    _common(runs)
    show = sub.add_parser("show", help="one run and every outcome it recorded", description="One run and its outcomes.")
    show.add_argument("run", type=_id, metavar="RUN", help="the run's id (history runs lists them)")
    _common(show)
    one = sub.add_parser(
        "integration",
        help="one integration's timeline: each run, its result, what changed",
        description="One integration's timeline, newest first: each run, its result, what changed.",
    )
    one.add_argument("integration_id", type=_id, metavar="ID", help="the integration's id")
    one.add_argument("--limit", type=_id, metavar="N", help="at most N events")
    _common(one)
    failing = sub.add_parser(
        "failing",
        help="integrations whose latest outcome is a failure, with since when",
        description="The integrations whose latest outcome is a failure, with their streak: since the start "
        "of its first run, for how many runs.",
    )
    _common(failing)
    prune = sub.add_parser(
        "prune",
        help="delete old runs",
        description="Delete the runs (and their outcomes) started longer ago than --older-than.",
    )
    prune.add_argument("--older-than", required=True, metavar="AGE", help="90d, 12h: runs started before now - AGE")
    _common(prune)


def _id(text: str) -> int:
    """A whole number from 1 to 2**63 - 1: what the store's ids and a LIMIT can be."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if not 1 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from 1 to 2**63 - 1")
    return value


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?Z?)?")


def when(text: str, flag: str, now: float | None = None) -> str:
    """``7d``/``12h``/``90m`` ago, or a date (``2026-12-01``, ``2026-12-01T02:00``, UTC), as
    the store's ISO 8601 text."""
    from datetime import UTC, datetime

    from batchsync.history.db import iso

    raw = text.strip()
    m = _DURATION.fullmatch(raw)
    if m is not None and float(m.group(1)) > 0:
        try:
            return iso((time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)])
        except (OverflowError, ValueError, OSError):  # 999999d: before year 1
            raise UsageError(f"{flag} {text}: further back than this machine's calendar goes") from None
    if _DATE.fullmatch(raw) and m is None:
        # A date the calendar has, or none: compared as text, 2026-99-99 would be later than
        # every run (prune would delete them all).
        try:
            moment = datetime.fromisoformat(raw.replace(" ", "T").rstrip("Z")).replace(tzinfo=UTC)
        except ValueError:
            raise UsageError(f"{flag} {text}: not a date of the calendar (2026-12-01, 2026-12-01T02:00)") from None
        return iso(moment.timestamp())
    raise UsageError(f"{flag} {text}: expected an age (7d, 12h, 90m, 2w) or a UTC date (2026-12-01)")


def settings(args: argparse.Namespace) -> HistorySettings:
    verb = args.history_verb
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: expected a positive number")
    since = getattr(args, "since", None)
    return HistorySettings(
        verb=verb,
        history=args.history,
        format=args.format,
        since=when(since, "--since") if since is not None else None,
        limit=limit,
        failed=getattr(args, "failed", False),
        run=getattr(args, "run", None),
        integration_id=getattr(args, "integration_id", None),
        before=when(args.older_than, "--older-than") if verb == "prune" else None,
    )


def run(settings: HistorySettings) -> int:
    from batchsync.history import queries
    from batchsync.history.db import HistoryError, connect
    from batchsync.redact import Redactor
    from batchsync.usage import redact_with

    try:
        location = history_location(settings.history)
    except UsageError as exc:
        print(f"batchsync: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    assert location is not None
    redact = Redactor(location.secrets)
    redact_with(redact)
    try:
        db = connect(location, redact, create=False, read_only=settings.verb != "prune")
    except HistoryError as exc:
        print(redact(f"batchsync: history: {exc}"), file=sys.stderr)
        return EXIT_NOT_STARTED
    try:
        answer: Any
        if settings.verb == "runs":
            answer = queries.runs(db, since=settings.since, limit=settings.limit, failed=settings.failed)
        elif settings.verb == "show":
            assert settings.run is not None
            answer = queries.show(db, settings.run)
            if answer is None:
                print(f"batchsync: history show: no run {settings.run} in {location.name}", file=sys.stderr)
                return EXIT_FAILED
        elif settings.verb == "integration":
            assert settings.integration_id is not None
            answer = queries.integration(db, settings.integration_id, settings.limit)
        elif settings.verb == "failing":
            answer = queries.failing(db)
        else:
            assert settings.before is not None
            answer = queries.prune(db, settings.before) | {"before": settings.before}
    except Exception as exc:  # the database's own words, redacted: never a traceback
        print(redact(f"batchsync: history: {location.name}: {' '.join(str(exc).split())}"), file=sys.stderr)
        return EXIT_NOT_STARTED
    finally:
        db.close()
    from batchsync.outputs.streams import json_for
    from batchsync.text import escape_controls

    try:  # a store is input like any file (a shared PostgreSQL one is written by other hosts)
        if settings.format == "json":
            shown = [json_for(sys.stdout, msgspec.json.encode(answer).decode())]
        else:  # every line spelled out: a value a terminal would act on is shown, not done
            shown = [escape_controls(line, lines=True) for line in lines(settings.verb, answer)]
    except Exception as exc:
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]
        message = f"batchsync: history: {location.name} holds values this batchsync did not write ({why})"
        print(redact(escape_controls(message)), file=sys.stderr)
        return EXIT_NOT_STARTED
    for line in shown:
        print(line)
    return EXIT_OK


def _here(path: str) -> str:
    """An inventory as runs record it (absolute), relative to the current folder when it is
    inside it: what a person typed, from where they type it (``--format json`` keeps it whole)."""
    try:
        cwd = os.getcwd()
    except OSError:
        return path
    return os.path.relpath(path, cwd) if os.path.isabs(path) and path.startswith(cwd + os.sep) else path


def _at(iso: str | None) -> str:
    return f"{iso[:10]} {iso[11:19]}" if iso else "-"


def _counts(c: dict[str, int]) -> str:
    return " ".join(f"{k}={c[k]}" for k in ("unchanged", "changed", "failed", "skipped"))


def lines(verb: str, answer: Any) -> list[str]:
    """The answer for people: a line per run, outcome, event or failing integration (UTC)."""
    from batchsync.text import display, escape_controls

    out: list[str] = []
    if verb == "runs":
        for r in answer:
            shard = f" shard {r['shard']}" if r["shard"] else ""
            code = "running or cut short" if r["exit_code"] is None else f"exit {r['exit_code']}"
            out.append(
                f"#{r['id']:<6} {_at(r['started_at'])} UTC  {r['command']:<12} {code:<8} {_counts(r['counts'])}"
                f"{shard}  {display(_here(r['inventory']))}"
            )
        if not answer:
            out.append("no run recorded (or none matches)")
    elif verb == "show":
        code = "running or cut short" if answer["exit_code"] is None else f"exit {answer['exit_code']}"
        out.append(
            f"run #{answer['id']}: {answer['command']} of {display(_here(answer['inventory']))} on "
            f"{display(answer['host'])}, "
            f"{_at(answer['started_at'])} to {_at(answer['ended_at'])} UTC, {code}"
        )
        out.append(f"  {_counts(answer['counts'])}" + (f", shard {answer['shard']}" if answer["shard"] else ""))
        if "plan" in answer:
            out.append(f"  carried out the plan {display(answer['plan']['path'])} (sha256 {answer['plan']['sha256']})")
        for o in answer["outcomes"]:
            why = f": {o['kind']}: {escape_controls(o['detail'] or '')}" if o["kind"] else ""
            mapped = f", mapping {len(o['mapping_changes'])}" if o["mapping_changes"] else ""
            moved = f" (+{o['added']} ~{o['changed']} -{o['removed']}{mapped})" if o["result"] == "changed" else ""
            out.append(f"  {o['integration_id']} ({display(o['account'])}): {o['result']}{moved}{why}")
    elif verb == "integration":
        out.append(f"integration {answer['integration_id']}: {len(answer['events'])} runs recorded")
        for e in answer["events"]:
            why = f": {e['kind']}: {escape_controls(e.get('detail') or '')}" if e.get("kind") else ""
            out.append(f"  {_at(e['at'])} UTC  run #{e['run']:<6} {e['command']:<12} {e['result']}{why}")
            for c in e["changes"]:
                out.append(f"      {c.get('op', '?')} {display(str(c.get('external_id', '')))}")
            for m in e["mapping_changes"]:
                before, after = (
                    display(str(m.get(k))) if m.get(k) is not None else "unmapped" for k in ("before", "after")
                )
                out.append(f"      = {display(str(m.get('category', '')))}: {before} -> {after}")
    elif verb == "failing":
        for f in answer:
            out.append(
                f"! {f['integration_id']} ({display(f['account'])}): failing since {_at(f['since'])} UTC "
                f"({f['runs']} run{'s' if f['runs'] != 1 else ''}): {f['kind']}: {escape_controls(f['detail'] or '')}"
            )
        if not answer:
            out.append("no integration is failing")
    else:
        out.append(
            f"pruned {answer['runs']} runs ({answer['outcomes']} outcomes) started before {_at(answer['before'])} UTC"
        )
        if answer.get("kept_running"):
            out.append(
                f"kept {answer['kept_running']} run(s) with no end that started within the last day: "
                "they may still be going (a run cut short is pruned once it is a day old)"
            )
    return out
