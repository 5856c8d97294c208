"""One ``plan`` or ``apply`` run from the command line: engine, report and exit code.

Kept apart from ``cli`` so that ``validate`` and ``--version`` never import aiohttp.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import IO

import anyio
import msgspec

from batchsync.engine import Engine, Options, Outcome, Summary
from batchsync.exitcodes import EXIT_CHANGES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_NOT_STARTED, EXIT_OK
from batchsync.inventory import Inventory, Job
from batchsync.lock import LockedError, LockError, acquire_lock
from batchsync.monitoring import write_junit, write_metrics
from batchsync.progress import Progress, setup_logging
from batchsync.report import ReportWriter, print_outcome, print_recap, summary_document

log = logging.getLogger("batchsync")


class _Output(io.TextIOBase):
    """stdout that outlives its reader: ``batchsync apply ... | head`` must not turn a
    closed pipe into failed integrations. Once the pipe is gone, output is dropped."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream: IO[str] | None = stream

    def write(self, text: str) -> int:
        if self.stream is not None:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self.stream = None
        return len(text)

    def flush(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.stream = None


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
    # Stopped, but every integration got a real outcome anyway: judge it by those.
    if summary.stopped is not None and summary.total("skipped"):
        return EXIT_INTERRUPTED
    if summary.total("failed"):
        return EXIT_FAILED
    if summary.total("skipped"):
        return EXIT_INTERRUPTED
    if mode == "plan" and detailed and summary.total("changed"):
        return EXIT_CHANGES
    return EXIT_OK


async def _watch_signals(engine: Engine, scope: anyio.CancelScope, grace: float) -> None:
    """First SIGINT/SIGTERM: start nothing new, cancel what is in flight after ``grace``
    seconds. A second one: cancel now. Either way the run still records every outcome."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if engine.stopping is None:
                engine.stop(f"interrupted by {name}")
                scope.deadline = min(scope.deadline, anyio.current_time() + grace)
                log.warning(
                    "%s: starting nothing new; waiting up to %gs for requests in flight (send it again to stop now)",
                    name,
                    grace,
                )
            else:
                log.warning("%s again: stopping now", name)
                scope.cancel()


async def _every(seconds: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` periodically (the progress line moves even while nothing finishes)."""
    while True:
        await anyio.sleep(seconds)
        tick()


async def execute(
    inv: Inventory,
    jobs: Sequence[Job],
    options: Options,
    on_outcome: Callable[[Outcome], None],
    sandbox: bool = False,
    grace: float = 10.0,
    on_engine: Callable[[Engine], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> Summary:
    """Run the engine (inside an embedded sandbox when asked) until done or stopped."""
    async with AsyncExitStack() as stack:
        if sandbox:
            from batchsync.sandbox.server import SandboxConfig, run_sandbox

            box = await stack.enter_async_context(run_sandbox(inv, SandboxConfig(in_sync=0.5, seed=1)))
            options = msgspec.structs.replace(options, base_url=box.url)
            log.info("sandbox: serving %d integrations at %s", len(inv.jobs), box.url)
        engine = Engine(inv.accounts, options, on_outcome)
        if on_engine is not None:
            on_engine(engine)
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(_watch_signals, engine, scope, grace)
            if tick is not None:
                tg.start_soon(_every, 0.5, tick)
            with scope:
                await engine.run(jobs)
            tg.cancel_scope.cancel()
        if scope.cancelled_caught and engine.stopping is None:
            engine.stop("interrupted")
        return engine.summary


def parse_max_failures(text: str | None, total: int) -> int | None:
    """``--max-failures``: a count, or a percentage of the selected integrations."""
    if text is None:
        return None
    text = text.strip()
    usage = "expected a whole number of integrations (3) or a percentage of those selected (5%)"
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.ceil(total * pct / 100))
        count = int(text)
        if count < 1:
            raise ValueError
    except ValueError:
        raise ValueError(usage) from None
    return count


class RetryPlan(msgspec.Struct, frozen=True):
    """What an earlier report says is left to do."""

    failed: frozenset[int]  # failed or skipped
    succeeded: frozenset[int]  # unchanged or changed
    complete: bool  # it has its closing summary line: every selected integration is in it


def read_retry_report(report: str) -> RetryPlan:
    """Parse an earlier ``--report``. A run killed hard leaves no summary line and maybe a
    half-written last line: that last line is ignored and the report marked incomplete."""
    failed: set[int] = set()
    succeeded: set[int] = set()
    complete = False
    with open(report, "rb") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError:
            if n == len(lines):
                break  # cut off mid-write by a kill
            raise ValueError(f"line {n} is not JSON") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {n} is not a JSON object")
        iid = row.get("integration_id")
        if iid is None:
            complete = complete or bool(row.get("summary"))
        elif isinstance(iid, int):
            (failed if row.get("result") in ("failed", "skipped") else succeeded).add(iid)
    return RetryPlan(frozenset(failed), frozenset(succeeded), complete)


def run_command(args: argparse.Namespace, inv: Inventory, jobs: Sequence[Job]) -> int:
    """Check the options, take the lock (apply), run, and report; the exit code."""
    if args.concurrency < 1 or args.max_attempts < 1 or args.timeout <= 0 or args.retry_max_time <= 0:
        print(
            "batchsync: --concurrency, --max-attempts, --timeout and --retry-max-time must be positive", file=sys.stderr
        )
        return EXIT_NOT_STARTED
    if args.grace_period < 0:
        print("batchsync: --grace-period cannot be negative", file=sys.stderr)
        return EXIT_NOT_STARTED
    for flag, path in (("--junit", args.junit), ("--metrics", args.metrics)):
        # Found out now, not after a night's run has been done and cannot be reported.
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder is not None and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
            print(f"batchsync: {flag} {path}: {folder} is not a writable directory", file=sys.stderr)
            return EXIT_NOT_STARTED
    try:
        max_failures = parse_max_failures(args.max_failures, len(jobs))
    except ValueError as exc:
        print(f"batchsync: --max-failures {args.max_failures}: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    level = "DEBUG" if args.verbose else "ERROR" if args.quiet else "WARNING"
    # Last line of defence: whatever a log line carries, these values come out as ***.
    secrets = [v.reveal() for a in inv.accounts.values() for v in a.secrets()]
    setup_logging(level, args.log_format, secrets=secrets)
    options = msgspec.structs.replace(options_from(args, args.base_url), max_failures=max_failures)
    if args.mode != "apply":
        return _run(args, inv, jobs, options)
    try:
        lock = acquire_lock(args.inventory)
    except LockedError as exc:
        print(f"batchsync: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except LockError as exc:
        print(f"batchsync: cannot take the run lock: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    with lock:
        return _run(args, inv, jobs, options)


def _run(args: argparse.Namespace, inv: Inventory, jobs: Sequence[Job], options: Options) -> int:
    mode: str = args.mode
    report = None
    if args.report:
        try:
            report = ReportWriter(args.report)
        except OSError as exc:
            print(f"batchsync: cannot write the report {args.report}: {exc.strerror}", file=sys.stderr)
            return EXIT_NOT_STARTED
    as_json = args.format == "json"
    keep = as_json or bool(args.junit)
    collected: list[Outcome] = []
    # A progress line only for a person at a terminal: not with -q, JSON output or JSON logs.
    plain = not (args.quiet or as_json or args.log_format == "json")
    progress = Progress(len(jobs), sys.stderr, enabled=None if plain else False)
    out = _Output(sys.stdout)

    def on_outcome(outcome: Outcome) -> None:
        if report is not None:
            report.write(outcome)
        if keep:
            collected.append(outcome)
        if args.quiet:
            if outcome.result == "failed":
                progress.clear()
                if args.log_format == "json":  # a log shipper gets JSON on stderr, nothing else
                    buffer = io.StringIO()
                    print_outcome(outcome, mode, buffer)
                    log.error("%s", buffer.getvalue().rstrip("\n"))
                else:
                    print_outcome(outcome, mode, sys.stderr)
        elif not as_json:
            progress.clear()
            print_outcome(outcome, mode, out, verbose=args.verbose)
        progress.update(outcome)

    def on_engine(engine: Engine) -> None:
        progress.throttled = engine.throttled_accounts

    summary: Summary | None = None
    try:
        summary = anyio.run(
            execute,
            inv,
            jobs,
            options,
            on_outcome,
            args.sandbox,
            args.grace_period,
            on_engine,
            progress.refresh if progress.enabled else None,
        )
    finally:
        progress.close()
        if report is not None:
            report.close(summary, mode)
    assert summary is not None  # anyio.run returned
    if args.junit:
        write_junit(args.junit, collected, summary)
    if args.metrics:
        write_metrics(args.metrics, summary, mode)
    if as_json:
        doc = summary_document(summary, mode)
        doc["outcomes"] = collected
        out.write(msgspec.json.encode(doc).decode() + "\n")
    elif not args.quiet:
        print_recap(summary, mode, out)
    return exit_code(summary, mode, getattr(args, "detailed_exitcode", False))
