"""The HTML page's section from the run history: which failures are new and which go on
(since when, for how many runs), the recoveries, and each account's last runs as a small
chart (inline SVG, like the page's timeline: nothing loaded from elsewhere)."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batchsync.history.db import iso
from batchsync.outcome import Outcome, Summary
from batchsync.outputs.history import CHART_RUNS, Recall, since_text
from batchsync.outputs.sink import End
from batchsync.outputs.spool import Spool

MAX_CHARTS = 60  # accounts charted: those with failures first, then the busiest
_BAR, _GAP, _HEIGHT = 6, 2, 36


def _plain(text: object) -> str:
    return html.escape(str(text), quote=True)


def chart_svg(runs: Sequence[Mapping[str, Any]], _e: Callable[[object], str] = _plain) -> str:
    """One account's runs, oldest first: changed up (blue), failed down (red), to one scale."""
    top = max([1, *(r["changed"] for r in runs), *(r["failed"] for r in runs)])
    half = _HEIGHT / 2
    width = len(runs) * (_BAR + _GAP)
    bars = []
    for i, r in enumerate(runs):
        x = i * (_BAR + _GAP)
        up, down = half * r["changed"] / top, half * r["failed"] / top
        title = f"{r['at'][:16].replace('T', ' ')} UTC: {r['changed']} changed, {r['failed']} failed"
        bars.append(
            f'<g><title>{_e(title)}</title><rect class="chg" x="{x}" y="{half - up:.1f}" width="{_BAR}" '
            f'height="{up:.1f}"/><rect class="bad" x="{x}" y="{half}" width="{_BAR}" height="{down:.1f}"/></g>'
        )
    return (
        f'<svg class="runs" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {max(width, 1)} {_HEIGHT}" '
        f'width="{max(width, 1)}" height="{_HEIGHT}" role="img" aria-label="last runs">'
        f'<line class="axis" x1="0" x2="{width}" y1="{half}" y2="{half}"/>{"".join(bars)}</svg>'
    )


def section(
    memory: Mapping[str, Any],
    charts: Mapping[str, Sequence[Mapping[str, Any]]],
    summary: Summary,
    now: str,
    _e: Callable[[object], str] = _plain,
) -> str:
    """The page's "History" section; ``_e`` escapes text as the page does (a name with
    characters a page cannot show spelled out)."""
    return _section("".join(row for rows in _rows(memory, _e) for row in rows), charts, summary, now, _e)


def _rows(memory: Mapping[str, Any], _e: Callable[[object], str]) -> tuple[list[str], list[str], list[str]]:
    """The table's rows: the new failures, those that go on, the recoveries."""
    new = [
        f'<tr><td class="num">{o.integration_id}</td><td>{_e(o.account)}</td><td>new</td></tr>' for o in memory["new"]
    ]
    ongoing = [
        f'<tr><td class="num">{o.integration_id}</td><td>{_e(o.account)}</td><td>{_e(since_text(since, n))}</td></tr>'
        for o, since, n in memory["ongoing"]
    ]
    recovered = [
        f'<tr><td class="num">{o.integration_id}</td><td>{_e(o.account)}</td>'
        f'<td class="ok">recovered ({_e(since_text(since, runs))})</td></tr>'
        for o, since, runs in memory["recovered"]
    ]
    return new, ongoing, recovered


def _section(
    rows: str,
    charts: Mapping[str, Sequence[Mapping[str, Any]]],
    summary: Summary,
    now: str,
    _e: Callable[[object], str],
) -> str:
    parts = ['<section id="history"><h2>History</h2>']
    if rows:
        parts.append(
            '<table class="narrow"><thead><tr><th class="num">integration</th><th>account</th><th>since</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>"
        )
    else:
        parts.append("<p>No failure, and no recovery, since the last run.</p>")
    order = sorted(summary.accounts, key=lambda a: (-summary.accounts[a].failed, -summary.accounts[a].changed, a))
    items = []
    for account in order[:MAX_CHARTS]:
        stats = summary.accounts[account]
        runs = [*charts.get(account, ())][-(CHART_RUNS - 1) :]
        runs.append({"at": now, "changed": stats.changed, "failed": stats.failed})
        items.append(f'<tr><td>{_e(account)}</td><td>{chart_svg(runs, _e)}</td><td class="num">{len(runs)}</td></tr>')
    if items:
        more = len(order) - MAX_CHARTS
        parts.append(
            f"<h3>Each account's last {CHART_RUNS} runs</h3>"
            '<table class="narrow"><thead><tr><th>account</th><th>changed (up) and failed (down), oldest first</th>'
            f'<th class="num">runs</th></tr></thead><tbody>{"".join(items)}</tbody></table>'
            + (f"<p>…and {more} more accounts.</p>" if more > 0 else "")
        )
    parts.append("</section>")
    return "".join(parts)


class Memory:
    """What the page's section needs of a run: each row of its table, rendered as its
    outcome arrives (a failure, or the outcome of what was failing before) and spooled
    (:mod:`~batchsync.outputs.spool`: in ``spool_dir``, or in memory) in the table's order:
    the new failures, those that go on, the recoveries, each as they came. Without a
    history (``recall`` None or off), nothing: no section. OSError from the constructor
    or :meth:`add`: the spool cannot be written."""

    def __init__(
        self, recall: Recall | None, escape: Callable[[object], str] = _plain, spool_dir: str | None = None
    ) -> None:
        self.recall = recall if recall is not None and recall.on else None
        self.escape = escape
        self.rows = Spool(spool_dir) if self.recall is not None else None

    def add(self, outcome: Outcome) -> None:
        recall, rows = self.recall, self.rows
        if recall is None or rows is None:
            return
        if outcome.result == "failed" or outcome.integration_id in recall.known:
            for kind, texts in enumerate(_rows(recall.summarize((outcome,)), self.escape)):
                for text in texts:
                    rows.add(str(kind), len(rows), text.encode())

    def section(self, end: End) -> str:
        if self.recall is None or self.rows is None:
            return ""
        rows = b"".join(self.rows.everything()).decode()
        return _section(rows, self.recall.charts, end.summary, iso(end.started_at), self.escape)

    def close(self) -> None:
        if self.rows is not None:
            self.rows.close()


CSS = (
    "svg.runs{display:block}svg.runs .chg{fill:var(--chg)}svg.runs .bad{fill:var(--bad)}"
    "svg.runs .axis{stroke:#afb8c1}td.ok{color:var(--ok)}h3{font-size:15px;margin:16px 0 6px}"
)
