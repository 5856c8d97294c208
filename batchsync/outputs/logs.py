"""How log lines look and where they go: text or JSON on stderr, every line redacted, buffered
for a run (a line is an append; the lines are written together a few times a second).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from batchsync.outputs.streams import is_utf8
from batchsync.redact import Redactor


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value, and any ``Basic`` credential, replaced by ``***``."""
    return Redactor(secrets)(text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose every line passes through a :class:`Redactor` last."""

    def __init__(self, fmt: str | None = None, secrets: Iterable[str] = (), redactor: Redactor | None = None) -> None:
        super().__init__(fmt)
        self.redactor = redactor if redactor is not None else Redactor()
        self.redactor.add(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.redactor.add(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(self.render(record))

    def render(self, record: logging.LogRecord) -> str:
        return super().format(record)


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class TextLogFormatter(RedactingFormatter):
    """``2026-11-27T03:00:01Z WARNING batchsync.engine: message key=value``"""

    def __init__(self, secrets: Iterable[str] = (), redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets, redactor)

    _stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._stamp[0]:  # one strftime a second, not one a line (-v logs each request)
            self._stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
        return self._stamp[1]

    def render(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format's layout (the line, then a traceback and a stack below
        # it), written out: with -v this runs for every request, and the generic path
        # (a %-format of the record's whole __dict__, its checks) cost twice as much.
        text = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = _fields(record)
        if fields:
            text += " " + " ".join([f"{k}={v}" for k, v in fields.items()])
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class JsonLogFormatter(RedactingFormatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, then the
    fields given as ``extra={"fields": {...}}`` (which may not replace those four).
    ``ascii_only`` for a stream that is not UTF-8: ``\\uXXXX`` escapes, the same JSON."""

    ascii_only = False

    def render(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, val in _fields(record).items():
            doc.setdefault(str(key), val)
        if record.exc_info:
            doc.setdefault("exc", self.formatException(record.exc_info))
        if record.stack_info:
            doc.setdefault("stack", self.formatStack(record.stack_info))
        # default=str: a field that JSON cannot hold (a Path, an exception) still logs.
        return json.dumps(doc, ensure_ascii=self.ascii_only, default=str)


_HANDLER_MARK = "_batchsync_handler"


class BufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines for a run: a line is an append, and the lines are written together.

    ``-v`` logs every request (100,000 lines and more in a large run): one ``write()`` and
    ``flush()`` each, where ``PYTHONUNBUFFERED`` is set, cost more than the lines. They go
    out when :meth:`flush` is called (a run's timer a few times a second, its end), past
    ``LIMIT`` characters, and at once for a WARNING or worse, which an operator must see
    without delay. ``before_write`` runs before each write: the progress line erases itself
    there, so a log line never starts on its row.
    """

    LIMIT = 1 << 16  # characters kept before a write, whatever the timer

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.before_write: Callable[[], None] | None = None
        self._parts: list[str] = []
        self._size = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._parts.append(text)
        self._size += len(text)
        if record.levelno >= logging.WARNING or self._size > self.LIMIT:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._parts:
                return
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            if self.before_write is not None:
                self.before_write()
            # stderr closed or gone: nobody to tell, and a log line never stops a run
            with contextlib.suppress(Exception):
                self.stream.write(text)
                self.stream.flush()


def _handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger("batchsync").handlers if getattr(h, _HANDLER_MARK, False)]


def flush_logs(before_write: Callable[[], None] | None = None, *, hook: bool = False) -> None:
    """Write the log lines waiting in the ``batchsync`` handler; with ``hook``, also make
    ``before_write`` what runs before each later write (``None`` removes it)."""
    for handler in _handlers():
        if hook and isinstance(handler, BufferedHandler):
            handler.before_write = before_write
        handler.flush()


def setup_logging(
    level: str,
    fmt: str,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    redactor: Redactor | None = None,
    buffered: bool = False,
) -> RedactingFormatter:
    """Send the ``batchsync`` logger to stderr as ``fmt`` ("text" or "json") at ``level``.

    ``buffered``: lines below WARNING wait for :func:`flush_logs` (see BufferedHandler);
    ``batchsync.cli.main`` flushes them before it returns.

    Calling it again replaces the handler it installed. Returns the formatter, so secrets
    resolved later can be added with ``add_secrets``. Raises ValueError for an unknown
    level or format.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
    # What no batchsync line shows, logging need not gather for every record: the logging
    # documentation's own optimisations (with -v, a record per request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    target = sys.stderr if stream is None else stream
    formatter: RedactingFormatter
    if fmt == "json":
        formatter = JsonLogFormatter(secrets=secrets, redactor=redactor)
        formatter.ascii_only = not is_utf8(target)
    elif fmt == "text":
        formatter = TextLogFormatter(secrets=secrets, redactor=redactor)
    else:
        raise ValueError(f"unknown log format {fmt!r} (text, json)")
    logger = logging.getLogger("batchsync")
    for old in _handlers():
        old.flush()
        logger.removeHandler(old)
    handler = BufferedHandler(target) if buffered else logging.StreamHandler(target)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(numeric)
    logger.propagate = False  # the root logger's handlers (if any) would print it again
    return formatter
