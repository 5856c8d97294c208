"""The sandbox's own command line, which ``batchsync sandbox`` and ``python -m
batchsync.sandbox`` share: the sandbox is a program of its own (a server for demos, tests
and benchmarks) that the command line also offers as a verb.

Only argparse and msgspec are imported at module level, because the main parser imports
:func:`add_arguments` on every start; :func:`settings` checks the options into a
:class:`~batchsync.sandbox.config.SandboxConfig`, and :func:`run` brings aiohttp in.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import msgspec

from batchsync.exitcodes import EXIT_NOT_STARTED
from batchsync.usage import UsageError

if TYPE_CHECKING:
    from batchsync.sandbox.config import SandboxConfig


class SandboxSettings(msgspec.Struct, frozen=True):
    config: SandboxConfig
    host: str = "127.0.0.1"
    port: int = 8765
    inventory: str | None = None  # seed from this inventory
    seed_file: str | None = None  # or serve exactly this seed


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is a number from 0 to 65535")
    return int(text)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def _latency(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        low = float(lo)
        high = float(hi) if sep else low
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MIN:MAX in seconds, as 0.01:0.05") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 <= MIN <= MAX")
    return (low, high)


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def _ids(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected integration ids, as 1234 or 1234,1235")
    return [int(p) for p in parts]


def _system_for(text: str) -> tuple[int, str]:
    ident, sep, system = text.partition("=")
    if not sep or not ident.strip().isdigit() or not system.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected ID=SYSTEM, as 1234=woocommerce")
    return (int(ident), system.strip())


MAX_SEEDED_LOGS = 100_000  # per integration: each record is built and held (about 2 KB)


def _id_count(text: str) -> tuple[int, int]:
    ident, sep, count = text.partition("=")
    if not sep or not ident.strip().isdigit() or not count.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected ID=N, as 1234=14")
    if int(count) > MAX_SEEDED_LOGS:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_SEEDED_LOGS:,} logs per integration")
    return (int(ident), int(count))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``batchsync sandbox``."""
    parser.description = (
        "Serve a local Sendcloud-compatible API (shop order statuses and mapping, integrations) "
        "seeded from an inventory or a seed file, with Sendcloud's rate limits, its OAuth2 token "
        "endpoint and optional faults. Prints one line with its URL once listening. Without "
        "--inventory or --seed-file it serves a built-in demo: account 'demo', keys "
        "demo-public-key / demo-secret-key, integrations 1001-1003. A fleet to import: "
        "python -m batchsync.sandbox.fleet DIR writes a seed file and its accounts, any number of "
        "accounts (--accounts N), the last --oauth2 N of them OAuth2; an inventory seeds OAuth2 accounts "
        "as it declares them. Limits: what fits in memory (every integration is held), one process."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=_port, default=8765, help="0 picks a free port (default 8765)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--inventory", metavar="FILE", help="seed accounts and integrations from this inventory")
    source.add_argument(
        "--seed-file",
        metavar="FILE",
        help="seed exactly this state: a JSON Seed (accounts, integrations with statuses, mapping, system, ...)",
    )
    g = parser.add_argument_group("seeding from an inventory")
    g.add_argument(
        "--in-sync",
        type=_probability,
        default=0.0,
        metavar="F",
        help="fraction starting in their desired state (default 0: every shop drifted)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the drift and of the faults (default 0)")
    g.add_argument(
        "--system-for",
        type=_system_for,
        action="append",
        default=[],
        metavar="ID=SYSTEM",
        help="give an integration another system than prestashop_v2 (repeatable)",
    )
    g.add_argument(
        "--failing",
        type=_ids,
        action="append",
        default=[],
        metavar="IDS",
        help="give these integrations a failing_since (comma-separated, repeatable)",
    )
    g.add_argument(
        "--absent",
        type=_ids,
        action="append",
        default=[],
        metavar="IDS",
        help="leave these inventory integrations out: their account does not have them (comma-separated, repeatable)",
    )
    g = parser.add_argument_group("lists and tokens")
    g.add_argument(
        "--page-size",
        type=_count,
        default=100,
        metavar="N",
        help="GET /integrations: integrations per page, the default and the most a client may ask (default 100)",
    )
    g.add_argument(
        "--token-lifetime",
        type=_count,
        default=3600,
        metavar="S",
        help="seconds an OAuth2 token from /oauth2/token lasts, in real time (default 3600)",
    )
    g = parser.add_argument_group("integration exception logs (GET /integrations/logs)")
    g.add_argument(
        "--exception-logs",
        type=_id_count,
        action="append",
        default=[],
        metavar="ID=N",
        help="seed N exception logs for this integration, one every --log-interval back from the start (repeatable)",
    )
    g.add_argument(
        "--log-interval", type=_positive, default=600.0, metavar="S", help="seconds between seeded logs (600)"
    )
    g.add_argument(
        "--logs-page-size", type=_count, default=100, metavar="N", help="logs per page, the most a client gets (100)"
    )
    g.add_argument(
        "--endless-logs", action="store_true", help="a log listing that never ends: every page links to another"
    )
    g = parser.add_argument_group("rate limits (default: each account's from the inventory)")
    g.add_argument("--writes-per-minute", type=_positive, metavar="X", help="POST requests per minute per account")
    g.add_argument("--write-burst", type=int, metavar="N", help="bucket size and concurrent requests per kind")
    g.add_argument("--reads-per-minute", type=_positive, metavar="X", help="GET requests per minute per account")
    g.add_argument("--time-scale", type=_positive, default=1.0, metavar="K", help="multiply every rate by K")
    g.add_argument("--no-retry-after", action="store_true", help="send 429 without a Retry-After header")
    g.add_argument("--empty-429", action="store_true", help="send 429 with an empty body")
    g = parser.add_argument_group("faults (probabilities per admitted request)")
    for kind, what in (
        ("500", "answer 500"),
        ("502", "answer 502"),
        ("503", "answer 503"),
        ("reset", "drop the connection without an answer"),
        ("hang", "wait --hang-seconds before answering"),
    ):
        g.add_argument(f"--fault-{kind}", type=_probability, default=0.0, metavar="P", help=what)
    g.add_argument("--garbage-200", type=_probability, default=0.0, metavar="P", help="200 with a non-JSON body")
    g.add_argument(
        "--down-account",
        action="append",
        default=[],
        metavar="NAME",
        help="answer 500 to every request of this account, the others served as usual (repeatable)",
    )
    g.add_argument(
        "--hang-seconds", type=float, default=30.0, metavar="S", help="how long a --fault-hang request waits (30)"
    )
    g.add_argument("--latency", type=_latency, metavar="MIN:MAX", help="uniform delay per request, in seconds")


