"""report merge: hand-written shard reports merged as if one run had done it all."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inventory_factory import make_inventory

from batchsync.commands._arguments import parse_duration
from batchsync.engine.engine import Engine
from batchsync.engine.options import Options
from batchsync.exitcodes import exit_code
from batchsync.inventory.shard import ShardSpec, partition, select_shard
from batchsync.outcome import RESULTS, AccountStats, Outcome, Summary
from batchsync.outputs.junit import add_gaps, junit_document
from batchsync.outputs.merge import Merged, MergeError, expand, merge
from batchsync.outputs.metrics import read_metric
from batchsync.outputs.report import ReportWriter, parse_report, read_report
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import run_sandbox
from batchsync.sendcloud.transport import HttpApi
from bench.gen_inventory import zipf_sizes

NOW = 1_800_000_000.0


def header(index: int | None, count: int, integrations: list[int], *, started: float = NOW - 600, **kw: Any) -> str:
    shard = None
    if index is not None:
        shard = {"index": index, "count": count, "integrations": integrations, "accounts": [1] * count}
    doc = {"header": True, "version": 2, "command": "apply", "started_at": started, "inventory": "inv.toml"}
    doc |= {"selected": integrations[index] if index is not None else sum(integrations), "shard": shard} | kw
    return json.dumps(doc)


def outcome(iid: int, account: str, result: str = "unchanged", **kw: Any) -> str:
    return json.dumps({"integration_id": iid, "account": account, "result": result, "attempts": 1} | kw)


def summary_line(rows: Iterable[tuple[str, str]], *, mode: str = "apply", duration: float = 60.0, **kw: Any) -> str:
    accounts: dict[str, dict[str, int]] = {}
    for account, result in rows:
        stats = accounts.setdefault(account, dict.fromkeys((*RESULTS, "throttled", "requests"), 0))
        stats[result] += 1
        stats["requests"] += 2
    totals = {r: sum(a[r] for a in accounts.values()) for r in RESULTS}
    doc = {
        "summary": True,
        "mode": mode,
        "totals": totals,
        "accounts": accounts,
        "duration_s": duration,
        "stopped": None,
    }
    return json.dumps(doc | kw)


def write(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


# A fleet of four accounts in two shards: shard 0 = big (3), shard 1 = mid (2) + small (1).
FLEET = {"big": [1, 2, 3], "mid": [4, 5], "small": [6]}
SPLIT = [3, 3]


def shard_report(tmp: Path, index: int, results: dict[int, str], *, complete: bool = True, **kw: Any) -> str:
    accounts = ("big",) if index == 0 else ("mid", "small")
    rows = [(a, results.get(i, "unchanged"), i) for a in accounts for i in FLEET[a]]
    error = {"kind": "client", "http_status": 400, "detail": "bad status", "pointer": "/0/external_id"}
    lines = [header(index, 2, SPLIT, **kw)]
    lines += [outcome(i, a, r, error=error if r == "failed" else None) for a, r, i in rows]
    if complete:
        lines.append(summary_line([(a, r) for a, r, _ in rows], exit_code=1 if "failed" in results.values() else 0))
    return write(tmp / f"shard-{index}.jsonl", *lines)


def test_complete_shards_merge_into_one_run(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {2: "changed"})
    b = shard_report(tmp_path, 1, {5: "changed"}, started=NOW - 590)
    merged = merge([read_report(a), read_report(b)], now=NOW)
    s = merged.summary
    assert {r: s.total(r) for r in RESULTS} == {"unchanged": 4, "changed": 2, "failed": 0, "skipped": 0}
    assert s.accounts["mid"].changed == 1 and s.accounts["big"].requests == 6
    assert sorted(o.integration_id for o in merged.outcomes) == [1, 2, 3, 4, 5, 6]
    assert s.duration_s == pytest.approx(70.0)  # side by side: first start to last end
    assert s.stopped is None and merged.exit_code == 0
    assert [p.describe() for p in merged.parts] == [
        f"shard 0/2 {a}: complete, 3 integrations",
        f"shard 1/2 {b}: complete, 3 integrations",
    ]


def test_the_rates_429s_settled_on_survive_the_merge(tmp_path: Path) -> None:
    import io

    from batchsync.outputs.terminal import print_recap

    a = shard_report(tmp_path, 0, {})
    rows = [("mid", "unchanged", 4), ("mid", "unchanged", 5), ("small", "unchanged", 6)]
    line = json.loads(summary_line([(acc, r) for acc, r, _ in rows], exit_code=0))
    line["accounts"]["mid"].update(write_rate=64.0, write_declared=100.0, read_declared=1000.0)
    lines = [header(1, 2, SPLIT), *(outcome(i, acc, r) for acc, r, i in rows), json.dumps(line)]
    b = write(tmp_path / "shard-1.jsonl", *lines)
    merged = merge([read_report(a), read_report(b)], now=NOW)
    mid = merged.summary.accounts["mid"]
    assert (mid.write_rate, mid.write_declared, mid.read_rate) == (64.0, 100.0, None)
    out = io.StringIO()
    print_recap(merged.summary, merged.mode, out)
    assert "mid: 429s on writes: declared 100/min, worked at 64/min: lower writes_per_minute" in out.getvalue()


def test_the_results_are_counted_from_the_outcome_lines_not_the_summary(tmp_path: Path) -> None:
    """A report whose summary line says failed=0 over a failed outcome line (edited, or
    damaged), or holds counts no run has: the merge counts what the lines say."""
    a = shard_report(tmp_path, 0, {})
    rows = [("mid", "unchanged", 4), ("mid", "failed", 5), ("small", "unchanged", 6)]
    line = json.loads(summary_line([("mid", "unchanged"), ("mid", "unchanged"), ("small", "unchanged")]))
    line["accounts"]["small"]["unchanged"] = -100
    line["accounts"]["small"]["requests"] = -5
    line["exit_code"] = -7
    error = {"kind": "server", "http_status": 503, "detail": "down"}
    lines = [
        header(1, 2, SPLIT),
        *(outcome(i, acc, r, **({"error": error} if r == "failed" else {})) for acc, r, i in rows),
    ]
    b = write(tmp_path / "shard-1.jsonl", *lines, json.dumps(line))
    merged = merge([read_report(a), read_report(b)], now=NOW)
    s = merged.summary
    assert (s.accounts["mid"].failed, s.accounts["mid"].unchanged, s.accounts["small"].unchanged) == (1, 1, 1)
    assert s.accounts["small"].requests == 0 and merged.exit_code == 1


def test_a_failure_in_one_shard_is_exit_1(tmp_path: Path) -> None:
    merged = merge([read_report(shard_report(tmp_path, 0, {})), read_report(shard_report(tmp_path, 1, {6: "failed"}))])
    assert merged.summary.total("failed") == 1 and merged.exit_code == 1


def test_a_missing_shard_is_named_and_its_integrations_are_not_done(tmp_path: Path) -> None:
    shard_report(tmp_path, 0, {6: "failed"})
    merged = merge([read_report(p) for p in expand([str(tmp_path / "shard-*.jsonl")])], now=NOW)
    gap = merged.parts[-1]
    assert gap.describe() == "shard 1/2: missing: no report; its 3 integrations not done"
    assert merged.summary.not_done == 3 and merged.summary.total("skipped") == 3
    assert merged.summary.stopped == gap.describe()
    assert merged.exit_code == 3  # not done outranks done-but-failed, as in a stopped run


def test_a_report_named_but_absent_is_named_too(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    gone = str(tmp_path / "shard-1.jsonl")
    merged = merge([read_report(a), read_report(gone)])
    described = [p.describe() for p in merged.parts]
    assert f"report {gone}: missing: no such file" in described
    assert "shard 1/2: missing: no report; its 3 integrations not done" in described
    assert merged.summary.not_done == 3 and merged.exit_code == 3


def test_a_report_cut_short_counts_what_it_recorded(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    b = write(
        tmp_path / "b.jsonl",
        header(1, 2, SPLIT),
        outcome(4, "mid", "changed", requests=[[NOW, "GET", 200], [NOW, "POST", 429], [NOW, "POST", 201]]),
        '{"integration_id": 5, "account": "mid", "resu',  # the kill came mid-line
    )
    merged = merge([read_report(a), read_report(b)])
    part = merged.parts[1]
    assert part.describe() == f"shard 1/2 {b}: cut short: no summary line; 1 recorded, 2 not done"
    mid = merged.summary.accounts["mid"]
    assert (mid.changed, mid.requests, mid.throttled) == (1, 3, 1)
    assert merged.summary.total("skipped") == 2 and merged.exit_code == 3


def test_a_report_cut_short_after_its_last_outcome_still_exits_3(tmp_path: Path) -> None:
    """Every integration recorded, but no summary line: the run did not end as a run ends
    (killed while writing its outputs, say), and the README promises 3 for it."""
    a = shard_report(tmp_path, 0, {})
    b = shard_report(tmp_path, 1, {}, complete=False)
    merged = merge([read_report(a), read_report(b)])
    assert merged.parts[1].state == "cut short" and merged.parts[1].not_done == 0
    assert merged.exit_code == 3
    assert merged.summary.stopped == f"shard 1/2 {b}: cut short: no summary line; 3 recorded, 0 not done"
    assert [c.get("name") for c in junit_tree(merged).iter("testcase")][-1] == "shard 1/2"


def junit_tree(merged: Merged) -> ET.Element:
    """The merged run's JUnit tree, as its --junit sink writes it."""
    root = junit_document(merged.outcomes, merged.summary)
    add_gaps(root, merged.parts)
    return root


