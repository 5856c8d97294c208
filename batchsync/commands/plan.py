"""``batchsync plan``: read and diff every selected integration, show what ``apply`` would change; write nothing.

The run itself is :mod:`batchsync.commands._run`'s, shared with ``apply``; imported when
the command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from batchsync.commands._arguments import add_run_arguments

if TYPE_CHECKING:
    from batchsync.commands._run import RunSettings

NAME = "plan"
SUMMARY = "read and diff; show what apply would change; write nothing"
EXAMPLES = (
    "batchsync plan inventories/prod.toml --limit tag:eu --detailed-exitcode",
    "batchsync plan inventories/prod.toml --shard 0/4 --format json",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, apply=False)


def settings(args: argparse.Namespace) -> RunSettings:
    from batchsync.commands._run import settings_from

    return settings_from(args, "plan")


def run(settings: RunSettings) -> int:
    from batchsync.commands import _run
    from batchsync.health import no_history

    # --with-health counts each shop's exception logs since the last run on its account:
    # the run reads it from the run history it records to (no earlier run: 24 h; --since wins).
    return _run.run(settings, no_history)
