"""What every output of a run shares: one check of an output's path before anything is sent
(:func:`check_output`), and one policy for an output that cannot be written (:class:`Lost`:
the run goes on, names it at its end, and exits 5 unless a failure or a stop says more).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable


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
