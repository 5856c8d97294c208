"""``batchsync health``: load and select as ``plan`` does, read every selected account's
exception logs on its read budget, and print the failing shops (text) or one document
(``--format json``). Exit 0 when every account's logs were read (failing shops or not: a
shop's trouble is news, not an error of this command), 1 when some account's could not be.

Imported when the command runs, never by the parser.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from batchsync import eventloop, usage
from batchsync.commands._arguments import base_url, positive_int, positive_number, shard_from_args, since_value
from batchsync.commands._health import LastRunStart, moments
from batchsync.commands._run import RunSettings, load_selected, open_api
from batchsync.commands._sending import check_transport
from batchsync.engine.budget import files_for as budget_files
from batchsync.engine.budget import load as load_budget
from batchsync.engine.budget import save as save_budget
from batchsync.engine.health import HEALTH_BOUNDS, HealthRead, read_health
from batchsync.engine.options import Options
from batchsync.exitcodes import EXIT_FAILED, EXIT_NOT_STARTED, EXIT_OK, EXIT_OUTPUT_LOST
from batchsync.health import shown_time, unknown
from batchsync.model import Inventory, Job
from batchsync.outputs.build import OutputSettings
from batchsync.outputs.health import shop_line
from batchsync.outputs.logs import flush_logs, setup_logging
from batchsync.outputs.sanitize import Sanitizer
from batchsync.outputs.streams import json_for
from batchsync.redact import Redactor
from batchsync.text import display
from batchsync.usage import UsageError


def settings_from(args: argparse.Namespace) -> RunSettings:
    url = base_url(args.base_url)
    if url is not None and args.sandbox:
        raise UsageError("--sandbox and --base-url exclude each other")
    options = Options(
        write=False,
        concurrency=positive_int(args.concurrency, "--concurrency"),
        max_attempts=positive_int(args.max_attempts, "--max-attempts"),
        retry_max_time=positive_number(args.retry_max_time, "--retry-max-time"),
    )
    return RunSettings(
        command="plan",
        inventory=args.inventory,
        options=options,
        timeout=positive_number(args.timeout, "--timeout"),
        base_url=url,
        sandbox=args.sandbox,
        allow_insecure_http=args.allow_insecure_http,
        limit=tuple(args.limit or ()),
        shard=shard_from_args(args),
        max_file_size=args.max_file_size,
        outputs=OutputSettings(
            format=args.format,
            quiet=args.quiet,
            verbose=args.verbose,
            log_format=args.log_format,
            history=getattr(args, "history", None),
        ),
        with_health=True,
        since=since_value(args.since, time.time()),
        health_max_pages=positive_int(args.health_max_pages, "--health-max-pages"),
    )


async def _read(
    settings: RunSettings, inv: Inventory, jobs: Sequence[Job], since: dict[str, datetime], redactor: Redactor
) -> HealthRead:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        api, url = await open_api(stack, settings, inv, jobs, redactor)
        sanitizer = Sanitizer(redactor)
        files = {} if settings.sandbox else budget_files(inv.accounts, {j.account for j in jobs}, url)
        carried = load_budget(files) if files else {}
        bounds = msgspec.structs.replace(HEALTH_BOUNDS, pages=settings.health_max_pages)
        found = await read_health(
            inv.accounts, api, jobs, since, settings.options, bounds=bounds, carried=carried, redact=sanitizer.text
        )
        if files:
            save_budget({name: (reads, writes) for name, (_, reads, writes) in found.carried.items()}, files)
        return found


def document(jobs: Sequence[Job], since: dict[str, datetime], found: HealthRead, code: int) -> dict[str, Any]:
    """``--format json``: per selected integration its ``health``; per account since when
    and whether its logs could be read; the failing shops' ids."""
    rows: list[dict[str, Any]] = []
    failing: list[int] = []
    for job in sorted(jobs, key=lambda j: (j.account, j.integration_id)):
        health = found.by_integration.get(job.integration_id)
        rows.append(
            {
                "integration_id": job.integration_id,
                "account": job.account,
                "tags": list(job.tags),
                "health": msgspec.to_builtins(health) if health is not None else None,
            }
        )
        if health is not None and health.failing:
            failing.append(job.integration_id)
    return {
        "command": "health",
        "accounts": {
            name: {
                "since": shown_time(moment),
                "error": found.failed.get(name),
                "unreadable_records": found.unreadable.get(name, 0),
            }
            for name, moment in since.items()
        },
        "integrations": rows,
        "failing": failing,
        "requests": found.requests,
        "exit_code": code,
    }


