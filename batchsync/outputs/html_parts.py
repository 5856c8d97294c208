"""The HTML page's pieces that know nothing of a run in progress: the run's facts
(:class:`RunInfo`), the escapes every text on the page goes through, the time series of
each account's requests, and the inline SVG picture drawn from them (requests against each
account's budget). :mod:`batchsync.outputs.html` puts the page together.
"""

from __future__ import annotations

import html
import math
import re
import time
from array import array
from collections.abc import Callable, Mapping
from typing import Final

import msgspec

from batchsync.model import Limits
from batchsync.outcome import AccountStats
from batchsync.outputs.progress import format_duration
from batchsync.text import escape_controls, spelled

MAX_LANES: Final = 24  # accounts drawn in the picture, the latest to finish first
SLOTS: Final = 128  # time bins per account; merged pairwise as the run grows longer


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the outcomes do not say: how the run ended, when, and each account's budget."""

    exit_code: int
    started_at: float  # Unix time
    ended_at: float
    limits: dict[str, Limits] = {}  # declared per account; unknown (report merge): no budget line
    inventory: str = ""
    notes: tuple[str, ...] = ()  # extra lines under the title (report merge: each shard's state)
    title: str = ""  # default: "batchsync <mode>"
    appendix: str = ""  # the run history's section (outputs/html_history.py), HTML as is


# -- text --------------------------------------------------------------------------------

# HTML refuses more than the rule of batchsync.text: the non-characters (U+FDD0-FDEF, and
# U+FFFE/FFFF of every plane) are parse errors too. Tab and line feed are text.
_NONCHARACTERS = re.compile(
    "[\ufdd0-\ufdef" + "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(17)) + "]"
)


def _spelled(m: re.Match[str]) -> str:
    return spelled(m.group())


def visible(text: str) -> str:
    """``text`` with every code point a page cannot show as itself written as ``\\xNN``: the
    rule's characters, then HTML's non-characters."""
    return _NONCHARACTERS.sub(_spelled, escape_controls(text, lines=True))


def _e(text: object) -> str:
    """Escaped for HTML text or a quoted attribute value."""
    return html.escape(visible(str(text)), quote=True)


def _duration(seconds: float) -> str:
    return format_duration(seconds, tenths_below=10)


def _when(unix: float) -> str:
    if unix <= 0 or not math.isfinite(unix):
        return "unknown"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))
    except (OverflowError, OSError, ValueError):  # a report from the year 10^9
        return "unknown"


def _rate(per_minute: float) -> str:
    return f"{per_minute:g}/min" if per_minute < 100 else f"{per_minute:.0f}/min"


# -- time series -------------------------------------------------------------------------


