"""One ``apply`` per inventory and per Sendcloud account at a time, on this host: advisory ``flock``s.

The inventory lock sits next to the inventory; the account locks (one per account, named
by a hash of its API identity) sit in per-user runtime directories. The kernel drops a
lock when its holder exits, however it dies, so a killed run never blocks the next
night's. Each file records who holds it, for the message a second run prints.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "AccountLockedError",
    "LockError",
    "LockedError",
    "RunLock",
    "account_lock_name",
    "acquire_account_locks",
    "acquire_lock",
    "lock_path",
    "runtime_dirs",
]


class LockError(Exception):
    """The lock could not be taken for a reason other than another run of ours holding it
    (no writable place for the lock file, a lock file or directory of another user, a
    filesystem without ``flock``)."""


class LockedError(LockError):
    """Another process holds the lock. ``holder`` is what it recorded (may be empty)."""

    def __init__(self, inventory: str, lock_file: str, holder: dict[str, Any], message: str | None = None) -> None:
        self.inventory = inventory
        self.lock_file = lock_file
        self.holder = holder
        super().__init__(message or f"another batchsync run holds the lock on {inventory}: {describe_holder(holder)}")


class AccountLockedError(LockedError):
    """Another run holds the lock of one of the accounts this run needs. ``account`` is
    its name in this run's inventory (never its key)."""

    def __init__(self, inventory: str, account: str, lock_file: str, holder: dict[str, Any]) -> None:
        self.account = account
        where = describe_holder(holder)
        theirs = holder.get("inventory")
        if isinstance(theirs, str) and theirs:
            where += f", inventory {theirs}"
            name = holder.get("account")
            if isinstance(name, str) and name and name != account:
                where += f" (as account {name})"
        message = (
            f"account {account} is in use by another batchsync run ({where}): "
            "two runs would share its rate limits; try again when it is done"
        )
        super().__init__(inventory, lock_file, holder, message)


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


# -- where lock files live ----------------------------------------------------------------


def _own_directory(path: Path) -> Path:
    """``path``, created 0700 if missing; a LockError unless it is a real directory of ours."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LockError(f"cannot create the lock directory {path}: {exc.strerror}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"cannot take the lock: {path} is not a directory (a symbolic link or a file)")
    if st.st_uid != os.geteuid():
        # In a shared temp dir anyone may create it first; using it would let them see
        # or replace our lock files.
        me = os.geteuid()
        raise LockError(f"cannot take the lock, {path} belongs to uid {st.st_uid}, not to this user (uid {me})")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def runtime_dirs() -> list[Path]:
    """The per-user directories that hold lock files, each created 0700 and checked to be ours.

    Always ``batchsync-<uid>`` in the temp dir (``$TMPDIR`` when set, even when it cannot
    be written: a LockError, never a lock somewhere else), and also ``$XDG_RUNTIME_DIR/batchsync``
    when that variable names a directory of ours. A lock is taken in each: a run from
    cron has no ``XDG_RUNTIME_DIR`` and one from a login shell has, and the two must
    still see each other's locks (in the temp dir); a service with a private ``/tmp``
    meets a login shell's run in the runtime dir.
    """
    # $TMPDIR as it is: tempfile.gettempdir() passes over one it cannot write (full, or
    # read-only) for /tmp, and a run there would not see the locks of the runs in $TMPDIR.
    tmp = os.environ.get("TMPDIR", "")
    base = Path(os.path.abspath(tmp)) if tmp else Path(tempfile.gettempdir())
    dirs = [_own_directory(base / f"batchsync-{os.geteuid()}")]
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        try:
            st = os.stat(runtime)
        except OSError:
            st = None
        # A variable left over by su or sudo names another user's directory: not ours to use.
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            dirs.append(_own_directory(Path(runtime) / "batchsync"))
    return dirs


def lock_path(inventory_path: str) -> str:
    """The preferred lock file for an inventory (the one used when its directory is writable)."""
    inventory = Path(inventory_path).resolve()
    return str(inventory.parent / f".{inventory.name}.lock")


def account_lock_name(identity: str, base_url: str) -> str:
    """The lock file name of one Sendcloud account: a hash of its identity (public key or
    OAuth2 client id), never the identity itself, and of the API it is used on (a sandbox
    on another port is another account). Spellings of one API are one: the scheme's and the
    host's case, a default port written out, a trailing slash, ``localhost`` for the
    loopback address (a sandbox reached as ``localhost`` and as ``127.0.0.1``)."""
    url = _api_key(base_url.strip())
    digest = hashlib.sha256(b"batchsync account lock\0" + url.encode() + b"\0" + identity.encode()).hexdigest()
    return f"account-{digest[:32]}.lock"


_LOOPBACK = {"localhost", "::1"}  # spelled 127.0.0.1
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _api_key(url: str) -> str:
    """The API at ``url`` as one text for all its spellings (see :func:`account_lock_name`):
    ``scheme://host[:port]/path``, the port only when it is not the scheme's default (the
    text of the usual spelling as before, so its locks and budget files keep their names)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a URL a run gets to use: its text, as written
        return url.rstrip("/")
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
    host = "127.0.0.1" if host in _LOOPBACK else host
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


