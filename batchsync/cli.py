"""The command line: ``validate``, ``plan``, ``apply`` and ``sandbox``.

Heavy imports (aiohttp, the engine) happen inside the commands that need them, so
``--version`` and ``validate`` start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from batchsync import __version__

if TYPE_CHECKING:
    from batchsync.inventory import Inventory

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_STARTED = 2
EXIT_INTERRUPTED = 3
EXIT_CHANGES = 4
EXIT_LOCKED = 75


def _print_problems(inv: Inventory, out: object = None) -> None:
    stream = sys.stderr if out is None else out
    for p in inv.problems:
        where = f" (integration {p.integration_id})" if p.integration_id is not None else ""
        print(f"{p.file}: {p.path}: {p.message}{where}", file=stream)  # type: ignore[call-overload]


def cmd_validate(args: argparse.Namespace) -> int:
    import msgspec

    from batchsync.inventory import load

    inv = load(args.inventory)
    if args.format == "json":
        doc = {
            "valid": inv.valid,
            "integrations": len(inv.jobs),
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

    return parser


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
