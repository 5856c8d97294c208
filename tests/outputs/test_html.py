"""The HTML run report: what it shows, what it leaves out, and that nothing a server wrote
can break it or reach out of it. Every page is parsed by html5lib in strict mode (the
WHATWG algorithm; strict raises on the first parse error)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import html5lib
import msgspec
import pytest
from cli_helpers import batchsync, env_with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_fixture import SANDBOX_ENV

from batchsync.diff import Change, MappingChange
from batchsync.model import Limits
from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.html import HtmlReport, render, write_html
from batchsync.outputs.html_parts import MAX_LANES, SLOTS, RunInfo, Series, visible
from batchsync.outputs.terminal import Budget
from batchsync.redact import Redactor

T0 = 1_800_000_000.0
HTML = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"
LIMITS = {
    "acme": Limits(writes_per_minute=100, write_burst=15, reads_per_minute=1000),
    "slow": Limits(writes_per_minute=60, write_burst=5, reads_per_minute=1000),
}


def parse(doc: str) -> Any:
    """The document's tree; html5lib.html5parser.ParseError on any parse error."""
    return html5lib.HTMLParser(strict=True).parse(doc)


def text_of(el: Any) -> str:
    return "".join(el.itertext())


def by_id(tree: Any, ident: str) -> Any:
    found = [el for el in tree.iter() if el.get("id") == ident]
    assert len(found) == 1, ident
    return found[0]


def outcome(iid: int, account: str = "acme", result: str = "unchanged", **kw: Any) -> Outcome:
    kw.setdefault("started_at", T0 + 1)
    kw.setdefault("ended_at", T0 + 2)
    kw.setdefault("attempts", 1)
    return Outcome(integration_id=iid, account=account, result=result, **kw)  # type: ignore[arg-type]


def failed(iid: int, detail: str, account: str = "acme", **kw: Any) -> Outcome:
    error = ErrorInfo(
        kw.pop("kind", "client"), kw.pop("status", 400), kw.pop("code", None), detail, kw.pop("pointer", None)
    )
    return outcome(iid, account, "failed", error=error, **kw)


def changed(iid: int, account: str = "acme", **kw: Any) -> Outcome:
    changes = (
        Change("+", "20", after={"en-gb": "Ready for pickup"}),
        Change("~", "5", before={"de-de": "Zugestellt"}, after={"de-de": "Zugestellt (Post)"}),
        Change("-", "1", before={"en-gb": "Awaiting cheque"}),
    )
    return outcome(iid, account, "changed", added=1, changed=1, removed=1, changes=changes, attempts=2, **kw)


def summary_of(outcomes: list[Outcome], **stats: AccountStats) -> Summary:
    accounts: dict[str, AccountStats] = {}
    for o in outcomes:
        accounts.setdefault(o.account, AccountStats()).add(o.result)
    for name, s in stats.items():
        merged = msgspec.structs.replace(s)
        for r in ("unchanged", "changed", "failed", "skipped"):
            setattr(merged, r, accounts.get(name, AccountStats()).count(r))
        accounts[name] = merged
    return Summary(accounts=accounts, duration_s=10.0, started_at=T0)


def info(exit_code: int = 1, **kw: Any) -> RunInfo:
    kw.setdefault("limits", LIMITS)
    return RunInfo(exit_code=exit_code, started_at=T0, ended_at=T0 + 10, inventory="inventories/x.toml", **kw)


def a_run() -> tuple[list[Outcome], Summary]:
    outcomes = [
        outcome(1),
        outcome(2, tags=("client-a",)),
        changed(3, tags=("client-a", "nl")),
        failed(
            4, "statuses.0.translations: required", status=400, pointer="/statuses/0/translations", tags=("client-b",)
        ),
        outcome(5, result="skipped", reason="interrupted by SIGTERM"),
        failed(6, "Request was throttled", account="slow", kind="throttled", status=429, ended_at=T0 + 9.5),
        changed(7, account="slow", ended_at=T0 + 9.8),
    ]
    summary = summary_of(
        outcomes,
        acme=AccountStats(requests=6, reads=5, writes=1),
        slow=AccountStats(requests=12, reads=4, writes=8, throttled=3, write_rate=38.4),
    )
    return outcomes, summary


