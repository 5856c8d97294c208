"""``batchsync validate``: load and check an inventory, and show how ``--shards N`` would
split it; nothing is sent."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Literal

import msgspec

from batchsync.commands._arguments import INVENTORY_HELP, add_max_file_size, shard_count
from batchsync.exitcodes import EXIT_NOT_STARTED, EXIT_OK

NAME = "validate"
SUMMARY = "load and check an inventory; send nothing"
EXAMPLES = (
    "batchsync validate inventories/prod.toml",
    "batchsync validate inventories/prod.toml --shards 4 --format json",
)


class ValidateSettings(msgspec.Struct, frozen=True):
    inventory: str
    format: Literal["text", "json"] = "text"
    shards: int | None = None  # also show the split over this many shards
    max_file_size: int = 256 * 1024 * 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inventory", metavar="INVENTORY", help=INVENTORY_HELP)
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a line per problem (default); json: one object",
    )
    p.add_argument(
        "--shards",
        type=shard_count,
        metavar="N",
        help="also print how --shard I/N splits the accounts over N shards, and how balanced that is",
    )
    add_max_file_size(p)


def settings(args: argparse.Namespace) -> ValidateSettings:
    return ValidateSettings(args.inventory, args.format, args.shards, args.max_file_size)


def run(settings: ValidateSettings) -> int:
    from batchsync.gcpolicy import paused
    from batchsync.inventory.loader import load
    from batchsync.inventory.shard import account_sizes, partition, split_document, split_lines

    with paused():
        inv = load(settings.inventory, max_file_size=settings.max_file_size)
    sizes = account_sizes(inv.jobs)
    split = partition(sizes, settings.shards) if settings.shards is not None and inv.valid else None
    if settings.format == "json":
        doc: dict[str, Any] = {
            "valid": inv.valid,
            "integrations": inv.declared,
            "problems": inv.problems,
            "warnings": inv.warnings,
        }
        if settings.shards is not None:  # asked for: null when the inventory is invalid
            doc["shards"] = split_document(split, sizes) if split is not None else None
        from batchsync.outputs.streams import json_for

        sys.stdout.write(json_for(sys.stdout, msgspec.json.encode(doc).decode()) + "\n")
        return EXIT_OK if inv.valid else EXIT_NOT_STARTED
    for p in inv.problems:
        print(p.line())
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
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent")
    return EXIT_OK if inv.valid else EXIT_NOT_STARTED
