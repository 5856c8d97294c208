"""``batchsync import``: list each account's integrations, read their statuses and mapping, write an inventory.

Listing is paged and paced on the account's read budget; the reads go through the
engine's snapshot mode (same budget, retries and outcome lines as ``apply``); grouping
is :mod:`batchsync.inventory.grouping`'s, writing :mod:`batchsync.inventory.writer`'s. Only
argparse and msgspec are imported at module level: the main parser imports
:func:`add_arguments` on every start. (``import`` is a keyword: the module is ``import_``.)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from batchsync.commands._arguments import (
    add_allow_insecure_http,
    add_base_url,
    add_history_arguments,
    add_request_arguments,
    add_require_all_credentials,
)
from batchsync.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_STARTED, EXIT_OK
from batchsync.gcpolicy import paused

if TYPE_CHECKING:
    from batchsync.engine.engine import Engine
    from batchsync.engine.options import Options
    from batchsync.engine.snapshot import Fleet
    from batchsync.inventory.grouping import Format, Report
    from batchsync.model import Account, Inventory
    from batchsync.outcome import Outcome

NAME = "import"
SUMMARY = "read what the accounts have; write an inventory that declares it"
EXAMPLES = (
    "batchsync import accounts.toml -o inventories/prod.toml",
    "batchsync import inventories/prod.toml -o inventories/prod.toml --account acme --max-differences 2",
)


class ImportSettings(msgspec.Struct, frozen=True):
    inventory: str
    output: str
    options: Options  # the engine's, in read-only snapshot mode, with the list bounds
    timeout: float = 30.0
    accounts: tuple[str, ...] = ()  # none: every account
    format: Format | None = None  # None: from the output's suffix
    max_differences: int = 3
    base_url: str | None = None
    allow_insecure_http: bool = False
    quiet: bool = False
    verbose: bool = False
    log_format: Literal["text", "json"] = "text"
    require_all_credentials: bool = False  # an account that cannot resolve its credentials: exit 2, nothing read
    history: str | None = None  # --history as given
    no_history: bool = False


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``batchsync import``."""
    p.description = (
        "List every integration of the selected accounts, read the statuses and mapping of each "
        "PrestaShop V2 one, and write an inventory that declares exactly that: shops with the same "
        "list share a status set, shops close to one get it with overrides. Plan on the result shows "
        "nothing to do. What INVENTORY declares is kept; no secret is written."
    )
    p.add_argument("inventory", metavar="INVENTORY", help="the accounts (and anything already declared)")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="the inventory to write (.toml, .yaml, .json)")
    p.add_argument(
        "--account",
        action="append",
        metavar="NAME",
        help="only these accounts (repeatable or comma-separated; default: every account)",
    )
    p.add_argument("--format", choices=("toml", "yaml", "json"), help="default: from the output's suffix")
    p.add_argument(
        "--max-differences",
        type=_count,
        default=3,
        metavar="N",
        help="a shop joins a shared set with overrides when at most N of its statuses differ (3; 0: exact only)",
    )
    g = p.add_argument_group(
        "bounds on each account's list of integrations (a list past one is not read further, and nothing is written)"
    )
    g.add_argument(
        "--max-list-items", type=_count, default=50_000, metavar="N", help="integrations an account may list (50000)"
    )
    g.add_argument("--max-list-pages", type=_count, default=1_000, metavar="N", help="pages of its list (1000)")
    g.add_argument(
        "--max-list-size", type=_count, default=256, metavar="MB", help="megabytes of its list's pages together (256)"
    )
    g.add_argument(
        "--max-list-time",
        type=_count,
        default=90,
        metavar="S",
        help="seconds to read its list, from the first page asked for (90)",
    )
    add_base_url(p)
    add_require_all_credentials(p, "that account is skipped, named, the others read, and the exit code is 1", "")
    add_allow_insecure_http(p)
    add_request_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("-v", "--verbose", action="store_true", help="also a line per integration read, and every request")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="format of log lines on stderr")
    add_history_arguments(p)


