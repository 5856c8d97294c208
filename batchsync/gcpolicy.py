"""The process's garbage-collection policy, set by the command-line layer, never by a library function.

Loading a large inventory allocates millions of small, acyclic containers; the cyclic
collector would rescan them over and over (70% of the time at 100,000 integrations), so
commands load with it :func:`paused`. A run then keeps what was loaded out of the
collector's sight and collects rarely (``batchsync.commands._run.rare_gc``). Start-up
(the ``batchsync`` command importing its modules and making its settings; a run's event
loop and HTTP client until its engine starts) collects nothing: :func:`starting`, then
:func:`started`, which freezes what start-up made.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside the block; the previous state after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_starting = False


def starting() -> None:
    """The process's start-up (the ``batchsync`` command, before its command's modules are
    imported): no cyclic collection until :func:`started`. What start-up allocates (modules,
    classes, functions) lives as long as the process; collecting it over and over as it
    grows cost about 3 ms of every run's first request."""
    global _starting
    _starting = gc.isenabled()
    gc.disable()


def started() -> None:
    """The command's work begins: what start-up made is frozen out of every later collection
    (never scanned again, and without a collection now), and collection is on again as it
    was. Nothing when :func:`starting` was not called (a command run in-process, a test)."""
    global _starting
    if _starting:
        _starting = False
        gc.freeze()
        gc.enable()
