"""The error of a command line that cannot run, importable without anything heavy (``--version`` stays fast).

Once a command has loaded its inventory, it registers the run's redactor here
(:func:`redact_with`): every message printed from then on, usage errors included, goes
through :func:`shown`, so a value that holds a credential comes out as ``***``.
"""

from __future__ import annotations

from collections.abc import Callable

_redact: Callable[[str], str] | None = None


class UsageError(Exception):
    """A command line that cannot run: printed as ``batchsync: <message>``, exit 2."""


def redact_with(redact: Callable[[str], str] | None) -> None:
    """From now on, :func:`shown` passes every message through ``redact`` (None: no more)."""
    global _redact
    _redact = redact


def redactor() -> Callable[[str], str] | None:
    """The redactor registered by :func:`redact_with`, if any."""
    return _redact


def shown(text: str) -> str:
    """``text`` as it may be printed: through the run's redactor once there is one, and
    control characters spelled out (a value typed with an escape sequence acts on no
    terminal; tab and line feed kept)."""
    from batchsync.text import escape_controls

    return escape_controls(text if _redact is None else _redact(text), lines=True)
