"""The ``plan`` and ``apply`` run: its settings, the selection (``--limit``, then the shard,
then ``--retry-failed``), the checks before anything is sent, the locks, the signals, the
engine, and the sinks it drives.

Imported when a run starts, never by the parser: it is what brings anyio and the engine in.
The process-wide policies of a run (garbage collection, signals, the lock) live here, not
in the library modules it calls.
"""

from __future__ import annotations

import argparse
import gc
import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple

import anyio
import msgspec

from batchsync import eventloop, gcpolicy, usage
from batchsync.commands._arguments import (
    base_url,
    duration,
    history_location,
    non_negative_number,
    outputs_from,
    parse_failure_budget,
    positive_int,
    positive_number,
    shard_from_args,
    since_value,
)
from batchsync.commands._outputs import Batched, Outputs, close_run
from batchsync.commands._sending import account_urls, check_transport, token_refusals
from batchsync.commands._signals import held, until_signal, watch
from batchsync.engine.budget import files_for as budget_files
from batchsync.engine.budget import load as load_budget
from batchsync.engine.budget import save as save_budget
from batchsync.engine.engine import Engine
from batchsync.engine.lock import LockedError, LockError, account_lock_name, acquire_account_locks, acquire_lock
from batchsync.engine.options import FailureBudget, Options
from batchsync.exitcodes import EXIT_LOCKED, EXIT_NOT_STARTED, EXIT_OK, exit_code
from batchsync.gcpolicy import paused
from batchsync.inventory.select import declared_ids, without_integrations
from batchsync.inventory.shard import ShardSpec
from batchsync.model import Account, Inventory, Job, NotifyRoute
from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.build import OutputSettings, build_sinks, check_outputs, open_report, unbuilt
from batchsync.outputs.logs import flush_logs, setup_logging
from batchsync.outputs.progress import Progress
from batchsync.outputs.sanitize import Sanitizer
from batchsync.outputs.sink import CUT, End, Lost, OutputError, Sink, Start, close_all
from batchsync.outputs.terminal import Screen
from batchsync.redact import Redactor
from batchsync.usage import UsageError, shown

if TYPE_CHECKING:
    from batchsync.commands._health import LastRunStart
    from batchsync.commands._saved import Saved
    from batchsync.engine.snapshot import Lists
    from batchsync.outputs.notify import Webhook
    from batchsync.sendcloud.transport import HttpApi

log = logging.getLogger("batchsync")

Command = Literal["plan", "apply"]


class RunSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One ``plan`` or ``apply``, as typed, frozen settings checked once."""

    command: Command
    inventory: str
    options: Options
    timeout: float = 30.0
    base_url: str | None = None
    sandbox: bool = False
    allow_insecure_http: bool = False
    limit: tuple[str, ...] = ()
    shard: ShardSpec | None = None  # --shard I/N: this run's share of the accounts, after --limit
    retry_failed: str | None = None
    max_failures: FailureBudget | None = None
    grace_period: float = 10.0
    detailed_exitcode: bool = False
    require_all_credentials: bool = False  # an account's unresolvable credentials stop the whole run (exit 2)
    max_file_size: int = 256 * 1024 * 1024  # bytes: a larger inventory file is refused
    outputs: OutputSettings = OutputSettings()
    with_health: bool = False  # --with-health: each shop's exception logs beside its statuses
    since: datetime | None = None  # --since: wins over the last run's start and the 24 h default
    health_max_pages: int = 100
    plan: str | None = None  # apply --plan: the saved plan to carry out
    max_age: float = 7 * 86400.0  # seconds: an older plan is refused


def settings_from(args: argparse.Namespace, command: Command) -> RunSettings:
    """The run's settings from its arguments (see ``add_run_arguments``), checked once: a
    UsageError otherwise, which the metrics file records (a usage error once ``--metrics``
    is known is an attempt that never ran)."""
    try:
        return _settings_from(args, command)
    except UsageError:
        record_not_started(args.metrics, command, inventory=getattr(args, "inventory", None))
        raise


def _settings_from(args: argparse.Namespace, command: Command) -> RunSettings:
    url = base_url(args.base_url)
    if url is not None and args.sandbox:
        raise UsageError("--sandbox and --base-url exclude each other")
    apply = command == "apply"
    plan = getattr(args, "plan", None)
    if plan is not None:
        # A plan is a value: what was approved is applied whole, never a part chosen anew.
        given = [
            flag
            for flag, value in (
                ("--limit", args.limit),
                ("--shard", args.shard or args.shard_index_from_env),
                ("--retry-failed", args.retry_failed),
                ("--no-read", args.no_read),
            )
            if value
        ]
        if given:
            raise UsageError(f"--plan applies the plan as it was made: it does not go with {', '.join(given)}")
    elif getattr(args, "max_age", None) is not None:
        raise UsageError("--max-age goes with --plan")
    per_account = args.max_failures_per_account
    options = Options(
        write=apply,
        read_first=not (apply and args.no_read),
        allow_delete_all=apply and args.allow_delete_all,
        allow_invalid_mapping=args.allow_invalid_mapping,
        preflight=not args.no_preflight,
        concurrency=positive_int(args.concurrency, "--concurrency"),
        max_attempts=positive_int(args.max_attempts, "--max-attempts"),
        retry_max_time=positive_number(args.retry_max_time, "--retry-max-time"),
        max_failures_per_account=(
            parse_failure_budget(per_account, "--max-failures-per-account") if per_account else None
        ),
    )
    return RunSettings(
        command=command,
        inventory=args.inventory,
        options=options,
        timeout=positive_number(args.timeout, "--timeout"),
        base_url=url,
        sandbox=args.sandbox,
        allow_insecure_http=args.allow_insecure_http,
        limit=tuple(args.limit or ()),
        shard=shard_from_args(args),
        retry_failed=args.retry_failed,
        max_failures=parse_failure_budget(args.max_failures, "--max-failures") if args.max_failures else None,
        grace_period=non_negative_number(args.grace_period, "--grace-period"),
        detailed_exitcode=not apply and args.detailed_exitcode,
        require_all_credentials=args.require_all_credentials,
        max_file_size=args.max_file_size,
        outputs=outputs_from(args),
        with_health=args.with_health,
        since=since_value(args.since, time.time()),
        health_max_pages=positive_int(args.health_max_pages, "--health-max-pages"),
        plan=plan,
        max_age=duration(args.max_age, "--max-age") if getattr(args, "max_age", None) is not None else 7 * 86400.0,
    )


# -- what the run runs on: loaded, then narrowed by --limit, the shard, --retry-failed -----


def take_shard(jobs: Sequence[Job], spec: ShardSpec | None) -> tuple[list[Job], dict[str, Any] | None]:
    """The jobs of shard ``spec`` (all of them without one) and the report header's
    ``shard`` block. Call it on the ``--limit`` selection, before anything that depends
    on one machine's state (``--retry-failed``): every machine must split the same jobs."""
    if spec is None:
        return list(jobs), None
    from batchsync.inventory.shard import select_shard

    mine, split = select_shard(jobs, spec)
    return mine, split.header(spec.index)


class Selected(NamedTuple):
    inventory: Inventory
    jobs: list[Job]
    shard: dict[str, Any] | None  # the report header's shard block