def test_an_empty_report_left_by_an_early_kill_is_not_a_report(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    b = write(tmp_path / "b.jsonl", '{"header": tr')
    merged = merge([read_report(a), read_report(b)])
    assert [p.state for p in merged.parts] == ["complete", "missing", "unusable"]
    assert merged.summary.not_done == 3 and merged.exit_code == 3


def test_a_corrupt_report_names_its_shard(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    b = write(tmp_path / "b.jsonl", header(1, 2, SPLIT), "not json", outcome(4, "mid"))
    merged = merge([read_report(a), read_report(b)])
    assert merged.parts[1].describe() == f"shard 1/2 {b}: unusable: line 2 is not JSON; its 3 integrations not done"
    assert merged.exit_code == 3


def test_old_reports_without_header_merge_unsharded(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", outcome(1, "big"), summary_line([("big", "unchanged")]))
    b = write(tmp_path / "b.jsonl", outcome(2, "mid", "changed"), summary_line([("mid", "changed")]))
    merged = merge([read_report(a), read_report(b)])
    assert merged.summary.total("unchanged") == 1 and merged.summary.total("changed") == 1
    assert merged.exit_code == 0
    assert merged.parts[0].describe() == f"report {a}: complete, 1 integrations"
    # Cut short and with no header, nobody knows what it should have done: exit 3.
    c = write(tmp_path / "c.jsonl", outcome(3, "small"))
    merged = merge([read_report(a), read_report(c)])
    assert (
        merged.parts[1].describe() == f"report {c}: cut short: no summary line; what it should have covered is unknown"
    )
    assert merged.exit_code == 3
    assert merge([read_report(a), read_report(str(tmp_path / "nope.jsonl"))]).exit_code == 3


def test_an_earlier_runs_report_left_in_place_counts_as_missing(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    b = shard_report(tmp_path, 1, {}, started=NOW - 86400)
    merged = merge([read_report(a), read_report(b)], now=NOW, max_age=4 * 3600)
    assert merged.parts[1].describe() == (
        f"shard 1/2 {b}: from an earlier run: started 1.0d ago (--max-age 4.0h); its 3 integrations not done"
    )
    assert merged.exit_code == 3
    # Without --max-age it is taken as it is.
    assert merge([read_report(a), read_report(b)], now=NOW).exit_code == 0


def test_a_report_that_is_a_device_or_a_fifo_is_unusable_at_once(tmp_path: Path) -> None:
    """Read as it was, /dev/zero filled the merge's memory and a FIFO without a writer
    blocked it for ever (a process of its own, so that a regression fails, not hangs)."""
    fifo = tmp_path / "shard-0.jsonl"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a character device"), (str(fifo), "a FIFO (named pipe)")):
        program = f"from batchsync.outputs.report import read_report; print(read_report({path!r}).problem)"
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
        assert done.stdout == f"is {kind}, not a regular file\n", done.stderr


def test_an_earlier_split_left_behind_is_named_but_changes_nothing(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    b = shard_report(tmp_path, 1, {})
    old = write(tmp_path / "shard-2.jsonl", header(2, 3, [2, 2, 2], started=NOW - 86400), summary_line([]))
    merged = merge([read_report(p) for p in (a, b, old)], now=NOW, max_age=3600)
    assert merged.parts[-1].describe() == f"shard 2/3 {old}: from an earlier run: started 1.0d ago (--max-age 1.0h)"
    assert merged.exit_code == 0 and merged.summary.stopped is None


def test_merge_refuses_reports_that_are_not_one_run(tmp_path: Path) -> None:
    a = read_report(shard_report(tmp_path, 0, {}))
    b = read_report(shard_report(tmp_path, 1, {}))
    plan = read_report(write(tmp_path / "p.jsonl", header(1, 2, SPLIT, command="plan"), summary_line([], mode="plan")))
    with pytest.raises(MergeError, match="mix apply and plan runs"):
        merge([a, plan])
    other = read_report(write(tmp_path / "o.jsonl", header(1, 3, [2, 2, 2]), summary_line([])))
    with pytest.raises(MergeError, match=r"different splits \(3 shards \[2, 2, 2\] vs 2 shards \[3, 3\]\)"):
        merge([a, other])
    twice = read_report(write(tmp_path / "t.jsonl", header(0, 2, SPLIT), summary_line([])))
    with pytest.raises(MergeError, match="shard 0/2 has two reports"):
        merge([a, twice, b])
    overlap = read_report(write(tmp_path / "x.jsonl", header(1, 2, SPLIT), outcome(1, "big"), summary_line([])))
    with pytest.raises(MergeError, match="integration 1 is in both"):
        merge([a, overlap])
    old = read_report(write(tmp_path / "old.jsonl", outcome(9, "z"), summary_line([])))
    with pytest.raises(MergeError, match="has no header"):
        merge([a, old])


def test_plan_reports_keep_detailed_exitcode(tmp_path: Path) -> None:
    def plan(name: str, index: int, changed: bool, code: int) -> str:
        rows = [("big", "changed" if changed else "unchanged")]
        return write(
            tmp_path / name,
            header(index, 2, [1, 1], command="plan"),
            outcome(index + 1, "big", rows[0][1]),
            summary_line(rows, mode="plan", exit_code=code),
        )

    detailed = merge([read_report(plan("a", 0, True, 4)), read_report(plan("b", 1, False, 0))])
    assert detailed.mode == "plan" and detailed.exit_code == 4
    plain = merge([read_report(plan("a", 0, True, 0)), read_report(plan("b", 1, False, 0))])
    assert plain.exit_code == 0


HEAD = b'{"header": true, "version": 2, "command": "plan", '


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"[1, 2]\n{}\n", "line 1 is not a JSON object"),
        (b'{"what": 1}\n', "line 1 is neither a header, an outcome nor a summary"),
        (b'{"integration_id": "x", "account": "a", "result": "changed"}\n', "line 1: Expected `int`"),
        (b'{"integration_id": 1, "account": "a", "result": "exploded"}\n', "line 1: Invalid enum value … - at"),
        (b'{"summary": true}\n{"integration_id": 1, "account": "a", "result": "changed"}\n', "after the summary"),
        (b'{"summary": true}\n{"summary": true}\n', "a second summary line"),
        (
            b'{"integration_id": 1, "account": "a", "result": "changed"}\n{"header": true}\n',
            "line 2: a header line after the first line",
        ),
        (HEAD + b'"shard": {"index": 4, "count": 2}}\n', "shard 4/2 does not fit"),
        (HEAD + b'"shard": {"index": 0, "count": 2, "integrations": [1]}}\n', "does not fit"),
        (b"\xff\xfe\n{}\n", "line 1 is not UTF-8 text (column 1: byte 0xFF)"),
        (HEAD + b'"x": 0}\n{"caf\xc3\xa9": "\xe9"}\n{}\n', "line 2 is not UTF-8 text (column 11: byte 0xE9)"),
        (HEAD + b'"x": 0}\n{"a": 1,}\n{}\n', "line 2 is not JSON"),
    ],
)
def test_parse_report_names_the_line_that_is_wrong(data: bytes, problem: str) -> None:
    report = parse_report("r.jsonl", data)
    assert report.problem is not None and problem in report.problem


@settings(max_examples=300)
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([header(0, 2, SPLIT), outcome(1, "a")]))))
def test_no_input_ends_in_a_traceback(chunks: list[Any]) -> None:
    data = b"\n".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
    report = parse_report("r.jsonl", data)
    try:
        merged = merge([report, report], now=NOW, max_age=60)
    except MergeError:
        return
    assert merged.exit_code in (0, 1, 2, 3, 4)


