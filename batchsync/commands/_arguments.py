"""Arguments that several commands share, and the checks that turn them into typed values.

Cheap to import (argparse and the usage error only): every command's parser is built from
it when a command line starts, ``validate``'s included. Each check raises
:class:`~batchsync.usage.UsageError` naming the flag.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from batchsync.usage import UsageError

if TYPE_CHECKING:
    from datetime import datetime

    from batchsync.engine.options import FailureBudget
    from batchsync.history.location import Location
    from batchsync.inventory.shard import ShardSpec
    from batchsync.outputs.build import OutputSettings
    from batchsync.secrets import Secret

INVENTORY_HELP = "the inventory file: .toml, .json, .yaml or .yml"


def add_base_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="send every account's requests here instead (used as given)")


def add_allow_insecure_http(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to hosts other than this machine (credentials would cross the network in clear)",
    )


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    """How many requests at once, and how long each may take: ``plan``, ``apply``, ``import``."""
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight over all accounts (64)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    p.add_argument("--max-attempts", type=int, default=6, help="attempts per request, first included (6)")
    p.add_argument(
        "--retry-max-time",
        type=float,
        default=300.0,
        help="seconds all attempts of one request may take (300)",
    )


def base_url(value: str | None) -> str | None:
    """``--base-url`` checked: a URL aiohttp can send to, or a UsageError saying why."""
    if value is None:
        return None
    from batchsync.urls import shown_url, url_problem

    why = url_problem(value)
    if why is not None:
        raise UsageError(f"--base-url {shown_url(value)}: {why}")
    return value


def megabytes(text: str) -> int:
    """--max-file-size: megabytes (a decimal is fine) as bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of megabytes above 0")
    return max(1, int(value * 1024 * 1024))


def add_max_file_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-file-size",
        type=megabytes,
        default=256 * 1024 * 1024,
        metavar="MB",
        help="refuse an inventory file larger than this (256)",
    )


def shard_count(text: str) -> int:
    from batchsync.inventory.shard import parse_count

    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_shard_arguments(p: argparse.ArgumentParser) -> None:
    """``--shard I/N``, or ``--shard-index-from-env VAR --shard-count N``: read them with
    :func:`shard_from_args`, then split with :func:`batchsync.commands._run.take_shard`."""
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


def shard_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ShardSpec | None:
    """The shard of ``--shard I/N`` or ``--shard-index-from-env VAR --shard-count N``
    (see :func:`add_shard_arguments`), None without either; a UsageError naming the flag."""
    from batchsync.inventory.shard import parse_count, parse_shard, shard_from_env

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


def add_require_all_credentials(
    p: argparse.ArgumentParser,
    default: str = "only that account's integrations fail (kind credentials) and the others run",
    extra: str = " (or whose OAuth2 token endpoint refuses its client)",
) -> None:
    p.add_argument(
        "--require-all-credentials",
        action="store_true",
        help=f"an account whose credentials cannot be resolved{extra} stops the whole run (exit 2, nothing sent); "
        f"by default {default}",
    )


def add_limit(p: argparse.ArgumentParser) -> None:
    """``--limit``: the selection of ``plan``, ``apply`` and ``health``."""
    p.add_argument(
        "--limit",
        action="append",
        metavar="SELECTOR",
        help="only these integrations: an id, a name, an account or a tag (name:X, account:X, tag:X), "
        "shell-style patterns allowed (client-*, tag:client-?); repeatable or comma-separated; "
        "&X keeps only what X also matches, !X excludes",
    )


def add_reading_arguments(p: argparse.ArgumentParser, format_help: str) -> None:
    """What ``plan``, ``apply`` and ``health`` start with: the inventory, where to send,
    ``--format``, the selection and the requests' bounds."""
    p.add_argument("inventory", metavar="INVENTORY", help=INVENTORY_HELP)
    add_base_url(p)
    add_max_file_size(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help=format_help)
    add_limit(p)
    add_request_arguments(p)


