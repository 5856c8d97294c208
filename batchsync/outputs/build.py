"""The outputs a command asked for, as one list of sinks: the one place where a sink is added.

``plan``/``apply`` and ``report merge`` build their list here and drive it alike: every
outcome to every sink as it comes, then each sink closed in the list's order (see
:func:`build_sinks`). A new output is a module with a class of the :class:`~batchsync.
outputs.sink.Sink` protocol, its flag in :class:`OutputSettings`, and one line below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Literal

import msgspec

from batchsync.outputs.sink import Lost, LostNotice, OutputError, Sink, Start, check_output
from batchsync.outputs.terminal import Screen, Terminal
from batchsync.text import display

if TYPE_CHECKING:
    from batchsync.history.location import Location
    from batchsync.model import NotifyRoute
    from batchsync.outputs.notify import NotifyFormat, NotifyOn, Webhook
    from batchsync.outputs.plan import PlanContext
    from batchsync.outputs.report import ReportWriter

Format = Literal["text", "json"]
LogFormat = Literal["text", "json"]
RecapBy = Literal["account", "tag"]


class OutputSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What a command writes, and where: stdout's form, the files, the notifications."""

    format: Format = "text"
    quiet: bool = False
    verbose: bool = False
    log_format: LogFormat = "text"
    recap_by: RecapBy = "account"
    report: str | None = None
    junit: str | None = None
    metrics: str | None = None
    html: str | None = None
    notify: tuple[str, ...] = ()  # as given: env:NAME, file:PATH or a URL; resolved before the run
    notify_on: NotifyOn = "failure"
    notify_format: NotifyFormat = "slack"
    notify_timeout: float = 5.0  # seconds for every notification together
    plan_out: str | None = None  # plan --out: the saved plan
    history: str | None = None  # --history URL as given (it wins over the inventory's [history] url)
    no_history: bool = False  # --no-history
    history_at: Location | None = None  # the store, resolved before the run; None: no history

    def files(self) -> list[tuple[str, str]]:
        """(flag, path) of every file asked for."""
        given = (
            ("--report", self.report),
            ("--junit", self.junit),
            ("--metrics", self.metrics),
            ("--html", self.html),
            ("--out", self.plan_out),
        )
        return [(flag, path) for flag, path in given if path is not None]


def check_outputs(
    settings: OutputSettings, protected: Iterable[str], reader: str = "the inventory", plan: str | None = None
) -> None:
    """Every file asked for may be written (:func:`~batchsync.outputs.sink.check_output`),
    none by two outputs, none the ``plan`` an apply reads: found out before anything is sent
    or read, not after a night's run. OutputError."""
    kept = list(protected)
    taken: dict[str, str] = {} if plan is None else {os.path.realpath(plan): "the plan --plan reads"}
    for flag, path in settings.files():
        check_output(flag, path, kept, reader)
        real = os.path.realpath(path)
        if real in taken:
            raise OutputError(f"{flag} {display(path)}: is {taken[real]}: each output needs a file of its own")
        taken[real] = f"{flag}'s file too"


def open_report(path: str, start: Start, lost: Lost) -> ReportWriter:
    """The sink of ``--report``, its file made and its header written; OSError when it
    cannot be: the command cannot start."""
    from batchsync.outputs.report import ReportWriter

    return ReportWriter.open(path, start, lost)


def unbuilt(settings: OutputSettings, lost: Lost, why: str, redact: Callable[[str], str] = str) -> None:
    """What :func:`build_sinks` would have opened after the report, counted lost for ``why``:
    the files and the run history, when a second signal stopped their opening (a store
    waited on) once every integration had its outcome. Notifications are no output."""
    for flag, path in settings.files():
        if flag != "--report":
            lost.note(flag, path, why)
    if settings.history_at is not None:
        from batchsync.outputs.history import note_lost

        note_lost(settings.history_at, lost, why, redact)


def build_sinks(
    settings: OutputSettings,
    start: Start,
    lost: Lost,
    *,
    out: Screen,
    err: IO[str],
    redact: Callable[[str], str] = str,
    hooks: Sequence[Webhook] = (),
    plan: PlanContext | None = None,
    routes: Sequence[tuple[NotifyRoute, Webhook]] = (),
    history_command: str | None = None,
    history_key: str | None = None,
    selected_ids: Iterable[int] | None = None,
    report: ReportWriter | None = None,
) -> list[Sink]:
    """The sinks, in the order they are closed: JUnit, then the metrics (the exit code as it
    stands), the terminal, the HTML page (the code as it stands), the saved plan (``plan``:
    what ``plan --out`` needs beyond the outcomes); the report last of the
    files (its summary line carries the final code); then the lost outputs named on stderr,
    and the notifications. OSError when the report cannot be made: the command cannot start.
    Only the modules of the outputs asked for are imported (a run's start-up is its first
    request's delay). The run history (closed just before the report) is opened first: the
    terminal, the HTML page and the notifications say what was failing before this run.
    ``history_command``/``history_key``: the command it records (report merge) and the key
    that records one run once; ``selected_ids``: the integrations whose streaks it reads.
    ``report``: the report, opened already (:func:`open_report`; a run opens it before its
    first request and the rest after); else opened here when asked for."""
    if report is None and settings.report:
        report = open_report(settings.report, start, lost)
    sinks: list[Sink] = []
    history = None
    if settings.history_at is not None:
        from batchsync.outputs.history import History

        history = History(
            settings.history_at,
            start,
            lost,
            redact,
            command=history_command,
            dedup_key=history_key,
            ids=selected_ids,
            charts=(start.limits or {}) if settings.html else (),
            warn=None if settings.quiet else lambda line: print(line, file=err),
        )
    recall = history.recall if history is not None else None
    if settings.junit:
        from batchsync.outputs.junit import JUnit

        sinks.append(JUnit(settings.junit, start, lost))
    if settings.metrics:
        from batchsync.outputs.metrics import Metrics

        sinks.append(Metrics(settings.metrics, start, lost))
    sinks.append(
        Terminal(
            start,
            out,
            err,
            lost,
            as_json=settings.format == "json",
            quiet=settings.quiet,
            verbose=settings.verbose,
            json_logs=settings.log_format == "json",
            by_tag=settings.recap_by == "tag",
            recall=recall,
        )
    )
    if settings.html:
        from batchsync.outputs.html import Html

        sinks.append(Html(settings.html, start, lost, redact, recall=recall))
    if settings.plan_out and plan is not None:
        from batchsync.outputs.plan import PlanFile

        sinks.append(PlanFile(settings.plan_out, start, lost, plan))
    if history is not None:
        sinks.append(history)
    if report is not None:
        sinks.append(report)
    sinks.append(LostNotice(lost, err, redact))
    if hooks:
        from batchsync.outputs.notify import Notify

        on, fmt, timeout = settings.notify_on, settings.notify_format, settings.notify_timeout
        sinks.append(Notify(hooks, start, on=on, fmt=fmt, timeout=timeout, redact=redact, recall=recall))
    if routes:  # the inventory's [[notify]] routes: each its own integrations' summary
        from batchsync.outputs.routes import RoutedNotify

        sinks.append(RoutedNotify(routes, start, timeout=settings.notify_timeout, redact=redact, recall=recall))
    return sinks
