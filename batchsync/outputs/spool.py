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
import mmap
import os
import tempfile
from array import array
from collections.abc import Iterator
from typing import IO


class Spool:
    """Rendered parts, appended as they come, read back sorted.

    ``directory``: where the temp file goes (beside the output: the same disk, the same
    space checks); None keeps the parts in memory (a page rendered from a bounded list).
    OSError from :meth:`add` when the temp file cannot be written (a full disk)."""

    def __init__(self, directory: str | None = None) -> None:
        self._file: IO[bytes] = (  # closed in close()
            io.BytesIO() if directory is None else tempfile.TemporaryFile(dir=directory, buffering=1 << 16)  # noqa: SIM115
        )
        self._index: dict[str, array[int]] = {}  # group -> key, offset, length, key, offset, ...
        self._size = 0
        self._map: mmap.mmap | None = None
        self.count = 0

    def add(self, group: str, key: int, data: bytes) -> None:
        if self._map is not None:  # read already: the map no longer covers the file
            self._map.close()
            self._map = None
        self._file.write(data)
        index = self._index.get(group)
        if index is None:
            index = self._index[group] = array("q")
        index.extend((key, self._size, len(data)))
        self._size += len(data)
        self.count += 1

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
        """``group``'s parts by key (or in ``order``, from :meth:`order`)."""
        index = self._index.get(group)
        if not index:
            return
        data = self._contents()
        for i in self.order(group) if order is None else order:
            offset, length = index[3 * i + 1], index[3 * i + 2]
            yield data[offset : offset + length]

    def everything(self) -> Iterator[bytes]:
        """Every part: the groups sorted, each group's parts by key."""
        for group in self.groups():
            yield from self.parts(group)

    def _contents(self) -> bytes | mmap.mmap:
        if isinstance(self._file, io.BytesIO):
            return self._file.getvalue()
        if not self._size:  # mmap cannot map an empty file
            return b""
        if self._map is None:
            self._file.flush()
            self._map = mmap.mmap(self._file.fileno(), self._size, access=mmap.ACCESS_READ)
        return self._map

    def close(self) -> None:
        """Release the temp file (gone from disk: it never had a name)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        self._index.clear()
        with contextlib.suppress(OSError):  # closing flushes the buffer: the parts are of no use now
            self._file.close()


def spool_beside(path: str) -> Spool:
    """A spool on disk in ``path``'s folder (OSError when it cannot be made)."""
    return Spool(os.path.dirname(os.path.abspath(path)))