class Series:
    """Counts over time from ``t0`` in :data:`SLOTS` bins whose width doubles (merging
    neighbours) whenever a later time arrives: bounded memory for a run of any length."""

    __slots__ = ("bins", "t0", "width")

    def __init__(self, t0: float, width: float) -> None:
        self.t0 = t0
        self.width = width
        self.bins = array("d", bytes(8 * SLOTS))

    def add(self, t: float, n: float = 1.0) -> None:
        offset = max(0.0, t - self.t0) if math.isfinite(t) else 0.0
        while offset >= self.width * SLOTS:
            merged = array("d", bytes(8 * SLOTS))
            for i in range(SLOTS):
                merged[i // 2] += self.bins[i]
            self.bins = merged
            self.width *= 2
        self.bins[int(offset / self.width)] += n

    def total(self) -> float:
        return sum(self.bins)

    def at_width(self, width: float) -> list[float]:
        """The bins regrouped to ``width`` (a power-of-two multiple of this width)."""
        k = max(1, round(width / self.width))
        out = [0.0] * SLOTS
        for i, v in enumerate(self.bins):
            if v:
                out[min(SLOTS - 1, i // k)] += v
        return out


class _Lane:
    """What the picture needs of one account, gathered outcome by outcome."""

    __slots__ = ("exact", "first", "last", "reads", "throttles", "writes")

    def __init__(self, t0: float, width: float) -> None:
        self.reads = Series(t0, width)
        self.writes = Series(t0, width)
        self.throttles = 0  # 429s with a known time (only from per-request records)
        self.first = math.inf
        self.last = -math.inf
        self.exact = False  # some outcome carried its requests' times


# -- the picture -------------------------------------------------------------------------

_W, _LEFT, _RIGHT, _TOP, _LANE, _PLOT, _AXIS = 960, 230, 16, 30, 66, 50, 26


def _ticks(span: float) -> list[float]:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600):
        if span / step <= 8:
            return [i * step for i in range(int(span / step) + 1)]
    step = 86400.0 * math.ceil(span / 86400 / 8)  # whole days, 8 ticks at most
    return [i * step for i in range(int(span / step) + 1)]


def _tick_label(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m" + (f"{whole % 60:02d}s" if whole % 60 else "")
    return f"{whole // 3600}h" + (f"{whole % 3600 // 60:02d}m" if whole % 3600 else "")


def _short(name: str, n: int = 26) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def timeline_svg(lanes: Mapping[str, _Lane], accounts: Mapping[str, AccountStats], info: RunInfo, t0: float) -> str:
    """Per account, its binding meter's requests added up over time against its budget."""
    drawn = {name: lane for name, lane in lanes.items() if math.isfinite(lane.first)}
    if not drawn:
        return ""
    # The axis starts when the run did (the engine's start), unless an integration started
    # before that (a merged report's shards); the bins count from ``t0``, at or before it.
    first = min(lane.first for lane in drawn.values())
    origin = max(t0, min(info.started_at, first)) if info.started_at > 0 else t0
    end = max(info.ended_at, max(lane.last for lane in drawn.values()))
    span = max(end - origin, 1e-3)
    order = sorted(drawn, key=lambda n: (-drawn[n].last, n))
    chosen = order[:MAX_LANES]
    chosen += [n for n in order[MAX_LANES:] if accounts.get(n, AccountStats()).throttled][:8]
    left_out = len(order) - len(chosen)
    height = _TOP + _LANE * len(chosen) + _AXIS + (18 if left_out else 0)
    plot_w = _W - _LEFT - _RIGHT
    width = max(lane.reads.width for lane in drawn.values())
    width = max([width, *(lane.writes.width for lane in drawn.values())])

    def x(t: float) -> float:
        return _LEFT + plot_w * min(1.0, max(0.0, (t - origin) / span))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" width="100%" '
        f'role="img" aria-labelledby="timeline-title" class="timeline">',
        '<title id="timeline-title">Requests per account over the run, against each account\'s budget</title>',
    ]
    # The time axis: ticks on top, light grid lines through every lane.
    bottom = _TOP + _LANE * len(chosen)
    for t in _ticks(span):
        xt = x(origin + t)
        out.append(f'<line class="grid" x1="{xt:.1f}" y1="{_TOP - 4}" x2="{xt:.1f}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{xt:.1f}" y="{_TOP - 8}" text-anchor="middle">{_tick_label(t)}</text>')
    # A legend in the corner the lanes' labels leave free.
    out.append(
        f'<line class="used" x1="8" y1="{_TOP - 12}" x2="24" y2="{_TOP - 12}"/>'
        f'<text class="label" x="28" y="{_TOP - 8}">used</text>'
        f'<line class="budget" x1="60" y1="{_TOP - 12}" x2="76" y2="{_TOP - 12}"/>'
        f'<text class="label" x="80" y="{_TOP - 8}">budget</text>'
        f'<line class="settled" x1="124" y1="{_TOP - 12}" x2="140" y2="{_TOP - 12}"/>'
        f'<text class="label" x="144" y="{_TOP - 8}">after 429s</text>'
    )
    longest = chosen[0]
    for i, name in enumerate(chosen):
        out.append(
            _lane_svg(
                name, drawn[name], accounts.get(name), info.limits.get(name), i, x, (t0, origin), width, name == longest
            )
        )
    if left_out:
        out.append(
            f'<text class="label" x="{_LEFT}" y="{bottom + 16}">…and {left_out} more accounts, all done by '
            f"{_e(_duration(drawn[order[len(chosen)]].last - origin))} (see the recap)</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _lane_svg(
    name: str,
    lane: _Lane,
    stats: AccountStats | None,
    lim: Limits | None,
    i: int,
    x: Callable[[float], float],
    times: tuple[float, float],  # (the bins' start, the axis' start)
    width: float,
    longest: bool,
) -> str:
    top = _TOP + i * _LANE + 6
    base = top + _PLOT
    stats = stats or AccountStats()
    reads = lane.reads.at_width(width)
    writes = lane.writes.at_width(width)
    est_r, est_w = sum(reads), sum(writes)
    # Scaled to the summary's exact counts where it has them: the pre-flight's list pages and
    # the retries of writes are in those, not in the placement by outcome.
    if not lane.exact and stats.reads + stats.writes:
        if est_r and stats.reads:
            reads = [v * stats.reads / est_r for v in reads]
        if est_w and stats.writes:
            writes = [v * stats.writes / est_w for v in writes]
    total_r, total_w = sum(reads), sum(writes)
    active = max(lane.last - lane.first, 1e-3)
    meter, series, rate, settled = "requests", [r + w for r, w in zip(reads, writes, strict=True)], None, None
    burst = 0
    if lim is not None:
        need_r = total_r / lim.reads_per_minute
        need_w = total_w / lim.writes_per_minute
        burst = max(1, lim.write_burst)
        if need_w >= need_r and total_w:
            meter, series, rate, settled = "writes", writes, lim.writes_per_minute, stats.write_rate
        else:
            meter, series, rate, settled = "reads", reads, lim.reads_per_minute, stats.read_rate
    count = sum(series)
    allowed = burst + (rate or 0.0) / 60.0 * active if rate else 0.0
    ymax = max(count, allowed, 1.0) * 1.08

    def y(v: float) -> float:
        return base - _PLOT * min(1.0, v / ymax)

    throttled = stats.throttled > 0
    parts = [f'<g class="lane{" throttled" if throttled else ""}">']
    parts.append(
        f'<rect class="span" x="{x(lane.first):.1f}" y="{top}" width="{max(1.0, x(lane.last) - x(lane.first)):.1f}" '
        f'height="{_PLOT}"/>'
    )
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{base}" x2="{_W - _RIGHT}" y2="{base}"/>')
    if rate:
        parts.append(
            f'<line class="budget" x1="{x(lane.first):.1f}" y1="{y(burst):.1f}" x2="{x(lane.last):.1f}" '
            f'y2="{y(allowed):.1f}"/>'
        )
        if settled is not None:
            slowed = burst + settled / 60.0 * active
            parts.append(
                f'<line class="settled" x1="{x(lane.first):.1f}" y1="{y(burst):.1f}" x2="{x(lane.last):.1f}" '
                f'y2="{y(slowed):.1f}"/>'
            )
    points = [f"{x(lane.first):.1f},{base:.1f}"]
    cumulative = 0.0
    for b, v in enumerate(series):
        edge = times[0] + (b + 1) * width
        if cumulative == 0.0 and v == 0.0:
            continue
        cumulative += v
        points.append(f"{x(min(edge, lane.last)):.1f},{y(cumulative):.1f}")
        if edge >= lane.last:
            break
    parts.append(f'<polyline class="used" points="{" ".join(points)}"/>')
    parts.append(f'<circle class="end" cx="{x(lane.last):.1f}" cy="{y(cumulative):.1f}" r="3"/>')
    label_y = top + 12
    parts.append(f'<text class="name{" longest" if longest else ""}" x="8" y="{label_y}">{_e(_short(name))}</text>')
    what = f"{count:.0f} {meter}" + (f" · budget {_rate(rate)}" if rate else " · budget unknown")
    parts.append(f'<text class="label" x="8" y="{label_y + 15}">{_e(what)}</text>')
    finished = f"done at {_duration(lane.last - times[1])}" + (" · set the run's length" if longest else "")
    parts.append(f'<text class="label" x="8" y="{label_y + 30}">{_e(finished)}</text>')
    if throttled:
        slowed_to = f" → {_rate(settled)}" if settled is not None else ""
        parts.append(f'<text class="warn" x="8" y="{label_y + 45}">429 × {stats.throttled}{_e(slowed_to)}</text>')
    parts.append("</g>")
    return "".join(parts)
