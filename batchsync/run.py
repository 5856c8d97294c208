"""One ``plan`` or ``apply`` run from the command line: engine, outputs and exit code.

Kept apart from ``cli`` so that ``validate`` and ``--version`` never import aiohttp.
The process-wide policies of a run (garbage collection, signals, the lock) live here,
not in the library modules it calls.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import msgspec

from batchsync import usage
from batchsync.engine.budget import files_for as budget_files
from batchsync.engine.budget import load as load_budget
from batchsync.engine.budget import save as save_budget
from batchsync.engine.engine import Engine
from batchsync.engine.lock import LockedError, LockError, account_lock_name, acquire_account_locks, acquire_lock
from batchsync.exitcodes import (
    EXIT_CHANGES,
    EXIT_LOCKED,
    EXIT_NOT_STARTED,
    EXIT_OK,
    EXIT_OUTPUT_LOST,
    exit_code,
)
from batchsync.model import Account, Inventory, Job, OAuth2Credentials
from batchsync.outcome import Outcome, Summary
from batchsync.outputs.logs import flush_logs, setup_logging
from batchsync.outputs.progress import Progress
from batchsync.outputs.report import ReportWriter
from batchsync.outputs.sanitize import Sanitizer
from batchsync.outputs.sink import Lost, OutputError, check_output
from batchsync.outputs.streams import discard_stdout, json_for
from batchsync.outputs.terminal import (
    Budget,
    Screen,
    TagTally,
    outcome_lines,
    print_mapping_totals,
    print_outcome,
    print_recap,
    summary_document,
)
from batchsync.redact import Redactor
from batchsync.settings import RunSettings
from batchsync.urls import is_loopback
from batchsync.usage import UsageError

if TYPE_CHECKING:
    from batchsync.outputs.notify import Webhook

log = logging.getLogger("batchsync")

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
            from batchsync.sandbox.server import SandboxConfig, run_sandbox

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


def check_outputs(settings: RunSettings, inv: Inventory) -> None:
    """Found out now, not after a night's run has been done and cannot be reported."""
    protected = [inv.path, *inv.files]
    outputs = (
        ("--report", settings.report),
        ("--junit", settings.junit),
        ("--metrics", settings.metrics),
        ("--html", settings.html),
    )
    for flag, path in outputs:
        if path is not None:
            try:
                check_output(flag, path, protected)
            except OutputError as exc:
                raise UsageError(str(exc)) from None


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


def record_exit(settings: RunSettings, code: int) -> None:
    """An attempt that never ran still leaves its exit code in the metrics file."""
    if settings.metrics:
        try:
            from batchsync.outputs.metrics import write_exit_code

            write_exit_code(settings.metrics, settings.command, code)
        except OSError as exc:
            print(
                usage.shown(f"batchsync: cannot write the metrics {settings.metrics}: {exc.strerror}"), file=sys.stderr
            )


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
            if urlsplit(url).scheme.lower() == "http" and not is_loopback(url):
                raise UsageError(
                    f"account {name}: {url} is plain http:// to a host that is not this machine: its "
                    "credentials would cross the network in clear; use https://, or pass --allow-insecure-http"
                )


