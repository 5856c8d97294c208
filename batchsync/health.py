"""A shop's connection health, from Sendcloud's integration exception logs: plain data.

Sendcloud records each request it failed to make to a shop (a revoked key, a removed
plugin, a TLS error) as an *exception log* of the integration. :class:`Health` is what a
run keeps of those logs per integration since a moment (:func:`since_for`): how many,
when, which response codes and exception types, and a summary of the last one. What a
log also holds (the request's and response's headers and bodies, the URL's query) can
carry the shop's own credentials: it is never decoded into anything kept (see
:class:`LogRecord`), and what is kept has been through the redactor and the
printable-text rule (:class:`Tally`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import msgspec

from batchsync.text import one_line
from batchsync.wire import LogRecord

__all__ = [
    "DEFAULT_WINDOW",
    "EXCEPTION_MAX",
    "FUTURE_SKEW",
    "Health",
    "LastLog",
    "LogRecord",
    "Tally",
    "parse_time",
    "since_for",
]

DEFAULT_WINDOW = timedelta(hours=24)  # since when, without --since or an earlier run
# A time further ahead of this machine's clock (a log record, a run's recorded start) is a
# clock that ran ahead or a server that lies: used, it would fall in (or hide) every later window.
FUTURE_SKEW = timedelta(minutes=5)
EXCEPTION_MAX = 200  # characters of a log's exception text that are kept
URL_MAX = 200
TYPE_MAX = 120


class LastLog(msgspec.Struct, frozen=True):
    """The newest record of an integration, summarised: the URL without its query."""

    at: str
    method: str | None = None
    url: str | None = None
    response_code: int | None = None
    exception_type: str | None = None
    exception: str | None = None


class Health(msgspec.Struct, frozen=True):
    """One integration's exception logs since ``since``: ``count`` (0: none), the first and
    last times, the response codes and exception types seen (``{"401": 3}``), the last
    record. ``unknown``: why its account's logs could not be read (then nothing else is
    known)."""

    since: str
    count: int = 0
    first_at: str | None = None
    last_at: str | None = None
    response_codes: dict[str, int] = {}
    exception_types: dict[str, int] = {}
    last: LastLog | None = None
    unknown: str | None = None

    @property
    def failing(self) -> bool:
        return self.count > 0

    def describe(self) -> str:
        """A few words: ``14 exception logs since ..., last 401 at ...``, or why unknown."""
        if self.unknown is not None:
            return f"health unknown: {self.unknown}"
        if not self.count:
            return "no exception logs"
        last = self.last
        what = ""
        if last is not None:
            what = str(last.response_code) if last.response_code is not None else last.exception_type or "error"
        plural = "s" if self.count != 1 else ""
        return (
            f"{self.count} exception log{plural} since {self.since}, last {what + ' ' if what else ''}at {self.last_at}"
        )


# A URL inside a server's text (requests writes "... for url: https://shop/x?ws_key=KEY"):
# its query and fragment may hold a shop's key, and go.
_URL_TAIL = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#]*)[?#]\S*")
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]*@")


def clean(text: str | None, redact: Callable[[str], str], limit: int) -> str | None:
    """A server's text fit to keep: URLs without user info, query or fragment; redacted; one
    printable line of at most ``limit`` characters."""
    if not text:
        return None
    text = _USERINFO.sub(r"\1", _URL_TAIL.sub(r"\1?…", text))
    return one_line(text, redact, limit)


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (a time without an offset is taken as UTC),
    or None when it is not one."""
    if not text or not isinstance(text, str) or len(text) > 64:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00: a time before (or after) the calendar's in UTC
        return None


def shown_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def since_for(
    account: str,
    explicit: datetime | None,
    last_run_start: Callable[[str], datetime | None],
    now: datetime,
) -> datetime:
    """Since when an account's logs count: ``--since`` when given; else when the last run
    on this account started (the run history, when there is one); else 24 hours ago."""
    if explicit is not None:
        return explicit
    earlier = last_run_start(account)
    if earlier is not None:
        return earlier
    return now - DEFAULT_WINDOW


def no_history(account: str) -> datetime | None:
    """The lookup to use until a run history exists: no earlier run is known."""
    return None


def safe_url(url: str | None, redact: Callable[[str], str]) -> str | None:
    """Scheme, host and path of ``url``: no user info, no query, no fragment; redacted and
    printable."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
        shown = urlunsplit((parts.scheme, host + port, parts.path, "", ""))
    except ValueError:
        shown = url.split("?", 1)[0].split("#", 1)[0]
        if "@" in shown:
            shown = shown.rsplit("@", 1)[1]
    return one_line(shown, redact, URL_MAX)


class Tally:
    """The records of one integration as they are read, newest kept; :meth:`health` at the end."""

    __slots__ = ("codes", "count", "first", "last", "last_record", "types")

    def __init__(self) -> None:
        self.count = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.last_record: LogRecord | None = None
        self.codes: dict[str, int] = {}
        self.types: dict[str, int] = {}

    def add(self, record: LogRecord, at: datetime, redact: Callable[[str], str]) -> None:
        self.count += 1
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at >= self.last:
            self.last = at
            self.last_record = record
        code = str(record.response_code) if record.response_code is not None else "none"
        self.codes[code] = self.codes.get(code, 0) + 1
        kind = clean(record.exception_type, redact, TYPE_MAX)
        if kind:
            self.types[kind] = self.types.get(kind, 0) + 1

    def health(self, since: datetime, redact: Callable[[str], str]) -> Health:
        record = self.last_record
        last = None
        if record is not None and self.last is not None:
            last = LastLog(
                at=shown_time(self.last),
                method=clean(record.method, redact, 16),
                url=safe_url(record.full_url, redact),
                response_code=record.response_code,
                exception_type=clean(record.exception_type, redact, TYPE_MAX),
                exception=clean(record.exception, redact, EXCEPTION_MAX),
            )
        return Health(
            since=shown_time(since),
            count=self.count,
            first_at=shown_time(self.first) if self.first is not None else None,
            last_at=shown_time(self.last) if self.last is not None else None,
            response_codes=dict(sorted(self.codes.items())),
            exception_types=dict(sorted(self.types.items())),
            last=last,
        )


def unknown(since: datetime, reason: str) -> Health:
    return Health(since=shown_time(since), unknown=reason)


def failing(healths: Iterable[tuple[int, Health]]) -> list[tuple[int, Health]]:
    """The integrations with exception logs, most logs first."""
    return sorted(((i, h) for i, h in healths if h.failing), key=lambda p: (-p[1].count, p[0]))