@settings(max_examples=60)
@given(
    st.dictionaries(
        st.sampled_from(["acme", "nord", "blau", "zeta", "omega", "tiny"]),
        st.lists(st.sampled_from(RESULTS), min_size=1, max_size=6),
        min_size=1,
    ),
    st.integers(1, 4),
)
def test_merged_shards_equal_one_unsharded_run(fleet: dict[str, list[str]], n: int) -> None:
    """Same outcomes split by shard.partition, reported per shard, merged: one run's totals and exit code."""
    iid = iter(range(1, 10_000))
    rows = {account: [(next(iid), result) for result in results] for account, results in fleet.items()}
    split = partition({a: len(r) for a, r in rows.items()}, n)
    one_run = Summary({a: AccountStats(**_counts(r)) for a, r in rows.items()})
    reports = []
    for index, names in enumerate(split.shards):
        lines = [header(index, n, list(split.integrations))]
        lines += [outcome(i, a, res) for a in names for i, res in rows[a]]
        lines.append(summary_line([(a, res) for a in names for _, res in rows[a]]))
        reports.append(parse_report(f"shard-{index}.jsonl", "\n".join(lines).encode()))
    merged = merge(reports)
    for result in RESULTS:
        assert merged.summary.total(result) == one_run.total(result)
        for a in rows:
            assert getattr(merged.summary.accounts[a], result) == getattr(one_run.accounts[a], result)
    assert merged.exit_code == exit_code(one_run, "apply", False)
    if n == 1:
        return
    # And without the last shard with any work: its integrations are not done, exit 3.
    busy = [i for i, count in enumerate(split.integrations) if count]
    partial = merge([r for i, r in enumerate(reports) if i != busy[-1]])
    assert partial.summary.not_done == split.integrations[busy[-1]] and partial.exit_code == 3


