"""The command line: ``validate``, ``plan``, ``apply``, ``import`` and ``sandbox``.

Heavy imports (aiohttp, the engine) happen inside the commands that need them, so
``--version`` and ``validate`` start fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from batchsync import __version__
from batchsync.exitcodes import EXIT_INTERRUPTED, EXIT_NOT_STARTED, EXIT_OK
from batchsync.settings import UsageError

if TYPE_CHECKING:
    from batchsync.inventory import Inventory, Job
    from batchsync.settings import RunSettings


def _print_problems(inv: Inventory, out: TextIO | None = None) -> None:
    stream = sys.stderr if out is None else out
    for p in inv.problems:
        where = f" (integration {p.integration_id})" if p.integration_id is not None else ""
        print(f"{p.file}: {p.path}: {p.message}{where}", file=stream)


def cmd_validate(args: argparse.Namespace) -> int:
    import msgspec

    from batchsync.inventory import load

    inv = load(args.inventory)
    if args.format == "json":
        doc = {
            "valid": inv.valid,
            "integrations": inv.declared,
            "problems": inv.problems,
        }
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
    elif inv.valid:
        shared = len({id(j.desired) for j in inv.jobs})
        print(
            f"{inv.path}: valid: {len(inv.jobs)} integrations, {len(inv.accounts)} accounts, "
            f"{shared} distinct status lists"
        )
    else:
        _print_problems(inv, sys.stdout)
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stdout)
    return EXIT_OK if inv.valid else EXIT_NOT_STARTED


def settings_from(args: argparse.Namespace) -> RunSettings:
    """The run's settings from the command line, checked once: a UsageError otherwise."""
    from batchsync.inventory import BASE_URL_PATTERN
    from batchsync.settings import (
        Options,
        RunSettings,
        non_negative_number,
        parse_failure_budget,
        positive_int,
        positive_number,
    )

    if args.base_url is not None and not re.match(BASE_URL_PATTERN, args.base_url):
        raise UsageError(f"--base-url {args.base_url}: expected an http:// or https:// URL")
    if args.base_url is not None and args.sandbox:
        raise UsageError("--sandbox and --base-url exclude each other")
    apply = args.mode == "apply"
    per_account = getattr(args, "max_failures_per_account", None)
    options = Options(
        write=apply,
        read_first=not getattr(args, "no_read", False),
        allow_delete_all=getattr(args, "allow_delete_all", False),
        allow_invalid_mapping=args.allow_invalid_mapping,
        preflight=not args.no_preflight,
        concurrency=positive_int(args.concurrency, "--concurrency"),
        max_attempts=positive_int(args.max_attempts, "--max-attempts"),
        retry_max_time=positive_number(args.retry_max_time, "--retry-max-time"),
        max_failures_per_account=(
            parse_failure_budget(per_account, "--max-failures-per-account") if per_account else None
        ),
    )
    return RunSettings(
        command=args.mode,
        inventory=args.inventory,
        options=options,
        timeout=positive_number(args.timeout, "--timeout"),
        base_url=args.base_url,
        sandbox=args.sandbox,
        format=args.format,
        limit=tuple(args.limit or ()),
        retry_failed=args.retry_failed,
        report=args.report,
        junit=args.junit,
        metrics=args.metrics,
        max_failures=parse_failure_budget(args.max_failures, "--max-failures") if args.max_failures else None,
        grace_period=non_negative_number(args.grace_period, "--grace-period"),
        quiet=args.quiet,
        verbose=args.verbose,
        log_format=args.log_format,
        detailed_exitcode=getattr(args, "detailed_exitcode", False),
    )


def _load_selected(settings: RunSettings) -> tuple[Inventory, list[Job]] | int:
    from batchsync.inventory import load, select

    inv = load(settings.inventory)
    if not inv.valid:
        _print_problems(inv)
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stderr)
        return EXIT_NOT_STARTED
    try:
        jobs, unmatched = select(inv.jobs, settings.limit)
    except ValueError as exc:
        raise UsageError(f"--limit: {exc}") from None
    for term in unmatched:
        print(f"batchsync: warning: --limit {term} matches no integration", file=sys.stderr)
    if settings.retry_failed:
        from batchsync.run import read_retry_report

        try:
            earlier = read_retry_report(settings.retry_failed)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise UsageError(f"--retry-failed {settings.retry_failed}: {reason}") from None
        if earlier.complete:
            jobs = [j for j in jobs if j.integration_id in earlier.failed]
        else:
            # A run killed before its last line: what it never reached is left to do too.
            print(
                f"batchsync: {settings.retry_failed} is incomplete (the run was killed): retrying every selected "
                "integration it does not record as done",
                file=sys.stderr,
            )
            jobs = [j for j in jobs if j.integration_id not in earlier.succeeded]
        if not jobs:
            print(
                f"batchsync: nothing to retry: {settings.retry_failed} has no failed or skipped integration",
                file=sys.stderr,
            )
            return EXIT_OK
    if not jobs:
        raise UsageError(f"no integration matches --limit {' '.join(settings.limit)}")
    return inv, list(jobs)


