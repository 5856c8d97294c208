"""The process's garbage-collection policy, set by the command-line layer, never by a library function.

Loading a large inventory allocates millions of small, acyclic containers; the cyclic
collector would rescan them over and over (70% of the time at 100,000 integrations), so
commands load with it :func:`paused`. A run then keeps what was loaded out of the
collector's sight and collects rarely (``batchsync.commands._run.rare_gc``).
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
