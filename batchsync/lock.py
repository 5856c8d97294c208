"""One run per inventory at a time: an advisory ``flock`` on a lock file next to the inventory.

The kernel drops the lock when the holder exits, however it dies, so a killed run never
blocks the next night's. The file records who holds it, for the message a second run prints.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LockError", "LockedError", "RunLock", "acquire_lock", "lock_path"]


class LockError(Exception):
    """The lock could not be taken for a reason other than another run holding it
    (no writable place for the lock file, a filesystem without ``flock``)."""


class LockedError(LockError):
    """Another process holds the lock. ``holder`` is what it recorded (may be empty)."""

    def __init__(self, inventory: str, lock_file: str, holder: dict[str, Any]) -> None:
        self.inventory = inventory
        self.lock_file = lock_file
        self.holder = holder
        super().__init__(f"another batchsync run holds the lock on {inventory}: {describe_holder(holder)}")


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 1234, started 2026-11-26T22:00:03Z`` (plus the host when it is not this one)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        # The holder may be between truncating the file and writing it, or predate it.
        return "holder unknown (the lock file records no valid holder)"
    parts = [f"pid {pid}"]
    started = holder.get("started")
    if isinstance(started, str) and started:
        parts.append(f"started {started}")
    host = holder.get("host")
    if isinstance(host, str) and host and host != socket.gethostname():
        parts.append(f"on host {host}")
    return ", ".join(parts)


def _candidates(inventory: Path) -> list[Path]:
    """Where the lock file may live, in order of preference."""
    digest = hashlib.sha256(str(inventory).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    fallback_name = f"batchsync-{digest}.lock"
    out = [inventory.parent / f".{inventory.name}.lock"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        out.append(Path(runtime) / fallback_name)
    out.append(Path(tempfile.gettempdir()) / fallback_name)
    return out


def lock_path(inventory_path: str) -> str:
    """The preferred lock file for an inventory (the one used when its directory is writable)."""
    return str(_candidates(Path(inventory_path).resolve())[0])


def _open_lock_file(inventory: Path) -> tuple[int, Path]:
    last: OSError | None = None
    for path in _candidates(inventory):
        try:
            # O_NOFOLLOW: in a shared temp dir, someone else could plant a symlink to a file of ours.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ELOOP):
                raise LockError(f"cannot open the lock file {path}: {exc.strerror}") from exc
            last = exc
            continue
        return fd, path
    reason = last.strerror if last is not None else "no candidate"
    raise LockError(f"no writable place for the lock file of {inventory} ({reason})")


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder's record; ``{}`` for anything unreadable (empty, partial, garbage)."""
    try:
        raw = os.pread(fd, 64 * 1024, 0)
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class RunLock:
    """A held lock. Release it with :meth:`release` or by leaving the ``with`` block;
    process exit releases it too."""

    def __init__(self, inventory: str, path: Path, fd: int, holder: dict[str, Any]) -> None:
        self.inventory = inventory
        self.path = path
        self.holder = holder
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close. The file stays: unlinking it would let a waiter lock a file
        that a newcomer then recreates, and two runs would both hold "the" lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({self.inventory!r}, path={str(self.path)!r}, held={self.held})"


def acquire_lock(inventory_path: str) -> RunLock:
    """Take the lock for ``inventory_path`` without waiting.

    Raises :class:`LockedError` naming the holder when another process has it, and
    :class:`LockError` when no lock file can be opened or locked.
    """
    inventory = Path(inventory_path).resolve()
    fd, path = _open_lock_file(inventory)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(inventory_path, str(path), _read_holder(fd)) from None
        except OSError as exc:  # e.g. ENOLCK on a network filesystem without flock
            raise LockError(f"cannot lock {path}: {exc.strerror}") from exc
        holder: dict[str, Any] = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "argv": sys.argv[0:2],
            "inventory": str(inventory),
        }
        data = json.dumps(holder).encode() + b"\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError:
            # Holding the lock is what matters; a missing record only makes the message vaguer.
            pass
    except BaseException:
        os.close(fd)
        raise
    return RunLock(inventory_path, path, fd, holder)