def load_selected(settings: RunSettings) -> Selected | int:
    """Load, then select: ``--limit``, then the shard, then ``--retry-failed``."""
    from batchsync.inventory.loader import load
    from batchsync.inventory.select import select

    with paused():
        inv = load(
            settings.inventory,
            max_file_size=settings.max_file_size,
            isolate_credentials=not settings.require_all_credentials,
            token_url_derived=settings.sandbox or settings.base_url is not None,
        )
    if not inv.valid:
        for p in inv.problems:
            print(p.line(), file=sys.stderr)
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stderr)
        return EXIT_NOT_STARTED
    from batchsync.redact import Redactor
    from batchsync.usage import redact_with

    # From here every message, a usage error's too, goes through the run's redactor.
    redact_with(Redactor(v for a in inv.accounts.values() for v in a.echoes()))
    try:
        jobs, unmatched = select(inv.jobs, settings.limit)
    except ValueError as exc:
        raise UsageError(f"--limit: {exc}") from None
    for term in unmatched:
        print(shown(f"batchsync: warning: --limit {term} matches no integration"), file=sys.stderr)
    if not jobs:
        raise UsageError(f"no integration matches --limit {' '.join(settings.limit)}")
    # An empty shard (more shards than accounts) is no error: it runs, reports and exits 0,
    # so that `report merge` finds every shard's report.
    jobs, shard = take_shard(jobs, settings.shard)
    if shard is not None and not jobs and not settings.outputs.quiet:
        n = sum(shard["accounts"])
        print(
            f"batchsync: shard {settings.shard} holds no account ({n} account{'s' if n != 1 else ''} selected): "
            "nothing to do",
            file=sys.stderr,
        )
    if settings.retry_failed:
        from batchsync.outputs.report import read_retry_report

        try:
            earlier = read_retry_report(settings.retry_failed)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise UsageError(f"--retry-failed {settings.retry_failed}: {reason}") from None
        if earlier.complete:
            jobs = [j for j in jobs if j.integration_id in earlier.failed]
        else:
            # A run killed before its last line: what it never reached is left to do too.
            print(
                f"batchsync: {settings.retry_failed} is incomplete (the run was killed): retrying every selected "
                "integration it does not record as done",
                file=sys.stderr,
            )
            jobs = [j for j in jobs if j.integration_id not in earlier.succeeded]
        if not jobs:
            print(
                f"batchsync: nothing to retry: {settings.retry_failed} has no failed or skipped integration"
                + (f" in shard {settings.shard}" if settings.shard is not None else ""),
                file=sys.stderr,
            )
            if settings.shard is None:
                return EXIT_OK
    return Selected(inv, list(jobs), shard)


def run(settings: RunSettings, last_run_start: LastRunStart | None = None) -> int:
    """plan and apply: load, select, run the engine, drive the sinks; the exit code. A usage
    error or an invalid inventory is recorded in the metrics file as exit 2.
    ``last_run_start``: see :data:`LastRunStart` (``--with-health``)."""
    try:
        plan = None
        if settings.plan is not None:  # a saved plan's modules only for apply --plan and plan --out
            from batchsync.commands import _saved

            plan = _saved.read(settings.plan, settings.max_age)
        loaded = load_selected(settings)
        if isinstance(loaded, int):
            if loaded == EXIT_NOT_STARTED:  # an invalid inventory
                record_not_started(settings.outputs.metrics, settings.command, inventory=settings.inventory)
            return loaded
        inv, jobs, shard = loaded
        saved = None
        if plan is not None:
            from batchsync.commands import _saved

            jobs, saved = _saved.for_apply(plan, inv, quiet=settings.outputs.quiet)
        elif settings.outputs.plan_out:
            shard_given = str(settings.shard) if settings.shard is not None else None
            from batchsync.commands import _saved
            from batchsync.inventory.plan import Selection

            selection = Selection(settings.limit, shard_given, settings.retry_failed)
            saved = _saved.for_out(settings.inventory, inv, jobs, selection)
    except UsageError:
        record_not_started(settings.outputs.metrics, settings.command, inventory=settings.inventory)
        raise
    blocked: list[Job] = []
    if inv.unresolved:  # those accounts' integrations fail now; nothing of theirs is sent
        blocked = [j for j in jobs if j.account in inv.unresolved]
        jobs = [j for j in jobs if j.account not in inv.unresolved]
    if settings.max_failures is not None:
        options = msgspec.structs.replace(settings.options, max_failures=settings.max_failures.limit(len(jobs)))
        settings = msgspec.structs.replace(settings, options=options)
    return run_command(settings, inv, jobs, shard, blocked, last_run_start, saved)


