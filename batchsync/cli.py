"""The command line: ``validate``, ``plan``, ``apply`` and ``sandbox``.

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

if TYPE_CHECKING:
    from batchsync.inventory import Inventory, Job


def _print_problems(inv: Inventory, out: TextIO | None = None) -> None:
    stream = sys.stderr if out is None else out
    for p in inv.problems:
        where = f" (integration {p.integration_id})" if p.integration_id is not None else ""
        print(f"{p.file}: {p.path}: {p.message}{where}", file=stream)


def cmd_validate(args: argparse.Namespace) -> int:
    import msgspec

    from batchsync.inventory import load

    inv = load(args.inventory, max_file_size=args.max_file_size)
    if args.format == "json":
        doc = {
            "valid": inv.valid,
            "integrations": inv.declared,
            "problems": inv.problems,
            "warnings": inv.warnings,
        }
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
        return EXIT_OK if inv.valid else EXIT_NOT_STARTED
    _print_problems(inv, sys.stdout)
    for w in inv.warnings:  # they do not block: validate exits 0 with them
        where = f" (integration {w.integration_id})" if w.integration_id is not None else ""
        print(f"{w.file}: {w.path}: warning: {w.message}{where}")
    if inv.valid:
        shared = len({id(j.desired) for j in inv.jobs})
        mappings = len({id(j.mapping) for j in inv.jobs if j.mapping is not None})
        print(
            f"{inv.path}: valid: {len(inv.jobs)} integrations, {len(inv.accounts)} accounts, "
            f"{shared} distinct status lists" + (f", {mappings} distinct mappings" if mappings else "")
        )
    else:
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stdout)
    return EXIT_OK if inv.valid else EXIT_NOT_STARTED


def _megabytes(text: str) -> int:
    """--max-file-size: megabytes (a decimal is fine) as bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of megabytes above 0")
    return max(1, int(value * 1024 * 1024))


def _add_max_file_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-file-size",
        type=_megabytes,
        default=256 * 1024 * 1024,
        metavar="MB",
        help="refuse an inventory file larger than this (256)",
    )


def _load_selected(args: argparse.Namespace) -> tuple[Inventory, list[Job]] | int:
    from batchsync.inventory import BASE_URL_PATTERN, OAuth2Credentials, load, select

    if args.base_url is not None and not re.match(BASE_URL_PATTERN, args.base_url):
        print(f"batchsync: --base-url {args.base_url}: expected an http:// or https:// URL", file=sys.stderr)
        return EXIT_NOT_STARTED
    if args.base_url is not None and args.sandbox:
        print("batchsync: --sandbox and --base-url exclude each other", file=sys.stderr)
        return EXIT_NOT_STARTED
    inv = load(args.inventory, max_file_size=args.max_file_size)
    if not inv.valid:
        _print_problems(inv)
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stderr)
        return EXIT_NOT_STARTED
    try:
        jobs, unmatched = select(inv.jobs, args.limit or [])
    except ValueError as exc:
        print(f"batchsync: --limit: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    for term in unmatched:
        print(f"batchsync: warning: --limit {term} matches no integration", file=sys.stderr)
    oauth2 = sorted({j.account for j in jobs if isinstance(inv.accounts[j.account].credentials, OAuth2Credentials)})
    if oauth2:  # MERGE: drop once the engine fetches OAuth2 tokens (issue 12, item 2)
        print(f"batchsync: account {oauth2[0]}: auth = 'oauth2' cannot run yet", file=sys.stderr)
        return EXIT_NOT_STARTED
    if getattr(args, "retry_failed", None):
        from batchsync.run import read_retry_report

        try:
            earlier = read_retry_report(args.retry_failed)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            print(f"batchsync: --retry-failed {args.retry_failed}: {reason}", file=sys.stderr)
            return EXIT_NOT_STARTED
        if earlier.complete:
            jobs = [j for j in jobs if j.integration_id in earlier.failed]
        else:
            # A run killed before its last line: what it never reached is left to do too.
            print(
                f"batchsync: {args.retry_failed} is incomplete (the run was killed): retrying every selected "
                "integration it does not record as done",
                file=sys.stderr,
            )
            jobs = [j for j in jobs if j.integration_id not in earlier.succeeded]
        if not jobs:
            print(
                f"batchsync: nothing to retry: {args.retry_failed} has no failed or skipped integration",
                file=sys.stderr,
            )
            return EXIT_OK
    if not jobs:
        print(f"batchsync: no integration matches --limit {' '.join(args.limit)}", file=sys.stderr)
        return EXIT_NOT_STARTED
    return inv, list(jobs)


def cmd_run(args: argparse.Namespace) -> int:
    """plan and apply: load, select, run the engine, report."""
    loaded = _load_selected(args)
    if isinstance(loaded, int):
        return loaded
    inv, jobs = loaded
    from batchsync.run import run_command

    return run_command(args, inv, jobs)


def _add_run_arguments(p: argparse.ArgumentParser, apply: bool) -> None:
    p.add_argument("inventory", metavar="INVENTORY")
    p.add_argument("--base-url", help="send every account's requests here instead (used as given)")
    _add_max_file_size(p)
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
    _add_max_file_size(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="read and diff; show what apply would change; write nothing")
    _add_run_arguments(p, apply=False)
    p.set_defaults(func=cmd_run, mode="plan")

    p = sub.add_parser("apply", help="read, diff and write what differs")
    _add_run_arguments(p, apply=True)
    p.set_defaults(func=cmd_run, mode="apply")

    p = sub.add_parser("sandbox", help="serve a local Sendcloud-compatible sandbox")
    from batchsync.sandbox.cli import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_sandbox)
    return parser


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
    except KeyboardInterrupt:
        print("batchsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `batchsync ... | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
