"""What a run leaves of each account's rate-limit budget, for the next run on this host.

Sendcloud meters each account with buckets on its side (its documented defaults: 100 writes and 1000
reads a minute, a burst of 15). A run that starts right after another on the same
account (``plan`` then its ``apply``, an ``apply`` retried by its scheduler, shards run
one after another) found those buckets spent while its own started full: its first
burst met 429s, it slowed itself down, and its recap advised lowering limits that were
right. So each run records, per account, what its buckets held when it ended, and the
next run on this host starts from that, refilled at the declared rate for the time in
between (a record older than a bucket's refill time is a full bucket again).

The files sit in ``budget/`` beside the account locks, in the per-user runtime
directories, named by the same hash of the account's identity and API (never the key). Best effort:
a record that cannot be read or written changes nothing but how full a run starts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from batchsync.engine.lock import LockError, account_lock_name, runtime_dirs
from batchsync.jsonlines import decode

if TYPE_CHECKING:
    from batchsync.model import Account

__all__ = ["MAX_AGE", "file_name", "files_for", "load", "save"]

MAX_AGE = 600.0  # seconds: a record this old says nothing (every bucket has refilled)
_MAX_BYTES = 4096
log = logging.getLogger("batchsync.budget")


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: float  # wall clock (time.time()) when the run ended: processes share no other clock
    reads: float  # tokens left in the read bucket then
    writes: float


def file_name(identity: str, base_url: str) -> str:
    """The record of one account on one API (see :func:`batchsync.engine.lock.account_lock_name`)."""
    return account_lock_name(identity, base_url).removesuffix(".lock") + ".budget"


def files_for(accounts: Mapping[str, Account], names: Iterable[str], base_url: str | None) -> dict[str, str]:
    """Per account name: its record's file, on ``base_url`` (or the account's own API),
    named as its lock is (the public key or OAuth2 client id, hashed)."""
    return {name: file_name(accounts[name].identity.reveal(), base_url or accounts[name].base_url) for name in names}


_FLAGS = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_dir(runtime: Path) -> int | None:
    """``budget/`` in one runtime directory, created 0700, opened without following a
    symbolic link and checked on the open descriptor: a real directory of ours, or None
    (with a warning). Its files are then reached through the descriptor (``dir_fd``), so
    nothing can swap a link in between: a ``budget`` made a link to another folder would
    have had its records written there and that folder's ``*.budget`` files deleted."""
    path = runtime / "budget"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None  # not this one: the others may do
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            log.warning("%s is not a directory (a symbolic link or a file): not used for budget records", path)
        return None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        log.warning("%s belongs to uid %d, not to this user: not used for budget records", path, st.st_uid)
        return None
    if st.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o700)
    return fd


@contextlib.contextmanager
def _dirs() -> Iterator[list[int]]:
    """``budget/`` in each runtime directory, as open descriptors: a folder of their own, so
    that pruning them scans records only, not every lock file a machine ever made (a sandbox
    on a new port is a new account lock, and lock files are never removed)."""
    try:
        runtimes = runtime_dirs()
    except (LockError, OSError):
        runtimes = []
    fds = [fd for fd in map(_open_dir, runtimes) if fd is not None]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _read(directory: int, name: str) -> _Record:
    """One record: a regular file (no link followed), bounded; ValueError otherwise."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _FLAGS, dir_fd=directory)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        raise ValueError("too large")
    record: _Record = decode(data, max_bytes=_MAX_BYTES, type=_Record)
    return record


def load(files: Mapping[str, str], now: float | None = None) -> dict[str, tuple[float, float, float]]:
    """Per account (name -> file): (age in seconds, read tokens, write tokens) of the
    newest usable record; accounts without one are left out."""
    now = time.time() if now is None else now
    found: dict[str, tuple[float, float, float]] = {}
    with _dirs() as dirs:
        for name, file in files.items():
            for directory in dirs:
                try:  # a regular file only, bounded: nothing put there can block or flood a run
                    record = _read(directory, file)
                except (OSError, ValueError, msgspec.DecodeError, msgspec.ValidationError):
                    continue  # LineError is a ValueError: nested too deep
                age = now - record.at
                values = (age, record.reads, record.writes)
                if not all(math.isfinite(v) for v in values) or not 0.0 <= age <= MAX_AGE:
                    continue  # a clock set back, a record from long ago, garbage
                if name not in found or age < found[name][0]:
                    found[name] = (age, max(0.0, record.reads), max(0.0, record.writes))
    return found


def save(levels: Mapping[str, tuple[float, float]], files: Mapping[str, str]) -> None:
    """Record each account's (read, write) tokens left now, in every runtime directory."""
    at = time.time()
    by_file: dict[str, tuple[float, float]] = {}
    for name, (reads, writes) in levels.items():
        file = files.get(name)
        if file is None:
            continue
        if file in by_file:  # two names for one Sendcloud account: the less it has left
            reads, writes = min(reads, by_file[file][0]), min(writes, by_file[file][1])
        by_file[file] = (reads, writes)
    with _dirs() as dirs:
        for directory in dirs:
            for file, (reads, writes) in by_file.items():
                _write(directory, file, msgspec.json.encode(_Record(at, reads, writes)))
            _prune(directory, at)


def _write(directory: int, name: str, data: bytes) -> None:
    tmp = f".budget-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600, dir_fd=directory)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # A reader sees the old record or the new one, whole; a link named like the record
        # is replaced, never followed.
        os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
        tmp = ""
    except OSError:
        pass
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=directory)


def _prune(directory: int, now: float) -> None:
    """Records older than MAX_AGE say nothing any more: one file per account and API would
    otherwise pile up (a sandbox on a new port is a new API). Only regular files of this
    directory are removed (a link is not followed, nor judged by its target's age)."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(".budget"):
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and now - st.st_mtime > MAX_AGE:
                        os.unlink(entry.name, dir_fd=directory)
