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
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import anyio
import msgspec

from batchsync import eventloop, usage
from batchsync.commands._arguments import (
    base_url,
    non_negative_number,
    outputs_from,
    parse_failure_budget,
    positive_int,
    positive_number,
    shard_from_args,
)
from batchsync.engine.budget import files_for as budget_files
from batchsync.engine.budget import load as load_budget
from batchsync.engine.budget import save as save_budget
from batchsync.engine.engine import Engine
from batchsync.engine.lock import LockedError, LockError, account_lock_name, acquire_account_locks, acquire_lock
from batchsync.engine.options import FailureBudget, Options
from batchsync.exitcodes import EXIT_LOCKED, EXIT_NOT_STARTED, EXIT_OK, exit_code
from batchsync.gcpolicy import paused
from batchsync.inventory.shard import ShardSpec
from batchsync.model import Account, Inventory, Job, OAuth2Credentials
from batchsync.outcome import Outcome, Summary
from batchsync.outputs.build import OutputSettings, build_sinks, check_outputs
from batchsync.outputs.logs import flush_logs, setup_logging
from batchsync.outputs.progress import Progress
from batchsync.outputs.sanitize import Sanitizer
from batchsync.outputs.sink import End, Lost, OutputError, Start, close_all
from batchsync.outputs.terminal import Screen
from batchsync.redact import Redactor
from batchsync.urls import in_clear
from batchsync.usage import UsageError, shown

if TYPE_CHECKING:
    from batchsync.outputs.notify import Webhook

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
    max_file_size: int = 256 * 1024 * 1024  # bytes: a larger inventory file is refused
    outputs: OutputSettings = OutputSettings()


def settings_from(args: argparse.Namespace, command: Command) -> RunSettings:
    """The run's settings from its arguments (see ``add_run_arguments``), checked once: a
    UsageError otherwise, which the metrics file records (a usage error once ``--metrics``
    is known is an attempt that never ran)."""
    try:
        return _settings_from(args, command)
    except UsageError:
        record_not_started(args.metrics, command)
        raise


def _settings_from(args: argparse.Namespace, command: Command) -> RunSettings:
    url = base_url(args.base_url)
    if url is not None and args.sandbox:
        raise UsageError("--sandbox and --base-url exclude each other")
    apply = command == "apply"
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
        max_file_size=args.max_file_size,
        outputs=outputs_from(args),
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
        inv = load(settings.inventory, max_file_size=settings.max_file_size)
    if not inv.valid:
        for p in inv.problems:
            print(p.line(), file=sys.stderr)
        n = len(inv.problems)
        print(f"{inv.path}: {n} problem{'s' if n != 1 else ''}; nothing was sent", file=sys.stderr)
        return EXIT_NOT_STARTED
    from batchsync.redact import Redactor
    from batchsync.usage import redact_with

    # From here every message, a usage error's too, goes through the run's redactor.
    redact_with(Redactor(v.reveal() for a in inv.accounts.values() for v in a.secrets()))
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


def run(settings: RunSettings) -> int:
    """plan and apply: load, select, run the engine, drive the sinks; the exit code. A usage
    error or an invalid inventory is recorded in the metrics file as exit 2."""
    try:
        loaded = load_selected(settings)
    except UsageError:
        record_not_started(settings.outputs.metrics, settings.command)
        raise
    if isinstance(loaded, int):
        if loaded == EXIT_NOT_STARTED:  # an invalid inventory
            record_not_started(settings.outputs.metrics, settings.command)
        return loaded
    inv, jobs, shard = loaded
    if settings.max_failures is not None:
        options = msgspec.structs.replace(settings.options, max_failures=settings.max_failures.limit(len(jobs)))
        settings = msgspec.structs.replace(settings, options=options)
    return run_command(settings, inv, jobs, shard)


GC_THRESHOLD = 20_000  # allocations between young collections during a run (Python's default: 700)


@contextmanager
def rare_gc() -> Iterator[None]:
    """Collect cycles rarely while a run lasts.

    Each request allocates and frees a few hundred objects, none of them in a cycle; at
    Python's default threshold the cyclic GC ran every few requests and took about a
    tenth of the CPU of a run with limits off. What was loaded before (the inventory) is
    frozen out of collections for the run's length, without a full collection first:
    that would only delay the first request.
    """
    saved = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(saved[0], GC_THRESHOLD), *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


