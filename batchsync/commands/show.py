"""``batchsync show PLAN``: a saved plan for people (the lines ``plan`` printed, or the HTML
page) or for tools (``--format json``: the plan document). It reads no inventory and
sends nothing: the plan's outcomes go through the sinks a ``plan`` run has."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Literal

import msgspec

from batchsync.exitcodes import EXIT_NOT_STARTED, EXIT_OK, EXIT_OUTPUT_LOST
from batchsync.usage import UsageError

NAME = "show"
SUMMARY = "show a saved plan (plan --out): its changes as text, an HTML page or JSON; sends nothing"
EXAMPLES = (
    "batchsync show tonight.plan.json",
    "batchsync show tonight.plan.json --html approve-me.html",
)


class ShowSettings(msgspec.Struct, frozen=True):
    plan: str
    format: Literal["text", "json"] = "text"
    html: str | None = None
    verbose: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", metavar="PLAN", help="a plan file written by batchsync plan --out")
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: the lines plan printed and its recap (default); json: the plan document",
    )
    p.add_argument("--html", metavar="PATH", help="write the plan as one self-contained HTML page, for approval")
    p.add_argument("-v", "--verbose", action="store_true", help="also list the integrations the plan leaves alone")


def settings(args: argparse.Namespace) -> ShowSettings:
    if not args.plan:
        raise UsageError("show: name a plan file")
    return ShowSettings(args.plan, args.format, args.html, args.verbose)


def run(settings: ShowSettings, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Read the plan, replay its outcomes through the terminal (or JSON) and HTML sinks."""
    from batchsync.inventory.plan import PlanError, read_plan
    from batchsync.outcome import AccountStats, Summary
    from batchsync.outputs.build import OutputSettings, build_sinks, check_outputs
    from batchsync.outputs.sink import End, Lost, OutputError, Start, close_all
    from batchsync.outputs.streams import json_for
    from batchsync.outputs.terminal import Screen

    stdout = sys.stdout if out is None else out
    stderr = sys.stderr if err is None else err
    outputs = OutputSettings(format=settings.format, verbose=settings.verbose, html=settings.html)
    try:
        check_outputs(outputs, [settings.plan], reader="show")
        plan, sha = read_plan(settings.plan, running=None)
    except (OutputError, PlanError) as exc:
        print(f"batchsync: {exc}", file=stderr)
        return EXIT_NOT_STARTED
    failed: OSError | None = None  # stdout's, with --format json
    if settings.format == "json":
        screen = Screen(stdout)
        screen.write(json_for(stdout, msgspec.json.encode(plan).decode()) + "\n")  # what a server wrote, spelled out
        screen.flush()
        failed = screen.failure
        if failed is not None:  # a full disk: the document a tool reads from stdout is not there
            print(f"batchsync: stdout was not written: {failed.strerror or type(failed).__name__}", file=stderr)
        outputs = msgspec.structs.replace(outputs, format="text", quiet=True)  # the HTML page alone
        if not settings.html:
            return EXIT_OK if failed is None else EXIT_OUTPUT_LOST
    import datetime as dt

    started = dt.datetime.fromisoformat(plan.created_at).timestamp()
    screen = Screen(stdout)
    lost = Lost(screen)
    start = Start(
        mode="plan",
        started_at=started,
        inventory=plan.inventory.path,
        selected=len(plan.integrations),
        plan={"path": settings.plan, "sha256": sha},
    )
    summary = Summary(accounts={}, started_at=started)
    if not plan.complete:
        summary.stopped = "the plan's run was cut short"
    sinks = build_sinks(outputs, start, lost, out=screen, err=stderr)
    for entry in plan.integrations:
        stats = summary.accounts.setdefault(entry.account, AccountStats())
        stats.add(entry.outcome.result)
        # What the plan's run sent for it (a plan only reads): the totals say what the
        # accounts' lanes draw.
        stats.requests += entry.outcome.attempts
        stats.reads += entry.outcome.attempts
        for sink in sinks:
            sink.add(entry.outcome)
    close_all(sinks, End(summary=summary, code=lambda: lost.exit_code(EXIT_OK), started_at=started, ended_at=started))
    return EXIT_OUTPUT_LOST if failed is not None else lost.exit_code(EXIT_OK)
