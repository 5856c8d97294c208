"""The progress line a person at a terminal sees while a run works (silent unless the
stream is a terminal, so cron mail stays clean).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from batchsync.outcome import Outcome


def format_duration(seconds: float, tenths_below: float = 0.0) -> str:
    """``45s``, ``1m32s``, ``2h05m``: short enough for a status line; ``7.4s`` under
    ``tenths_below`` seconds (a report's short runs)."""
    if seconds < tenths_below:
        return f"{max(0.0, seconds):.1f}s"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """``[=====>    ] 1234/5000  25%  41.2/s  ETA 1m32s  failed 3  throttled: acme, beta``

    :meth:`update` is called once per integration and only counts, reading the clock to
    redraw at most ``1 / min_interval`` times a second, whatever else is printed (so its
    cost per integration does not grow with the output). Disabled (the default when
    ``stream`` is not a terminal), every method returns at once and writes nothing.
    ``before_draw`` is called before each redraw: the caller writes what it buffered for
    the same terminal then (calling :meth:`clear` first), so the line stays at the bottom.
    """

    BAR_WIDTH = 20

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        throttled: Callable[[], Iterable[str]] | None = None,
        min_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        before_draw: Callable[[], None] | None = None,
    ) -> None:
        self.stream: TextIO = sys.stderr if stream is None else stream
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):  # closed or not a real file
                enabled = False
        self.enabled = enabled
        self.total = max(0, total)
        self.done = 0
        self.counts: dict[str, int] = {"unchanged": 0, "changed": 0, "failed": 0, "skipped": 0}
        self.throttled = throttled
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self._next_draw = self.started  # first update draws at once
        self._drawn = False
        self.before_draw = before_draw

    def update(self, outcome: Outcome) -> None:
        if not self.enabled:
            return
        self.done += 1
        self.counts[outcome.result] = self.counts.get(outcome.result, 0) + 1
        if self.clock() >= self._next_draw:
            self.refresh()

    def line(self, width: int = 120) -> str:
        """The status text, cut to ``width`` characters."""
        elapsed = self.clock() - self.started
        total = max(self.total, self.done)
        fraction = self.done / total if total else 1.0
        filled = int(fraction * self.BAR_WIDTH)
        head = ">" if filled < self.BAR_WIDTH else ""
        bar = ("=" * filled + head).ljust(self.BAR_WIDTH)
        # Within the first second the rate is noise (one outcome in a millisecond is not 1000/s).
        rate = self.done / elapsed if elapsed >= 1.0 else 0.0
        parts = [f"[{bar}] {self.done}/{total}", f"{fraction * 100:3.0f}%", f"{rate:.1f}/s" if rate else "-/s"]
        if self.done < total:
            parts.append(f"ETA {format_duration((total - self.done) / rate)}" if rate else "ETA ?")
        if self.counts.get("failed"):
            parts.append(f"failed {self.counts['failed']}")
        if self.counts.get("skipped"):
            parts.append(f"skipped {self.counts['skipped']}")
        if self.throttled is not None:
            names = sorted(self.throttled())
            if names:
                parts.append("throttled: " + ", ".join(names))
        text = "  ".join(parts)
        # A line longer than the terminal wraps, and "\r" then only rewinds the last row.
        return text if len(text) < width else text[: max(0, width - 3)] + "..."

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns - 1
        except (AttributeError, ValueError, OSError):
            return 119

    def refresh(self) -> None:
        """Redraw now (the caller may also call this from a timer while nothing finishes)."""
        if not self.enabled:
            return
        if self.before_draw is not None:
            self.before_draw()
        self.stream.write("\r" + self.line(self._width()) + "\x1b[K")
        self.stream.flush()
        self._drawn = True
        self._next_draw = self.clock() + self.min_interval

    def clear(self) -> None:
        """Erase the line so other output starts at column 0; the next redraw draws it again."""
        if not self.enabled or not self._drawn:
            return
        self.stream.write("\r\x1b[K")
        self.stream.flush()
        self._drawn = False

    def close(self, keep: bool = False) -> None:
        """End the progress line: erase it, or with ``keep`` leave its final state and a newline."""
        if not self.enabled:
            return
        if keep:
            self.refresh()
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
        else:
            self.clear()
        self.enabled = False  # later calls (a late outcome, a second close) write nothing