# -- taking them ---------------------------------------------------------------------------


def _holder(inventory: str, account: str | None = None) -> dict[str, Any]:
    holder: dict[str, Any] = {
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "argv": sys.argv[0:2],
        "inventory": inventory,
    }
    if account is not None:
        holder["account"] = account
    return holder


def _read_record(fd: int) -> dict[str, Any]:
    """The record in the file's first line; ``{}`` for anything unreadable (empty, partial, garbage)."""
    import msgspec

    from batchsync.jsonlines import decode

    try:
        first = os.pread(fd, 64 * 1024, 0).split(b"\n", 1)[0].strip()
        doc = decode(first, max_bytes=64 * 1024)
    except (OSError, ValueError, msgspec.DecodeError):  # LineError: nested too deep
        return {}
    return doc if isinstance(doc, dict) else {}


HOLDER_WAIT_S = 1.0  # how long a refused run waits for the holder to write its record


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder's record. The holder writes it just after taking the lock, so a run
    refused in between finds the file empty (a new one) or a previous holder's: it reads
    again, briefly, until the record names a process that is alive."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    delay = 0.005
    while True:
        doc = _read_record(fd)
        if _names_live_holder(doc) or time.monotonic() >= deadline:
            return doc
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _names_live_holder(doc: dict[str, Any]) -> bool:
    pid = doc.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    host = doc.get("host")
    if isinstance(host, str) and host and host != socket.gethostname():
        return True  # another host's process: not ours to probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # a previous holder's record, not yet overwritten
    except OSError:
        pass  # alive, of another user
    return True


def _foreign(path: Path) -> LockError:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return LockError(f"cannot take the lock, {path} is a symbolic link")
    return LockError(
        f"cannot take the lock, held by uid {st.st_uid}: {path} belongs to another user, who runs batchsync "
        "on this inventory too (remove the file if they no longer do)"
    )


def _open(path: Path, mode: int) -> int:
    """Open (creating) a lock file that must belong to us. OSError when it cannot be opened."""
    # O_NOFOLLOW: whoever can write the directory could plant a symlink to a file of ours.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        owner = os.fstat(fd).st_uid
    except OSError:
        os.close(fd)
        raise
    if owner != os.geteuid():
        # Openable (root, or a file left world-writable), but another user's runs keep their
        # account locks where we cannot see them: sharing this one would protect nothing.
        os.close(fd)
        raise _foreign(path)
    return fd


Refusal = Callable[[dict[str, Any]], LockedError]  # the error to raise, given the holder's record