def add_run_arguments(p: argparse.ArgumentParser, apply: bool) -> None:
    """The arguments of ``plan`` (``apply`` False) and ``apply``, in the order ``--help`` lists them."""
    add_reading_arguments(p, "text: diff lines and a recap (default); json: one document on stdout at the end")
    add_require_all_credentials(p)
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
    add_allow_insecure_http(p)
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
        choices=("failure", "change", "always", "new"),
        default="failure",
        help="when to notify: failure (failed or skipped integrations), change (also any change), always, "
        "new (only when an integration started failing or recovered, by the run history)",
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
    add_health_arguments(p, flag=True)
    add_history_arguments(p)
    if apply:
        g = p.add_argument_group("a saved plan: apply exactly what was approved")
        g.add_argument(
            "--plan",
            metavar="PLAN",
            help="apply this plan file (plan --out): only the integrations it changes, the statuses and mapping it "
            "recorded; one that moved since is failed (stale_plan); not with --limit, --shard, --retry-failed, "
            "--no-read",
        )
        g.add_argument(
            "--max-age",
            metavar="AGE",
            help="refuse a plan older than this: seconds, or a number with s, m, h or d (7d)",
        )
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
        p.add_argument(
            "--out",
            metavar="PLAN",
            help="save the plan to this file (JSON, no credential), for batchsync show and apply --plan",
        )


def add_health_arguments(p: argparse.ArgumentParser, flag: bool) -> None:
    """``--since`` and ``--health-max-pages`` (``health``, and ``plan``/``apply`` with
    ``--with-health`` when ``flag``)."""
    if flag:
        p.add_argument(
            "--with-health",
            action="store_true",
            help="also read each account's integration exception logs (on its read budget) and show each shop's "
            "connection health beside its statuses; never changes the exit code",
        )
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="count exception logs from this moment: an ISO 8601 time (2026-12-03T18:00:00+01:00) or a span "
        "back from now (90m, 12h, 2d); default: the start of the last run that read them, else 24h",
    )
    p.add_argument(
        "--health-max-pages",
        type=int,
        default=100,
        metavar="N",
        help="read at most N pages of one account's exception logs; past that its health is unknown (100)",
    )


