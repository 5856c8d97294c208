"""The command line: ``validate``, ``plan``, ``apply``, ``import``, ``report merge``, ``completion``, ``sandbox``.

Heavy imports (aiohttp, the engine) happen inside the commands that need them, so
``--version`` and ``validate`` start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from batchsync import __version__
from batchsync.exitcodes import (
    EXIT_CHANGES,
    EXIT_INTERRUPTED,
    EXIT_NOT_STARTED,
    EXIT_OK,
    EXIT_OUTPUT_LOST,
    describe,
)
from batchsync.gcpolicy import paused
from batchsync.usage import UsageError, shown

if TYPE_CHECKING:
    from batchsync.inventory.shard import ShardSpec
    from batchsync.model import Inventory, Job
    from batchsync.settings import RunSettings


def _print_problems(inv: Inventory, out: TextIO | None = None) -> None:
    stream = sys.stderr if out is None else out
    for p in inv.problems:
        where = f" (integration {p.integration_id})" if p.integration_id is not None else ""
        print(f"{p.file}: {p.path}: {p.message}{where}", file=stream)


def cmd_validate(args: argparse.Namespace) -> int:
    import msgspec

    from batchsync.inventory.loader import load
    from batchsync.inventory.shard import account_sizes, partition, split_document, split_lines

    with paused():
        inv = load(args.inventory, max_file_size=args.max_file_size)
    sizes = account_sizes(inv.jobs)
    split = partition(sizes, args.shards) if args.shards is not None and inv.valid else None
    if args.format == "json":
        doc: dict[str, Any] = {
            "valid": inv.valid,
            "integrations": inv.declared,
            "problems": inv.problems,
            "warnings": inv.warnings,
        }
        if args.shards is not None:  # asked for: null when the inventory is invalid
            doc["shards"] = split_document(split, sizes) if split is not None else None
        from batchsync.outputs.streams import json_for

        sys.stdout.write(json_for(sys.stdout, msgspec.json.encode(doc).decode()) + "\n")
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
        for line in split_lines(split, sizes) if split is not None else ():
            print(line)
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


def settings_from(args: argparse.Namespace) -> RunSettings:
    """The run's settings from the command line, checked once: a UsageError otherwise."""
    from batchsync.engine.options import Options
    from batchsync.settings import RunSettings, non_negative_number, parse_failure_budget, positive_int, positive_number
    from batchsync.urls import shown_url, url_problem

    why = url_problem(args.base_url) if args.base_url is not None else None
    if why is not None:
        raise UsageError(f"--base-url {shown_url(args.base_url)}: {why}")
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
        allow_insecure_http=args.allow_insecure_http,
        format=args.format,
        limit=tuple(args.limit or ()),
        shard=shard_from_args(args),
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
        recap_by=args.recap_by,
        max_file_size=args.max_file_size,
        html=args.html,
        notify=tuple(args.notify or ()),
        notify_on=args.notify_on,
        notify_format=args.notify_format,
        notify_timeout=positive_number(args.notify_timeout, "--notify-timeout"),
    )


def shard_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ShardSpec | None:
    from batchsync.inventory.shard import parse_count, parse_shard, shard_from_env

    """The shard of ``--shard I/N`` or ``--shard-index-from-env VAR --shard-count N``
    (see :func:`add_shard_arguments`), None without either; a UsageError naming the flag."""
    text, var, count = args.shard, args.shard_index_from_env, args.shard_count
    if count is not None and var is None:
        raise UsageError("--shard-count goes with --shard-index-from-env VAR (--shard I/N gives the count itself)")
    if var is not None and count is None:
        raise UsageError(f"--shard-index-from-env {var}: give the number of shards with --shard-count N")
    if text is not None:
        try:
            return parse_shard(text)
        except ValueError as exc:
            raise UsageError(f"--shard {text}: {exc}") from None
    if var is None:
        return None
    try:
        n = parse_count(count)
    except ValueError as exc:
        raise UsageError(f"--shard-count {count}: {exc}") from None
    try:
        return shard_from_env(var, n, os.environ if environ is None else environ)
    except ValueError as exc:
        raise UsageError(f"--shard-index-from-env {var}: {exc}") from None


