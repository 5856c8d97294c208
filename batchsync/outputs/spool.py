"""Parts of an output rendered as outcomes arrive, kept on disk rather than in memory, and
read back in the order the file needs them: by group (an account), then by key (an
integration id), ties in the order they came.

``--junit`` and ``--html`` write their files whole at the end (a reader sees the previous
file or this one), but a fleet's outcomes must not all be held until then: each one's part
of the file is rendered when it arrives and appended to an unnamed temp file beside the
target; memory keeps three numbers per part (key, offset, length) and whatever small sums
the file's headers need. The parts are then copied, in order, into the new file.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from array import array
from collections.abc import Callable, Iterator
from typing import IO


class Spool:
    """Rendered parts, appended as they come, read back sorted.

    ``directory``: where the temp file goes (beside the output: the same disk, the same
    space checks); None keeps the parts in memory (a page rendered from a bounded list).
    OSError from :meth:`add` when the temp file cannot be written (a full disk).
    ``buffered=False``: every write goes to the file at once (for :meth:`add_all`, which
    writes many parts at a time: nothing is left in a buffer after a failed write)."""

    def __init__(self, directory: str | None = None, *, buffered: bool = True) -> None:
        buffering = (1 << 16) if buffered else 0
        self._file: IO[bytes] = (  # closed in close()
            io.BytesIO() if directory is None else tempfile.TemporaryFile(dir=directory, buffering=buffering)  # noqa: SIM115
        )
        self._index: dict[str, array[int]] = {}  # group -> key, offset, length, key, offset, ...
        self._size = 0
        self.count = 0

    def add(self, group: str, key: int, data: bytes) -> None:
        self._file.write(data)
        index = self._index.get(group)
        if index is None:
            index = self._index[group] = array("q")
        index.extend((key, self._size, len(data)))
        self._size += len(data)
        self.count += 1

    def add_all(self, parts: list[tuple[str, int, bytes]]) -> None:
        """Each ``(group, key, data)`` of ``parts``, written and flushed before any is
        indexed: an OSError (a full disk) leaves the spool as it was before, its earlier
        parts still readable (what the failed write left past them is never read)."""
        start = self._size
        try:
            rest = memoryview(b"".join(data for _, _, data in parts))
            while rest:  # an unbuffered file may take part of it at a time
                rest = rest[self._file.write(rest) :]
            self._file.flush()
        except OSError:
            with contextlib.suppress(OSError, ValueError):
                self._file.seek(start)  # the next write, if any, goes where this one began
            raise
        offset = start
        for group, key, data in parts:
            index = self._index.get(group)
            if index is None:
                index = self._index[group] = array("q")
            index.extend((key, offset, len(data)))
            offset += len(data)
        self._size = offset
        self.count += len(parts)

    def __len__(self) -> int:
        return self.count

    def groups(self) -> list[str]:
        """The groups, sorted."""
        return sorted(self._index)

    def size(self, group: str) -> int:
        """How many parts ``group`` has."""
        return len(self._index.get(group, ())) // 3

    def order(self, group: str) -> list[int]:
        """``group``'s parts as arrival positions (0: its first), sorted by key; equal keys
        in the order they came."""
        index = self._index.get(group)
        if not index:
            return []
        return sorted(range(len(index) // 3), key=lambda i: index[3 * i])

    def parts(self, group: str, order: list[int] | None = None) -> Iterator[bytes]:
        """``group``'s parts by key (or in ``order``, from :meth:`order`). Each is read from
        the file on its own (``pread``): a file mapped or read whole would be held in memory."""
        index = self._index.get(group)
        if not index:
            return
        read = self._reader()
        for i in self.order(group) if order is None else order:
            yield read(index[3 * i + 1], index[3 * i + 2])

    def items(self, group: str) -> Iterator[tuple[int, bytes]]:
        """``group``'s parts by key, each with its key."""
        index = self._index.get(group)
        if not index:
            return
        read = self._reader()
        for i in self.order(group):
            yield index[3 * i], read(index[3 * i + 1], index[3 * i + 2])

    def everything(self) -> Iterator[bytes]:
        """Every part: the groups sorted, each group's parts by key."""
        for group in self.groups():
            yield from self.parts(group)

    def _reader(self) -> Callable[[int, int], bytes]:
        """``read(offset, length)``: one part's bytes."""
        if isinstance(self._file, io.BytesIO):
            data = self._file.getvalue()
            return lambda offset, length: data[offset : offset + length]
        self._file.flush()
        fd = self._file.fileno()

        def read(offset: int, length: int) -> bytes:
            if hasattr(os, "pread"):
                return os.pread(fd, length, offset) if length else b""
            os.lseek(fd, offset, os.SEEK_SET)  # Windows: no pread
            return os.read(fd, length) if length else b""

        return read

    def close(self) -> None:
        """Release the temp file (gone from disk: it never had a name)."""
        self._index.clear()
        with contextlib.suppress(OSError):  # closing flushes the buffer: the parts are of no use now
            self._file.close()


def spool_beside(path: str) -> Spool:
    """A spool on disk in ``path``'s folder (OSError when it cannot be made)."""
    return Spool(os.path.dirname(os.path.abspath(path)))