async def _watch_signals(engine: Engine, scope: anyio.CancelScope, grace: float) -> None:
    """First SIGINT/SIGTERM: start nothing new, cancel what is in flight after ``grace``
    seconds. A second one: cancel now. Either way the run still records every outcome."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if engine.stopping is None:
                engine.stop(f"interrupted by {name}")
                scope.deadline = min(scope.deadline, anyio.current_time() + grace)
                log.warning(
                    "%s: starting nothing new; waiting up to %gs for requests in flight (send it again to stop now)",
                    name,
                    grace,
                )
            else:
                log.warning("%s again: stopping now", name)
                scope.cancel()


async def _every(seconds: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` periodically (the progress line moves even while nothing finishes)."""
    while True:
        await anyio.sleep(seconds)
        tick()


async def execute(
    inv: Inventory,
    jobs: Sequence[Job],
    settings: RunSettings,
    on_outcome: Callable[[Outcome], None],
    on_engine: Callable[[Engine], None] | None = None,
    tick: Callable[[], None] | None = None,
    redactor: Redactor | None = None,
) -> Summary:
    """Run the engine over HTTP (inside an embedded sandbox when asked) until done or stopped."""
    from batchsync.sendcloud.transport import HttpApi

    async with AsyncExitStack() as stack:
        base_url = settings.base_url
        if settings.sandbox:
            from batchsync.sandbox.config import SandboxConfig
            from batchsync.sandbox.server import run_sandbox

            box = await stack.enter_async_context(run_sandbox(inv, SandboxConfig(in_sync=0.5, seed=1)))
            base_url = box.url
            log.info("sandbox: serving %d integrations at %s", len(inv.jobs), box.url)
        urls = [url for name in {j.account for j in jobs} for url in account_urls(inv.accounts[name], base_url)]
        api = await stack.enter_async_context(
            HttpApi(concurrency=settings.options.concurrency, timeout=settings.timeout, base_url=base_url, urls=urls)
        )
        # Every outcome is made safe once, before any sink sees it.
        sanitizer = Sanitizer(redactor or Redactor(), api.secrets)
        engine = Engine(inv.accounts, api, settings.options, on_outcome, sanitize=sanitizer.outcome)
        if on_engine is not None:
            on_engine(engine)
        # What the last run on this host left of each account's budget (an embedded sandbox
        # is new every run: its buckets are full).
        files = {} if settings.sandbox else budget_files(inv.accounts, {j.account for j in jobs}, base_url)
        engine.carried = load_budget(files) if files else {}
        try:
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()
                tg.start_soon(_watch_signals, engine, scope, settings.grace_period)
                if tick is not None:
                    tg.start_soon(_every, 0.2, tick)
                with scope:
                    await engine.run(jobs)
                tg.cancel_scope.cancel()
        finally:
            if files:
                save_budget(engine.budget_left(), files)
        if scope.cancelled_caught and engine.stopping is None:
            engine.stop("interrupted")
        note_declared_rates(engine.summary, inv.accounts)
        return engine.summary


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


def record_not_started(metrics: str | None, command: str, code: int = EXIT_NOT_STARTED) -> None:
    """An attempt that never ran (exit 2 or 75) still leaves its exit code in the metrics
    file; its last success stays as it was."""
    if not metrics:
        return
    from batchsync.outputs.metrics import write_exit_code

    try:
        write_exit_code(metrics, command, code)
    except OSError as exc:
        print(usage.shown(f"batchsync: cannot write the metrics {metrics}: {exc.strerror}"), file=sys.stderr)


def account_urls(account: Account, base_url: str | None) -> list[str]:
    """Every URL a run sends the account's credentials to: the API, its token endpoint."""
    if base_url is not None:  # --base-url, --sandbox: everything goes there
        return [base_url]
    creds = account.credentials
    return [account.base_url, *([creds.token_url] if isinstance(creds, OAuth2Credentials) else [])]


def check_transport(settings: RunSettings, inv: Inventory, jobs: Sequence[Job]) -> None:
    """Credentials never cross the network in clear: ``http://`` only to loopback, unless
    --allow-insecure-http. Checked before anything is sent (plan included)."""
    if settings.sandbox or settings.allow_insecure_http:
        return
    for name in sorted({j.account for j in jobs}):
        for url in account_urls(inv.accounts[name], settings.base_url):
            why = in_clear(name, url)
            if why is not None:
                raise UsageError(why)


def webhooks(settings: RunSettings) -> list[Webhook]:
    """``--notify`` values resolved now: a missing variable is found before the run, not after."""
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


