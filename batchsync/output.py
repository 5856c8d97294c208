"""The one layer every sink's data passes through: outcomes made safe, outputs checked and guarded.

:class:`Sanitizer` redacts and strips control characters from everything a server wrote
into an outcome, once, before the terminal, the report, JUnit, metrics, the JSON
document or the HTML page see it: a new sink cannot forget to. :func:`check_output`
refuses an output path that would clobber a device, a FIFO, a directory, the inventory
or a file it references, before anything is sent. :class:`Lost` remembers which outputs
could not be written (a full disk) so the run goes on and says so at the end.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable, Iterable
from typing import IO

import msgspec

from batchsync.diff import Change, MappingChange
from batchsync.outcome import ErrorInfo, Outcome
from batchsync.redact import Redactor
from batchsync.text import one_line


class Sanitizer:
    """Makes outcomes safe to print: secrets out, control characters out.

    ``refresh`` returns the credentials in use now (OAuth2 tokens appear as a run goes);
    they are added to the redactor before each outcome is cleaned.
    """

    REFRESH_EVERY = 1.0  # seconds: the credentials in use are gathered at most this often

    def __init__(self, redactor: Redactor, refresh: Callable[[], Iterable[str]] | None = None) -> None:
        self.redactor = redactor
        self.refresh = refresh
        self._refreshed = -1e9

    def text(self, value: str) -> str:
        return one_line(value, self.redactor)

    def outcome(self, outcome: Outcome) -> Outcome:
        # Gathering every account's credentials costs a pass over the accounts: not per
        # outcome. (The client has already redacted its own account's, tokens included.)
        if self.refresh is not None and (now := time.monotonic()) - self._refreshed >= self.REFRESH_EVERY:
            self._refreshed = now
            self.redactor.add(self.refresh())
        changes, mapping_changes = self._diffs(outcome)
        error = outcome.error
        if error is None and not outcome.reason and not outcome.warnings:  # a diff alone: most of a run
            if changes is outcome.changes and mapping_changes is outcome.mapping_changes:
                return outcome
            return msgspec.structs.replace(outcome, changes=changes, mapping_changes=mapping_changes)
        if error is not None:
            error = ErrorInfo(
                error.kind,
                error.http_status,
                one_line(error.code, self.redactor, 64) if error.code else error.code,
                self.text(error.detail),
                one_line(error.pointer, self.redactor, 200) if error.pointer else error.pointer,
            )
        return msgspec.structs.replace(
            outcome,
            error=error,
            reason=self.text(outcome.reason) if outcome.reason else outcome.reason,
            warnings=tuple(self.text(w) for w in outcome.warnings),
            changes=changes,
            mapping_changes=mapping_changes,
        )

    def _diffs(self, outcome: Outcome) -> tuple[tuple[Change, ...], tuple[MappingChange, ...]]:
        """The outcome's diffs with credentials masked: the ``before`` side (names and
        languages, a removed status's id, mapped ids) is what a server answered, and a
        server may echo a credential anywhere. That text goes through the redactor joined,
        once; only an outcome where it finds something is redacted, every field of it.
        Control characters stay: every sink quotes these values (JSON, repr, HTML), and a
        name is compared as it is."""
        changes, mapping = outcome.changes, outcome.mapping_changes
        texts: list[str] = []  # the server's side only: the rest is the inventory's
        for c in changes:
            if c.before:
                texts.extend(c.before)
                texts.extend(c.before.values())
                if c.op == "-":  # only a removed status's id is not also the inventory's
                    texts.append(c.external_id)
        texts.extend(m.before for m in mapping if m.before)
        joined = "\x00".join(texts)
        if not joined or self.redactor(joined) == joined:
            return changes, mapping
        r = self.redactor

        def names(d: dict[str, str] | None) -> dict[str, str] | None:
            return None if d is None else {r(k): r(v) for k, v in d.items()}

        return (
            tuple(msgspec.structs.replace(c, external_id=r(c.external_id), before=names(c.before), after=names(c.after))
                  for c in changes),
            tuple(msgspec.structs.replace(m, before=r(m.before) if m.before else m.before,
                                          after=r(m.after) if m.after else m.after)
                  for m in mapping),
        )  # fmt: skip


class OutputError(ValueError):
    """An output path that must not be written; the message names it and why."""


def check_output(flag: str, path: str, protected: Iterable[str]) -> None:
    """``path`` may be written by ``flag``: a regular file or a new one, in a writable
    directory, and none of ``protected`` (the inventory and the files it references)."""
    if not path:
        raise OutputError(f"{flag}: an empty path")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{flag} {path}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{flag} {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{flag} {path}: is not a regular file (a device, a FIFO or a socket)")
        for other in protected:
            try:
                if os.path.samefile(path, other):
                    raise OutputError(f"{flag} {path}: is {other}, which the inventory reads")
            except OSError:
                continue
    if os.path.islink(path) and st is None:
        raise OutputError(f"{flag} {path}: is a dangling symbolic link")
    folder = os.path.dirname(os.path.abspath(path))
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
        raise OutputError(f"{flag} {path}: {folder} is not a writable directory")


class Lost:
    """The outputs a run could not write, and why (``disk full``, say)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []  # (flag, path, why)

    def add(self, flag: str, path: str, exc: OSError) -> None:
        self.items.append((flag, path, exc.strerror or type(exc).__name__))

    def __bool__(self) -> bool:
        return bool(self.items)

    def lines(self) -> list[str]:
        named = ((" ".join(filter(None, (flag, path))), why) for flag, path, why in self.items)  # stdout: no path
        return [f"batchsync: {what} was not written: {why}" for what, why in named]


class Screen(io.TextIOBase):
    """stdout for a run's lines: buffered, and written in one piece when flushed.

    A run flushes it a few times a second and at its end, whatever ``PYTHONUNBUFFERED``
    says (containers often set it, and then every line was one ``write()``): the cost of
    an outcome line is an append. ``before_write`` runs before each write (the progress
    line erases itself there). It outlives its reader: ``batchsync apply ... | head``
    must not turn a closed pipe into failed integrations; once the pipe is gone, output
    is dropped. Nor must a full disk (``>> /var/log/batchsync.log``): the first write that
    fails is kept in ``failure`` for the run to name at its end, and output is dropped.
    """

    LIMIT = 1 << 16  # characters kept before a write, whatever the timer

    def __init__(self, stream: IO[str]) -> None:
        self.stream: IO[str] | None = stream
        self.before_write: Callable[[], None] | None = None
        self.failure: OSError | None = None  # why the stream was dropped (not a closed pipe)
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size > self.LIMIT:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        if self.stream is None:
            return
        if self.before_write is not None:
            self.before_write()
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.stream = None
        except OSError as exc:  # ENOSPC, EFBIG, EIO: what was not written is lost, the run goes on
            self.stream = None
            self.failure = exc
