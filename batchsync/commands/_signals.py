"""SIGINT and SIGTERM over a whole run: inside the engine's loop they stop it (nothing new
starts, what is in flight finishes within the grace period, the rest is skipped); before
the loop and after it they are held, so that a run stopped by systemd or Kubernetes still
ends as docs/running.md#stopping says: every integration with an outcome, the recap, the
report's summary line, the metrics, the history, exit 3.

Unheld, a signal during the start (the sandbox, the budget, ``--with-health``'s reading of
the exception logs, up to 90 s an account) or the end (a history store that is slow to
take the last outcomes) killed the process (exit 143: no summary line, no metrics, the
history's row left "running") or raised KeyboardInterrupt past the outputs.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

if TYPE_CHECKING:
    from batchsync.engine.engine import Engine

log = logging.getLogger("batchsync")

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Held:
    """The first SIGINT/SIGTERM that came while no engine was listening (``name``); a second
    one means now (KeyboardInterrupt, as before)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.name is not None:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name  # said once the engine starts: no logging in a handler

    def hold(self) -> None:
        """Take SIGINT and SIGTERM (again: the engine's loop gives them back as it found them
        at its start, or to the defaults). Only the main thread may: a run called from
        another (a program's thread) leaves them as they are."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current != self._handle:
                self._saved.setdefault(signum, current)
                signal.signal(signum, self._handle)

    def release(self) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()


HELD = Held()


@contextmanager
def held() -> Iterator[Held]:
    """Hold the signals for a run (main thread only); a signal that came before its engine
    started stops the engine as it starts (:func:`watch`)."""
    HELD.name = None
    HELD.hold()
    try:
        yield HELD
    finally:
        HELD.release()


async def watch(engine: Engine, scope: anyio.CancelScope, grace: float) -> None:
    """First SIGINT/SIGTERM: start nothing new, cancel what is in flight after ``grace``
    seconds. A second one: cancel now. Either way the run still records every outcome.
    A signal held before the engine started stops it at once (everything is skipped)."""
    try:
        with anyio.open_signal_receiver(*SIGNALS) as signals:
            if HELD.name is not None:
                engine.stop(f"interrupted by {HELD.name}")
                log.warning("%s before the run started: every integration is skipped", HELD.name)
            async for signum in signals:
                name = signal.Signals(signum).name
                if engine.stopping is None:
                    engine.stop(f"interrupted by {name}")
                    scope.deadline = min(scope.deadline, anyio.current_time() + grace)
                    log.warning(
                        "%s: starting nothing new; waiting up to %gs for requests in flight "
                        "(send it again to stop now)",
                        name,
                        grace,
                    )
                else:
                    log.warning("%s again: stopping now", name)
                    scope.cancel()
    finally:
        if HELD._saved:  # inside held(): the end of the run holds them again
            HELD.hold()


async def until_signal(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T | None:
    """``fn``'s result, or None when a SIGINT/SIGTERM came first (held: the engine that
    starts next stops at once). For the work before the engine that may take long (the
    exception logs of ``--with-health``: up to 90 s an account)."""
    if HELD.name is not None:
        return None
    result: list[T] = []

    async def run(scope: anyio.CancelScope) -> None:
        result.append(await fn(*args, **kwargs))
        scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(*SIGNALS) as signals:
                tg.start_soon(run, tg.cancel_scope)
                async for signum in signals:
                    HELD.name = signal.Signals(signum).name
                    tg.cancel_scope.cancel()
                    break
    except BaseExceptionGroup as group:  # fn's own error, as it would have come without the group
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        if HELD._saved:
            HELD.hold()
    return result[0] if result else None