def settings(args: argparse.Namespace) -> ImportSettings:
    """The command line checked once: a UsageError naming the flag otherwise."""
    from batchsync.commands._arguments import base_url, positive_int, positive_number
    from batchsync.engine.options import Options
    from batchsync.sendcloud.listing import ListBounds

    url = base_url(args.base_url)
    options = Options(
        write=False,
        preflight=False,  # the import lists the integrations itself
        concurrency=positive_int(args.concurrency, "--concurrency"),
        max_attempts=positive_int(args.max_attempts, "--max-attempts"),
        retry_max_time=positive_number(args.retry_max_time, "--retry-max-time"),
        list_bounds=ListBounds(
            pages=positive_int(args.max_list_pages, "--max-list-pages"),
            items=positive_int(args.max_list_items, "--max-list-items"),
            bytes=positive_int(args.max_list_size, "--max-list-size") * 1024 * 1024,
            seconds=positive_int(args.max_list_time, "--max-list-time"),
        ),
    )
    return ImportSettings(
        inventory=args.inventory,
        output=args.output,
        options=options,
        timeout=positive_number(args.timeout, "--timeout"),
        accounts=tuple(n.strip() for given in args.account or () for n in given.split(",") if n.strip()),
        format=args.format,
        max_differences=args.max_differences,
        base_url=url,
        allow_insecure_http=args.allow_insecure_http,
        quiet=args.quiet,
        verbose=args.verbose,
        log_format=args.log_format,
        require_all_credentials=args.require_all_credentials,
        history=getattr(args, "history", None),
        no_history=getattr(args, "no_history", False),
    )


# -- the command ---------------------------------------------------------------------------

_BOUND_OPTIONS = {
    "pages": "--max-list-pages",
    "items": "--max-list-items",
    "bytes": "--max-list-size",
    "time": "--max-list-time",
}


def _fail(message: str) -> int:
    from batchsync.usage import shown

    print(shown(f"batchsync import: {message}"), file=sys.stderr)
    return EXIT_NOT_STARTED


def _secret_values(account: Account) -> list[str]:
    return list(account.echoes())


def load_source(
    path: str | Path, environ: dict[str, str] | None = None, token_url_derived: bool = False, isolate: bool = True
) -> tuple[Inventory, Any, list[Any]]:
    """INVENTORY loaded, its parsed document, and its problems: an inventory with
    accounts and no integrations is what an import starts from, not a problem; nor is an
    account whose credentials cannot be resolved (``inv.unresolved``: it is skipped)."""
    import contextlib

    from batchsync.inventory.grouping import read_raw
    from batchsync.inventory.loader import load

    with paused():
        inv = load(path, environ=environ, isolate_credentials=isolate, token_url_derived=token_url_derived)
    raw: Any = None
    with contextlib.suppress(ValueError):  # load has said why
        raw = read_raw(Path(path))
    missing = isinstance(raw, dict) and "integrations" not in raw
    problems = [p for p in inv.problems if not (missing and p.path == "$.integrations")]
    return inv, raw, problems


def _load(path: str, token_url_derived: bool = False, isolate: bool = True) -> tuple[Inventory, Any] | str:
    """The inventory and its parsed document, or why not (its problems printed)."""
    inv, raw, problems = load_source(path, token_url_derived=token_url_derived, isolate=isolate)
    for w in inv.warnings:
        print(f"{w.file}: {w.path}: warning: {w.message}", file=sys.stderr)
    for p in problems:
        print(p.line(), file=sys.stderr)
    if problems or not isinstance(raw, dict):
        n = len(problems)
        return f"{path}: {n} problem{'s' if n != 1 else ''}; nothing was read"
    return inv, raw


def _output_format(output: str, given: str | None) -> Format:
    """The format to write; ValueError when the file name or ``--format`` rules it out."""
    from batchsync.inventory.grouping import SUFFIX_FORMATS

    suffix = Path(output).suffix.lower()
    found = SUFFIX_FORMATS.get(suffix)
    if found is None:
        raise ValueError(f"-o {output}: use a .toml, .yaml, .yml or .json file name (the loader goes by the suffix)")
    if given is not None and given != found:
        raise ValueError(f"--format {given} and -o {output} disagree: the loader reads a {suffix} file as {found}")
    return found


