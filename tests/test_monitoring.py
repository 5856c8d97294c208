"""JUnit XML and Prometheus textfile output: content, escaping, carry-over, atomic replace."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from batchsync.diff import Change
from batchsync.monitoring import atomic_write, read_metric, write_junit, write_metrics
from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary

# -- a small parser for the text exposition format, independent of the module's own ----

Sample = tuple[str, frozenset[tuple[str, str]], float]


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, str], list[Sample]]:
    """(help by name, type by name, samples); fails the test on any malformed line."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: list[Sample] = []
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("gauge", "counter"), line
            types[name] = kind
        else:
            m = re.fullmatch(r'([a-z_]+)(?:\{((?:[a-z_]+="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)', line)
            assert m is not None, f"malformed sample line: {line!r}"
            labels = frozenset(
                (k, _unescape(v)) for k, v in re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")
            )
            samples.append((m.group(1), labels, float(m.group(3))))
            assert m.group(1) in types, f"sample before its TYPE line: {line!r}"
    return helps, types, samples


def value(samples: list[Sample], name: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for n, ls, v in samples if n == name and want <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def summary(failed: int = 0, skipped: int = 0, stopped: str | None = None) -> Summary:
    return Summary(
        {
            "acme": AccountStats(unchanged=5, changed=2, failed=failed, skipped=skipped, throttled=3),
            'we"ird\\name\nx': AccountStats(unchanged=1),
        },
        duration_s=12.5,
        stopped=stopped,
    )


# -- metrics -----------------------------------------------------------------------------


def test_metrics_values_and_help(tmp_path: Path) -> None:
    path = tmp_path / "batchsync.prom"
    write_metrics(str(path), summary(failed=1), "apply", finished_at=1_800_000_000.5)
    helps, types, samples = parse_exposition(path.read_text())
    for name in (
        "batchsync_integrations",
        "batchsync_integrations_total",
        "batchsync_run_duration_seconds",
        "batchsync_run_finished_timestamp_seconds",
        "batchsync_last_success_timestamp_seconds",
        "batchsync_throttled_total",
        "batchsync_run_success",
        "batchsync_run_interrupted",
    ):
        assert helps.get(name), name
        assert types[name] == "gauge"
    assert value(samples, "batchsync_integrations", account="acme", result="changed") == 2
    assert value(samples, "batchsync_integrations", account="acme", result="failed") == 1
    assert value(samples, "batchsync_integrations_total", result="unchanged") == 6
    assert value(samples, "batchsync_integrations_total", result="skipped") == 0
    assert value(samples, "batchsync_throttled_total", account="acme") == 3
    assert value(samples, "batchsync_run_duration_seconds") == 12.5
    assert value(samples, "batchsync_run_finished_timestamp_seconds") == 1_800_000_000.5
    assert value(samples, "batchsync_run_success") == 0
    assert value(samples, "batchsync_run_interrupted") == 0
    assert value(samples, "batchsync_last_success_timestamp_seconds") == 0  # never succeeded
    assert all(("mode", "apply") in ls for _, ls, _ in samples)


def test_label_values_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(str(path), summary(), "plan", finished_at=1.0)
    text = path.read_text()
    assert 'account="we\\"ird\\\\name\\nx"' in text
    _, _, samples = parse_exposition(text)
    assert value(samples, "batchsync_integrations", account='we"ird\\name\nx', result="unchanged") == 1


def test_last_success_is_carried_over_through_failing_runs(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(str(path), summary(), "apply", finished_at=1000.0)
    assert read_metric(str(path), "batchsync_last_success_timestamp_seconds") == 1000.0
    write_metrics(str(path), summary(failed=2), "apply", finished_at=2000.0)
    write_metrics(str(path), summary(stopped="interrupted"), "apply", finished_at=3000.0)
    _, _, samples = parse_exposition(path.read_text())
    assert value(samples, "batchsync_last_success_timestamp_seconds") == 1000.0
    assert value(samples, "batchsync_run_finished_timestamp_seconds") == 3000.0
    assert value(samples, "batchsync_run_interrupted") == 1
    assert value(samples, "batchsync_run_success") == 0
    write_metrics(str(path), summary(skipped=1), "apply", finished_at=3500.0)
    assert read_metric(str(path), "batchsync_last_success_timestamp_seconds") == 1000.0
    write_metrics(str(path), summary(), "apply", finished_at=4000.0)
    assert read_metric(str(path), "batchsync_last_success_timestamp_seconds") == 4000.0


def test_carry_over_only_from_the_same_mode_and_labels(tmp_path: Path) -> None:
    plan, apply = tmp_path / "plan.prom", tmp_path / "apply.prom"
    write_metrics(str(plan), summary(), "plan", finished_at=1000.0, labels={"inventory": "eu"})
    write_metrics(str(apply), summary(failed=1), "apply", finished_at=2000.0, last_success_from=str(plan))
    assert read_metric(str(apply), "batchsync_last_success_timestamp_seconds") == 0
    write_metrics(str(plan), summary(failed=1), "plan", finished_at=3000.0, labels={"inventory": "us"})
    assert read_metric(str(plan), "batchsync_last_success_timestamp_seconds") == 0
    assert read_metric(str(plan), "batchsync_run_success", {"inventory": "us", "mode": "plan"}) == 0


def test_garbage_previous_file_means_no_previous_success(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_bytes(b'batchsync_last_success_timestamp_seconds{mode="apply"} banana\n\xff\xfe')
    write_metrics(str(path), summary(failed=1), "apply", finished_at=5.0)
    assert read_metric(str(path), "batchsync_last_success_timestamp_seconds") == 0


def test_existing_file_is_replaced_and_no_temp_files_are_left(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_text("stale_metric 1\n")
    path.chmod(0o640)
    with path.open() as old:  # a reader that opened the file before the write
        write_metrics(str(path), summary(), "apply", finished_at=1.0)
        write_metrics(str(path), summary(), "apply", finished_at=2.0)
        # Renamed over, not rewritten in place: the reader still sees a whole old file.
        assert old.read() == "stale_metric 1\n"
    text = path.read_text()
    assert "stale_metric" not in text
    assert text.count("# TYPE batchsync_run_success gauge") == 1
    assert os.listdir(tmp_path) == ["m.prom"]
    assert path.stat().st_mode & 0o777 == 0o640  # keeps the permissions it had


def test_new_file_is_readable_by_the_collector(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(str(path), summary(), "apply", finished_at=1.0)
    assert path.stat().st_mode & 0o044 == 0o044


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.prom"
    path.write_text("old 1\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(str(path), b"new 2\n")
    assert path.read_text() == "old 1\n"
    assert os.listdir(tmp_path) == ["m.prom"]


# -- JUnit -------------------------------------------------------------------------------


def outcomes() -> list[Outcome]:
    return [
        Outcome(
            7,
            "acme",
            "failed",
            attempts=3,
            duration_ms=1500.0,
            error=ErrorInfo("validation", 400, "invalid", 'name <too> long & "bad"', "/data/0/name"),
        ),
        Outcome(3, "acme", "changed", added=1, changed=1, duration_ms=250.0, changes=(Change("+", "paid"),)),
        Outcome(9, "beta", "skipped", reason="interrupted"),
        Outcome(4, "beta", "unchanged", duration_ms=10.0),
        Outcome(5, "beta", "failed", error=ErrorInfo("timeout")),
    ]


def test_junit_structure(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    s = Summary({"acme": AccountStats(changed=1, failed=1, throttled=2), "beta": AccountStats()}, duration_s=3.0)
    write_junit(str(path), outcomes(), s)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("5", "2", "1")
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert list(suites) == ["batchsync.acme", "batchsync.beta"]
    acme = suites["batchsync.acme"]
    assert (acme.get("tests"), acme.get("failures"), acme.get("skipped")) == ("2", "1", "0")
    cases = acme.findall("testcase")
    assert [c.get("name") for c in cases] == ["integration 3", "integration 7"]  # sorted by id
    assert all(c.get("classname") == "batchsync.acme" for c in cases)
    assert cases[1].get("time") == "1.500"
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == 'validation 400: name <too> long & "bad"'
    assert failure.get("type") == "validation"
    assert "pointer: /data/0/name" in (failure.text or "")
    assert "attempts: 3" in (failure.text or "")
    out = cases[0].find("system-out")
    assert out is not None and (out.text or "").startswith("changed (+1 ~1 -0)")
    assert "+ 'paid'" in (out.text or "")
    assert cases[0].find("failure") is None
    props = {p.get("name"): p.get("value") for p in acme.iter("property")}
    assert props["throttled"] == "2"
    beta = suites["batchsync.beta"]
    skipped = beta.find("testcase[@name='integration 9']/skipped")
    assert skipped is not None and skipped.get("message") == "interrupted"
    timeout = beta.find("testcase[@name='integration 5']/failure")
    assert timeout is not None and timeout.get("message") == "timeout"


def test_junit_escaping_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text("<old/>")
    write_junit(str(path), outcomes(), Summary({}, stopped="interrupted"), suite_name="nightly")
    raw = path.read_bytes()
    assert raw.startswith(b"<?xml")
    assert b"<too>" not in raw  # escaped, and the file still parses
    root = ET.parse(path).getroot()
    assert root.get("name") == "nightly"
    assert {s.get("name") for s in root.iter("testsuite")} == {"nightly.acme", "nightly.beta"}
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["stopped"] == "interrupted"
    assert os.listdir(tmp_path) == ["junit.xml"]