def text_lines(jobs: Sequence[Job], since: dict[str, datetime], found: HealthRead, verbose: bool) -> list[str]:
    lines: list[str] = []
    failing = 0
    for job in sorted(jobs, key=lambda j: (j.account, j.integration_id)):
        health = found.by_integration.get(job.integration_id)
        if health is None or health.unknown is not None:
            continue
        if health.failing:
            failing += 1
            lines.append("! " + shop_line(job.integration_id, job.account, health, job.name))
        elif verbose:
            lines.append(f"  integration {job.integration_id} ({display(job.account)}): no exception logs")
    for name, reason in sorted(found.failed.items()):
        lines.append(f"? account {display(name)}: {reason}")
    for name, n in sorted(found.unreadable.items()):
        lines.append(
            f"? account {display(name)}: {n} exception log record{'s' if n != 1 else ''} unreadable, not counted"
        )
    moments_ = sorted({shown_time(m) for m in since.values()})
    when = moments_[0] if len(moments_) == 1 else f"{moments_[0]} (or later, per account)"
    unread = f"; {len(found.failed)} account{'s' if len(found.failed) != 1 else ''} unread" if found.failed else ""
    lines.append(
        f"health: {failing} of {len(jobs)} shop{'s' if len(jobs) != 1 else ''} with exception logs since {when}{unread}"
    )
    return lines


def run(settings: RunSettings, last_run_start: LastRunStart | None) -> int:
    loaded = load_selected(settings)
    if isinstance(loaded, int):
        return loaded
    inv, jobs, _ = loaded
    registered = usage.redactor()
    redactor = registered if isinstance(registered, Redactor) else Redactor()
    redactor.add(v for a in inv.accounts.values() for v in a.echoes())
    usage.redact_with(redactor)
    try:
        check_transport(inv, jobs, settings.base_url, sandbox=settings.sandbox, insecure=settings.allow_insecure_http)
    except UsageError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
    o = settings.outputs
    setup_logging("DEBUG" if o.verbose else "ERROR" if o.quiet else "WARNING", o.log_format, redactor=redactor)
    if settings.since is None and jobs:  # since the last recorded run: the history of plan and apply
        from batchsync.commands._arguments import history_location
        from batchsync.commands._health import from_history

        try:
            where = history_location(settings.outputs.history, False, inv.history)
        except UsageError as exc:
            print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
            return EXIT_NOT_STARTED
        if where is not None:
            redactor.add(where.secrets)

        def warn(line: str) -> None:
            print(line, file=sys.stderr)

        last_run_start = from_history(where, {j.account for j in jobs}, redactor, warn, settings.inventory)
    since = moments(jobs, settings.since, last_run_start)
    # An account whose credentials cannot be resolved is read by no request: its logs are
    # unknown, for that reason (as plan and apply fail its integrations), and the others are read.
    readable = [j for j in jobs if j.account not in inv.unresolved]
    found = eventloop.run(_read, settings, inv, readable, since, redactor) if readable else HealthRead({}, {})
    for job in jobs:
        why = inv.unresolved.get(job.account)
        if why is not None:
            found.failed[job.account] = why
            found.by_integration[job.integration_id] = unknown(since[job.account], why)
    flush_logs()
    code = EXIT_FAILED if found.failed else EXIT_OK
    try:
        if o.format == "json":
            text = msgspec.json.encode(document(jobs, since, found, code)).decode()
            sys.stdout.write(json_for(sys.stdout, text) + "\n")
        else:
            lines = text_lines(jobs, since, found, o.verbose)
            if o.quiet:
                lines = [line for line in lines if not line.startswith(("health:", "  "))]
            if lines:
                sys.stdout.write("\n".join(redactor(line) for line in lines) + "\n")
        sys.stdout.flush()
    except OSError as exc:
        print(f"batchsync: stdout was not written: {exc.strerror}", file=sys.stderr)
        return EXIT_OUTPUT_LOST if code == EXIT_OK else code
    return code