# -- what the page shows ------------------------------------------------------------------


def test_the_page_has_the_recap_failures_first_changes_collapsible_and_the_rest_counted() -> None:
    outcomes, summary = a_run()
    doc = render(outcomes, summary, "apply", info())
    tree = parse(doc)
    recap = text_of(by_id(tree, "recap"))
    assert "acme" in recap and "slow" in recap and "total" in recap
    assert "38.4/min" in recap  # the write rate the throttled account settled on
    facts = text_of(by_id(tree, "run"))
    assert "1: some integrations failed" in facts and "inventories/x.toml" in facts
    assert "2027-01-15 08:00:00 UTC" in facts and "2027-01-15 08:00:10 UTC" in facts
    # Failures before changes, each with kind, status, detail and pointer.
    assert doc.index('id="failures"') < doc.index('id="changes"')
    row = text_of(by_id(tree, "i4"))
    for part in ("4", "client", "400", "statuses.0.translations: required", "/statuses/0/translations"):
        assert part in row
    assert "throttled" in text_of(by_id(tree, "i6")) and "429" in text_of(by_id(tree, "i6"))
    # Changes: one collapsed <details> per integration, the terminal's diff inside.
    details = [el for el in tree.iter(f"{HTML}details")]
    assert [d.get("id") for d in details] == ["i3", "i7"]
    assert all(d.get("open") is None for d in details)
    diff = text_of(details[0])
    assert "~ integration 3 (acme) changed (+1 ~1 -1)" in diff
    assert "+ '20': en-gb \"Ready for pickup\"" in diff
    assert '~ \'5\': de-de "Zugestellt" -> "Zugestellt (Post)"' in diff
    assert "- '1': en-gb \"Awaiting cheque\"  (deleted)" in diff
    # Unchanged and skipped are counted, not listed.
    rest = text_of(by_id(tree, "rest"))
    assert "2 unchanged and 1 skipped" in rest and "interrupted by SIGTERM" in rest
    assert 'id="i1"' not in doc and 'id="i2"' not in doc and 'id="i5"' not in doc
    # Per tag: an integration with two tags counts under both.
    tags = text_of(by_id(tree, "tags"))
    assert re.search(r"client-a\s*1\s*1\s*0\s*0", tags), tags
    assert re.search(r"client-b\s*0\s*0\s*1\s*0", tags), tags


def test_the_timeline_draws_every_account_against_its_budget_and_names_the_slowest() -> None:
    outcomes, summary = a_run()
    tree = parse(render(outcomes, summary, "apply", info()))
    svg = next(tree.iter(f"{SVG}svg"))
    lanes = [g for g in svg.iter(f"{SVG}g") if "lane" in (g.get("class") or "")]
    assert len(lanes) == 2
    # Latest to finish first: "slow" ended at 9.8 s and set the run's length; it was throttled.
    first = " ".join(text_of(t) for t in lanes[0].iter(f"{SVG}text"))
    assert first.startswith("slow") and "set the run's length" in first and "429 × 3" in first
    assert "throttled" in lanes[0].get("class")
    assert "budget 60/min" in first  # writes bind it: 8 writes at 60/min outweigh 4 reads at 1000/min
    assert len(list(lanes[0].iter(f"{SVG}line"))) >= 3  # axis, budget, the settled rate
    second = " ".join(text_of(t) for t in lanes[1].iter(f"{SVG}text"))
    assert second.startswith("acme") and "set the run's length" not in second and "429" not in second
    # The used curve ends where the account's last integration ended.
    end = next(lanes[0].iter(f"{SVG}circle"))
    span = next(lanes[0].iter(f"{SVG}rect"))
    assert float(end.get("cx")) == pytest.approx(float(span.get("x")) + float(span.get("width")), abs=0.2)


