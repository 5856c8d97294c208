"""Reading JSON that batchsync once wrote but anyone could have changed since: reports
(``report merge``, ``--retry-failed``), budget records, lock files.

Every line is bounded in size and in depth before it is decoded: msgspec nests as deep as
Python's recursion limit lets it, so a line nested a thousand deep would end a command in
a RecursionError, and a line of a gigabyte would be held whole. A file is read line by line
(a regular file only: a FIFO would block, a device never end), so its size costs no memory.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from batchsync.files import not_utf8

__all__ = ["MAX_DEPTH", "MAX_LINE", "LineError", "decode", "objects", "read_lines"]

MAX_DEPTH = 32  # levels of arrays and objects: an outcome line has 4
MAX_LINE = 16 * 1024 * 1024  # bytes: an outcome line holds at most a shop's statuses twice (1 MiB answers)

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPEN = frozenset(b"[{")
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class LineError(ValueError):
    """A line (or a file) that cannot be read as JSON within the bounds; the message is safe
    to print and never quotes what the line holds."""


def depth(data: bytes) -> int:
    """How deep ``data``'s arrays and objects nest (brackets inside strings not counted)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    level = deepest = 0
    for b in brackets:
        if b in _OPEN:
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def decode(data: bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_LINE, type: Any = Any) -> Any:
    """``data`` decoded as ``type``. LineError when it is larger than ``max_bytes`` or nested
    deeper than ``max_depth``; msgspec.DecodeError or ValidationError when it is not JSON or
    not of that type."""
    if len(data) > max_bytes:
        raise LineError(f"longer than {max_bytes:,} bytes")
    # Most lines hold fewer brackets than the bound: no need to count levels then.
    if data.count(b"[") + data.count(b"{") > max_depth and depth(data) > max_depth:
        raise LineError(f"nested deeper than {max_depth} levels")
    try:
        return msgspec.json.decode(data, type=type)
    except RecursionError:  # deeper than the stack allows, inside what the count let through
        raise LineError(f"nested deeper than {max_depth} levels") from None


def read_lines(path: str | os.PathLike[str], *, max_line: int = MAX_LINE) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a regular file, blank lines left out, each at most
    ``max_line`` bytes long. OSError when it cannot be opened; LineError when it is not a
    regular file or a line is longer (the file is not read further)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise LineError("is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise LineError(f"is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        n = 0
        while line := f.readline(max_line + 2):  # the line, its newline, and one byte more
            n += 1
            body = line.rstrip(b"\r\n")
            if len(body) > max_line:
                raise LineError(f"line {n} is longer than {max_line:,} bytes")
            if body.strip():
                yield n, body


def objects(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of a file of JSON objects written one a line by a process
    that may have been killed mid-line: a last line that is not JSON is dropped (cut off),
    unless it is the only one (then the file is no such file at all). LineError naming the
    line for anything else: not JSON before the end, not an object, too long, too deep."""
    broken: str | None = None
    count = 0
    for n, line in lines:
        if broken is not None:
            raise LineError(broken)
        count += 1
        try:
            row = decode(line)
        except LineError as exc:
            raise LineError(f"line {n} is {exc}") from None
        except ValueError:  # msgspec.DecodeError; UnicodeDecodeError from msgspec < 0.23
            from batchsync.jsonlines import jsonl_problem

            broken = f"line {n} {jsonl_problem(line)}"
            continue
        if not isinstance(row, dict):
            raise LineError(f"line {n} is not a JSON object")
        yield n, row
    if broken is not None and count == 1:
        raise LineError(f"{broken}: not a report")


def jsonl_problem(line: bytes) -> str:
    """Why one line of a JSON Lines file (a report) could not be read, in our words."""
    problem = not_utf8(line)
    if problem is None:
        return "is not JSON"
    return problem.message.replace("(line 1, ", "(", 1).removesuffix(": save it as UTF-8")