def webhooks(settings: RunSettings) -> list[Webhook]:
    """``--notify`` values resolved now: a missing variable is found before the run, not after."""
    from batchsync.outputs.notify import WebhookError, resolve_webhook

    try:
        hooks = [resolve_webhook(ref) for ref in settings.notify]
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
        check_outputs(settings, inv)
        check_transport(settings, inv, jobs)
        hooks = webhooks(settings)
    except UsageError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        return EXIT_NOT_STARTED
    level = "DEBUG" if settings.verbose else "ERROR" if settings.quiet else "WARNING"
    redactor.add(h.reveal() for h in hooks)  # a webhook URL is a credential too
    setup_logging(level, settings.log_format, redactor=redactor, buffered=True)
    if settings.command != "apply":
        return _run(settings, inv, jobs, shard, redactor, hooks)
    try:
        locks = take_locks(settings, inv, jobs)
    except LockedError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        record_exit(settings, EXIT_LOCKED)
        return EXIT_LOCKED
    except LockError as exc:
        print(f"batchsync: {redactor(str(exc))}", file=sys.stderr)
        record_exit(settings, EXIT_NOT_STARTED)
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
    mode = settings.command
    report = None
    lost = Lost()
    if settings.report:
        try:
            report = ReportWriter(settings.report, lost)
        except OSError as exc:
            print(redactor(f"batchsync: cannot write the report {settings.report}: {exc.strerror}"), file=sys.stderr)
            record_exit(settings, EXIT_NOT_STARTED)
            return EXIT_NOT_STARTED
        report.header(mode, settings.inventory, len(jobs), shard)
    as_json = settings.format == "json"
    keep = as_json or bool(settings.junit)
    collected: list[Outcome] = []
    tags = TagTally() if settings.recap_by == "tag" else None
    quiet, verbose, json_logs = settings.quiet, settings.verbose, settings.log_format == "json"
    # A progress line only for a person at a terminal: not with -q, JSON output or JSON logs.
    plain = not (quiet or as_json or json_logs)
    out = Screen(sys.stdout)
    progress = Progress(len(jobs), sys.stderr, enabled=None if plain else False, before_draw=out.flush)
    out.before_write = progress.clear
    flush_logs(progress.clear, hook=True)  # a log line never starts on the progress line's row
    budget = Budget() if mode == "plan" else None
    # Only what this run asked for is imported (the start-up of a run is its first request's delay).
    page = None
    if settings.html:
        from batchsync.outputs.html import HtmlReport

        page = HtmlReport(mode, time.time(), redact=redactor)
    failures: list[Outcome] = []  # the first few, for a notification
    most_failures = 0
    if hooks:
        from batchsync.outputs.notify import MAX_FAILED as most_failures

    def on_outcome(outcome: Outcome) -> None:
        if report is not None:
            report.write(outcome)
        if page is not None:
            page.add(outcome)
        if hooks and outcome.result == "failed" and len(failures) < most_failures:
            failures.append(outcome)
        if budget is not None:
            budget.add(outcome)
        if keep:
            collected.append(outcome)
        if tags is not None:
            tags.add(outcome)
        if quiet:
            if outcome.result == "failed":
                if json_logs:  # a log shipper gets JSON on stderr, nothing else
                    log.error("%s", "\n".join(outcome_lines(outcome, mode)))
                else:
                    print_outcome(outcome, mode, sys.stderr)
        elif not as_json:
            print_outcome(outcome, mode, out, verbose=verbose)
        progress.update(outcome)

    def on_engine(engine: Engine) -> None:
        progress.throttled = engine.throttled_accounts

    def tick() -> None:  # a few times a second: the report to disk, the log and the terminal redrawn
        if report is not None:
            report.flush()
        flush_logs()
        if progress.enabled:
            progress.refresh()  # which writes what stdout buffered first
        else:
            out.flush()

    summary: Summary | None = None
    code: int | None = None
    try:
        with rare_gc():
            summary = anyio.run(
                execute,
                inv,
                jobs,
                settings,
                on_outcome,
                on_engine,
                tick,
                redactor,
            )
        code = exit_code(summary, mode, settings.detailed_exitcode)
    finally:
        flush_logs()  # the requests' lines before the outcomes they led to, as the timer writes them
        out.flush()
        progress.close()
        if report is not None and code is None:  # the run broke off: no summary line
            report.close(summary, mode, code)
    assert summary is not None and code is not None  # anyio.run returned
    ran = code

    def told() -> int:
        """The exit code as it stands: a lost output must not look like a clean night;
        failures and stops still say more. Each output carries it as it is when written
        (stdout may have failed during the run: it is named among the lost at the end)."""
        some_lost = bool(lost) or out.failure is not None
        return EXIT_OUTPUT_LOST if some_lost and ran in (EXIT_OK, EXIT_CHANGES) else ran

    try:
        if settings.junit:
            try:
                from batchsync.outputs.junit import write_junit

                write_junit(settings.junit, collected, summary)
            except OSError as exc:
                lost.add("--junit", settings.junit, exc)
        if settings.metrics:
            try:
                from batchsync.outputs.metrics import write_metrics

                write_metrics(settings.metrics, summary, mode, exit_code=told())
            except OSError as exc:
                lost.add("--metrics", settings.metrics, exc)
        limits = {name: a.limits for name, a in inv.accounts.items()}
        by_tag = tags.groups if tags is not None else None
        if as_json:
            doc = summary_document(summary, mode, by_tag)
            if budget is not None:
                doc["budget"] = budget.rows(summary, limits)
            doc["outcomes"] = collected
            out.write(json_for(sys.stdout, msgspec.json.encode(doc).decode()) + "\n")
        elif not quiet:
            print_recap(summary, mode, out, by_tag)
            print_mapping_totals(summary, out)
            if budget is not None:
                budget.print(summary, limits, out)
        out.flush()
        if out.failure is not None:  # a full disk under stdout: the run went on, the loss is said
            lost.add("stdout", "", out.failure)
            discard_stdout()  # what it still buffers would fail again at exit
        if page is not None and settings.html:
            ended = summary.started_at + summary.duration_s
            from batchsync.outputs.html import RunInfo, write_html

            info = RunInfo(
                exit_code=told(),
                started_at=summary.started_at,
                ended_at=ended,
                limits=limits,
                inventory=settings.inventory,
            )
            try:
                write_html(settings.html, page.html(summary, info))
            except OSError as exc:
                lost.add("--html", settings.html, exc)
    finally:
        # Last: its summary line carries the code the process exits with (unless closing
        # the report is itself what fails), whatever was lost before it.
        if report is not None:
            report.close(summary, mode, told())
    for line in lost.lines():
        print(redactor(line), file=sys.stderr)
    code = told()
    if hooks:  # bounded by --notify-timeout; whatever becomes of it, the exit code stays
        from batchsync.outputs.notify import notify

        notify(
            hooks,
            summary,
            mode,
            code,
            failures,
            on=settings.notify_on,
            fmt=settings.notify_format,
            timeout=settings.notify_timeout,
            inventory=settings.inventory,
            redact=redactor,
        )
    return code
