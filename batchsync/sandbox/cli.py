"""``batchsync sandbox``: serve the sandbox until SIGINT or SIGTERM.

Only argparse is imported at module level, because the main parser imports
:func:`add_arguments` on every start; aiohttp comes in with :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from batchsync.exitcodes import EXIT_NOT_STARTED, EXIT_OK

if TYPE_CHECKING:
    from batchsync.sandbox.server import SandboxConfig


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``batchsync sandbox``."""
    parser.description = (
        "Serve a local Sendcloud-compatible API (shop order statuses and mapping, integrations) "
        "seeded from an inventory or a seed file, with Sendcloud's rate limits, its OAuth2 token "
        "endpoint and optional faults. Prints one line with its URL once listening. Without "
        "--inventory or --seed-file it serves a built-in demo: account 'demo', keys "
        "demo-public-key / demo-secret-key, integrations 1001-1003."
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
        "--in-sync", type=_probability, default=0.0, metavar="F", help="fraction starting in their desired state"
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


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    from batchsync.sandbox.server import SandboxConfig

    if args.write_burst is not None and args.write_burst < 1:
        raise ValueError("--write-burst must be >= 1")
    if args.seed_file and (args.in_sync or args.system_for or args.failing or args.absent):
        raise ValueError(
            "--in-sync, --system-for, --failing and --absent seed from an inventory; a seed file says it all itself"
        )
    return SandboxConfig(
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
    )


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 then, 2 when it cannot start."""
    from batchsync.gcpolicy import paused
    from batchsync.inventory.loader import load
    from batchsync.model import Inventory
    from batchsync.sandbox.server import run_sandbox
    from batchsync.sandbox.state import Seed, Store, load_seed

    source: Inventory | Seed | None = None
    if args.inventory:
        with paused():
            source = load(args.inventory)
        if source.problems:
            for p in source.problems:
                where = f" (integration {p.integration_id})" if p.integration_id is not None else ""
                print(f"{p.file}: {p.path}: {p.message}{where}", file=sys.stderr)
            return EXIT_NOT_STARTED
    try:
        config = config_from_args(args)
        if args.seed_file:
            source = load_seed(args.seed_file)
            Store(source)  # a seed that contradicts itself fails here, before listening
    except ValueError as exc:
        print(f"batchsync sandbox: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_sandbox(source, config, args.host, args.port) as box:
            n = len(box.store.integrations)
            print(f"batchsync sandbox: listening on {box.url} ({n} integrations)", flush=True)
            if source is None:
                print("batchsync sandbox: demo state: account 'demo', demo-public-key:demo-secret-key", file=sys.stderr)
            await stop.wait()
    except OSError as exc:  # the port is taken, the host does not resolve
        print(f"batchsync sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except ValueError as exc:  # an option that names what the seed does not have
        print(f"batchsync sandbox: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Entry point of the ``sandbox`` subcommand."""
    import asyncio

    return asyncio.run(serve(args))


def main_sandbox(argv: list[str] | None = None) -> int:
    """``python -m batchsync.sandbox``: the subcommand without the main parser."""
    parser = argparse.ArgumentParser(prog="batchsync sandbox")
    add_arguments(parser)
    return run(parser.parse_args(argv))
