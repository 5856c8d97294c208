"""How a run behaves, as typed, frozen settings validated once.

``argparse`` stops at ``cli.py``: it turns the command line into a :class:`RunSettings`
here (or a :class:`UsageError`), and everything after it reads typed fields.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from batchsync.engine.options import FailureBudget, Options
from batchsync.inventory.shard import ShardSpec
from batchsync.usage import UsageError as UsageError  # re-exported: settings raise it

Command = Literal["plan", "apply"]
Format = Literal["text", "json"]
LogFormat = Literal["text", "json"]
RecapBy = Literal["account", "tag"]
NotifyOn = Literal["failure", "change", "always"]
NotifyFormat = Literal["slack", "json"]


def parse_failure_budget(text: str, flag: str) -> FailureBudget:
    """``3`` or ``5%``; UsageError naming the flag otherwise."""
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


class RunSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One ``plan`` or ``apply`` from the command line."""

    command: Command
    inventory: str
    options: Options
    timeout: float = 30.0
    base_url: str | None = None
    sandbox: bool = False
    allow_insecure_http: bool = False
    format: Format = "text"
    limit: tuple[str, ...] = ()
    shard: ShardSpec | None = None  # --shard I/N: this run's share of the accounts, after --limit
    retry_failed: str | None = None
    report: str | None = None
    junit: str | None = None
    metrics: str | None = None
    max_failures: FailureBudget | None = None
    grace_period: float = 10.0
    quiet: bool = False
    verbose: bool = False
    log_format: LogFormat = "text"
    detailed_exitcode: bool = False
    recap_by: RecapBy = "account"
    max_file_size: int = 256 * 1024 * 1024  # bytes: a larger inventory file is refused
    html: str | None = None
    notify: tuple[str, ...] = ()  # as given: env:NAME, file:PATH or a URL; resolved before the run
    notify_on: NotifyOn = "failure"
    notify_format: NotifyFormat = "slack"
    notify_timeout: float = 5.0  # seconds for every notification together


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