GC_THRESHOLD = 20_000  # allocations between young collections during a run (Python's default: 700)


@contextmanager
def rare_gc() -> Iterator[None]:
    """Collect cycles rarely while a run lasts.

    Each request allocates and frees a few hundred objects, none of them in a cycle; at
    Python's default threshold the cyclic GC ran every few requests and took about a
    tenth of the CPU of a run with limits off. What was loaded before (the inventory) is
    frozen out of collections for the run's length, without a full collection first:
    that would only delay the first request. Until the engine starts (:func:`execute`
    calls ``gcpolicy.started``), no collection at all: the event loop's and the HTTP
    client's modules are imported then, and each collection would only delay the first
    request; what they made is frozen too.
    """
    saved = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(saved[0], GC_THRESHOLD), *saved[1:])
    gcpolicy.starting()
    try:
        yield
    finally:
        gcpolicy.started()  # when the run broke off before its engine started
        gc.set_threshold(*saved)
        gc.unfreeze()


async def _every(seconds: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` periodically (the progress line moves even while nothing finishes)."""
    while True:
        await anyio.sleep(seconds)
        tick()


async def open_api(
    stack: AsyncExitStack, settings: RunSettings, inv: Inventory, jobs: Sequence[Job], redactor: Redactor
) -> tuple[HttpApi, str | None]:
    """The HTTP API a run (or ``health``) sends through, closed with ``stack``, and the base
    URL it uses: ``--sandbox`` starts the embedded sandbox first, seeded with the accounts
    that can run (one whose credentials are unresolved has none)."""
    from batchsync.sendcloud.transport import HttpApi

    base_url = settings.base_url
    if settings.sandbox:
        from batchsync.sandbox.config import SandboxConfig
        from batchsync.sandbox.server import run_sandbox

        seeded = (
            inv
            if not inv.unresolved
            else msgspec.structs.replace(inv, jobs=[j for j in inv.jobs if j.account not in inv.unresolved])
        )
        box = await stack.enter_async_context(run_sandbox(seeded, SandboxConfig(in_sync=0.5, seed=1)))
        base_url = box.url
        log.info("sandbox: serving %d integrations at %s", len(inv.jobs), box.url)
    urls = [url for name in {j.account for j in jobs} for url in account_urls(inv.accounts[name], base_url)]
    api = await stack.enter_async_context(
        HttpApi(
            concurrency=settings.options.concurrency,
            timeout=settings.timeout,
            base_url=base_url,
            urls=urls,
            redactor=redactor,
        )
    )
    return api, base_url


async def execute(
    inv: Inventory,
    jobs: Sequence[Job],
    settings: RunSettings,
    on_outcome: Callable[[Outcome], None],
    on_engine: Callable[[Engine], None] | None = None,
    tick: Callable[[], None] | None = None,
    redactor: Redactor | None = None,
    last_run_start: LastRunStart | None = None,
    saved: Saved | None = None,
) -> Summary:
    """Run the engine over HTTP (inside an embedded sandbox when asked) until done or stopped.
    With ``--with-health`` each account's exception logs are read first, on its read budget,
    and every outcome carries its integration's health."""
    async with AsyncExitStack() as stack:
        redactor = redactor or Redactor()
        api, base_url = await open_api(stack, settings, inv, jobs, redactor)
        # Every outcome is made safe once, before any sink sees it.
        sanitizer = Sanitizer(redactor)
        # What the last run on this host left of each account's budget (an embedded sandbox
        # is new every run: its buckets are full).
        # A new client (declared, no integration yet) is listed too when the run is the
        # whole inventory (no --limit, --shard, --retry-failed or plan): see list_undeclared.
        whole = not (settings.limit or settings.shard or settings.retry_failed or settings.plan is not None)
        empty = without_integrations(inv) if settings.options.preflight and whole else []
        names = {j.account for j in jobs}.union(empty)
        files = {} if settings.sandbox else budget_files(inv.accounts, names, base_url)
        carried = load_budget(files) if files else {}
        found = None
        if settings.with_health and jobs:
            from batchsync.commands._health import attach, read_for_run

            gcpolicy.started()  # the logs' pages and errors are collected like the run's own
            found = await until_signal(  # a SIGTERM there stops the run (the engine skips all)
                read_for_run,
                inv,
                jobs,
                api,
                settings.options,
                since=settings.since,
                max_pages=settings.health_max_pages,
                carried=carried,
                redact=sanitizer.text,
                last_run_start=last_run_start,
            )
        if found is not None:
            carried = {**carried, **found.carried}
            on_outcome = attach(on_outcome, found.by_integration)
        before_write = saved.before_write if saved is not None else None
        engine = Engine(
            inv.accounts,
            api,
            settings.options,
            on_outcome,
            sanitize=sanitizer.outcome,
            before_write=before_write,
            redact=sanitizer.redactor,
        )
        if on_engine is not None:
            on_engine(engine)
        engine.carried = carried
        if found is not None:
            engine.adopted = found.reads
        if settings.options.preflight:
            engine.declared = declared_ids(inv)
        lists: Lists | None = None
        gcpolicy.started()  # see rare_gc: collections from here
        try:
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()
                tg.start_soon(watch, engine, scope, settings.grace_period)
                if tick is not None:
                    tg.start_soon(_every, 0.2, tick)
                with scope:
                    if empty:
                        from batchsync.engine.snapshot import Lists, list_undeclared

                        lists = Lists(inv.accounts, carried)
                        async with anyio.create_task_group() as listing:
                            listing.start_soon(
                                list_undeclared, lists, empty, api, settings.options, lambda: engine.summary, redactor
                            )
                            await engine.run(jobs)
                    else:
                        await engine.run(jobs)
                tg.cancel_scope.cancel()
        finally:
            if files:
                save_budget((lists.left() if lists is not None else {}) | engine.budget_left(), files)
        if scope.cancelled_caught and engine.stopping is None:
            engine.stop("interrupted")
        if found is not None:  # the logs' reads count among the account's requests
            for name, n in found.by_account.items():
                stats = engine.summary.accounts.get(name)
                if stats is not None:
                    stats.requests += n
                    stats.reads += n
                    stats.throttled += found.reads[name].throttled if name in found.reads else 0
        note_declared_rates(engine.summary, inv.accounts)
        return engine.summary


def credential_failures(
    inv: Inventory, blocked: Sequence[Job], on_outcome: Callable[[Outcome], None]
) -> dict[str, int]:
    """Each job of an account whose credentials could not be resolved, failed at once
    (kind ``credentials``, the account and the reference named, never a value); the
    count per account, for the summary."""
    counts: dict[str, int] = {}
    now = round(time.time(), 3)
    for name in sorted({j.account for j in blocked}):
        log.warning("%s: its integrations fail, the other accounts run", inv.unresolved[name])
    for job in sorted(blocked, key=lambda j: (j.account, j.integration_id)):
        info = ErrorInfo("credentials", detail=inv.unresolved[job.account])
        on_outcome(
            Outcome(job.integration_id, job.account, "failed", error=info, tags=job.tags, started_at=now,
                    ended_at=now, name=job.name)
        )  # fmt: skip
        counts[job.account] = counts.get(job.account, 0) + 1
    return counts


def count_failures(summary: Summary, failed: Mapping[str, int]) -> None:
    """The credential failures in the run's summary: its counts, its exit code."""
    for name, n in failed.items():
        summary.accounts.setdefault(name, AccountStats()).failed += n


def note_declared_rates(summary: Summary, accounts: Mapping[str, Account]) -> None:
    """Put the inventory's rates beside the ones the run settled on: the recap and the
    metrics name the limits that were declared too high."""
    for name, stats in summary.accounts.items():
        account = accounts.get(name)
        if account is not None:
            stats.read_declared = account.limits.reads_per_minute
            stats.write_declared = account.limits.writes_per_minute


def account_identity(account: Account) -> str:
    """What one Sendcloud account is known by: its public key, or its OAuth2 client id."""
    return account.identity.reveal()


def take_locks(settings: RunSettings, inv: Inventory, jobs: Sequence[Job]) -> ExitStack:
    """The inventory's lock, then the lock of every account the selected jobs touch: all of
    them, or a LockError (LockedError: another run holds one) and none."""
    with ExitStack() as stack:
        stack.enter_context(acquire_lock(settings.inventory))
        keys: dict[str, str] = {}
        for name in sorted({job.account for job in jobs}):
            account = inv.accounts[name]
            # Runs with --sandbox meet only each other (each serves its own, but they are
            # locked alike, as their inventories are).
            url = "embedded-sandbox" if settings.sandbox else settings.base_url or account.base_url
            keys[name] = account_lock_name(account_identity(account), url)
        stack.enter_context(acquire_account_locks(settings.inventory, keys))
        return stack.pop_all()


def record_not_started(
    metrics: str | None, command: str, code: int = EXIT_NOT_STARTED, inventory: str | None = None
) -> None:
    """An attempt that never ran (exit 2 or 75) still leaves its exit code in the metrics
    file; its last success stays as it was."""
    if not metrics:
        return
    from batchsync.outputs.metrics import inventory_label, write_exit_code

    try:
        write_exit_code(metrics, command, code, labels=inventory_label(inventory), source=inventory)
    except OSError as exc:
        print(usage.shown(f"batchsync: cannot write the metrics {metrics}: {exc.strerror}"), file=sys.stderr)


def webhooks(settings: RunSettings) -> list[Webhook]:
    """``--notify`` values resolved now: a missing variable is found before the run, not after."""
    if not settings.outputs.notify:
        return []
    from batchsync.outputs.notify import WebhookError, resolve_webhook

    try:
        hooks = [resolve_webhook(ref) for ref in settings.outputs.notify]
    except WebhookError as exc:
        raise UsageError(str(exc)) from None
    literal = sum(1 for hook in hooks if hook.ref == "URL")
    if literal:
        # As mysql does for -p<password>: it works, and it is said once, on stderr.
        print(
            f"batchsync: warning: --notify given {'a webhook URL' if literal == 1 else f'{literal} webhook URLs'} "
            "on the command line, which every user of this machine can read (ps, /proc) and a shell "
            "keeps in its history: a webhook URL is a credential; give it as env:NAME or file:PATH",
            file=sys.stderr,
        )
    return hooks


def route_hooks(settings: RunSettings, inv: Inventory) -> list[tuple[NotifyRoute, Webhook]]:
    """The inventory's ``[[notify]]`` routes with their webhooks resolved now; a route whose
    reference cannot be resolved is named on stderr and left out (its client's news is
    lost, not the run)."""
    if not inv.notify:
        return []
    from pathlib import Path

    from batchsync.outputs.notify import WebhookError, resolve_webhook

    out: list[tuple[NotifyRoute, Webhook]] = []
    for i, route in enumerate(inv.notify):
        try:
            out.append((route, resolve_webhook(route.url, Path(settings.inventory).parent)))
        except WebhookError as exc:
            why = str(exc).removeprefix(f"--notify {route.url}: ")
            said = f"batchsync: warning: [[notify]] route {i + 1} ({route.url}): {why}; not sent"
            print(shown(said), file=sys.stderr)  # a reference typed with an escape sequence acts on no terminal
    return out


def run_command(
    settings: RunSettings,
    inv: Inventory,
    jobs: Sequence[Job],
    shard: dict[str, Any] | None = None,
    blocked: Sequence[Job] = (),
    last_run_start: LastRunStart | None = None,
    saved: Saved | None = None,
) -> int:
    """Check the outputs, take the lock (apply), run, and report; the exit code.

    ``shard``: the report header's shard block (``Split.header``); ``jobs`` may then be
    empty (a shard with no account), which still reports and exits 0. ``blocked``: the
    selected jobs of accounts whose credentials could not be resolved (``inv.unresolved``):
    each gets a ``failed`` outcome of kind ``credentials``, and nothing of theirs is sent."""
    # Whatever a message, a log line or an outcome carries, these values come out as ***:
    # the one the command line registered once it had loaded the inventory, or a new one.
    registered = usage.redactor()
    redactor = registered if isinstance(registered, Redactor) else Redactor()
    redactor.add(v for a in inv.accounts.values() for v in a.echoes())
    usage.redact_with(redactor)
    try:
        try:
            # Nor may an output replace the plan an apply reads.
            check_outputs(settings.outputs, [inv.path, *inv.files], plan=settings.plan)
        except OutputError as exc:
            raise UsageError(str(exc)) from None
        check_transport(inv, jobs, settings.base_url, sandbox=settings.sandbox, insecure=settings.allow_insecure_http)
        if settings.require_all_credentials and not settings.sandbox:
            refused = token_refusals(inv, jobs, settings.base_url, settings.options.concurrency, settings.timeout)
            if refused:
                raise UsageError(f"--require-all-credentials: {'; '.join(refused)}; nothing was sent")
        hooks = webhooks(settings)
        # A rehearsal on the embedded sandbox records nothing unless --history says where:
        # its made-up results would end (or start) the failure streaks of the real runs.
        off = settings.outputs.no_history or (settings.sandbox and settings.outputs.history is None)
        where = history_location(settings.outputs.history, off, inv.history)
    except UsageError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
    if where is not None:
        redactor.add(where.secrets)  # a DSN, its password: never in any output
    if settings.with_health and settings.since is None and jobs:
        from batchsync.commands._health import from_history

        def warn(line: str) -> None:
            print(line, file=sys.stderr)

        last_run_start = from_history(where, {j.account for j in jobs}, redactor, warn, settings.inventory)
    settings = msgspec.structs.replace(settings, outputs=msgspec.structs.replace(settings.outputs, history_at=where))
    o = settings.outputs
    level = "DEBUG" if o.verbose else "ERROR" if o.quiet else "WARNING"
    routes = route_hooks(settings, inv)
    redactor.add(h.reveal() for h in hooks)  # a webhook URL is a credential too
    redactor.add(h.reveal() for _, h in routes)
    setup_logging(level, o.log_format, redactor=redactor, buffered=True)
    if settings.command != "apply":
        with held():
            return _run(settings, inv, jobs, shard, redactor, hooks, blocked, routes, last_run_start, saved)
    try:
        locks = take_locks(settings, inv, jobs)
    except LockedError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        record_not_started(o.metrics, settings.command, EXIT_LOCKED, settings.inventory)
        return EXIT_LOCKED
    except LockError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        record_not_started(o.metrics, settings.command, inventory=settings.inventory)
        return EXIT_NOT_STARTED
    with locks, held():
        return _run(settings, inv, jobs, shard, redactor, hooks, blocked, routes, last_run_start, saved)


def _run(
    settings: RunSettings,
    inv: Inventory,
    jobs: Sequence[Job],
    shard: dict[str, Any] | None,
    redactor: Redactor,
    hooks: Sequence[Webhook] = (),
    blocked: Sequence[Job] = (),
    routes: Sequence[tuple[NotifyRoute, Webhook]] = (),
    last_run_start: LastRunStart | None = None,
    saved: Saved | None = None,
) -> int:
    mode, o = settings.command, settings.outputs
    out = Screen(sys.stdout)
    lost = Lost(out)
    started = time.time()
    # A run without shards is a group of its own: its key goes in its report's header, so
    # that a merge of that report is the same night for the failure streaks, counted once.
    solo = f"solo:{secrets.token_hex(12)}"

    digests: list[str] = []

    def begun(history: bool = True) -> Start:
        """What the sinks are told of the run as it started; the inventory's digest only where
        the run history (``history``) or a shard's group (for report merge) needs it."""
        if not digests and ((history and o.history_at is not None) or shard is not None):
            from batchsync.history.store import inventory_hash

            digests.append(inventory_hash(settings.inventory))
        digest = digests[0] if digests and (history or shard is not None) else ""
        group = solo
        if shard is not None:
            from batchsync.history.store import group_key

            group = group_key(shard, digest, started)
        return Start(
            mode=mode,
            started_at=started,
            inventory=settings.inventory,
            selected=len(jobs) + len(blocked),
            shard=shard,
            limits={name: a.limits for name, a in inv.accounts.items()},
            plan=saved.header if saved is not None else None,
            inventory_sha256=digest,
            group=group,
        )

    # The report is made now: one that cannot be stops the run before anything is sent. The
    # other outputs are opened once its first request is on its way (see commands._outputs).
    report = None
    if o.report:
        try:
            report = open_report(o.report, begun(history=False), lost)
        except OSError as exc:
            from batchsync.outputs.report import ReportInUse

            print(redactor(f"batchsync: cannot write the report {o.report}: {exc.strerror}"), file=sys.stderr)
            # Another run writing it is a lock held (75: try again when it is done).
            code = EXIT_LOCKED if isinstance(exc, ReportInUse) else EXIT_NOT_STARTED
            record_not_started(o.metrics, mode, code, inventory=settings.inventory)
            return code

    def build(err: IO[str]) -> list[Sink]:
        return build_sinks(
            o,
            begun(),
            lost,
            out=out,
            err=err,
            redact=redactor,
            hooks=hooks,
            selected_ids=(j.integration_id for j in (*jobs, *blocked)),  # a blocked account's streaks too
            routes=routes,
            plan=saved.context if saved is not None else None,
            report=report,
        )

    # A progress line only for a person at a terminal: not with -q, JSON output or JSON logs.
    plain = not (o.quiet or o.format == "json" or o.log_format == "json")
    progress = Progress(len(jobs) + len(blocked), sys.stderr, enabled=None if plain else False, before_draw=out.flush)
    out.before_write = progress.clear
    flush_logs(progress.clear, hook=True)  # a log line never starts on the progress line's row
    outputs = Outputs(build, sys.stderr, progress.clear, early=[report] if report is not None else [])
    batched = Batched([outputs.add])
    deliver = batched.deliver

    def on_outcome(outcome: Outcome) -> None:
        batched.add(outcome)
        progress.update(outcome)

    def on_engine(engine: Engine) -> None:
        progress.throttled = engine.throttled_accounts

    def tick() -> None:  # a few times a second: the report to disk, the log and the terminal redrawn
        deliver()
        outputs.flush()
        flush_logs()
        if progress.enabled:
            progress.refresh()  # which writes what stdout buffered first
        else:
            out.flush()

    summary: Summary | None = None
    try:
        failed = credential_failures(inv, blocked, on_outcome)
        with rare_gc():
            summary = eventloop.run(
                execute, inv, jobs, settings, on_outcome, on_engine, tick, redactor, last_run_start, saved
            )
        deliver()
        outputs.flush()  # every outcome line on its way to disk now: the outputs' end may take minutes
        count_failures(summary, failed)
        ran = exit_code(summary, mode, settings.detailed_exitcode)
    except BaseException:
        try:
            deliver()
        finally:
            close_all(outputs.opened(), None)  # the run broke off: no summary line
        raise
    finally:
        flush_logs()  # the requests' lines before the outcomes they led to, as the timer writes them
        out.flush()
        progress.close()
    end = End(summary=summary, code=lambda: lost.exit_code(ran), started_at=summary.started_at,
              ended_at=summary.started_at + summary.duration_s)  # fmt: skip
    return close_run(outputs, end, lost, ran, lambda: unbuilt(o, lost, CUT, redactor), redactor, batched.error)