def _counts(rows: list[tuple[int, str]]) -> dict[str, int]:
    return {r: sum(1 for _, res in rows if res == r) for r in RESULTS}


def test_parse_duration() -> None:
    assert parse_duration("90") == 90 and parse_duration("90m") == 5400 and parse_duration("4h") == 14400
    assert parse_duration("1.5d") == 129600
    for bad in ("", "0", "-1h", "4 hours", "h"):
        with pytest.raises(ValueError, match="positive duration"):
            parse_duration(bad)


def test_expand_globs_itself_and_keeps_what_matches_nothing(tmp_path: Path) -> None:
    for name in ("shard-1.jsonl", "shard-0.jsonl", "merged.xml"):
        (tmp_path / name).write_text("")
    pattern = str(tmp_path / "shard-*.jsonl")
    assert expand([pattern, str(tmp_path / "shard-0.jsonl")]) == [
        str(tmp_path / "shard-0.jsonl"),
        str(tmp_path / "shard-1.jsonl"),
    ]
    assert expand([str(tmp_path / "none-*.jsonl")]) == [str(tmp_path / "none-*.jsonl")]


# -- the command -------------------------------------------------------------------------


def command(
    patterns: list[str],
    *,
    fmt: str = "text",
    junit: str | None = None,
    metrics: str | None = None,
    html: str | None = None,
    max_age: str | None = None,
    out: IO[str],
    err: IO[str],
    now: float | None = None,
) -> int:
    """``batchsync report merge`` in this process, as the command line runs it (a usage error:
    said on ``err``, exit 2)."""
    from batchsync.commands import report
    from batchsync.usage import UsageError

    args = argparse.Namespace(reports=patterns, format=fmt, junit=junit, metrics=metrics, html=html, max_age=max_age)
    try:
        settings = report.settings(args)
    except UsageError as exc:
        print(f"batchsync: {exc}", file=err)
        return 2
    return report.run(settings, out=out, err=err, now=now)


