"""One ``plan`` or ``apply`` run from the command line: engine, report and exit code.

Kept apart from ``cli`` so that ``validate`` and ``--version`` never import aiohttp.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import msgspec

from batchsync.engine import Engine, Options, Outcome, Summary
from batchsync.inventory import Inventory, Job
from batchsync.report import ReportWriter, print_outcome, print_recap, summary_document

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_STARTED = 2
EXIT_INTERRUPTED = 3
EXIT_CHANGES = 4


def options_from(args: argparse.Namespace, base_url: str | None) -> Options:
    return Options(
        write=args.mode == "apply",
        read_first=not getattr(args, "no_read", False),
        allow_delete_all=getattr(args, "allow_delete_all", False),
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_attempts=args.max_attempts,
        retry_max_time=args.retry_max_time,
        base_url=base_url,
    )


def exit_code(summary: Summary, mode: str, detailed: bool) -> int:
    if summary.stopped is not None:
        return EXIT_INTERRUPTED
    if summary.total("failed"):
        return EXIT_FAILED
    if summary.total("skipped"):
        return EXIT_INTERRUPTED
    if mode == "plan" and detailed and summary.total("changed"):
        return EXIT_CHANGES
    return EXIT_OK


async def execute(
    inv: Inventory,
    jobs: Sequence[Job],
    options: Options,
    on_outcome: Any,
    sandbox: bool = False,
) -> Summary:
    """Run the engine, inside an embedded sandbox when asked."""
    async with AsyncExitStack() as stack:
        if sandbox:
            from batchsync.sandbox.server import SandboxConfig, run_sandbox

            box = await stack.enter_async_context(run_sandbox(inv, SandboxConfig(in_sync=0.5, seed=1)))
            options = msgspec.structs.replace(options, base_url=box.url)
            print(f"sandbox: serving {len(inv.jobs)} integrations at {box.url}", file=sys.stderr)
        engine = Engine(inv.accounts, options, on_outcome)
        return await engine.run(jobs)


def run_command(args: argparse.Namespace, inv: Inventory, jobs: Sequence[Job]) -> int:
    mode: str = args.mode
    if args.concurrency < 1 or args.max_attempts < 1 or args.timeout <= 0:
        print("batchsync: --concurrency, --max-attempts and --timeout must be positive", file=sys.stderr)
        return EXIT_NOT_STARTED
    report = None
    if args.report:
        try:
            report = ReportWriter(args.report)
        except OSError as exc:
            print(f"batchsync: cannot write the report {args.report}: {exc.strerror}", file=sys.stderr)
            return EXIT_NOT_STARTED
    collected: list[Outcome] = []
    as_json = args.format == "json"

    def on_outcome(outcome: Outcome) -> None:
        if report is not None:
            report.write(outcome)
        if as_json:
            collected.append(outcome)
        else:
            print_outcome(outcome, mode, verbose=args.verbose)

    options = options_from(args, args.base_url)
    summary: Summary | None = None
    try:
        summary = anyio.run(execute, inv, jobs, options, on_outcome, args.sandbox)
    finally:
        if report is not None:
            report.close(summary, mode)
    if as_json:
        doc = summary_document(summary, mode)
        doc["outcomes"] = collected
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
    else:
        print_recap(summary, mode)
    return exit_code(summary, mode, getattr(args, "detailed_exitcode", False))