def run_command(settings: RunSettings, inv: Inventory, jobs: Sequence[Job], shard: dict[str, Any] | None = None) -> int:
    """Check the outputs, take the lock (apply), run, and report; the exit code.

    ``shard``: the report header's shard block (``Split.header``); ``jobs`` may then be
    empty (a shard with no account), which still reports and exits 0."""
    # Whatever a message, a log line or an outcome carries, these values come out as ***:
    # the one the command line registered once it had loaded the inventory, or a new one.
    registered = usage.redactor()
    redactor = registered if isinstance(registered, Redactor) else Redactor()
    redactor.add(v.reveal() for a in inv.accounts.values() for v in a.secrets())
    usage.redact_with(redactor)
    try:
        try:
            check_outputs(settings.outputs, [inv.path, *inv.files])
        except OutputError as exc:
            raise UsageError(str(exc)) from None
        check_transport(settings, inv, jobs)
        hooks = webhooks(settings)
    except UsageError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
    o = settings.outputs
    level = "DEBUG" if o.verbose else "ERROR" if o.quiet else "WARNING"
    redactor.add(h.reveal() for h in hooks)  # a webhook URL is a credential too
    setup_logging(level, o.log_format, redactor=redactor, buffered=True)
    if settings.command != "apply":
        return _run(settings, inv, jobs, shard, redactor, hooks)
    try:
        locks = take_locks(settings, inv, jobs)
    except LockedError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        record_not_started(o.metrics, settings.command, EXIT_LOCKED)
        return EXIT_LOCKED
    except LockError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        record_not_started(o.metrics, settings.command)
        return EXIT_NOT_STARTED
    with locks:
        return _run(settings, inv, jobs, shard, redactor, hooks)


def _run(
    settings: RunSettings,
    inv: Inventory,
    jobs: Sequence[Job],
    shard: dict[str, Any] | None,
    redactor: Redactor,
    hooks: Sequence[Webhook] = (),
) -> int:
    mode, o = settings.command, settings.outputs
    out = Screen(sys.stdout)
    lost = Lost(out)
    limits = {name: a.limits for name, a in inv.accounts.items()}
    start = Start(
        mode=mode,
        started_at=time.time(),
        inventory=settings.inventory,
        selected=len(jobs),
        shard=shard,
        limits=limits,
    )
    try:
        sinks = build_sinks(o, start, lost, out=out, err=sys.stderr, redact=redactor, hooks=hooks)
    except OSError as exc:
        print(redactor(f"batchsync: cannot write the report {o.report}: {exc.strerror}"), file=sys.stderr)
        record_not_started(o.metrics, mode)
        return EXIT_NOT_STARTED
    # A progress line only for a person at a terminal: not with -q, JSON output or JSON logs.
    plain = not (o.quiet or o.format == "json" or o.log_format == "json")
    progress = Progress(len(jobs), sys.stderr, enabled=None if plain else False, before_draw=out.flush)
    out.before_write = progress.clear
    flush_logs(progress.clear, hook=True)  # a log line never starts on the progress line's row
    adds = [sink.add for sink in sinks]
    flushes = [sink.flush for sink in sinks]

    def on_outcome(outcome: Outcome) -> None:
        for add in adds:
            add(outcome)
        progress.update(outcome)

    def on_engine(engine: Engine) -> None:
        progress.throttled = engine.throttled_accounts

    def tick() -> None:  # a few times a second: the report to disk, the log and the terminal redrawn
        for flush in flushes:
            flush()
        flush_logs()
        if progress.enabled:
            progress.refresh()  # which writes what stdout buffered first
        else:
            out.flush()

    summary: Summary | None = None
    try:
        with rare_gc():
            summary = eventloop.run(execute, inv, jobs, settings, on_outcome, on_engine, tick, redactor)
        ran = exit_code(summary, mode, settings.detailed_exitcode)
    except BaseException:
        close_all(sinks, None)  # the run broke off: no summary line
        raise
    finally:
        flush_logs()  # the requests' lines before the outcomes they led to, as the timer writes them
        out.flush()
        progress.close()
    # Each output carries the exit code as it stands when it is written (a lost output must
    # not look like a clean night; stdout may have failed during the run); the report,
    # closed last of the files, the final one.
    ended = summary.started_at + summary.duration_s
    close_all(
        sinks, End(summary=summary, code=lambda: lost.exit_code(ran), started_at=summary.started_at, ended_at=ended)
    )
    return lost.exit_code(ran)