def run(*args: str, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = command(list(args), out=out, err=err, now=NOW, **kw)
    return code, out.getvalue(), err.getvalue()


def test_command_text_names_the_missing_shard_and_recaps(tmp_path: Path) -> None:
    shard_report(tmp_path, 0, {2: "failed"})
    code, out, err = run(str(tmp_path / "shard-*.jsonl"))
    assert code == 3 and err == ""
    assert "! shard 1/2: missing: no report; its 3 integrations not done" in out
    assert "! integration 2 (big): failed: client 400: bad status at /0/external_id (1 attempt)" in out
    total = next(line for line in out.splitlines() if line.startswith("TOTAL"))
    assert "failed=1" in total and "skipped=3" in total
    assert "not done: 3 integrations no report accounts for (counted as skipped)" in out


def test_command_json_junit_and_metrics(tmp_path: Path) -> None:
    shard_report(tmp_path, 0, {})
    shard_report(tmp_path, 1, {4: "changed"})
    junit, prom = tmp_path / "merged.xml", tmp_path / "batchsync.prom"
    code, out, _ = run(str(tmp_path / "shard-*.jsonl"), fmt="json", junit=str(junit), metrics=str(prom))
    assert code == 0
    doc = msgspec.json.decode(out)
    assert doc["totals"] == {"unchanged": 5, "changed": 1, "failed": 0, "skipped": 0}
    assert doc["exit_code"] == 0 and len(doc["outcomes"]) == 6 and len(doc["parts"]) == 2
    root = ET.parse(junit).getroot()
    assert root.get("tests") == "6" and root.get("failures") == "0"
    assert read_metric(str(prom), "batchsync_run_integrations", {"result": "changed"}) == 1
    assert read_metric(str(prom), "batchsync_run_success") == 1
    assert read_metric(str(prom), "batchsync_last_run_exit_code", {"command": "apply"}) == 0

    os.remove(tmp_path / "shard-1.jsonl")
    code, out, _ = run(str(tmp_path / "shard-*.jsonl"), fmt="json", junit=str(junit), metrics=str(prom))
    assert code == 3 and msgspec.json.decode(out)["not_done"] == 3
    root = ET.parse(junit).getroot()
    shards = root.find("testsuite[@name='batchsync.shards']")
    assert shards is not None and root.get("failures") == "1"
    failure = shards.find("testcase/failure")
    assert (
        failure is not None and failure.get("message") == "shard 1/2: missing: no report; its 3 integrations not done"
    )
    assert read_metric(str(prom), "batchsync_run_integrations", {"result": "skipped"}) == 3
    assert read_metric(str(prom), "batchsync_run_success") == 0
    assert read_metric(str(prom), "batchsync_last_run_exit_code", {"command": "apply"}) == 3


def test_command_usage_errors_exit_2(tmp_path: Path) -> None:
    a = shard_report(tmp_path, 0, {})
    code, _, err = run(a, max_age="soon")
    assert code == 2 and "--max-age soon: expected a positive duration" in err
    code, _, err = run(a, junit=str(tmp_path / "no" / "such" / "dir.xml"))
    assert code == 2 and "is not a writable directory" in err
    code, _, err = run()
    assert code == 2 and "name at least one report" in err
    other = write(tmp_path / "o.jsonl", header(1, 3, [2, 2, 2]), summary_line([]))
    code, out, err = run(a, other)
    assert code == 2 and out == "" and "different splits" in err and err.rstrip().endswith("nothing merged")


def test_an_output_the_merge_cannot_write_is_named_and_the_merge_exits_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's policy: the other outputs are written, the lost one is named, exit 5 (a
    failure or a stop still says more); the metrics, written after it, carry the 5."""
    import errno

    import batchsync.outputs.junit

    def full(path: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(batchsync.outputs.junit, "atomic_write", full)
    shard_report(tmp_path, 0, {})
    shard_report(tmp_path, 1, {4: "changed"})
    junit, prom, page = tmp_path / "merged.xml", tmp_path / "batchsync.prom", tmp_path / "merged.html"
    pattern = str(tmp_path / "shard-*.jsonl")
    code, out, err = run(pattern, fmt="json", junit=str(junit), metrics=str(prom), html=str(page))
    assert code == 5
    assert err == f"batchsync: --junit {junit} was not written: No space left on device\n"
    assert not junit.exists() and page.exists()
    assert msgspec.json.decode(out)["exit_code"] == 5
    assert read_metric(str(prom), "batchsync_last_run_exit_code", {"command": "apply"}) == 5
    # A failed integration says more than a lost output: exit 1, the loss still named.
    shard_report(tmp_path, 1, {4: "failed"})
    code, _, err = run(pattern, junit=str(junit))
    assert code == 1 and "--junit" in err and "was not written" in err


def test_the_merge_checks_its_outputs_as_a_run_does(tmp_path: Path) -> None:
    """One output-path check: a directory, a device, or a report the merge reads is refused
    before anything is read or written."""
    a = shard_report(tmp_path, 0, {})
    for flag, target, why in (
        ("junit", str(tmp_path), "is a directory"),
        ("metrics", "/dev/null", "is not a regular file"),
        ("html", a, f"is {a}, which report merge reads"),
    ):
        code, out, err = run(a, **{flag: target})
        assert code == 2 and out == "", (flag, err)
        assert err.startswith(f"batchsync: --{flag} {target}: {why}"), err
    assert Path(a).read_text().startswith('{"header"')  # the report was not overwritten


# -- against the real engine and sandbox --------------------------------------------------


def write_run_report(path: Path, shard: dict[str, Any], outcomes: list[Outcome], summary: Summary) -> str:
    """A report as the command line writes it, with its writer: header, outcomes, summary."""
    writer = ReportWriter(str(path))
    writer.header("apply", "inv.json", len(outcomes), shard)
    for o in outcomes:
        writer.add(o)
    writer.finish(summary, "apply", exit_code(summary, "apply", False))
    return str(path)


async def test_four_shards_against_one_sandbox_merge_like_one_unsharded_run(tmp_path: Path) -> None:
    sizes = zipf_sizes(400, 40, 1.1)
    fleet = {f"shop{i:02d}": n for i, n in enumerate(sizes)}
    fast = {"reads_per_minute": 60_000, "writes_per_minute": 60_000, "write_burst": 50}
    inv = make_inventory(tmp_path, fleet, limits=dict.fromkeys(fleet, fast))
    config = SandboxConfig(in_sync=0.5, seed=3)
    options = Options(backoff_base=0.01, backoff_max=0.05)
    paths: list[str] = []
    async with run_sandbox(inv, config) as box:
        for index in range(4):  # one after another, against one sandbox
            jobs, split = select_shard(inv.jobs, ShardSpec(index, 4))
            outcomes: list[Outcome] = []
            async with HttpApi(concurrency=64, timeout=5.0, base_url=box.url) as api:
                engine = Engine(inv.accounts, api, options, outcomes.append)
                await engine.run(jobs)
            path = tmp_path / f"shard-{index}.jsonl"
            paths.append(write_run_report(path, split.header(index), outcomes, engine.summary))
        posts: dict[str, int] = box.stats()["applied_posts"]
    assert max(split.integrations) <= 1.1 * max(max(sizes), 400 / 4)
    reports = [read_report(p) for p in paths]
    ids = [o.integration_id for r in reports for o in r.outcomes]
    assert sorted(ids) == sorted(j.integration_id for j in inv.jobs)  # each integration in exactly one shard
    assert set(posts.values()) == {1}  # and each drifted one written exactly once
    owners = [{o.account for o in r.outcomes} for r in reports]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :])  # no account in two shards

    async with run_sandbox(inv, config) as box:  # the same seed: the same drift, for one unsharded run
        single: list[Outcome] = []
        async with HttpApi(concurrency=64, timeout=5.0, base_url=box.url) as api:
            engine = Engine(inv.accounts, api, options, single.append)
            await engine.run(inv.jobs)
        one_run = engine.summary

    merged = merge(reports)
    assert {r: merged.summary.total(r) for r in RESULTS} == {r: one_run.total(r) for r in RESULTS}
    assert merged.summary.total("changed") == len(posts) > 0
    for account, stats in one_run.accounts.items():
        assert [getattr(merged.summary.accounts[account], r) for r in RESULTS] == [getattr(stats, r) for r in RESULTS]
    assert merged.exit_code == exit_code(one_run, "apply", False) == 0

    os.remove(paths[2])
    code, out, _ = run(str(tmp_path / "shard-*.jsonl"))
    assert code == 3
    assert f"! shard 2/4: missing: no report; its {split.integrations[2]} integrations not done" in out


def test_a_report_that_is_not_utf8_is_a_problem_whichever_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    data = HEAD + b'"x": 0}\n{"integration_id": 1, "account": "\xe9", "result": "changed"}\n{"summary": true}\n'
    expected = "line 2 is not UTF-8 text (column 35: byte 0xE9)"
    assert parse_report("r.jsonl", data).problem == expected
    real = msgspec.json.decode

    def as_msgspec_022(line: bytes, **kw: Any) -> Any:
        line.decode("utf-8")  # msgspec < 0.23 raised UnicodeDecodeError, not its DecodeError
        return real(line, **kw)

    monkeypatch.setattr(msgspec.json, "decode", as_msgspec_022)
    assert parse_report("r.jsonl", data).problem == expected


def test_the_shards_undeclared_integrations_merge_and_older_reports_have_none(tmp_path: Path) -> None:
    """Issue 27: each shard's summary line lists what its pre-flight found undeclared; the
    merge lists them all (once each), in the JSON document and the text; a report written
    before there was such a list reads as having none."""
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    rows_a = [("big", "unchanged", i) for i in FLEET["big"]]
    rows_b = [(acc, "unchanged", i) for acc in ("mid", "small") for i in FLEET[acc]]
    found_a = [{"account": "big", "integration_id": 901, "name": "New shop", "shop_url": "https://new.example"}]
    found_b = [{"account": "small", "integration_id": 902, "name": None, "shop_url": None}]
    write(
        a,
        header(0, 2, SPLIT),
        *(outcome(i, acc, r) for acc, r, i in rows_a),
        summary_line([(acc, r) for acc, r, _ in rows_a], exit_code=0, undeclared=found_a),
    )
    write(
        b,
        header(1, 2, SPLIT),
        *(outcome(i, acc, r) for acc, r, i in rows_b),
        summary_line([(acc, r) for acc, r, _ in rows_b], exit_code=0),  # an older report: no list
    )
    code, out, _ = run(str(a), str(b), fmt="json")
    assert code == 0
    assert json.loads(out)["undeclared"] == found_a
    write(
        b,
        header(1, 2, SPLIT),
        *(outcome(i, acc, r) for acc, r, i in rows_b),
        summary_line([(acc, r) for acc, r, _ in rows_b], exit_code=0, undeclared=found_b),
    )
    code, out, _ = run(str(a), str(b))
    assert "UNDECLARED: 2 PrestaShop V2 integrations" in out
    assert 'integration 901 "New shop" (big) https://new.example' in out and "integration 902 (small)" in out