def test_the_timeline_is_exact_when_outcomes_carry_their_requests() -> None:
    class WithRequests(Outcome, frozen=True):
        requests: tuple[tuple[float, str, int], ...] = ()

    records = ((T0 + 1, "GET", 200), (T0 + 2, "POST", 429), (T0 + 4, "POST", 200))
    o = WithRequests(1, "acme", "changed", attempts=3, started_at=T0 + 1, ended_at=T0 + 4, requests=records)
    page = HtmlReport("apply", T0)
    page.add(o)
    lane = page.lanes["acme"]
    assert lane.exact and lane.throttles == 1
    assert lane.reads.total() == 1 and lane.writes.total() == 2


def test_plan_shows_the_budget_the_apply_will_spend_and_its_least_time() -> None:
    limits = {"big": Limits(writes_per_minute=60, write_burst=5, reads_per_minute=1000), "small": Limits()}
    outcomes = [changed(i, account="big") for i in range(65)]  # 2 reads and 1 write each
    outcomes += [
        outcome(
            100 + i, account="big", result="changed", attempts=2, mapping_changes=(MappingChange("CANCEL", "6", "7"),)
        )
        for i in range(5)
    ]  # a mapping to write, no statuses: 1 write each
    outcomes += [outcome(200 + i, account="small") for i in range(30)]
    summary = summary_of(outcomes, big=AccountStats(reads=140, requests=140), small=AccountStats(reads=30, requests=30))
    tree = parse(render(outcomes, summary, "plan", info(exit_code=0, limits=limits)))
    section = by_id(tree, "budget")
    text = text_of(section)
    # 65 writes past the burst of 5 at 60/min: 65 s; its 140 reads at 1000/min take less.
    assert "takes at least 1m05s" in text and "set by account big" in text
    rows = {
        text_of(tr.find(f"{HTML}th")): [text_of(td) for td in tr.iter(f"{HTML}td")] for tr in section.iter(f"{HTML}tr")
    }
    assert rows["big"][:2] == ["140", "70"] and rows["big"][3] == "1m05s"
    assert rows["small"][:2] == ["30", "0"] and rows["small"][3] == "0.9s"  # 15 reads past its burst at 1000/min
    # The terminal says the same (one computation for both).
    terminal = io.StringIO()
    budget = Budget()
    for o in outcomes:
        budget.add(o)
    budget.print(summary, limits, terminal)
    assert "the run: at least 1m05s (set by big)" in terminal.getvalue()
    assert "changes" in text_of(by_id(tree, "run"))  # a plan with changes is not "ok"
    # Its picture is what the plan did: reads; the writes are the apply's, in the table above.
    lanes = text_of(next(tree.iter(f"{SVG}svg")))
    assert "140 reads · budget 1000/min" in lanes and "writes" not in lanes
    assert "Changes to make (70)" in text_of(by_id(tree, "changes"))


def test_without_declared_limits_the_picture_has_no_budget_line() -> None:
    """``report merge`` knows no inventory: requests are drawn, a budget is not invented."""
    outcomes, summary = a_run()
    tree = parse(render(outcomes, summary, "apply", info(limits={})))
    svg = next(tree.iter(f"{SVG}svg"))
    lanes = [g for g in svg.iter(f"{SVG}g") if "lane" in (g.get("class") or "")]
    assert len(lanes) == 2
    assert not [el for g in lanes for el in g.iter(f"{SVG}line") if el.get("class") in ("budget", "settled")]
    assert [el for g in lanes for el in g.iter(f"{SVG}polyline")]  # the requests are drawn all the same
    assert "budget unknown" in " ".join(text_of(t) for t in svg.iter(f"{SVG}text"))
    assert "unknown" in text_of(by_id(tree, "recap"))


def test_a_run_where_nothing_happened_still_renders() -> None:
    summary = Summary(accounts={}, duration_s=0.0)
    tree = parse(render([], summary, "apply", RunInfo(exit_code=0, started_at=0, ended_at=0)))
    assert "No integration failed" in text_of(by_id(tree, "failures"))
    assert "unknown" in text_of(by_id(tree, "run"))
    assert next(tree.iter(f"{SVG}svg"), None) is None


# -- bounded ------------------------------------------------------------------------------