def take_shard(jobs: Sequence[Job], spec: ShardSpec | None) -> tuple[list[Job], dict[str, Any] | None]:
    """The jobs of shard ``spec`` (all of them without one) and the report header's
    ``shard`` block. Call it on the ``--limit`` selection, before anything that depends
    on one machine's state (``--retry-failed``): every machine must split the same jobs."""
    if spec is None:
        return list(jobs), None
    from batchsync.inventory.shard import select_shard

    mine, split = select_shard(jobs, spec)
    return mine, split.header(spec.index)


class Selected(NamedTuple):
    inventory: Inventory
    jobs: list[Job]
    shard: dict[str, Any] | None  # the report header's shard block


def _load_selected(settings: RunSettings) -> Selected | int:
    """Load, then select: ``--limit``, then the shard, then ``--retry-failed``."""
    from batchsync.inventory.loader import load
    from batchsync.inventory.select import select

    with paused():
        inv = load(settings.inventory, max_file_size=settings.max_file_size)
    if not inv.valid:
        _print_problems(inv)
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stderr)
        return EXIT_NOT_STARTED
    from batchsync.redact import Redactor
    from batchsync.usage import redact_with

    # From here every message, a usage error's too, goes through the run's redactor.
    redact_with(Redactor(v.reveal() for a in inv.accounts.values() for v in a.secrets()))
    try:
        jobs, unmatched = select(inv.jobs, settings.limit)
    except ValueError as exc:
        raise UsageError(f"--limit: {exc}") from None
    for term in unmatched:
        print(shown(f"batchsync: warning: --limit {term} matches no integration"), file=sys.stderr)
    if not jobs:
        raise UsageError(f"no integration matches --limit {' '.join(settings.limit)}")
    # An empty shard (more shards than accounts) is no error: it runs, reports and exits 0,
    # so that `report merge` finds every shard's report.
    jobs, shard = take_shard(jobs, settings.shard)
    if shard is not None and not jobs and not settings.quiet:
        n = sum(shard["accounts"])
        print(
            f"batchsync: shard {settings.shard} holds no account ({n} account{'s' if n != 1 else ''} selected): "
            "nothing to do",
            file=sys.stderr,
        )
    if settings.retry_failed:
        from batchsync.outputs.report import read_retry_report

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
                f"batchsync: nothing to retry: {settings.retry_failed} has no failed or skipped integration"
                + (f" in shard {settings.shard}" if settings.shard is not None else ""),
                file=sys.stderr,
            )
            if settings.shard is None:
                return EXIT_OK
    return Selected(inv, list(jobs), shard)


def cmd_run(args: argparse.Namespace) -> int:
    """plan and apply: check the options, load, select, run the engine, report."""
    try:
        return _cmd_run(args)
    except UsageError:
        _record_not_started(args)
        raise


