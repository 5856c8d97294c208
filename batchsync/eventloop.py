"""The event loop every command runs on: uvloop where it is installed (Linux and macOS,
where ``pip install batchsync`` brings it), the standard asyncio loop otherwise.

``BATCHSYNC_EVENT_LOOP`` chooses: ``auto`` (the default: uvloop when it imports),
``uvloop`` (uvloop or a usage error), ``asyncio`` (the standard loop). Both run the same
code through anyio; uvloop only makes each turn of the loop and each socket call cheaper.
The notifications after a run stay on asyncio's loop (see ``outputs.notify.notify``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from batchsync.usage import UsageError

ENV = "BATCHSYNC_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")


def choice() -> str:
    """The loop asked for in the environment (``auto`` when unset), or a usage error."""
    asked = os.environ.get(ENV, "").strip().lower() or "auto"
    if asked not in CHOICES:
        # Its value is not repeated: an environment variable may hold anything, a secret too.
        raise UsageError(f"${ENV} names no event loop: expected one of {', '.join(CHOICES)}")
    return asked


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` starts (a usage error as :func:`choice`)."""
    asked = choice()
    if asked == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if asked == "uvloop":
            raise UsageError(f"${ENV} is uvloop, but uvloop is not installed here") from None
        return "asyncio"
    return "uvloop"


def run(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(func, *args)`` on the loop :func:`loop_name` names."""
    import anyio

    options: dict[str, Any] = {}
    if loop_name() == "uvloop":
        import uvloop

        options["loop_factory"] = uvloop.new_event_loop
    return anyio.run(func, *args, backend="asyncio", backend_options=options)
