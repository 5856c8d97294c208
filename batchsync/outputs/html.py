"""The run report for people: one self-contained HTML page per plan, apply or merged report.

Recap per account and per tag, failures first, changes as the terminal's +/~/- diff, and an
inline SVG of each account's requests against its budget, drawn here. No script, font,
style sheet or image comes from outside the file: it works opened from disk or mailed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from batchsync import __version__
from batchsync.exitcodes import (
    EXIT_CHANGES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_NOT_STARTED,
    EXIT_OK,
    EXIT_OUTPUT_LOST,
)
from batchsync.files import atomic_write
from batchsync.outcome import RESULTS, AccountStats, Outcome, Summary
from batchsync.outputs import html_history
from batchsync.outputs.drift import undeclared_section
from batchsync.outputs.health import HealthSeen, html_section
from batchsync.outputs.html_parts import (
    RunInfo,
    _duration,
    _e,
    _Lane,
    _rate,
    _when,
    timeline_svg,
    visible,
)
from batchsync.outputs.sink import End, Lost, Start
from batchsync.outputs.spool import Spool
from batchsync.outputs.terminal import Budget, outcome_lines

__all__ = ["Html", "HtmlReport", "RunInfo", "render", "visible", "write_html"]

# Failed and changed integrations listed on the page, each; beyond that they are counted.
# The page (and what is kept in memory while a run goes on) stays bounded on any fleet.
MAX_LISTED: Final = 2000
MAX_REASONS: Final = 20  # distinct reasons for skipping kept for the count
MAX_SPAN: Final = 40 * 86400.0  # seconds: an outcome further from the run's start is not drawn


_STATUS: Final = {
    EXIT_OK: ("ok", "every selected integration is in its desired state"),
    EXIT_FAILED: ("failed", "some integrations failed"),
    EXIT_NOT_STARTED: ("failed", "not started"),
    EXIT_INTERRUPTED: ("stopped", "stopped early: not every integration was done"),
    EXIT_CHANGES: ("changes", "changes to make"),
    EXIT_LOCKED: ("stopped", "another apply held the inventory's lock"),
    EXIT_OUTPUT_LOST: ("failed", "done, but an output could not be written"),
}


def _writes_of(outcome: Outcome) -> int:
    """The writes an integration's outcome stands for: its statuses, its mapping (in a plan:
    the writes an apply would make)."""
    if outcome.result != "changed":
        return 0
    statuses = 1 if outcome.added or outcome.changed or outcome.removed or outcome.changes else 0
    return statuses + (1 if outcome.mapping_changes else 0)


# -- the page ----------------------------------------------------------------------------


class HtmlReport:
    """The page, built one outcome at a time (:meth:`add`) and rendered once (:meth:`html`).

    Memory stays bounded whatever the fleet: failed and changed outcomes are listed up to
    ``max_listed`` each (then only counted), each one's row rendered as it arrives and
    spooled (:mod:`~batchsync.outputs.spool`: to an unnamed temp file in ``spool_dir``, or
    in memory), unchanged and skipped ones only counted, and each account's requests over
    time in :data:`SLOTS` bins. OSError from :meth:`add` or the constructor: the spool
    cannot be written.
    """

    def __init__(
        self,
        mode: str,
        started_at: float,
        *,
        redact: Callable[[str], str] = str,
        max_listed: int = MAX_LISTED,
        spool_dir: str | None = None,
    ) -> None:
        self.mode = mode
        self.t0 = started_at
        self.redact = redact
        self.max_listed = max_listed
        self.failures = Spool(spool_dir)  # each failure's table row, by account and id
        self.changes = Spool(spool_dir)  # each change's <details>, by account and id
        self.failed_unlisted = 0
        self.changed_unlisted = 0
        self.counts: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.tags: dict[str, dict[str, int]] = {}
        self.reasons: dict[str, int] = {}
        self.lanes: dict[str, _Lane] = {}
        self.budget = Budget() if mode == "plan" else None  # what an apply of this plan will spend
        self.warnings = 0
        self.health = HealthSeen()  # --with-health: the failing shops

    def add(self, outcome: Outcome) -> None:
        self.health.add(outcome)
        result = outcome.result
        self.counts[result] += 1
        for tag in outcome.tags or ("",):
            by_result = self.tags.setdefault(tag, dict.fromkeys(RESULTS, 0))
            by_result[result] += 1
        if outcome.warnings:
            self.warnings += 1
        if result == "failed":
            if len(self.failures) < self.max_listed:
                self.failures.add(outcome.account, outcome.integration_id, self._failure_row(outcome).encode())
            else:
                self.failed_unlisted += 1
        elif result == "changed":
            if len(self.changes) < self.max_listed:
                self.changes.add(outcome.account, outcome.integration_id, self._change_item(outcome).encode())
            else:
                self.changed_unlisted += 1
        elif result == "skipped":
            reason = outcome.reason or "no reason recorded"
            if reason in self.reasons or len(self.reasons) < MAX_REASONS:
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
            else:
                self.reasons["(other reasons)"] = self.reasons.get("(other reasons)", 0) + 1
        if self.budget is not None:
            self.budget.add(outcome)
        # A plan writes nothing: its picture is its reads (its budget section has the writes).
        self._place(outcome, _writes_of(outcome) if self.mode == "apply" else 0)

    def _place(self, outcome: Outcome, writes: int) -> None:
        lane = self.lanes.get(outcome.account)
        if lane is None:
            lane = self.lanes[outcome.account] = _Lane(self.t0, 0.05)
        start, end = outcome.started_at, outcome.ended_at
        if not start and not end:
            return  # an old report without times: counted, not drawn
        end = max(start, end)
        if (
            not (math.isfinite(start) and math.isfinite(end))
            or abs(start - self.t0) > MAX_SPAN
            or end - start > MAX_SPAN
        ):
            return  # times no run has (a damaged report): counted, not drawn
        lane.first = min(lane.first, start)
        lane.last = max(lane.last, end)
        # MERGE: outcome lines may carry each request as [t, "GET"|"POST", status]; when
        # they do, the picture is exact. Otherwise the integration's requests are placed
        # within its span: the reads spread from its start, the writes at its end (a write
        # is its last step).
        records = getattr(outcome, "requests", None)
        if records:
            lane.exact = True
            for record in records:
                try:
                    t, method, status = float(record[0]), str(record[1]), int(record[2])
                except (TypeError, ValueError, IndexError):
                    continue
                (lane.writes if method == "POST" else lane.reads).add(t)
                lane.throttles += status == 429
            return
        writes = min(writes, outcome.attempts)
        reads = outcome.attempts - writes
        points = min(reads, 16)  # however many attempts a report claims, a few points carry them
        for i in range(points):
            lane.reads.add(start + (end - start) * i / points, reads / points)
        if writes:
            lane.writes.add(end, writes)

    # -- rendering ------------------------------------------------------------------------

    def html(self, summary: Summary, info: RunInfo) -> str:
        """The whole document."""
        mode = self.mode
        title = info.title or f"batchsync {mode}"
        word, meaning = _STATUS.get(info.exit_code, ("failed", "unknown exit status"))
        if info.exit_code == EXIT_OK and mode == "plan" and summary.total("changed"):
            word, meaning = "changes", "changes to make"
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            # Nothing may load from anywhere: no script at all, styles only from this file.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="batchsync ' + _e(__version__) + '">',
            f"<title>{_e(title)}: {_e(word)} (exit {info.exit_code})</title>",
            f"<style>{_CSS}{html_history.CSS}</style>",
            "</head>",
            "<body>",
            '<header id="run">',
            f'<h1>{_e(title)} <span class="badge {word}">{_e(word)}</span></h1>',
            self._run_facts(summary, info, meaning),
            "</header>",
            "<main>",
            self._recap(summary, info),
            self._failures(),
            html_section(self.health, self._text),
            self._timeline(summary, info),
        ]
        if mode == "plan":
            parts.append(self._budget(summary, info))
        parts += [
            undeclared_section(summary, _e),
            info.appendix,
            self._tags(),
            self._changes(),
            self._rest(),
            "</main>",
        ]
        parts.append(
            f"<footer>Made by batchsync {_e(__version__)} on {_e(_when(time.time()))}. "
            "This page is self-contained: no script, nothing loaded from elsewhere.</footer>"
        )
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)

    def _text(self, text: str) -> str:
        return _e(self.redact(text))

    def _run_facts(self, summary: Summary, info: RunInfo, meaning: str) -> str:
        duration = summary.duration_s or max(0.0, info.ended_at - info.started_at)
        rows = [
            ("exit status", f"{info.exit_code}: {meaning}"),
            ("started", _when(info.started_at)),
            ("ended", _when(info.ended_at)),
            ("duration", _duration(duration)),
        ]
        if info.inventory:
            rows.insert(0, ("inventory", info.inventory))
        items = "".join(f"<dt>{_e(k)}</dt><dd>{self._text(v)}</dd>" for k, v in rows)
        out = [f'<dl class="facts">{items}</dl>']
        totals = " · ".join(f'<span class="n {r}">{summary.total(r)}</span> {_e(self._word(r))}' for r in RESULTS)
        out.append(f'<p class="totals">{totals} · {summary.requests()} requests</p>')
        if summary.stopped:
            out.append(f'<p class="stopped">Stopped early: {self._text(summary.stopped)}</p>')
        out.extend(f'<p class="note">{self._text(n)}</p>' for n in info.notes)
        return "\n".join(out)

    def _word(self, result: str) -> str:
        return "to change" if result == "changed" and self.mode == "plan" else result

    def _recap(self, summary: Summary, info: RunInfo) -> str:
        head = "".join(f'<th class="num">{_e(self._word(r))}</th>' for r in RESULTS)
        rows = []
        for name in sorted(summary.accounts):
            a = summary.accounts[name]
            cells = "".join(f'<td class="num {r if a.count(r) else ""}">{a.count(r)}</td>' for r in RESULTS)
            lim = info.limits.get(name)
            budget = (
                f"{_rate(lim.reads_per_minute)} reads, {_rate(lim.writes_per_minute)} writes, burst {lim.write_burst}"
                if lim is not None
                else "unknown"
            )
            rows.append(
                f'<tr><th scope="row">{_e(name)}</th>{cells}'
                f'<td class="num">{a.requests}</td>'
                f'<td class="num{" failed" if a.throttled else ""}">{a.throttled}</td>'
                f"<td>{_e(budget)}</td><td>{_e(_settled(a))}</td></tr>"
            )
        totals = "".join(f'<td class="num">{summary.total(r)}</td>' for r in RESULTS)
        throttled = sum(a.throttled for a in summary.accounts.values())
        rows.append(
            f'<tr class="total"><th scope="row">total</th>{totals}<td class="num">{summary.requests()}</td>'
            f'<td class="num">{throttled}</td><td></td><td></td></tr>'
        )
        return (
            '<section id="recap"><h2>Recap per account</h2>'
            f'<table><thead><tr><th>account</th>{head}<th class="num">requests</th>'
            '<th class="num">429s</th><th>declared budget</th><th>after 429s</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )

    def _tags(self) -> str:
        if not self.tags or set(self.tags) == {""}:
            return ""
        head = "".join(f'<th class="num">{_e(self._word(r))}</th>' for r in RESULTS)
        rows = []
        for tag in sorted(self.tags, key=lambda t: (t == "", t)):
            counts = self.tags[tag]
            cells = "".join(f'<td class="num {r if counts[r] else ""}">{counts[r]}</td>' for r in RESULTS)
            label = _e(tag) if tag else "<em>no tag</em>"
            rows.append(f'<tr><th scope="row">{label}</th>{cells}</tr>')
        return (
            '<section id="tags"><h2>Recap per tag</h2>'
            '<p class="hint">An integration with several tags counts under each of them.</p>'
            f'<table class="narrow"><thead><tr><th>tag</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )

    def _timeline(self, summary: Summary, info: RunInfo) -> str:
        svg = timeline_svg(self.lanes, summary.accounts, info, self.t0)
        if not svg:
            return ""
        estimated = not any(lane.exact for lane in self.lanes.values())
        caption = (
            "Each account's requests of the kind its budget limits most (writes, or reads), added up over "
            "the run (solid), against what its declared budget allows from its first request (dashed: the "
            "burst, then the declared rate). A curve along its dashed line ran at its budget; the account "
            "that finished last set the run's length. Red: answered 429 (Too Many Requests); the dotted "
            "line is the rate it settled on."
        )
        if estimated:
            caption += (
                " The report holds each integration's start and end, not each request's time: an "
                "integration's reads are spread over its span and its writes placed at its end."
            )
        return (
            '<section id="timeline"><h2>Requests over time against each account\'s budget</h2>'
            f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure></section>"
        )

    def _budget(self, summary: Summary, info: RunInfo) -> str:
        # The same figures as the terminal's BUDGET lines: report.Budget computes both.
        budget = self.budget.rows(summary, info.limits) if self.budget is not None else []
        if not budget:
            return ""
        longest = max(budget, key=lambda b: b["least_seconds"])
        rows = []
        for b in budget:
            mark = ' class="slowest"' if b is longest and b["least_seconds"] > 0 else ""
            spend = f"{_rate(b['reads_per_minute'])} reads, {_rate(b['writes_per_minute'])} writes"
            rows.append(
                f'<tr{mark}><th scope="row">{_e(b["account"])}</th>'
                f'<td class="num">{b["reads"]}</td><td class="num">{b["writes"]}</td><td>{_e(spend)}</td>'
                f'<td class="num">{_e(_duration(b["least_seconds"]))}</td></tr>'
            )
        lead = (
            f"<p>At the declared limits, the apply takes at least "
            f"<strong>{_e(_duration(longest['least_seconds']))}</strong>, set by account "
            f"<strong>{_e(longest['account'])}</strong> (plus the time of the requests themselves).</p>"
        )
        return (
            '<section id="budget"><h2>What the apply will spend</h2>'
            '<p class="hint">Reads: the requests this plan made (the apply reads the same); writes: one per '
            "integration whose statuses change, one more where its mapping changes. The first burst of each "
            "goes at once, the rest at the declared rate; accounts run side by side.</p>"
            f'{lead}<table><thead><tr><th>account</th><th class="num">reads</th><th class="num">writes</th>'
            f'<th>declared budget</th><th class="num">least time</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )

    def _failure_row(self, o: Outcome) -> str:
        e = o.error
        kind = e.kind if e is not None else "failed"
        status = str(e.http_status) if e is not None and e.http_status else ""
        detail = e.detail if e is not None else "no error recorded"
        if e is not None and e.code:
            detail = f"{detail} (code {e.code})"
        pointer = e.pointer if e is not None and e.pointer else ""
        name = f' <span class="name">{_e(o.name)}</span>' if o.name else ""
        return (
            f'<tr id="i{o.integration_id}"><td class="num">{o.integration_id}{name}</td><td>{_e(o.account)}</td>'
            f'<td><span class="kind">{_e(kind)}</span></td><td class="num">{_e(status)}</td>'
            f'<td class="detail">{self._text(detail)}</td><td class="pointer">{self._text(pointer)}</td>'
            f'<td class="num">{o.attempts}</td></tr>'
        )

    def _failures(self) -> str:
        n = len(self.failures) + self.failed_unlisted
        if not n:
            return '<section id="failures"><h2>Failures (0)</h2><p>No integration failed.</p></section>'
        rows = b"".join(self.failures.everything()).decode()
        more = f"<p>…and {self.failed_unlisted} more failures, not listed here: see the JSON report.</p>"
        return (
            f'<section id="failures"><h2>Failures ({n})</h2>'
            '<table class="failures"><thead><tr><th class="num">integration</th><th>account</th><th>kind</th>'
            '<th class="num">HTTP</th><th>detail</th><th>pointer</th><th class="num">attempts</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>{more if self.failed_unlisted else ''}</section>"
        )

    def _change_item(self, o: Outcome) -> str:
        lines = outcome_lines(o, self.mode)
        body = "\n".join(_diff_line(self.redact(line)) for line in lines[1:])
        tags = f' <span class="tags">{_e(", ".join(o.tags))}</span>' if o.tags else ""
        return (
            f'<details id="i{o.integration_id}"><summary>{self._text(lines[0])}{tags}</summary>'
            f"<pre>{body}</pre></details>"
        )

    def _changes(self) -> str:
        n = len(self.changes) + self.changed_unlisted
        heading = "Changes to make" if self.mode == "plan" else "Changes"
        if not n:
            return f'<section id="changes"><h2>{heading} (0)</h2><p>Nothing changed.</p></section>'
        items = b"".join(self.changes.everything()).decode()
        more = f"<p>…and {self.changed_unlisted} more, not listed here: see the JSON report.</p>"
        return (
            f'<section id="changes"><h2>{heading} ({n})</h2>'
            '<p class="hint">Per integration; open one to see its diff (+ added, ~ changed, - removed).</p>'
            f"{items}{more if self.changed_unlisted else ''}</section>"
        )

    def close(self) -> None:
        """Release the spooled rows."""
        self.failures.close()
        self.changes.close()

    def _rest(self) -> str:
        out = [
            f'<section id="rest"><h2>Not listed</h2><p><span class="n unchanged">{self.counts["unchanged"]}</span>'
            f' unchanged and <span class="n skipped">{self.counts["skipped"]}</span> skipped integrations '
            "are counted, not listed.</p>"
        ]
        if self.reasons:
            rows = "".join(
                f'<tr><td class="num">{n}</td><td>{self._text(reason)}</td></tr>'
                for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])
            )
            out.append(
                f'<table><thead><tr><th class="num">skipped</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>'
            )
        out.append("</section>")
        return "".join(out)


def _settled(a: AccountStats) -> str:
    parts = []
    if a.read_rate is not None:
        parts.append(f"reads at {_rate(a.read_rate)}")
    if a.write_rate is not None:
        parts.append(f"writes at {_rate(a.write_rate)}")
    return ", ".join(parts)


_OPS: Final = {"+": "add", "~": "chg", "=": "chg", "-": "del", "w": "warn"}  # "=": a mapping; "w": a warning


def _diff_line(line: str) -> str:
    cls = _OPS.get(line.lstrip()[:1])
    return f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line)


_CSS: Final = """
:root{color-scheme:light;--ok:#1a7f37;--chg:#0b5cad;--bad:#c62828;--warn:#9a6700;--mute:#57606a;--line:#d0d7de}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1000px;
padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
.badge{font-size:13px;padding:2px 8px;border-radius:10px;color:#fff;vertical-align:middle;text-transform:uppercase}
.badge.ok{background:var(--ok)}.badge.changes{background:var(--chg)}.badge.failed{background:var(--bad)}
.badge.stopped{background:var(--warn)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.totals{font-size:15px}.n{font-weight:600}.n.failed{color:var(--bad)}.n.changed{color:var(--chg)}
.n.unchanged{color:var(--ok)}.n.skipped{color:var(--warn)}
.stopped{color:var(--warn);font-weight:600}.note{margin:2px 0;color:var(--mute)}.hint{color:var(--mute);margin:4px 0}
table{border-collapse:collapse;width:100%;margin:6px 0}table.narrow{width:auto;min-width:50%}
th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid var(--line);vertical-align:top}thead th{background:#f6f8fa}
.num{text-align:right;font-variant-numeric:tabular-nums}td.failed{color:var(--bad);font-weight:600}
td.changed{color:var(--chg)}td.skipped{color:var(--warn)}tr.total th,tr.total td{font-weight:600}
tr.slowest th,tr.slowest td{background:#fff8c5}
table.failures td.detail{white-space:pre-wrap;overflow-wrap:anywhere;max-width:420px}
td.pointer{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;overflow-wrap:anywhere}
.kind{font-family:ui-monospace,Menlo,Consolas,monospace;color:var(--bad)}
details{border:1px solid var(--line);border-radius:6px;margin:4px 0;padding:2px 8px}
summary{cursor:pointer;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;overflow-wrap:anywhere}
.tags{color:var(--mute);font-family:system-ui,sans-serif}
pre{margin:4px 0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
.add{color:var(--ok)}.chg{color:var(--chg)}.del{color:var(--bad)}.warn{color:var(--warn)}
figure{margin:0}figcaption{color:var(--mute);font-size:12px;margin-top:4px}
svg.timeline{display:block;border:1px solid var(--line);border-radius:6px;background:#fff}
svg .grid{stroke:#eaeef2}svg .tick{font-size:11px;fill:var(--mute)}svg .axis{stroke:#afb8c1}
svg .span{fill:#f3f6f9}svg .budget{stroke:#57606a;stroke-width:1.5;stroke-dasharray:6 4}
svg .settled{stroke:var(--bad);stroke-width:1.5;stroke-dasharray:2 3}
svg .used{fill:none;stroke:var(--chg);stroke-width:2.5;stroke-linejoin:round}svg .end{fill:var(--chg)}
svg .name{font-size:13px;font-weight:600;fill:#1f2328}svg .name.longest{fill:var(--chg)}
svg .label{font-size:11px;fill:var(--mute)}svg text.warn{font-size:11px;font-weight:600;fill:var(--bad)}
svg .throttled .used{stroke:var(--bad)}svg .throttled .end{fill:var(--bad)}
footer{margin:32px 0 8px;color:var(--mute);font-size:12px}
""".strip()


# -- entry points ------------------------------------------------------------------------


def render(
    outcomes: Iterable[Outcome],
    summary: Summary,
    mode: str,
    info: RunInfo,
    *,
    redact: Callable[[str], str] = str,
    max_listed: int = MAX_LISTED,
) -> str:
    """The page of a run, from its outcomes (consumed once, kept only as the page needs)."""
    page = HtmlReport(mode, info.started_at, redact=redact, max_listed=max_listed)
    for outcome in outcomes:
        page.add(outcome)
    return page.html(summary, info)


def write_html(path: str, document: str) -> None:
    """Replace ``path`` with the page in one step (a reader sees the old page or the new)."""
    atomic_write(path, document.encode("utf-8"))


class Html:
    """The sink of ``--html``: the page built one outcome at a time, its listed rows
    spooled to unnamed temp files beside the target as they come, written at the end with
    the exit code as it stands then. A merged run's page names each part."""

    FLAG = "--html"  # how the run names it lost (a second signal cutting its close: close_all)

    def __init__(self, path: str, start: Start, lost: Lost, redact: Callable[[str], str] = str, recall: Any = None):
        self.path, self.start, self.lost = path, start, lost
        folder = os.path.dirname(os.path.abspath(path))
        self.page: HtmlReport | None = None
        self.memory: html_history.Memory | None = None
        try:
            self.page = HtmlReport(start.mode, start.started_at, redact=redact, spool_dir=folder)
            # With a run history: its section of the page.
            self.memory = html_history.Memory(recall, _e, spool_dir=folder)
        except OSError as exc:
            self._drop(exc)

    def add(self, outcome: Outcome) -> None:
        if self.page is None or self.memory is None:
            return
        try:
            self.page.add(outcome)
            self.memory.add(outcome)
        except OSError as exc:  # a spool: a full disk; the page is lost, the run goes on
            self._drop(exc)

    def _drop(self, exc: OSError | None) -> None:
        page, memory, self.page, self.memory = self.page, self.memory, None, None
        if page is not None:
            page.close()
        if memory is not None:
            memory.close()
        if exc is not None:
            self.lost.record("--html", self.path, exc)

    def flush(self) -> None:
        pass

    def close(self, end: End | None) -> None:
        page, memory = self.page, self.memory
        if page is None or memory is None:
            return
        try:
            if end is not None:
                self._write(page, memory, end)
        except OSError as exc:
            self.lost.record("--html", self.path, exc)
        finally:
            self._drop(None)

    def _write(self, page: HtmlReport, memory: html_history.Memory, end: End) -> None:
        start = self.start
        merged: dict[str, Any] = {}
        if start.parts is not None:
            n = len(start.parts)
            merged["notes"] = tuple(p.describe() for p in start.parts)
            merged["title"] = f"batchsync {start.mode} (report merge of {n} part{'s' if n != 1 else ''})"
        if start.plan is not None:  # apply --plan, or show: which saved plan
            merged["notes"] = (f"saved plan {start.plan['path']} (sha256 {start.plan['sha256'][:12]})",)
            if start.mode == "plan":
                merged["title"] = "batchsync plan to approve"
        info = RunInfo(
            exit_code=end.code(),
            started_at=end.started_at,
            ended_at=end.ended_at,
            limits=dict(start.limits),
            inventory=start.inventory,
            appendix=memory.section(end),
            **merged,
        )
        write_html(self.path, page.html(end.summary, info))
