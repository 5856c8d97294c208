"""Text for stdout and stderr whatever their encoding.

A cron job or a container may run under a locale whose encoding is not UTF-8 (Latin-1,
ASCII): a status name with a character that encoding lacks (an emoji, a euro sign, a
server's answer) must not end a run in a traceback. Text goes out with such characters
escaped (``\\xe8``, as Python does on stderr); JSON goes out with every non-ASCII
character as ``\\uXXXX``, which is the same JSON and valid in any ASCII-compatible
encoding.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import re
import sys
from typing import Any

from batchsync.text import json_escape, json_spelled

__all__ = ["SafeStderr", "discard_stdout", "is_utf8", "json_for", "stderr_failure"]

_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def is_utf8(stream: Any) -> bool:
    """Whether ``stream`` encodes text as UTF-8 (a stream without an encoding: yes, it takes str)."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def json_for(stream: Any, text: str) -> str:
    """JSON ``text`` as ``stream`` can carry it: as it is for UTF-8, else ASCII-only. The
    characters of batchsync.text' rule that JSON lets through raw (DEL, C1 controls,
    bidi characters: a terminal acts on some) are written as ``\\uXXXX`` either way, which
    is the same JSON: they can only be inside strings."""
    text = json_spelled(text)
    if text.isascii() or is_utf8(stream):
        return text
    return _NON_ASCII.sub(json_escape, text)


def discard_stdout() -> None:
    """Descriptor 1 pointed at /dev/null: what ``sys.stdout`` still buffers for a reader that
    left or a full disk is dropped, instead of failing again when the process exits."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)


class SafeStderr:
    """stderr that a full disk or a reader gone cannot break: a write that fails is kept in
    ``failure`` and every later one dropped (what was lost is not said: there is nowhere to
    say it), so the run goes on. Unguarded, the first failure line of ``-q`` on a full disk
    (``2>>/var/log/batchsync.err``, the cron wrapper's temp file) raised into the sinks: the
    outcome went missing from the JUnit file, the HTML page and the run history, and a
    warning printed before the run stopped it before anything was sent. The exit code says
    an output was lost (:func:`stderr_failure`, read by ``Lost`` and the process's end)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        if self.failure is None:
            try:
                return int(self.stream.write(text))
            except OSError as exc:
                self.failure = exc
        return len(text)

    def flush(self) -> None:
        if self.failure is None:
            try:
                self.stream.flush()
            except OSError as exc:
                self.failure = exc

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer: the stream's
        return getattr(self.stream, name)


def stderr_failure() -> OSError | None:
    """Why stderr could not be written to, if the process's stderr is a :class:`SafeStderr` that failed."""
    stream = sys.stderr
    return stream.failure if isinstance(stream, SafeStderr) else None