def cmd_run(args: argparse.Namespace) -> int:
    """plan and apply: check the options, load, select, run the engine, report."""
    settings = settings_from(args)
    loaded = _load_selected(settings)
    if isinstance(loaded, int):
        return loaded
    inv, jobs = loaded
    if settings.max_failures is not None:
        import msgspec

        options = msgspec.structs.replace(settings.options, max_failures=settings.max_failures.limit(len(jobs)))
        settings = msgspec.structs.replace(settings, options=options)
    from batchsync.run import run_command

    return run_command(settings, inv, jobs)


def _add_run_arguments(p: argparse.ArgumentParser, apply: bool) -> None:
    p.add_argument("inventory", metavar="INVENTORY")
    p.add_argument("--base-url", help="send every account's requests here instead (used as given)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--limit",
        action="append",
        metavar="SELECTOR",
        help="only these integrations: an id, an account name or a tag (tag:X, account:X); "
        "repeatable or comma-separated; !X excludes",
    )
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight over all accounts (64)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    p.add_argument("--max-attempts", type=int, default=6, help="attempts per request, first included (6)")
    p.add_argument(
        "--retry-max-time",
        type=float,
        default=300.0,
        help="seconds all attempts of one request may take (300)",
    )
    p.add_argument("--report", metavar="PATH", help="write one JSON line per integration as it finishes")
    p.add_argument("--sandbox", action="store_true", help="run against an embedded sandbox seeded from the inventory")
    p.add_argument(
        "--max-failures",
        metavar="N|P%",
        help="stop starting new work once N integrations (or P%% of those selected) have failed; exit 3",
    )
    p.add_argument(
        "--retry-failed",
        metavar="REPORT",
        help="only the integrations that failed or were skipped in this earlier --report file",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long requests in flight may finish before they are cancelled (10)",
    )
    p.add_argument("--junit", metavar="PATH", help="write a JUnit XML file, one test case per integration")
    p.add_argument(
        "--metrics",
        metavar="PATH",
        help="write Prometheus metrics (textfile collector format, written atomically) to PATH",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only: failed integrations, no recap")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="format of log lines on stderr (text)"
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also list unchanged and skipped integrations, and log every request (never a secret)",
    )
    p.add_argument(
        "--max-failures-per-account",
        metavar="N|P%",
        help="once an account has N failed integrations (or P%% of its selected ones), skip its others; "
        "the other accounts go on",
    )
    p.add_argument(
        "--allow-invalid-mapping",
        action="store_true",
        help="write statuses even where that leaves the shop's current mapping pointing at a removed status",
    )
    p.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the check of each account's integration list (GET /integrations) before the first status request",
    )
    if apply:
        p.add_argument("--no-read", action="store_true", help="write every selected integration without reading first")
        p.add_argument(
            "--allow-delete-all",
            action="store_true",
            help="allow writing an empty list, which deletes every status of an integration",
        )
    else:
        p.add_argument(
            "--detailed-exitcode",
            action="store_true",
            help="exit 4 when there are changes to make, 0 when there are none",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchsync",
        description="Keep the shop order statuses of many Sendcloud integrations in their desired state.",
    )
    parser.add_argument("--version", action="version", version=f"batchsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="load and check an inventory; send nothing")
    p.add_argument("inventory", metavar="INVENTORY")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="read and diff; show what apply would change; write nothing")
    _add_run_arguments(p, apply=False)
    p.set_defaults(func=cmd_run, mode="plan")

    p = sub.add_parser("apply", help="read, diff and write what differs")
    _add_run_arguments(p, apply=True)
    p.set_defaults(func=cmd_run, mode="apply")

    p = sub.add_parser("import", help="read what the accounts have; write an inventory that declares it")
    from batchsync.import_cmd import add_arguments as add_import_arguments

    add_import_arguments(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("sandbox", help="serve a local Sendcloud-compatible sandbox")
    from batchsync.sandbox.cli import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_sandbox)
    return parser


def cmd_import(args: argparse.Namespace) -> int:
    from batchsync.import_cmd import run

    return run(args)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from batchsync.sandbox.cli import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"batchsync: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except KeyboardInterrupt:
        print("batchsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `batchsync ... | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