def test_listing_is_bounded_and_the_renderer_consumes_a_generator_once() -> None:
    def stream() -> Iterator[Outcome]:
        for i in range(1000):
            yield failed(i, f"bad {i}") if i % 2 else changed(i)

    page = HtmlReport("apply", T0, max_listed=25)
    for o in stream():
        page.add(o)
    assert len(page.failures) == 25 and len(page.changes) == 25
    assert page.failed_unlisted == 475 and page.changed_unlisted == 475
    summary = Summary(accounts={"acme": AccountStats(failed=500, changed=500)}, started_at=T0, duration_s=10)
    tree = parse(render(stream(), summary, "apply", info(), max_listed=25))
    assert "…and 475 more failures" in text_of(by_id(tree, "failures"))
    assert "Failures (500)" in text_of(by_id(tree, "failures"))
    assert "Changes (500)" in text_of(by_id(tree, "changes"))
    assert len(list(by_id(tree, "changes").iter(f"{HTML}details"))) == 25


def test_time_series_stay_bounded_over_a_long_run_and_keep_every_count() -> None:
    series = Series(T0, 0.05)
    for i in range(0, 8 * 3600, 7):  # a night, one request every 7 s
        series.add(T0 + i)
    series.add(T0 - 5)  # before the start: counted in the first bin
    assert len(series.bins) == SLOTS
    assert series.total() == 8 * 3600 // 7 + 1 + 1
    assert series.width * SLOTS > 8 * 3600 and series.width < 8 * 3600 / SLOTS * 2.01
    assert sum(series.at_width(series.width * 4)) == series.total()


def test_a_damaged_report_still_renders() -> None:
    """``report merge`` reads files: their times and counts may be anything JSON holds."""
    outcomes = [
        outcome(1, started_at=1e300, ended_at=1e301, attempts=10**12),
        outcome(2, started_at=-5.0, ended_at=-1.0),
        outcome(3, started_at=T0 + 5, ended_at=T0 + 1, attempts=3),  # ends before it starts
        outcome(4, account="other", started_at=T0 + 1, ended_at=T0 + 1e9),
        outcome(5, started_at=0.0, ended_at=0.0),  # an old report: no times
    ]
    summary = summary_of(outcomes)
    summary.started_at = 1e300
    far = RunInfo(exit_code=1, started_at=T0, ended_at=1e18, limits=LIMITS)
    tree = parse(render(outcomes, summary, "apply", far))
    assert "unknown" in text_of(by_id(tree, "run"))  # the year 10^10 is not a date
    assert len(list(next(tree.iter(f"{SVG}svg")).iter(f"{SVG}text"))) < 40  # a few ticks, not millions


def test_many_accounts_draw_a_bounded_number_of_lanes() -> None:
    outcomes = [outcome(i, account=f"acct-{i:03d}", ended_at=T0 + 1 + i / 100) for i in range(300)]
    summary = summary_of(outcomes)
    summary.accounts["acct-000"].throttled = 2  # finished first, but throttled: still drawn
    tree = parse(render(outcomes, summary, "apply", info(limits={})))
    svg = next(tree.iter(f"{SVG}svg"))
    lanes = [g for g in svg.iter(f"{SVG}g") if "lane" in (g.get("class") or "")]
    names = [text_of(next(g.iter(f"{SVG}text"))) for g in lanes]
    assert len(lanes) == MAX_LANES + 1
    assert names[0] == "acct-299" and names[-1] == "acct-000"
    assert f"and {300 - MAX_LANES - 1} more accounts" in text_of(svg)


# -- escaping and self-containment ---------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'; background:url(http://evil.example/x); '",
    "</td></tr></table><a href='http://evil.example'>click</a>",
    "<!-- <![CDATA[ ]]> -->",
    "bell\x07 nul\x00 esc\x1b[31m cr\r\nlf del\x7f c1\x85\x9b",
    "lone surrogate \ud800 and noncharacters \ufffe \U0010ffff",
    "&amp; &lt;script&gt; &#x3c;",
    "<svg onload=alert(1)><foreignObject><style>@import 'http://evil.example'</style>",
]
FORBIDDEN_TAGS = {"script", "link", "iframe", "img", "object", "embed", "base", "frame", "audio", "video", "source"}
FORBIDDEN_ATTRS = {"src", "href", "action", "formaction", "srcset", "poster", "data", "background", "ping"}