def settings(args: argparse.Namespace) -> SandboxSettings:
    """The options checked into a :class:`SandboxConfig`; a UsageError saying why not."""
    from batchsync.sandbox.config import SandboxConfig

    if args.write_burst is not None and args.write_burst < 1:
        raise UsageError("--write-burst must be >= 1")
    if args.seed_file and (args.in_sync or args.system_for or args.failing or args.absent):
        raise UsageError(
            "--in-sync, --system-for, --failing and --absent seed from an inventory; a seed file says it all itself"
        )
    try:
        config = SandboxConfig(
            in_sync=args.in_sync,
            seed=args.seed,
            systems=tuple(args.system_for),
            failing_ids=frozenset(i for ids in args.failing for i in ids),
            absent_ids=frozenset(i for ids in args.absent for i in ids),
            page_size=args.page_size,
            token_lifetime=args.token_lifetime,
            writes_per_minute=args.writes_per_minute,
            write_burst=args.write_burst,
            reads_per_minute=args.reads_per_minute,
            time_scale=args.time_scale,
            retry_after=not args.no_retry_after,
            empty_429=args.empty_429,
            fault_500=args.fault_500,
            fault_502=args.fault_502,
            fault_503=args.fault_503,
            fault_reset=args.fault_reset,
            fault_hang=args.fault_hang,
            garbage_200=args.garbage_200,
            hang_seconds=args.hang_seconds,
            latency=args.latency,
            down_accounts=frozenset(args.down_account),
            exception_logs=tuple(args.exception_logs),
            log_interval=args.log_interval,
            logs_page_size=args.logs_page_size,
            endless_logs=args.endless_logs,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return SandboxSettings(config, args.host, args.port, args.inventory, args.seed_file)


def run(settings: SandboxSettings) -> int:
    from batchsync.sandbox.serve import serve

    return serve(
        settings.config, settings.host, settings.port, inventory=settings.inventory, seed_file=settings.seed_file
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m batchsync.sandbox``: the same as ``batchsync sandbox``."""
    from batchsync.usage import shown

    parser = argparse.ArgumentParser(prog="batchsync sandbox")
    add_arguments(parser)
    try:
        return run(settings(parser.parse_args(argv)))
    except UsageError as exc:
        print(f"batchsync: {shown(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
