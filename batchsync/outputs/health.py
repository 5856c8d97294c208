"""What every sink shows of the shops' health (``--with-health``): one collector of the
outcomes' :class:`~batchsync.health.Health`, the outcome lines' health column, and the
failing-shops section the text recap, the HTML page and the notifications share.

A run without ``--with-health`` has no health on its outcomes: every sink then shows
nothing of it (no column, no section, no metric).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from batchsync.health import Health
from batchsync.outcome import Outcome, shop
from batchsync.text import display, escape_controls

__all__ = ["HealthSeen", "column", "html_section", "shop_line"]


def column(health: Health) -> str:
    """The health column of an outcome line: ``[health: 14 logs, last 401]``, ``[health: ok]``."""
    if health.unknown is not None:
        return "[health: unknown]"
    if not health.count:
        return "[health: ok]"
    last = health.last
    what = ""
    if last is not None:
        what = str(last.response_code) if last.response_code is not None else (last.exception_type or "")
    plural = "s" if health.count != 1 else ""
    return f"[health: {health.count} log{plural}{', last ' + escape_controls(what) if what else ''}]"


def shop_line(integration_id: int, account: str, health: Health, name: str | None = None) -> str:
    """One failing shop (by its name too, when it has one): its counts, the last record's
    request (no query) and its words."""
    line = f"{shop(integration_id, name)} ({display(account)}): {escape_controls(health.describe())}"
    last = health.last
    if last is not None:
        what = " ".join(filter(None, (last.method, last.url)))
        said = last.exception or last.exception_type or ""
        if what or said:
            line += f" ({escape_controls(what)}{': ' if what and said else ''}{escape_controls(said)})"
    return line


class HealthSeen:
    """The health of each outcome as it arrives; ``asked`` once any outcome carried one."""

    __slots__ = ("asked", "failing", "names", "ok", "unknown")

    def __init__(self) -> None:
        self.asked = False
        self.failing: list[tuple[int, str, Health]] = []
        self.unknown: dict[str, str] = {}  # account -> why its logs could not be read
        self.ok = 0
        self.names: dict[int, str] = {}  # the failing shops' names, where they have one

    def add(self, outcome: Outcome) -> None:
        health = outcome.shop_health
        if health is None:
            return
        self.asked = True
        if health.unknown is not None:
            self.unknown.setdefault(outcome.account, health.unknown)
        elif health.count:
            self.failing.append((outcome.integration_id, outcome.account, health))
            if outcome.name:
                self.names[outcome.integration_id] = outcome.name
        else:
            self.ok += 1

    def extend(self, outcomes: Iterable[Outcome]) -> HealthSeen:
        for outcome in outcomes:
            self.add(outcome)
        return self

    def ranked(self) -> list[tuple[int, str, Health]]:
        """The failing shops, most exception logs first."""
        return sorted(self.failing, key=lambda f: (-f[2].count, f[0]))

    def since(self) -> str:
        moments = sorted({h.since for _, _, h in self.failing})
        return moments[0] if moments else ""

    def recap_lines(self) -> list[str]:
        """The text recap's section: a heading, a line per failing shop, a line per account
        whose health is unknown. None of it when health was not asked."""
        if not self.asked:
            return []
        shops = self.ranked()
        n = len(shops)
        if not n and not self.unknown:
            return ["failing shops: none (no exception logs)"]
        lines = [f"failing shops: {n} with exception logs" + (f" since {self.since()}" if n else "")]
        lines.extend("  ! " + shop_line(iid, account, h, self.names.get(iid)) for iid, account, h in shops)
        lines.extend(
            f"  ? account {display(name)}: {escape_controls(why)}" for name, why in sorted(self.unknown.items())
        )
        return lines


def html_section(seen: HealthSeen, escape: Callable[[str], str]) -> str:
    """The HTML page's section of failing shops (``--with-health``; empty otherwise):
    ``escape`` makes a text safe for HTML (the page's own, redaction included)."""
    if not seen.asked:
        return ""
    shops = seen.ranked()
    rows = []
    for iid, account, h in shops:
        last = h.last
        codes = ", ".join(f"{code} × {n}" for code, n in h.response_codes.items())
        request = " ".join(filter(None, (last.method, last.url))) if last is not None else ""
        said = (last.exception or last.exception_type or "") if last is not None else ""
        rows.append(
            f'<tr id="h{iid}"><td class="num">{iid}</td><td>{escape(account)}</td><td class="num">{h.count}</td>'
            f"<td>{escape(h.first_at or '')}</td><td>{escape(h.last_at or '')}</td><td>{escape(codes)}</td>"
            f'<td class="detail">{escape(request)}</td><td class="detail">{escape(said)}</td></tr>'
        )
    unknown = "".join(f"<li>account {escape(name)}: {escape(why)}</li>" for name, why in sorted(seen.unknown.items()))
    body = (
        '<table class="failures"><thead><tr><th class="num">integration</th><th>account</th>'
        '<th class="num">logs</th><th>first</th><th>last</th><th>response codes</th><th>last request</th>'
        f"<th>last exception</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No shop has exception logs.</p>"
    )
    since = f" since {escape(seen.since())}" if rows else ""
    return (
        f'<section id="health"><h2>Failing shops ({len(shops)})</h2>'
        f"<p>Sendcloud's failed requests to each shop (integration exception logs){since}.</p>{body}"
        + (f"<p>Health unknown:</p><ul>{unknown}</ul>" if unknown else "")
        + "</section>"
    )