def run(settings: ImportSettings) -> int:
    """Load, check what needs the inventory, read the fleet, write the new inventory."""
    import os

    loaded = _load(
        settings.inventory,
        token_url_derived=settings.base_url is not None,
        isolate=not settings.require_all_credentials,
    )
    if isinstance(loaded, str):
        return _fail(loaded)
    inv, raw = loaded
    from batchsync.inventory.grouping import UnsafeAccount, copy_accounts
    from batchsync.redact import Redactor
    from batchsync.usage import redact_with

    # From here every message goes through the redactor of the inventory's credentials.
    redact_with(Redactor(v for a in inv.accounts.values() for v in _secret_values(a)))
    try:
        fmt = _output_format(settings.output, settings.format)
    except ValueError as exc:
        return _fail(str(exc))
    folder = os.path.dirname(os.path.abspath(settings.output))
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        return _fail(f"-o {settings.output}: {folder} is not a writable directory")
    if os.path.isdir(settings.output):
        return _fail(f"-o {settings.output}: is a directory")
    try:
        copy_accounts(raw.get("accounts"), str)  # found out now, not after the reads
    except UnsafeAccount as exc:
        return _fail(f"{settings.inventory}: {exc}")
    names = settings.accounts
    unknown = [n for n in names if n not in inv.accounts and n not in inv.unresolved]
    if unknown:
        known = ", ".join([*inv.accounts, *inv.unresolved])
        return _fail(f"--account {unknown[0]}: not an account of {settings.inventory} (known: {known})")
    wanted = dict.fromkeys(names) if names else {**dict.fromkeys(inv.accounts), **dict.fromkeys(inv.unresolved)}
    # An account whose credentials cannot be resolved is skipped, named; the others are read.
    for name in wanted:
        if name in inv.unresolved:
            print(f"batchsync import: {inv.unresolved[name]}: skipped (exit 1)", file=sys.stderr)
    selected = {n: inv.accounts[n] for n in wanted if n in inv.accounts}
    if not settings.allow_insecure_http:
        from batchsync.urls import in_clear

        for name, account in selected.items():
            why = in_clear(name, settings.base_url or account.base_url)
            if why is not None:
                return _fail(why)
    return _recorded(settings, inv, raw, selected, fmt)


def _recorded(
    settings: ImportSettings, inv: Inventory, raw: dict[str, Any], selected: dict[str, Account], fmt: Format
) -> int:
    """The import, recorded in the run history (its outcomes are its reads): a history that
    cannot be written is named, exit 5, and costs the import nothing."""
    import time

    from batchsync import usage
    from batchsync.commands._arguments import history_location
    from batchsync.usage import UsageError

    try:
        where = history_location(settings.history, settings.no_history, inv.history)
    except UsageError as exc:
        return _fail(str(exc))
    if where is None:
        return _import(settings, inv, raw, selected, fmt)
    from batchsync.history.store import inventory_hash
    from batchsync.outcome import AccountStats, Summary
    from batchsync.outputs.history import History
    from batchsync.outputs.sink import End, Lost, Start
    from batchsync.redact import Redactor

    registered = usage.redactor()
    redactor = registered if isinstance(registered, Redactor) else Redactor()
    redactor.add(where.secrets)
    usage.redact_with(redactor)
    started = time.time()
    start = Start(mode="import", started_at=started, inventory=settings.inventory)
    start = msgspec.structs.replace(start, inventory_sha256=inventory_hash(settings.inventory))
    lost = Lost()
    history = History(where, start, lost, redactor)
    tally: dict[str, AccountStats] = {}

    def record(outcome: Outcome) -> None:
        history.add(outcome)
        tally.setdefault(outcome.account, AccountStats()).add(outcome.result)

    try:
        code = _import(settings, inv, raw, selected, fmt, record)
    except BaseException:
        history.close(None)
        raise
    ended = time.time()
    summary = Summary(accounts=tally, duration_s=ended - started, started_at=started)
    history.close(End(summary=summary, code=lambda: code, started_at=started, ended_at=ended))
    for line in lost.lines():
        print(redactor(line), file=sys.stderr)
    return lost.exit_code(code)