def assert_self_contained(tree: Any, doc: str) -> None:
    """No element or attribute that loads anything or runs anything."""
    for el in tree.iter():
        tag = el.tag.split("}")[-1] if isinstance(el.tag, str) else ""
        assert tag not in FORBIDDEN_TAGS, tag
        for name in el.attrib:
            local = name.split("}")[-1].lower()
            assert local not in FORBIDDEN_ATTRS and not local.startswith("on"), (tag, name)
        if tag == "style":
            assert "url(" not in (el.text or "") and "@import" not in (el.text or "")
        assert "url(" not in value_of(el.attrib.get("style"))
        for name, value in el.attrib.items():
            if name.split("}")[-1] != "xmlns":
                assert not re.search(r"(?i)(https?:|//|data:|javascript:)", value), (tag, name, value)
    assert "default-src 'none'" in doc  # and the browser is told to refuse it anyway


def value_of(v: str | None) -> str:
    return v or ""


@pytest.mark.parametrize("detail", HOSTILE)
def test_hostile_text_is_shown_as_text_and_the_page_still_parses_strictly(detail: str) -> None:
    outcomes = [
        failed(1, detail, account=f"acc<{detail}", pointer=detail, tags=(detail,)),
        changed(2, account=f"acc<{detail}", tags=(detail,), warnings=(detail,)),
        outcome(3, result="skipped", reason=detail),
    ]
    summary = summary_of(outcomes)
    summary.stopped = detail
    doc = render(outcomes, summary, "apply", info(notes=(detail,)))
    tree = parse(doc)
    assert_self_contained(tree, doc)
    shown = visible(detail)
    row = by_id(tree, "i1")
    cells = list(row.iter(f"{HTML}td"))
    assert text_of(cells[4]) == shown  # the detail, character for character (controls as \xNN)
    assert text_of(cells[5]) == shown  # the pointer
    assert text_of(cells[1]) == visible(f"acc<{detail}")
    assert shown in text_of(by_id(tree, "rest"))
    assert shown in text_of(by_id(tree, "run"))
    assert shown in text_of(by_id(tree, "i2"))
    doc.encode("utf-8")  # no lone surrogate made it into the document


def test_visible_spells_out_what_a_page_cannot_show() -> None:
    assert visible("a\x00b\x07c\rd\x7fe\x85f\ud800g\ufffeh") == "a\\x00b\\x07c\\x0dd\\x7fe\\x85f\\ud800g\\ufffeh"
    assert visible("tab\tnewline\nplain é ✓") == "tab\tnewline\nplain é ✓"


def test_secrets_are_redacted_from_everything_server_written() -> None:
    redactor = Redactor(["s3cr3t-key"])
    outcomes = [
        failed(1, "echoed back: s3cr3t-key", pointer="/s3cr3t-key"),
        outcome(2, result="skipped", reason="s3cr3t-key"),
    ]
    summary = summary_of(outcomes)
    doc = render(outcomes, summary, "apply", info(), redact=redactor)
    assert "s3cr3t-key" not in doc and "echoed back: ***" in doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(detail=st.text(), account=st.text(min_size=1, max_size=40), tag=st.text(max_size=20))
def test_any_text_round_trips_and_parses_strictly(detail: str, account: str, tag: str) -> None:
    outcomes = [
        failed(1, detail, account=account, pointer=detail, tags=(tag,)),
        changed(2, account=account, tags=(tag,)),
    ]
    summary = summary_of(outcomes)
    doc = render(outcomes, summary, "apply", info())
    tree = parse(doc)
    cells = list(by_id(tree, "i1").iter(f"{HTML}td"))
    assert text_of(cells[4]) == visible(detail)
    assert text_of(cells[1]) == visible(account)
    assert_self_contained(tree, doc)


# -- the file ------------------------------------------------------------------------------


