"""JUnit XML and Prometheus textfile output: content, escaping, carry-over, atomic replace."""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchsync.diff import Change
from batchsync.files import atomic_write
from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.junit import write_junit
from batchsync.outputs.metrics import read_metric, write_exit_code, write_metrics

# -- the official parser, and what it cannot check on its own ------------------------------

Sample = tuple[str, frozenset[tuple[str, str]], float]


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, str], list[Sample]]:
    """(help by name, type by name, samples), read by prometheus_client's own parser.

    That parser accepts a family split in two or a series written twice; node_exporter
    refuses both, so they are checked here too.
    """
    assert text.endswith("\n")
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        assert family.name not in types, f"family {family.name} split in two"
        helps[family.name] = family.documentation
        types[family.name] = family.type
        for s in family.samples:
            assert s.name == family.name
            samples.append((s.name, frozenset(s.labels.items()), s.value))
    assert len({(n, ls) for n, ls, _ in samples}) == len(samples), "a series written twice"
    return helps, types, samples


def value(samples: list[Sample], name: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for n, ls, v in samples if n == name and want <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def summary(failed: int = 0, skipped: int = 0, stopped: str | None = None) -> Summary:
    return Summary(
        {
            "acme": AccountStats(
                unchanged=5,
                changed=2,
                failed=failed,
                skipped=skipped,
                throttled=3,
                write_rate=64.0,
                read_declared=1000.0,
                write_declared=100.0,
            ),
            'we"ird\\name\nx': AccountStats(unchanged=1),
        },
        duration_s=12.5,
        stopped=stopped,
    )


# -- metrics -----------------------------------------------------------------------------


FAMILIES = (
    "batchsync_integrations",
    "batchsync_run_integrations",
    "batchsync_throttled_responses",
    "batchsync_account_rate_per_minute",
    "batchsync_account_declared_rate_per_minute",
    "batchsync_undeclared_integrations",
    "batchsync_run_duration_seconds",
    "batchsync_run_finished_timestamp_seconds",
    "batchsync_last_success_timestamp_seconds",
    "batchsync_run_success",
    "batchsync_run_interrupted",
    "batchsync_last_run_exit_code",
    "batchsync_last_run_timestamp_seconds",
)


def test_metrics_values_and_help(tmp_path: Path) -> None:
    path = tmp_path / "batchsync.prom"
    write_metrics(str(path), summary(failed=1), "apply", finished_at=1_800_000_000.5, exit_code=1)
    helps, types, samples = parse_exposition(path.read_text())
    assert set(types) == set(FAMILIES)
    for name in FAMILIES:
        assert helps[name], name
        assert types[name] == "gauge"
        assert not name.endswith("_total"), name  # Prometheus naming: _total is for counters
    assert value(samples, "batchsync_integrations", account="acme", result="changed") == 2
    assert value(samples, "batchsync_integrations", account="acme", result="failed") == 1
    assert value(samples, "batchsync_run_integrations", result="unchanged") == 6
    assert value(samples, "batchsync_run_integrations", result="skipped") == 0
    assert value(samples, "batchsync_throttled_responses", account="acme") == 3
    assert value(samples, "batchsync_run_duration_seconds") == 12.5
    assert value(samples, "batchsync_run_finished_timestamp_seconds") == 1_800_000_000.5
    assert value(samples, "batchsync_run_success") == 0
    assert value(samples, "batchsync_run_interrupted") == 0
    assert value(samples, "batchsync_last_success_timestamp_seconds") == 0  # never succeeded
    assert value(samples, "batchsync_last_run_exit_code") == 1
    assert value(samples, "batchsync_last_run_timestamp_seconds") == 1_800_000_000.5
    assert all(("command", "apply") in ls for _, ls, _ in samples)


def test_the_rate_that_worked_per_account_and_meter(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(str(path), summary(), "apply", finished_at=1.0)
    _, _, samples = parse_exposition(path.read_text())
    rate = "batchsync_account_rate_per_minute"
    declared = "batchsync_account_declared_rate_per_minute"
    assert value(samples, rate, account="acme", meter="writes") == 64  # slowed by 429s
    assert value(samples, rate, account="acme", meter="reads") == 1000  # the declared rate held
    assert value(samples, declared, account="acme", meter="writes") == 100
    # Nothing known of the other account's limits (as in a merged report): no sample at all.
    assert not [ls for n, ls, _ in samples if n in (rate, declared) and ("account", 'we"ird\\name\nx') in ls]


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


def test_carry_over_only_from_the_same_command_and_labels(tmp_path: Path) -> None:
    plan, apply = tmp_path / "plan.prom", tmp_path / "apply.prom"
    write_metrics(str(plan), summary(), "plan", finished_at=1000.0, labels={"inventory": "eu"})
    write_metrics(str(apply), summary(failed=1), "apply", finished_at=2000.0, last_success_from=str(plan))
    assert read_metric(str(apply), "batchsync_last_success_timestamp_seconds") == 0
    write_metrics(str(plan), summary(failed=1), "plan", finished_at=3000.0, labels={"inventory": "us"})
    assert read_metric(str(plan), "batchsync_last_success_timestamp_seconds", {"inventory": "us"}) == 0
    assert read_metric(str(plan), "batchsync_run_success", {"inventory": "us", "command": "plan"}) == 0
    # The other inventory's series in the same file are kept, its success too.
    assert read_metric(str(plan), "batchsync_last_success_timestamp_seconds", {"inventory": "eu"}) == 1000.0
    parse_exposition(plan.read_text())


def test_plan_and_apply_share_a_file_without_erasing_each_other(tmp_path: Path) -> None:
    path = tmp_path / "batchsync.prom"
    write_metrics(str(path), summary(), "apply", finished_at=1000.0, exit_code=0)
    write_metrics(str(path), summary(failed=1), "plan", finished_at=2000.0, exit_code=1)
    _, _, samples = parse_exposition(path.read_text())
    for command, success, code, finished in (("apply", 1, 0, 1000.0), ("plan", 0, 1, 2000.0)):
        assert value(samples, "batchsync_run_success", command=command) == success
        assert value(samples, "batchsync_last_run_exit_code", command=command) == code
        assert value(samples, "batchsync_run_finished_timestamp_seconds", command=command) == finished
        assert value(samples, "batchsync_integrations", command=command, account="acme", result="changed") == 2
    assert value(samples, "batchsync_last_success_timestamp_seconds", command="plan") == 0
    # The next apply replaces its own series and keeps plan's.
    write_metrics(str(path), summary(skipped=2), "apply", finished_at=3000.0, exit_code=3)
    _, _, samples = parse_exposition(path.read_text())
    assert value(samples, "batchsync_last_run_exit_code", command="apply") == 3
    assert value(samples, "batchsync_last_success_timestamp_seconds", command="apply") == 1000.0
    assert value(samples, "batchsync_run_finished_timestamp_seconds", command="plan") == 2000.0
    assert len([1 for n, _, _ in samples if n == "batchsync_run_success"]) == 2


def test_plan_and_apply_writing_at_the_same_moment_keep_both(tmp_path: Path) -> None:
    path = tmp_path / "batchsync.prom"
    errors: list[BaseException] = []

    def writer(command: str) -> None:
        try:
            for i in range(30):
                write_metrics(str(path), summary(), command, finished_at=float(i), exit_code=0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in ("plan", "apply")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    _, _, samples = parse_exposition(path.read_text())
    assert value(samples, "batchsync_run_finished_timestamp_seconds", command="plan") == 29
    assert value(samples, "batchsync_run_finished_timestamp_seconds", command="apply") == 29


def test_a_run_that_never_started_records_its_exit_code_only(tmp_path: Path) -> None:
    path = tmp_path / "batchsync.prom"
    write_metrics(str(path), summary(), "apply", finished_at=1000.0, exit_code=0)
    write_metrics(str(path), summary(failed=1), "plan", finished_at=1500.0, exit_code=1)
    before = {(n, ls): v for n, ls, v in parse_exposition(path.read_text())[2]}
    write_exit_code(str(path), "apply", 2, at=2000.0)
    _, _, samples = parse_exposition(path.read_text())
    after = {(n, ls): v for n, ls, v in samples}
    assert value(samples, "batchsync_last_run_exit_code", command="apply") == 2
    assert value(samples, "batchsync_last_run_timestamp_seconds", command="apply") == 2000.0
    assert value(samples, "batchsync_last_success_timestamp_seconds", command="apply") == 1000.0
    changed = {k for k in after if after[k] != before.get(k)}
    assert {n for n, _ in changed} == {"batchsync_last_run_exit_code", "batchsync_last_run_timestamp_seconds"}
    assert all(("command", "apply") in ls for _, ls in changed)  # plan's series are untouched


def test_a_lock_on_the_metrics_folder_held_for_ever_delays_a_write_not_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder's lock keeps two runs' merges apart; held by something else for ever (an
    operator's flock, a process hung on a network disk), it must not hold the run, its
    inventory's lock and the next night's run with it: the write goes on after a while."""
    import fcntl
    import time

    import batchsync.outputs.metrics as metrics

    monkeypatch.setattr(metrics, "LOCK_WAIT_S", 0.3)
    path = tmp_path / "batchsync.prom"
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # this process's lock: the write's is another open file
        started = time.monotonic()
        write_exit_code(str(path), "apply", 75, at=5.0)
        write_metrics(str(path), summary(), "apply", finished_at=9.0, exit_code=0)
        assert time.monotonic() - started < 5
    finally:
        os.close(fd)
    _, _, samples = parse_exposition(path.read_text())
    assert value(samples, "batchsync_last_run_exit_code", command="apply") == 0


def test_a_first_run_that_never_started_still_says_no_success_yet(tmp_path: Path) -> None:
    path = tmp_path / "new.prom"
    write_exit_code(str(path), "apply", 75, at=5.0, labels={"inventory": "eu"})
    helps, _, samples = parse_exposition(path.read_text())
    assert value(samples, "batchsync_last_run_exit_code", command="apply", inventory="eu") == 75
    assert value(samples, "batchsync_last_success_timestamp_seconds", command="apply") == 0
    assert helps["batchsync_last_success_timestamp_seconds"]


def test_an_older_files_series_go_but_its_last_success_counts(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_text(
        "# HELP batchsync_integrations_total Integrations per result.\n"
        "# TYPE batchsync_integrations_total gauge\n"
        'batchsync_integrations_total{mode="apply",result="failed"} 1\n'
        "# TYPE batchsync_last_success_timestamp_seconds gauge\n"
        'batchsync_last_success_timestamp_seconds{mode="plan"} 500\n'
        'batchsync_last_success_timestamp_seconds{mode="apply"} 700\n'
    )
    write_metrics(str(path), summary(failed=1), "apply", finished_at=1000.0)
    text = path.read_text()
    assert "_total" not in text and 'mode="' not in text
    _, _, samples = parse_exposition(text)
    assert value(samples, "batchsync_last_success_timestamp_seconds", command="apply") == 700


def test_garbage_previous_file_means_no_previous_success(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_bytes(b'batchsync_last_success_timestamp_seconds{command="apply"} banana\n\xff\xfe')
    write_metrics(str(path), summary(failed=1), "apply", finished_at=5.0)
    assert read_metric(str(path), "batchsync_last_success_timestamp_seconds") == 0
    path.write_text(
        'batchsync_last_success_timestamp_seconds{command="apply"} NaN\n'
        'batchsync_run_success{command="plan",broken="} 1\n'
        "not a metric line at all\n"
    )
    write_metrics(str(path), summary(failed=1), "apply", finished_at=6.0)
    _, _, samples = parse_exposition(path.read_text())
    assert value(samples, "batchsync_last_success_timestamp_seconds") == 0
    assert not [n for n, ls, _ in samples if ("command", "plan") in ls]


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


def test_a_killed_runs_temp_file_is_removed_by_the_next_write_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    """A SIGKILL while a file is written (a stop timeout, the OOM killer) skips the temp
    file's unlink: the next write of that file removes the old ones, not one another run
    may be writing now, nor another file's."""
    target = tmp_path / "batchsync.prom"
    stale, fresh, other = (tmp_path / n for n in (".batchsync.prom.ab12cd.tmp", ".batchsync.prom.ef34gh.tmp",
                                                   ".report.html.ij56kl.tmp"))  # fmt: skip
    for leftover in (stale, fresh, other):
        leftover.write_bytes(b"half")
    hours_ago = os.stat(stale).st_mtime - 7200
    os.utime(stale, (hours_ago, hours_ago))
    os.utime(other, (hours_ago, hours_ago))
    atomic_write(str(target), b"whole\n")
    assert target.read_bytes() == b"whole\n"
    assert not stale.exists() and fresh.exists() and other.exists()


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
            error=ErrorInfo("client", 400, "invalid", 'name <too> long & "bad"', "/data/0/name"),
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
    assert failure.get("message") == 'client 400: name <too> long & "bad"'
    assert failure.get("type") == "client"
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


def test_two_inventories_keep_their_series_apart_and_an_unlabelled_series_is_replaced(tmp_path: Path) -> None:
    """Issue 27: every series carries ``inventory``; an older file's series of the same
    command without it is this inventory's past, replaced (its last success kept)."""
    from batchsync.outcome import Undeclared
    from batchsync.outputs.metrics import inventory_label

    assert inventory_label("/srv/inv/clients-eu.toml") == {"inventory": "clients-eu"}
    path = tmp_path / "batchsync.prom"
    write_metrics(str(path), summary(), "apply", finished_at=1_700_000_000.0, exit_code=0)  # an older run: no label
    eu, us = inventory_label("eu/prod.toml"), inventory_label("us/clients.toml")
    found = summary(failed=1)
    found.undeclared = [Undeclared("acme", 9), Undeclared("acme", 10)]
    write_metrics(str(path), found, "apply", finished_at=1_800_000_000.0, exit_code=1, labels=eu)
    write_metrics(str(path), summary(), "apply", finished_at=1_800_000_100.0, exit_code=0, labels=us)
    text = path.read_text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.get("inventory") in ("prod", "clients"), sample  # the unlabelled ones are gone
    assert read_metric(str(path), "batchsync_last_run_exit_code", {"inventory": "prod"}) == 1
    assert read_metric(str(path), "batchsync_last_run_exit_code", {"inventory": "clients"}) == 0
    # The failing inventory keeps the last success its unlabelled series had.
    assert read_metric(str(path), "batchsync_last_success_timestamp_seconds", {"inventory": "prod"}) == 1_700_000_000
    assert read_metric(str(path), "batchsync_undeclared_integrations", {"inventory": "prod", "account": "acme"}) == 2
