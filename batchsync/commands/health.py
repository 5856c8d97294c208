"""``batchsync health``: each selected shop's connection problems, from Sendcloud's integration
exception logs since the last run (``--since``; default 24 h); it only reads.

The selection, limits and budgets are ``plan``'s; the read and the output are
:mod:`batchsync.commands._health_run`'s, imported when the command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from batchsync.commands._arguments import (
    add_allow_insecure_http,
    add_health_arguments,
    add_history_arguments,
    add_reading_arguments,
    add_shard_arguments,
)

if TYPE_CHECKING:
    from batchsync.commands._run import RunSettings

NAME = "health"
SUMMARY = "read each shop's integration exception logs; show the failing shops; change nothing"
EXAMPLES = (
    "batchsync health inventories/prod.toml --since 12h",
    "batchsync health inventories/prod.toml --limit tag:eu --format json",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_reading_arguments(p, "text: the failing shops and a line per account (default); json: one document on stdout")
    p.add_argument("--sandbox", action="store_true", help="read from an embedded sandbox seeded from the inventory")
    add_allow_insecure_http(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print only the failing shops and the errors")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="format of log lines on stderr (text)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also list the shops without exception logs")
    add_shard_arguments(p)
    add_health_arguments(p, flag=False)
    add_history_arguments(p, reading=True)  # since when: the last run recorded there


def settings(args: argparse.Namespace) -> RunSettings:
    from batchsync.commands._health_run import settings_from

    return settings_from(args)


def run(settings: RunSettings) -> int:
    from batchsync.commands._health_run import run as run_health
    from batchsync.health import no_history

    # The run history (--history, else the inventory's [history] url, else the default
    # file) says when the last run on an account started; without one, 24 h.
    return run_health(settings, no_history)