_SPAN = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def since_value(text: str | None, now: float) -> datetime | None:
    """``--since``: an ISO 8601 time (without an offset: UTC), or a span back from ``now``
    (``90m``, ``12h``, ``2d``); UsageError otherwise."""
    from datetime import UTC, datetime, timedelta

    if text is None:
        return None
    raw = text.strip()
    unit = raw[-1:].lower()
    too_far = UsageError(f"--since {text!r}: further back than this machine's calendar goes")
    if unit in _SPAN and raw[:-1].isascii() and raw[:-1].isdigit():
        try:
            return datetime.fromtimestamp(now, UTC) - timedelta(seconds=int(raw[:-1]) * _SPAN[unit])
        except (OverflowError, ValueError):  # 99999999999d: before year 1
            raise too_far from None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expected an ISO 8601 time (2026-12-03T18:00:00+01:00) or a span (90m, 12h, 2d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        if moment.timestamp() > now:
            raise UsageError(f"--since {text}: a moment in the future")
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00:00+01:00: in UTC, before year 1
        raise too_far from None


HISTORY_HELP = (
    "the run history: sqlite:///PATH or postgresql://... (give a DSN with a password as env:NAME); "
    "default: the inventory's [history] url, else $XDG_STATE_HOME/batchsync/history.sqlite3"
)


def add_history_arguments(p: argparse.ArgumentParser, reading: bool = False) -> None:
    """``--history URL`` and (for a run) ``--no-history``."""
    p.add_argument(
        "--history",
        metavar="URL",
        help=HISTORY_HELP
        if not reading
        else "the store to read: sqlite:///PATH, postgresql://... or env:NAME "
        "(default: $XDG_STATE_HOME/batchsync/history.sqlite3)",
    )
    if not reading:
        p.add_argument("--no-history", action="store_true", help="record nothing in the run history")


def history_location(flag: str | None, off: bool = False, inventory: Secret | None = None) -> Location | None:
    """Where the history is: ``--history`` (a URL, or env:NAME) over the inventory's
    ``[history] url`` over the default; None with ``--no-history``. UsageError naming the
    flag (never the URL: a DSN is a credential)."""
    from batchsync.history.location import LocationError, default, parse

    if off:
        if flag is not None:
            raise UsageError("--history and --no-history exclude each other")
        return None
    if flag is not None:
        url = flag
        if flag.startswith(("env:", "file:")):  # a reference, as [history] url takes it
            from pathlib import Path

            from batchsync.secrets import SecretError, resolve
            from batchsync.text import display

            try:
                url = resolve(flag, Path.cwd()).reveal()
            except SecretError as exc:
                raise UsageError(f"--history {display(flag)}: {exc}") from None
        try:
            where = parse(url)
        except LocationError as exc:
            raise UsageError(f"--history: {exc}") from None
        if where.kind == "postgresql" and len(where.secrets) > 1 and url is flag:
            import sys

            print(
                "batchsync: warning: --history given a PostgreSQL URL with its password on the command line, which "
                "every user of this machine can read (ps, /proc): give it as env:NAME",
                file=sys.stderr,
            )
        return where
    if inventory is not None:
        try:
            return parse(inventory.reveal())
        except LocationError as exc:
            raise UsageError(f"the inventory's [history] url ({inventory.source}): {exc}") from None
    return default()


def outputs_from(args: argparse.Namespace) -> OutputSettings:
    """The outputs ``plan`` and ``apply`` were asked for."""
    from batchsync.outputs.build import OutputSettings

    return OutputSettings(
        format=args.format,
        quiet=args.quiet,
        verbose=args.verbose,
        log_format=args.log_format,
        recap_by=args.recap_by,
        report=args.report,
        junit=args.junit,
        metrics=args.metrics,
        html=args.html,
        notify=tuple(args.notify or ()),
        notify_on=args.notify_on,
        notify_format=args.notify_format,
        notify_timeout=positive_number(args.notify_timeout, "--notify-timeout"),
        plan_out=getattr(args, "out", None),
        history=args.history,
        no_history=args.no_history,
    )


def parse_failure_budget(text: str, flag: str) -> FailureBudget:
    """``3`` or ``5%``; UsageError naming the flag otherwise."""
    from batchsync.engine.options import FailureBudget

    raw = text.strip()
    usage = f"{flag} {text}: expected a whole number of integrations (3) or a percentage (5%)"
    try:
        if raw.endswith("%"):
            pct = float(raw[:-1])
            if not (math.isfinite(pct) and 0 < pct <= 100):
                raise ValueError
            return FailureBudget(percent=pct)
        count = int(raw)
        if count < 1:
            raise ValueError
    except ValueError:
        raise UsageError(usage) from None
    return FailureBudget(count=count)


_DURATION = r"([0-9]+(?:\.[0-9]+)?)([smhd]?)"
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``--max-age``: seconds, or a number with s, m, h or d."""
    import re

    m = re.fullmatch(_DURATION, text.strip())
    if m is None or float(m.group(1)) <= 0:
        raise ValueError("expected a positive duration: seconds, or a number with s, m, h or d (90m, 4h)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def duration(text: str, flag: str) -> float:
    """:func:`parse_duration`, or a UsageError naming the flag."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {text if text.strip() else repr(text)}: {exc}") from None


def positive_number(value: float, flag: str) -> float:
    """A finite number > 0: ``nan`` would disable a timeout, ``inf`` break every deadline."""
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} {value}: expected a finite number greater than 0")
    return value


def non_negative_number(value: float, flag: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{flag} {value}: expected a finite number, 0 or more")
    return value


def positive_int(value: int, flag: str) -> int:
    if value < 1:
        raise UsageError(f"{flag} {value}: expected a whole number, 1 or more")
    return value
