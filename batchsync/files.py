"""Files batchsync reads and writes, safely: a regular file only, under a size cap, read
through the descriptor it checked; a file replaced in one step.

Whatever a file holds, reading it gives its bytes or a :class:`FileProblem` with a
printable reason, never another exception.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

MB = 1024 * 1024


INVENTORY_LIMIT = 256 * MB


# A statuses file holds one status list (a few KB; the API allows nothing near this).
STATUSES_FILE_LIMIT = 16 * MB


SECRET_FILE_LIMIT = 64 * 1024


class FileProblem(Exception):
    """A file that cannot be used; ``message`` is safe to print."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def size_text(n: int) -> str:
    if n >= MB:
        return f"{n / MB:.4g} MB"
    return f"{n / 1024:.4g} KB" if n >= 1024 else f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular(path: str | Path, limit: int, too_large: str = "") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; FileProblem otherwise.

    Opened non-blocking and checked on the open descriptor, not on the name, so that a
    FIFO, a device or a symlink swapped in between cannot make a reader hang or read
    forever (/dev/zero) or read something else than what was checked. ``too_large`` is
    appended to the message for a file over the cap (how to raise it).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileProblem("file does not exist") from None
    except IsADirectoryError:
        raise FileProblem("is a directory, not a file") from None
    except PermissionError:
        raise FileProblem("cannot be read (permission denied)") from None
    except OSError as exc:
        raise FileProblem(f"cannot be read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL byte in the name
        raise FileProblem("is not a usable file name") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileProblem("is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileProblem(f"is {size_text(st.st_size)}, more than the {size_text(limit)} allowed{too_large}")
        parts: list[bytes] = []
        total = 0
        # st_size is a hint only (a file may grow, /proc files say 0): read to the cap.
        want = st.st_size + 1
        while total <= limit:
            chunk = os.read(fd, min(limit + 1 - total, max(want - total, 1 << 16)))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileProblem(f"is more than the {size_text(limit)} allowed{too_large}")
        return parts[0] if len(parts) == 1 else b"".join(parts)
    except OSError as exc:
        raise FileProblem(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def user_path(ref: str, base_dir: Path) -> Path:
    """A path as an inventory writes it: ``~`` expanded, relative to ``base_dir``."""
    path = Path(ref)
    with contextlib.suppress(RuntimeError):  # ~someone unknown here: kept as written, so not found
        path = path.expanduser()
    return path if path.is_absolute() else base_dir / path


_CHUNK = 1 << 20


def not_utf8(data: bytes) -> FileProblem | None:
    """None if ``data`` is UTF-8; else the problem, naming the line, the column and the
    value of the first byte that is not, and the fix. Checked a chunk at a time, so that a
    file of hundreds of MB is not copied whole into a str to be checked."""
    if data.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    start = 0
    try:
        while start < len(data):
            decoder.decode(view[start : start + _CHUNK], final=start + _CHUNK >= len(data))
            start += _CHUNK
        return None
    except UnicodeDecodeError as exc:
        pending = len(decoder.getstate()[0])  # bytes of a character the previous chunk began
        at = start - pending + exc.start
    line_start = data.rfind(b"\n", 0, at) + 1
    line = data.count(b"\n", 0, line_start) + 1
    column = len(data[line_start:at].decode("utf-8")) + 1  # valid up to the bad byte: characters, as editors count
    return FileProblem(f"is not UTF-8 text (line {line}, column {column}: byte 0x{data[at]:02X}): save it as UTF-8")


def require_utf8(data: bytes) -> None:
    problem = not_utf8(data)
    if problem is not None:
        raise problem


def atomic_write(path: str, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` in one step: bytes, or parts written one after the
    other (a file made of more than memory should hold at once).

    The temp file ends in ``.tmp``, never ``.prom``, so node_exporter's textfile collector
    (which reads ``*.prom``) never picks up a half-written file.
    """
    parts = (data,) if isinstance(data, bytes) else data
    target = Path(path)
    directory = target.parent
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        # mkstemp creates 0600; node_exporter usually runs as another user and must read it.
        mode = 0o644
    import tempfile  # only a command that writes a file pays for it (it imports shutil)

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 16) as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is durable only once the directory is on disk; best effort (not every
    # filesystem lets a directory be opened and fsynced).
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    _remove_stale(directory, target.name)


STALE_TMP_S = 3600.0  # a temp file of atomic_write this old is a killed run's, not one being written


def _remove_stale(directory: Path, name: str) -> None:
    """The temp files a run killed while it wrote ``name`` left beside it (a SIGKILL skips
    the unlink): removed by the next write that succeeds, not left to pile up night after
    night in a report folder or node_exporter's directory. Only ours (``.NAME.*.tmp``, a
    regular file of this user) and only old ones: another run may be writing its own now."""
    import stat
    import time

    prefix = f".{name}."
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and now - st.st_mtime > STALE_TMP_S:
                    os.unlink(entry.path)