def _lock(fd: int, path: Path, holder: dict[str, Any], refusal: Refusal) -> None:
    """Take ``fd``'s flock without waiting and record ``holder`` in it; raise the
    ``refusal`` for the recorded holder when another process has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise refusal(_read_holder(fd)) from None
    except OSError as exc:  # e.g. ENOLCK on a network filesystem without flock
        raise LockError(f"cannot lock {path}: {exc.strerror}") from exc
    data = json.dumps(holder).encode() + b"\n"
    try:
        # Written over the old record, then cut: a reader never sees the file empty (its
        # first line is one record or the other).
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError:
        # Holding the lock is what matters; a missing record only makes the message vaguer.
        pass


class RunLock:
    """Held locks (one file or several). Release with :meth:`release` or by leaving the
    ``with`` block; process exit releases them too."""

    def __init__(self, inventory: str, held: list[tuple[Path, int]], holder: dict[str, Any]) -> None:
        self.inventory = inventory
        self.paths = [p for p, _ in held]
        self.holder = holder
        self._fds: list[int] | None = [fd for _, fd in held]

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def held(self) -> bool:
        return self._fds is not None

    def release(self) -> None:
        """Unlock and close. The files stay: unlinking one would let a waiter lock a file
        that a newcomer then recreates, and two runs would both hold "the" lock."""
        fds, self._fds = self._fds, None
        for fd in reversed(fds or ()):
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
        return f"RunLock({self.inventory!r}, paths={[str(p) for p in self.paths]!r}, held={self.held})"


def _take_all(inventory: str, wanted: list[tuple[Path, dict[str, Any], Refusal, int]]) -> RunLock:
    """Every lock in ``wanted`` (path, record, the error if it is held, file mode), in that
    order, or none: what was taken is released before the error is raised."""
    held: list[tuple[Path, int]] = []
    try:
        for path, holder, locked, mode in wanted:
            try:
                fd = _open(path, mode)
            except OSError as exc:
                raise LockError(f"cannot open the lock file {path}: {exc.strerror}") from exc
            held.append((path, fd))
            _lock(fd, path, holder, locked)
    except BaseException:
        RunLock(inventory, held, {}).release()
        raise
    return RunLock(inventory, held, wanted[0][1] if wanted else {})


def acquire_lock(inventory_path: str) -> RunLock:
    """Take the lock for ``inventory_path`` without waiting.

    The lock file is ``.<name>.lock`` beside the inventory; only when that directory is
    read-only (and the file does not exist) is it taken in the runtime directories
    instead. A lock file there of another user is an error, never a reason to go elsewhere.

    Raises :class:`LockedError` naming the holder when another process has it, and
    :class:`LockError` when no lock file can be opened or locked.
    """
    inventory = Path(inventory_path).resolve()
    beside = Path(lock_path(inventory_path))
    holder = _holder(str(inventory))
    try:
        fd = _open(beside, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _foreign(beside) from None
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
            raise LockError(f"cannot open the lock file {beside}: {exc.strerror}") from exc
        if exc.errno != errno.EROFS and os.path.lexists(beside):
            if os.lstat(beside).st_uid != os.geteuid():
                raise _foreign(beside) from None
            raise LockError(f"cannot open the lock file {beside}: {exc.strerror}") from exc
        # A read-only directory (a ConfigMap, a read-only checkout): no run can lock beside
        # the inventory, so every run locks in the runtime directories.
        digest = hashlib.sha256(str(inventory).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = f"inventory-{digest}.lock"
        wanted: list[tuple[Path, dict[str, Any], Refusal, int]] = [
            (d / name, holder, functools.partial(LockedError, inventory_path, str(d / name)), 0o600)
            for d in runtime_dirs()
        ]
        return _take_all(inventory_path, wanted)
    try:
        _lock(fd, beside, holder, functools.partial(LockedError, inventory_path, str(beside)))
    except BaseException:
        os.close(fd)
        raise
    return RunLock(inventory_path, [(beside, fd)], holder)


def acquire_account_locks(inventory_path: str, accounts: Mapping[str, str] | Iterable[tuple[str, str]]) -> RunLock:
    """Take the lock of every account (name -> :func:`account_lock_name`) without waiting:
    all of them or none.

    They are taken in the order of their file names, the same in every run, so that of
    two runs wanting overlapping accounts one gets them all rather than each a part.
    Raises :class:`AccountLockedError` naming the first account held by another run.
    """
    inventory = str(Path(inventory_path).resolve())
    pairs = accounts.items() if isinstance(accounts, Mapping) else accounts
    by_file: dict[str, str] = {}
    for name, file_name in pairs:
        # Two names for one Sendcloud account in an inventory: one lock (a second flock of
        # the same file would conflict with our own first one).
        by_file.setdefault(file_name, name)
    dirs = runtime_dirs()
    wanted: list[tuple[Path, dict[str, Any], Refusal, int]] = []
    for file_name in sorted(by_file):
        name = by_file[file_name]
        for d in dirs:  # the temp dir first: every run has it
            path = d / file_name
            refusal = functools.partial(AccountLockedError, inventory_path, name, str(path))
            wanted.append((path, _holder(inventory, name), refusal, 0o600))
    return _take_all(inventory_path, wanted)