def _record_not_started(args: argparse.Namespace) -> None:
    """Exit 2 with --metrics given: the file says so, its last success stays as it was."""
    if not args.metrics:
        return
    from batchsync.outputs.metrics import write_exit_code

    try:
        write_exit_code(args.metrics, args.mode, EXIT_NOT_STARTED)
    except OSError as exc:
        print(f"batchsync: cannot write the metrics {args.metrics}: {exc.strerror}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    loaded = _load_selected(settings)
    if isinstance(loaded, int):
        if loaded == EXIT_NOT_STARTED:  # an invalid inventory
            _record_not_started(args)
        return loaded
    inv, jobs, shard = loaded
    if settings.max_failures is not None:
        import msgspec

        options = msgspec.structs.replace(settings.options, max_failures=settings.max_failures.limit(len(jobs)))
        settings = msgspec.structs.replace(settings, options=options)
    from batchsync.run import run_command

    return run_command(settings, inv, jobs, shard)


INVENTORY_HELP = "the inventory file: .toml, .json, .yaml or .yml"


def add_shard_arguments(p: argparse.ArgumentParser) -> None:
    """``--shard I/N``, or ``--shard-index-from-env VAR --shard-count N``: read them with
    :func:`shard_from_args`, then split with :func:`take_shard`."""
    g = p.add_argument_group("sharding: several machines, each running whole accounts")
    one = g.add_mutually_exclusive_group()
    one.add_argument(
        "--shard",
        metavar="I/N",
        help="run only shard I (from 0) of N: the selected integrations' accounts split by size, "
        "the same way on every machine",
    )
    one.add_argument(
        "--shard-index-from-env",
        metavar="VAR",
        help="take the shard index I from the environment variable VAR "
        "(Kubernetes: JOB_COMPLETION_INDEX); with --shard-count",
    )
    g.add_argument("--shard-count", metavar="N", help="the number of shards, with --shard-index-from-env")


def _add_run_arguments(p: argparse.ArgumentParser, apply: bool) -> None:
    p.add_argument("inventory", metavar="INVENTORY", help=INVENTORY_HELP)
    p.add_argument("--base-url", help="send every account's requests here instead (used as given)")
    _add_max_file_size(p)
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: diff lines and a recap (default); json: one document on stdout at the end",
    )
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
        "--recap-by",
        choices=("account", "tag"),
        default="account",
        help="the recap's rows: one per account (default), or one per tag, an integration with several tags "
        "counting under each and one without under (untagged)",
    )
    p.add_argument(
        "--allow-invalid-mapping",
        action="store_true",
        help="write statuses even where that leaves the shop's current mapping pointing at a removed status",
    )
    p.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to hosts other than this machine (credentials would cross the network in clear)",
    )
    p.add_argument(
        "--html",
        metavar="PATH",
        help="write the run's report for people: one self-contained HTML page (recap, failures, changes, a timeline)",
    )
    p.add_argument(
        "--notify",
        action="append",
        metavar="URL",
        help="after the run, POST a summary to this webhook (Slack, Mattermost, Teams-compatible); repeatable; "
        "a webhook URL is a credential: give it as env:NAME or file:PATH",
    )
    p.add_argument(
        "--notify-on",
        choices=("failure", "change", "always"),
        default="failure",
        help="when to notify: failure (failed or skipped integrations), change (also any change), always (failure)",
    )
    p.add_argument(
        "--notify-format",
        choices=("slack", "json"),
        default="slack",
        help="slack: a Slack incoming-webhook message (text and blocks); json: the run's summary document (slack)",
    )
    p.add_argument(
        "--notify-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="the most time every notification together may add to the run, retries included (5)",
    )
    p.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the check of each account's integration list (GET /integrations) before the first status request",
    )
    add_shard_arguments(p)
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


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil: argparse builds a
    formatter for every argument it adds, and its default one imports shutil (with zlib,
    bz2 and lzma: 3 ms of every start, ``validate``'s included) just for this number."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.HelpFormatter):
    """Wraps a description; keeps an epilog (exit codes, examples) line by line as written."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2 if width is None else width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# Two examples per command, shown under --help (a test parses every one).
EXAMPLES: dict[str | None, tuple[str, str]] = {
    None: (
        "batchsync plan inventories/example.toml --sandbox",
        "batchsync apply inventories/prod.toml --report last.jsonl --metrics batchsync.prom",
    ),
    "validate": (
        "batchsync validate inventories/prod.toml",
        "batchsync validate inventories/prod.toml --shards 4 --format json",
    ),
    "plan": (
        "batchsync plan inventories/prod.toml --limit tag:eu --detailed-exitcode",
        "batchsync plan inventories/prod.toml --shard 0/4 --format json",
    ),
    "apply": (
        "batchsync apply inventories/prod.toml --report last.jsonl --retry-failed yesterday.jsonl",
        "batchsync apply /config/inventory.toml --shard-index-from-env JOB_COMPLETION_INDEX --shard-count 4 "
        "--report /reports/shard-0.jsonl",
    ),
    "import": (
        "batchsync import accounts.toml -o inventories/prod.toml",
        "batchsync import inventories/prod.toml -o inventories/prod.toml --account acme --max-differences 2",
    ),
    "report merge": (
        "batchsync report merge '/reports/shard-*.jsonl' --max-age 4h --junit merged.xml",
        "batchsync report merge shard-0.jsonl shard-1.jsonl --format json",
    ),
    "completion": (
        "batchsync completion bash > ~/.local/share/bash-completion/completions/batchsync",
        "batchsync completion fish > ~/.config/fish/completions/batchsync.fish",
    ),
    "sandbox": (
        "batchsync sandbox --port 0 --inventory inventories/example.toml --in-sync 0.5",
        "batchsync sandbox --fault-503 0.1 --latency 0.01:0.05",
    ),
}


def epilog(command: str | None) -> str:
    """The exit codes ``command`` can end with, then two examples."""
    lines = ["exit codes:"]
    lines += [f"  {code:<3} {text}" for code, text in describe(command)]
    lines += ["", "examples:"]
    lines += [f"  {example}" for example in EXAMPLES[command]]
    return "\n".join(lines) + "\n"


def _shard_count(text: str) -> int:
    from batchsync.inventory.shard import parse_count

    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from batchsync.completion import SHELLS

    parser = argparse.ArgumentParser(
        prog="batchsync",
        description="Keep the shop order statuses of many Sendcloud integrations in their desired state.",
        epilog=epilog(None),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"batchsync {__version__}")
    # ``prog`` given: argparse would otherwise build a help formatter to work it out, and
    # a formatter imports shutil (and with it bz2 and lzma) on every start, --version too.
    sub = parser.add_subparsers(
        prog="batchsync",
        dest="command",
        metavar="COMMAND",
        required=True,
        help="one of these; batchsync COMMAND --help for its own",
    )

    def command(
        name: str,
        summary: str,
        *,
        key: str | None = None,
        into: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
    ) -> argparse.ArgumentParser:
        return into.add_parser(
            name,
            help=summary,
            description=summary[:1].upper() + summary[1:] + ".",
            epilog=epilog(key or name),
            formatter_class=_Formatter,
        )

    p = command("validate", "load and check an inventory; send nothing")
    p.add_argument("inventory", metavar="INVENTORY", help=INVENTORY_HELP)
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a line per problem (default); json: one object",
    )
    p.add_argument(
        "--shards",
        type=_shard_count,
        metavar="N",
        help="also print how --shard I/N splits the accounts over N shards, and how balanced that is",
    )
    _add_max_file_size(p)
    p.set_defaults(func=cmd_validate)

    p = command("plan", "read and diff; show what apply would change; write nothing")
    _add_run_arguments(p, apply=False)
    p.set_defaults(func=cmd_run, mode="plan")

    p = command("apply", "read, diff and write what differs")
    _add_run_arguments(p, apply=True)
    p.set_defaults(func=cmd_run, mode="apply")

    p = command("import", "read what the accounts have; write an inventory that declares it")
    from batchsync.import_cmd import add_arguments as add_import_arguments

    add_import_arguments(p)
    p.set_defaults(func=cmd_import)

    p = command("report", "work with --report files", key="report merge")
    reports = p.add_subparsers(
        prog="batchsync report",
        dest="report_command",
        metavar="SUBCOMMAND",
        required=True,
        help="merge (the only one so far)",
    )
    p = command(
        "merge",
        "read the reports of a sharded run as one run: one recap, one exit code",
        key="report merge",
        into=reports,
    )
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
    p.set_defaults(func=cmd_report_merge)

    p = command("completion", "print a shell completion script")
    p.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    p.set_defaults(func=cmd_completion)

    p = command("sandbox", "serve a local Sendcloud-compatible sandbox")
    from batchsync.sandbox.cli import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_sandbox)
    return parser


def cmd_import(args: argparse.Namespace) -> int:
    from batchsync.import_cmd import run

    return run(args)


def cmd_report_merge(args: argparse.Namespace) -> int:
    from batchsync.outputs.merge import command

    return command(
        args.reports, fmt=args.format, junit=args.junit, metrics=args.metrics, html=args.html, max_age=args.max_age
    )


def cmd_completion(args: argparse.Namespace) -> int:
    from batchsync.completion import script

    sys.stdout.write(script(build_parser(), args.shell))
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from batchsync.sandbox.cli import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `batchsync ... | head`: the reader left; say nothing more
        from batchsync.outputs.streams import discard_stdout

        discard_stdout()
        return EXIT_OK
    except OSError as exc:
        # A write to stdout that failed: unbuffered (PYTHONUNBUFFERED), the write itself
        # raises; buffered, the flush does, and stdout still cannot take what it holds.
        if exc.filename is not None or not (exc.errno in _DISK_FULL or _stdout_failing()):
            raise
        return _stdout_lost(exc, EXIT_OK)
    finally:
        logs = sys.modules.get("batchsync.outputs.logs")  # loaded by the commands that log
        if logs is not None:
            logs.flush_logs()  # the lines a buffered handler still holds


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _main(argv: Sequence[str] | None) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:  # without building every subcommand's parser
        print(f"batchsync {__version__}")
        return EXIT_OK
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"batchsync: {shown(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except KeyboardInterrupt:
        print("batchsync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``batchsync`` command: :func:`main`, then exit without the interpreter's teardown.

    Every output is complete by then (the report fsynced, JUnit and metrics renamed into
    place, stdout and stderr flushed below); tearing down the modules and objects of a
    large run only delays the exit (0.1 s at 3,000 integrations, more at 100,000), which
    is the time a scheduler waits for the next job.
    """
    _standard_streams()
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A locale whose encoding lacks a character of a status name (Latin-1, ASCII):
        # escaped, as on stderr, not a traceback half way through a run.
        sys.stdout.reconfigure(errors="backslashreplace")
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass  # the reader left: nothing more to say
    except (OSError, ValueError) as exc:  # a full disk: what a command printed last is lost
        code = _stdout_lost(exc, code)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def _stdout_failing() -> bool:
    """Whether stdout cannot take what it buffers (a full disk, an I/O error)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return False


def _stdout_lost(exc: OSError | ValueError, code: int) -> int:
    """Says on stderr that stdout was not written in full; the exit code that says so too
    (a failure or a stop says more, and stays)."""
    from batchsync.outputs.streams import discard_stdout

    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    with contextlib.suppress(OSError, ValueError):
        print(f"batchsync: stdout was not written: {why}", file=sys.stderr, flush=True)
    discard_stdout()
    return EXIT_OUTPUT_LOST if code in (EXIT_OK, EXIT_CHANGES) else code


def _standard_streams() -> None:
    """A closed stdin, stdout or stderr (``2>&-``) becomes ``/dev/null``.

    Python starts with ``sys.stderr = None`` then, and the first socket the run opens
    would take the free descriptor: a line written to "stderr" would go to a server. A
    run with stderr closed exited 1 although every integration converged (flushing None
    at the end raised, and the traceback had nowhere to go)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        opened = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
        if opened != fd:
            os.dup2(opened, fd)
            os.close(opened)
        if getattr(sys, name) is None:  # the process's stream, open until it exits
            stream = open(fd, mode, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)
