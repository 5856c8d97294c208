"""``batchsync apply``: read and diff every selected integration, and write what differs.

The run itself is :mod:`batchsync.commands._run`'s, shared with ``plan``; imported when
the command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from batchsync.commands._arguments import add_run_arguments

if TYPE_CHECKING:
    from batchsync.commands._run import RunSettings

NAME = "apply"
SUMMARY = "read, diff and write what differs"
EXAMPLES = (
    "batchsync apply inventories/prod.toml --report last.jsonl --retry-failed yesterday.jsonl",
    "batchsync apply /config/inventory.toml --shard-index-from-env JOB_COMPLETION_INDEX --shard-count 4 "
    "--report /reports/shard-0.jsonl",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, apply=True)


def settings(args: argparse.Namespace) -> RunSettings:
    from batchsync.commands._run import settings_from

    return settings_from(args, "apply")


def run(settings: RunSettings) -> int:
    from batchsync.commands import _run
    from batchsync.health import no_history

    # --with-health counts each shop's exception logs since the last run on its account:
    # the run reads it from the run history it records to (no earlier run: 24 h; --since wins).
    return _run.run(settings, no_history)