def _import(
    settings: ImportSettings,
    inv: Inventory,
    raw: dict[str, Any],
    selected: dict[str, Account],
    fmt: Format,
    record: Callable[[Outcome], None] | None = None,
) -> int:
    import os

    from batchsync import eventloop, usage
    from batchsync.engine.snapshot import Fleet
    from batchsync.inventory.grouping import build
    from batchsync.inventory.writer import render, write_checked
    from batchsync.outcome import label
    from batchsync.outputs.logs import setup_logging
    from batchsync.outputs.progress import Progress
    from batchsync.outputs.terminal import print_outcome
    from batchsync.redact import Redactor

    secrets = [v for a in inv.accounts.values() for v in _secret_values(a)]
    level = "DEBUG" if settings.verbose else "ERROR" if settings.quiet else "WARNING"
    # Whatever a log line or an outcome carries, these values come out as ***.
    registered = usage.redactor()
    redactor = registered if isinstance(registered, Redactor) else Redactor(secrets)
    setup_logging(level, settings.log_format, redactor=redactor)
    declared = {e.get("id") for e in raw.get("integrations") or () if isinstance(e, dict)}
    declared_ints = {i for i in declared if isinstance(i, int)}
    plain = not (settings.quiet or settings.log_format == "json")
    progress = Progress(0, sys.stderr, enabled=None if plain else False)

    def on_outcome(outcome: Outcome) -> None:
        if record is not None:
            record(outcome)
        progress.clear()
        if outcome.result == "failed":
            print_outcome(outcome, "import", sys.stderr if settings.quiet else sys.stdout)
        elif settings.verbose and not settings.quiet:
            print(f"  {label(outcome)}: read", file=sys.stdout)
        progress.update(outcome)

    def on_engine(engine: Engine) -> None:
        progress.total = fleet.to_read
        progress.throttled = engine.throttled_accounts

    fleet = Fleet()
    try:
        interrupted = eventloop.run(
            _read,
            selected,
            settings.options,
            settings.timeout,
            settings.base_url,
            fleet,
            declared_ints,
            on_outcome,
            on_engine,
            progress,
            redactor,
        )
    finally:
        progress.close()
    if interrupted:
        print("batchsync import: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if fleet.unbounded:
        for name, exc in sorted(fleet.unbounded.items()):
            hint = _BOUND_OPTIONS.get(exc.bound)
            line = f"batchsync import: account {name}: {exc}" + (f" (raise it with {hint})" if hint else "")
            print(redactor(line), file=sys.stderr)
        print("batchsync import: nothing was written", file=sys.stderr)
        return EXIT_FAILED

    out_dir = os.path.dirname(os.path.abspath(settings.output))
    header = (
        f"Written by `batchsync import` from {os.path.basename(settings.inventory)}.",
        "Shops with the same statuses share a status set; a shop within a few statuses of a set",
        "lists only its differences (override_statuses, remove_statuses) and mapping categories.",
    )
    doc, report = build(
        raw,
        fleet.snapshots,
        fleet.listings,
        source_dir=os.path.dirname(os.path.abspath(settings.inventory)),
        target_dir=out_dir,
        max_differences=settings.max_differences,
        header=header,
    )
    text = render(doc, fmt)
    kept = _keep_file(settings, fmt, doc, report)
    if kept is not None:
        text = kept
    # The accounts are copied as references; this is the last guard, should a shop name or
    # a status quote a credential: in any form a server could echo it (the base64 of the
    # Basic pair, cut of its padding, in a status name, say), as the redactor knows them.
    if Redactor(v for v in secrets if len(v) >= 6)(text) != text:
        print("batchsync import: the new inventory would contain a credential value; not written", file=sys.stderr)
        return EXIT_FAILED
    try:
        problems = write_checked(settings.output, text)
    except (OSError, ValueError) as exc:  # a full disk, a folder made read-only meanwhile
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(
            redactor(f"batchsync import: cannot write {settings.output}: {why}; nothing was written"), file=sys.stderr
        )
        return EXIT_FAILED
    _print_summary(settings, fleet, report, problems, redactor)
    if problems or fleet.failed or fleet.list_errors or any(n in inv.unresolved for n in _wanted(settings, inv)):
        return EXIT_FAILED
    return EXIT_OK


def _wanted(settings: ImportSettings, inv: Inventory) -> list[str]:
    return list(settings.accounts) if settings.accounts else [*inv.accounts, *inv.unresolved]


def _keep_file(settings: ImportSettings, fmt: Format, doc: Any, report: Report) -> str | None:
    """Importing into the inventory itself (``-o`` is INVENTORY): the file as it is, with
    the new sets and integrations added (comments, order and what a person wrote kept);
    None to write the whole document (another output, or a file that cannot be kept)."""
    import os

    from batchsync.files import INVENTORY_LIMIT, FileProblem, read_regular
    from batchsync.inventory.roundtrip import keep_file

    try:
        if not os.path.samefile(settings.output, settings.inventory):
            return None
        existing = read_regular(Path(settings.inventory), INVENTORY_LIMIT).decode("utf-8")
    except (OSError, FileProblem, UnicodeDecodeError):
        return None
    try:
        return keep_file(
            existing, fmt, doc, [s.name for s in report.new_sets], {p.current.shop.id for p in report.added}
        )
    except ValueError as exc:
        print(
            f"batchsync import: {settings.inventory} cannot be added to as it is ({exc}): written anew",
            file=sys.stderr,
        )
        return None


async def _read(
    selected: dict[str, Account],
    options: Options,
    timeout: float,
    base_url: str | None,
    fleet: Fleet,
    declared: set[int],
    on_outcome: Callable[[Outcome], None],
    on_engine: Callable[[Engine], None],
    progress: Any,
    redactor: Any,
) -> bool:
    """Read the fleet over HTTP until done; True when a signal cut it short."""
    import signal

    import anyio

    from batchsync.engine import budget
    from batchsync.engine.snapshot import read_fleet
    from batchsync.outputs.sanitize import Sanitizer
    from batchsync.sendcloud.transport import HttpApi

    stopped = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal stopped
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stopped = True
                if fleet.engine is not None:
                    fleet.engine.stop("interrupted")
                scope.cancel()

    async def tick() -> None:
        while True:
            await anyio.sleep(0.5)
            progress.refresh()

    http = HttpApi(concurrency=options.concurrency, timeout=timeout, base_url=base_url, redactor=redactor)
    async with http as api, anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(watch, scope)
        if progress.enabled:
            tg.start_soon(tick)
        with scope:
            sanitizer = Sanitizer(redactor)  # what a server wrote, made safe to print
            await read_fleet(
                selected,
                api,
                options,
                fleet,
                declared=declared,
                on_outcome=on_outcome,
                on_engine=on_engine,
                sanitize=sanitizer.outcome,
                budget_files=budget.files_for(selected, selected, base_url),
                redact=redactor,
            )
        tg.cancel_scope.cancel()
    return stopped or (fleet.summary is not None and fleet.summary.stopped is not None)


def _print_summary(
    settings: ImportSettings, fleet: Fleet, report: Report, problems: list[str], redact: Callable[[str], str]
) -> None:
    from batchsync.inventory.writer import comment_text
    from batchsync.text import escape_controls

    out = sys.stdout
    err = sys.stderr
    for name in sorted(fleet.list_errors):
        print(f"! account {name}: cannot list its integrations: {fleet.list_errors[name]}", file=err)
    for iid, skipped, kept in fleet.duplicates:
        print(f"! integration {iid} is listed by accounts {kept} and {skipped}: imported under {kept}", file=err)
    for problem in problems[:20]:  # a value they quote may be a server's echo
        print(f"! {escape_controls(redact(problem))}", file=err)
    if len(problems) > 20:
        print(f"! ... and {len(problems) - 20} more: `batchsync validate {settings.output}` lists them all", file=err)
    if settings.quiet:
        return
    for name in sorted(fleet.listings):
        shops = fleet.listings[name]
        pages = fleet.pages.get(name, 0)
        print(f"account {name}: {len(shops)} integrations listed ({pages} page{'s' if pages != 1 else ''})", file=out)
    if report.not_importable:
        print(f"not importable ({len(report.not_importable)}):", file=out)
        for r in report.not_importable:
            shop = r.shop
            label = comment_text(shop.name or "(no shop name)", 80)
            # The shop's name, system and the reason that quotes it are the server's words.
            system, reason = escape_controls(shop.system or "?"), escape_controls(redact(r.reason))
            print(f"  {shop.account} {shop.id} {label!r} {system}: {reason}", file=out)
    for account, iid in report.gone:
        print(f"declared, but account {account} no longer lists integration {iid} (kept in the file)", file=out)
    for account, iid, found in report.moved:
        print(f"declared under account {account}, but integration {iid} is listed by account {found}", file=out)
    for account, iid, system in report.unsupported:
        print(
            f"declared, but integration {iid} of account {account} is a {escape_controls(system)} integration "
            "(not PrestaShop V2)",
            file=out,
        )
    if fleet.summary is not None:
        reads = sum(a.requests for a in fleet.summary.accounts.values()) + sum(fleet.list_requests.values())
        throttled = sum(a.throttled for a in fleet.summary.accounts.values())
        print(
            f"read {fleet.to_read} integrations in {fleet.listed_in + fleet.summary.duration_s:.1f}s "
            f"({reads} requests{f', {throttled} throttled' if throttled else ''})",
            file=out,
        )
    notes = [p for p in report.added if p.current.note]
    for p in notes:
        note = escape_controls(p.current.note or "")
        print(f"note: integration {p.current.shop.id} ({p.current.shop.account}): {note}", file=out)
    added = report.added
    shared = sum(1 for p in added if p.base is not None)
    overrides = sum(1 for p in added if p.overrides or p.removals)
    mappings = sum(1 for p in added if p.mapping is not None)
    inline = len(added) - shared
    failed = len(fleet.failed)
    print(
        f"wrote {settings.output}: {len(report.new_sets)} new status sets"
        + (f" (and {report.kept_sets} kept)" if report.kept_sets else "")
        + f", {len(added)} integrations added"
        + (f" ({report.kept_integrations} already declared)" if report.kept_integrations else "")
        + f": {shared} on a shared set ({overrides} with overrides), {inline} inline, "
        f"{mappings} declaring mapping categories of their own" + (f"; {failed} could not be read" if failed else ""),
        file=out,
    )
    for s in report.new_sets:
        print(
            f"  {s.name}: {len(s.statuses)} statuses, {s.members} integrations, {s.with_overrides} with overrides",
            file=out,
        )