def test_write_html_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old page")
    outcomes, summary = a_run()
    doc = render(outcomes, summary, "apply", info())
    write_html(str(target), doc)
    assert target.read_text(encoding="utf-8") == doc
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind


# -- the command line ----------------------------------------------------------------------


def test_apply_and_plan_write_the_page(tmp_path: Path, sandbox_inventory_path: Path) -> None:
    env = env_with(SANDBOX_ENV)
    inv = str(sandbox_inventory_path)
    page = tmp_path / "plan.html"
    done = batchsync("plan", inv, "--sandbox", "-q", "--html", str(page), env=env)
    assert done.returncode == 0, done.stderr
    tree = parse(page.read_text(encoding="utf-8"))
    assert "batchsync plan" in text_of(by_id(tree, "run"))
    assert "set by account" in text_of(by_id(tree, "budget"))
    assert next(tree.iter(f"{SVG}svg")) is not None
    page = tmp_path / "apply.html"
    done = batchsync(
        "apply", inv, "--sandbox", "-q", "--html", str(page), "--report", str(tmp_path / "r.jsonl"), env=env
    )
    assert done.returncode == 0, done.stderr
    doc = page.read_text(encoding="utf-8")
    tree = parse(doc)
    assert_self_contained(tree, doc)
    recap = text_of(by_id(tree, "recap"))
    assert "acme" in recap and "globex" in recap
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    changed = [json.loads(x) for x in lines if '"result":"changed"' in x]
    assert changed and f"Changes ({len(changed)})" in text_of(by_id(tree, "changes"))
    assert "budget" not in [s.get("id") for s in tree.iter(f"{HTML}section")]  # an apply has no plan budget


def test_an_unusable_html_path_stops_the_run_before_anything_is_sent(
    tmp_path: Path, sandbox_inventory_path: Path
) -> None:
    env = env_with(SANDBOX_ENV)
    done = batchsync("apply", str(sandbox_inventory_path), "--sandbox", "--html", str(tmp_path), env=env)
    assert done.returncode == 2 and f"--html {tmp_path}: is a directory" in done.stderr
    done = batchsync("apply", str(sandbox_inventory_path), "--sandbox", "--html", str(sandbox_inventory_path), env=env)
    assert done.returncode == 2 and "which the inventory reads" in done.stderr


def test_report_merge_writes_the_merged_page(tmp_path: Path) -> None:
    from test_merge import command

    lines = {
        "a.jsonl": [changed(1, tags=("x",)), failed(2, "<b>nope</b>")],
        "b.jsonl": [outcome(3, account="slow", ended_at=T0 + 7)],
    }
    for name, outcomes in lines.items():
        header = {"header": True, "version": 2, "command": "apply", "started_at": T0, "selected": len(outcomes)}
        body = [json.dumps(header), *(msgspec.json.encode(o).decode() for o in outcomes)]
        summary = summary_of(outcomes)
        body.append(json.dumps({"summary": True, "mode": "apply", "accounts": msgspec.to_builtins(summary.accounts)}))
        (tmp_path / name).write_text("\n".join(body) + "\n")
    page = tmp_path / "merged.html"
    out, err = io.StringIO(), io.StringIO()
    code = command([str(tmp_path / "*.jsonl")], html=str(page), out=out, err=err)
    assert code == 1, err.getvalue()
    tree = parse(page.read_text(encoding="utf-8"))
    head = text_of(by_id(tree, "run"))
    assert "report merge of 2 parts" in head and "complete, 2 integrations" in head
    assert "<b>nope</b>" in text_of(by_id(tree, "i2"))
    assert "budget unknown" in text_of(next(tree.iter(f"{SVG}svg")))
    code = command([str(tmp_path / "*.jsonl")], html=str(tmp_path / "no" / "x.html"), out=out, err=err)
    assert code == 2 and "is not a writable directory" in err.getvalue()
    # The same from the command line.
    page.unlink()
    done = batchsync("report", "merge", str(tmp_path / "*.jsonl"), "--html", str(page), env=env_with({}))
    assert done.returncode == 1, done.stderr
    assert "report merge of 2 parts" in text_of(by_id(parse(page.read_text(encoding="utf-8")), "run"))
