"""The output layer: the Sink protocol and the list a command drives, outcomes made safe once,
outputs refused before anything is sent, lost outputs reported.

The process tests run the command line against a sandbox process over loopback.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import ROOT, SandboxProcess, batchsync, env_with, example_inventory
from inventory_factory import inventory_env, make_inventory

from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.build import OutputSettings, build_sinks
from batchsync.outputs.html import Html
from batchsync.outputs.junit import JUnit
from batchsync.outputs.metrics import Metrics, read_metric
from batchsync.outputs.notify import Notify, Webhook
from batchsync.outputs.report import ReportWriter
from batchsync.outputs.sanitize import Sanitizer
from batchsync.outputs.sink import End, Lost, LostNotice, OutputError, Sink, Start, check_output, close_all
from batchsync.outputs.terminal import Screen, Terminal
from batchsync.redact import Redactor
from batchsync.urls import is_loopback

ACCOUNTS = {"acme": 6, "globex": 4}


def test_the_sanitizer_removes_secrets_and_control_characters() -> None:
    redactor = Redactor(["s3cr3t-key"])
    sanitizer = Sanitizer(redactor)
    redactor.add(["tok-issued-later-123"])  # as the run's HttpApi hands it a token it issued
    dirty = Outcome(
        7,
        "acme",
        "failed",
        error=ErrorInfo("auth", 401, "bad\x1b[31m", "key s3cr3t-key and tok-issued-later-123\r\nX: \x00y", "/a\x07"),
        reason="\x1b]0;title\x07why",
        warnings=("w\u202eing S3CR3T-KEY",),
    )
    clean = sanitizer.outcome(dirty)
    assert clean.error is not None
    assert clean.error.detail == "key *** and *** X: y"
    assert clean.error.code == "bad[31m" and clean.error.pointer == "/a"
    assert clean.reason == "]0;titlewhy"
    assert clean.warnings == ("wing ***",)


def test_a_name_once_clean_is_masked_when_a_token_issued_later_is_in_it() -> None:
    """The sanitizer remembers the server texts it found nothing in (a fleet's shops share
    their status names): a secret added to the redactor since forgets them all."""
    from batchsync.diff import Change

    redactor = Redactor(["s3cr3t-key"])
    sanitizer = Sanitizer(redactor)
    before = {"en-gb": "Shipped tok-issued-later-123"}
    changed = Outcome(7, "acme", "changed", changes=(Change("~", "s1", before, {"en-gb": "Shipped"}),))
    assert sanitizer.outcome(changed) is changed  # clean: nothing to replace
    assert sanitizer.outcome(changed) is changed  # known clean: no pass of the redactor
    redactor.add(["tok-issued-later-123"])  # a token issued since: the run's HttpApi hands it over
    masked = sanitizer.outcome(changed)
    assert masked.changes[0].before == {"en-gb": "Shipped ***"}


def test_a_credential_a_server_puts_in_its_statuses_or_mapping_is_masked_everywhere(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    # A server that echoes a credential as a status name, a status id and a mapped id: the
    # "before" side of the diff is the server's, and every sink prints it.
    pub, sec = "pub-5f0c2a9e71d84b3c96a0e2f4", "sec-Q7vX2mN9pL4kR8tY1wZ6bC3d"
    seed = {
        "accounts": [{"name": "acme", "public_key": pub, "secret_key": sec}],
        "integrations": [
            {
                "id": 501,
                "account": "acme",
                "statuses": [
                    {"external_id": "1", "translations": [{"status": sec, "language": "en-gb"}]},
                    {"external_id": sec, "translations": [{"status": f"old {pub}", "language": "en-gb"}]},
                ],
                "mapping": {"CANCEL": sec},
            }
        ],
    }
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    paid = [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]
    inventory = {
        "accounts": {"acme": {"public_key": "env:ACME_PUB", "secret_key": "env:ACME_SEC"}},
        "integrations": [{"id": 501, "account": "acme", "statuses": paid, "mapping": {"CANCEL": "1"}}],
    }
    (tmp_path / "inv.json").write_text(json.dumps(inventory))
    env = env_with({"ACME_PUB": pub, "ACME_SEC": sec})
    box = SandboxProcess(None, env, "--seed-file", str(tmp_path / "seed.json"))
    sandbox_proc.append(box)
    files = {"--report": "r.jsonl", "--html": "r.html", "--junit": "j.xml", "--metrics": "m.prom"}
    outputs = [a for flag, name in files.items() for a in (flag, str(tmp_path / name))]
    texts = []
    for fmt in ("text", "json"):
        for command in ("plan", "apply"):
            args = [command, str(tmp_path / "inv.json"), "--base-url", box.url, "--format", fmt, *outputs]
            done = batchsync(*args, env=env)
            assert done.returncode == 0, done.stderr
            texts += [done.stdout, done.stderr, *((tmp_path / name).read_text() for name in files.values())]
    assert "***" in texts[0]  # the masked diff is there, in the text output
    raw = f"{pub}:{sec}"
    forms = [pub, sec, raw, base64.b64encode(raw.encode()).decode(), base64.b64encode(sec.encode()).decode()]
    assert [f for f in forms if any(f in t for t in texts)] == []


# -- the sinks a command drives -------------------------------------------------------------


def everything(tmp_path: Path) -> OutputSettings:
    def path(name: str) -> str:
        return str(tmp_path / f"out.{name}")

    return OutputSettings(
        report=path("report"), junit=path("junit"), metrics=path("metrics"), html=path("html"), notify=("env:HOOK",)
    )


def test_the_sinks_close_in_the_order_that_keeps_the_runs_promises(tmp_path: Path) -> None:
    """JUnit, then the metrics and the terminal and the page (each with the code as it
    stands), the report last of the files (the final code), the lost named, then the
    notifications: after everything, with the code the process exits with."""
    start = Start(mode="apply", started_at=0.0)
    out = Screen(io.StringIO())
    hook = Webhook("https://hooks.example/x", "env:HOOK")
    sinks = build_sinks(everything(tmp_path), start, Lost(out), out=out, err=io.StringIO(), hooks=[hook])
    kinds = [type(sink) for sink in sinks]
    assert kinds == [JUnit, Metrics, Terminal, Html, ReportWriter, LostNotice, Notify]
    close_all(sinks, None)  # a run that broke off: nothing written but the report's lines so far
    assert (tmp_path / "out.report").read_text().count("\n") == 1  # its header, no summary line
    assert not (tmp_path / "out.junit").exists() and not (tmp_path / "out.html").exists()
    # Only what was asked for: the terminal, and the lost outputs named.
    bare = build_sinks(OutputSettings(), start, Lost(out), out=out, err=io.StringIO())
    assert [type(sink) for sink in bare] == [Terminal, LostNotice]


def test_a_lost_output_makes_a_clean_run_exit_5_and_says_so_after_the_report() -> None:
    lost = Lost()
    assert (lost.exit_code(0), lost.exit_code(4), lost.exit_code(1)) == (0, 4, 1)
    lost.record("--junit", "j.xml", OSError(errno.ENOSPC, "No space left on device"))
    assert (lost.exit_code(0), lost.exit_code(4), lost.exit_code(1), lost.exit_code(3)) == (5, 5, 1, 3)
    err = io.StringIO()
    notice = LostNotice(lost, err, redact=lambda text: text.replace("j.xml", "***"))
    notice.close(None)  # a run that broke off says nothing more
    assert err.getvalue() == ""
    notice.close(End(summary=Summary({}), code=lambda: 5, started_at=0.0, ended_at=0.0))
    assert err.getvalue() == "batchsync: --junit *** was not written: No space left on device\n"
    # stdout counts as soon as a write to it failed, before the terminal names it.
    screen = Screen(io.StringIO())
    on_screen = Lost(screen)
    assert on_screen.exit_code(0) == 0
    screen.failure = OSError(errno.EIO, "Input/output error")
    assert on_screen.exit_code(0) == 5 and on_screen.lines() == []


def test_one_sink_that_raises_does_not_keep_the_report_from_its_summary_line(tmp_path: Path) -> None:
    class Broken:
        def add(self, outcome: Outcome) -> None:
            pass

        def flush(self) -> None:
            pass

        def close(self, end: End | None) -> None:
            raise RuntimeError("a bug")

    lost = Lost()
    report = ReportWriter.open(str(tmp_path / "r.jsonl"), Start(mode="apply", started_at=0.0), lost)
    outcome = Outcome(1, "acme", "changed")
    report.add(outcome)
    summary = Summary({"acme": AccountStats(changed=1)})
    end = End(summary=summary, code=lambda: lost.exit_code(0), started_at=0.0, ended_at=1.0)
    with pytest.raises(RuntimeError, match="a bug"):
        close_all([Broken(), report], end)
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert lines[0]["header"] is True and lines[1]["integration_id"] == 1
    assert lines[2]["summary"] is True and lines[2]["exit_code"] == 0


def test_check_output_refuses_what_must_not_be_overwritten(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.toml"
    inventory.write_text("")
    secret = tmp_path / "acme.key"
    secret.write_text("x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(inventory)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "x")
    protected = [str(inventory), str(secret)]
    for path, why in (
        (tmp_path, "is a directory"),
        (Path("/dev/full"), "not a regular file"),
        (Path("/dev/null"), "not a regular file"),
        (fifo, "not a regular file"),
        (inventory, "which the inventory reads"),
        (secret, "which the inventory reads"),
        (link, "which the inventory reads"),
        (dangling, "dangling"),
        (tmp_path / "no-such-dir" / "r.jsonl", "not a writable directory"),
    ):
        with pytest.raises(OutputError, match=why):
            check_output("--report", str(path), protected)
    with pytest.raises(OutputError, match="empty"):
        check_output("--report", "", protected)
    check_output("--report", str(tmp_path / "new.jsonl"), protected)  # a new file: fine
    (tmp_path / "old.jsonl").write_text("")
    check_output("--report", str(tmp_path / "old.jsonl"), protected)  # an old report: fine


def test_is_loopback() -> None:
    for url in (
        "http://127.0.0.1:8765",
        "http://localhost/x",
        "http://[::1]:1/",
        "http://127.9.9.9",
        "http://a.localhost",
    ):
        assert is_loopback(url), url
    for url in ("http://example.com", "http://10.0.0.1", "http://localhost.example.com", "http://[::2]"):
        assert not is_loopback(url), url


def test_bad_outputs_and_plain_http_send_nothing(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    for flag, target in (("--report", str(tmp_path)), ("--junit", "/dev/full"), ("--metrics", inv.path)):
        result = batchsync("apply", inv.path, "--base-url", box.url, flag, target, env=env)
        assert result.returncode == 2, (flag, result.stderr)
        assert flag in result.stderr
    assert os.path.getsize(inv.path) > 0  # the inventory was not overwritten
    result = batchsync("plan", inv.path, "--base-url", "http://sendcloud.example.com/api/v3", env=env)
    assert result.returncode == 2 and "--allow-insecure-http" in result.stderr
    stats = box.stats()
    assert sum(sum(c.values()) for c in stats["requests"].values()) == 0  # nothing was sent


def _limit_file_size(limit: int) -> None:
    # A full disk, as far as the process can tell: writes past `limit` bytes fail with
    # EFBIG instead of killing the process with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_report_lost_to_a_full_disk_does_not_stop_the_run(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "0.5")
    sandbox_proc.append(box)
    report = tmp_path / "report.jsonl"
    # Not measured by coverage: its data file would hit the same limit, and be left corrupt.
    quiet = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "batchsync", "apply", inv.path, "--base-url", box.url, "--report", str(report), "-v"],
        capture_output=True,
        text=True,
        env=quiet,
        cwd=ROOT,
        timeout=120,
        preexec_fn=lambda: _limit_file_size(600),
    )
    assert result.returncode == 5, result.stderr
    assert f"--report {report} was not written" in result.stderr
    assert "RECAP" in result.stdout and "Traceback" not in result.stderr
    for job in inv.jobs:  # every outcome still reached the terminal
        assert f"integration {job.integration_id} " in result.stdout
    assert report.stat().st_size <= 600


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
def test_stdout_on_a_full_disk_costs_no_integration(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], unbuffered: str
) -> None:
    """`batchsync apply ... >> /var/log/batchsync.log` with /var full: the run used to die at
    its first timed flush of stdout (a traceback, integrations without an outcome)."""
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "0.5")
    sandbox_proc.append(box)
    report, metrics, html = tmp_path / "report.jsonl", tmp_path / "batchsync.prom", tmp_path / "run.html"
    outputs = ["--report", str(report), "--metrics", str(metrics), "--html", str(html)]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "batchsync", "apply", inv.path, "--base-url", box.url, *outputs],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONUNBUFFERED": unbuffered},
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("batchsync: stdout was not written: No space left on device") == 1
    assert "Traceback" not in result.stderr
    *outcomes, summary = [json.loads(line) for line in report.read_text().splitlines()[1:]]
    assert sorted(o["integration_id"] for o in outcomes) == sorted(j.integration_id for j in inv.jobs)
    assert summary["totals"]["failed"] == 0 and summary["totals"]["skipped"] == 0
    # Every output that is written says the exit code the process ended with.
    assert summary["exit_code"] == 5
    assert read_metric(str(metrics), "batchsync_last_run_exit_code") == 5
    assert "(exit 5)</title>" in html.read_text()
    assert sum(c["POST"] for c in box.stats()["requests"].values()) == summary["totals"]["changed"]


def test_stderr_on_a_full_disk_costs_no_outcome_in_any_output(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """`-q 2>>/var/log/batchsync.err` with /var full (or the cron wrapper's temp file): the
    first failure line raised into the sinks, and the failures went missing from the JUnit
    file and the run history; a warning before the run stopped it before anything was sent."""
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = [j.integration_id for j in inv.jobs[:3]]
    box = SandboxProcess(Path(inv.path), env, *(a for i in bad for a in ("--system-for", f"{i}=woocommerce")))
    sandbox_proc.append(box)
    junit, store = tmp_path / "junit.xml", tmp_path / "h.sqlite3"
    limit = ",".join([*(str(j.integration_id) for j in inv.jobs), "nosuchshop"])  # a warning first
    cmd = [sys.executable, "-m", "batchsync", "apply", inv.path, "--base-url", box.url, "-q", "--limit", limit]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*cmd, "--junit", str(junit), "--history", str(store)],
            stdout=subprocess.PIPE, stderr=full, text=True, env=env, cwd=ROOT, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout  # the failures say more than the lost stderr
    text = junit.read_text()
    assert f'tests="{len(inv.jobs)}"' in text and 'failures="3"' in text
    failing = batchsync("history", "failing", "--format", "json", "--history", str(store), env=env)
    assert sorted(f["integration_id"] for f in json.loads(failing.stdout)) == sorted(bad)
    # A run with nothing else to say ends in 5: its warning is lost. Before, it ended there
    # with nothing sent.
    ok = ",".join([*(str(j.integration_id) for j in inv.jobs if j.integration_id not in bad), "nosuchshop"])
    with open("/dev/full", "w") as full:
        clean = subprocess.run(
            [sys.executable, "-m", "batchsync", "apply", inv.path, "--sandbox", "--limit", ok, "--format", "json"],
            stdout=subprocess.PIPE, stderr=full, text=True, env=env, cwd=ROOT, timeout=120,
        )  # fmt: skip
    assert clean.returncode == 5, clean.stdout
    assert sum(json.loads(clean.stdout)["totals"].values()) == len(inv.jobs) - 3  # every one ran


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--version"], 5),
        (["validate", "inventories/example.toml"], 5),
        (["validate", "inventories/example.toml", "--format", "json"], 5),
        (["plan", "inventories/example.toml", "--sandbox", "--format", "json"], 5),
        (["completion", "bash"], 5),
    ],
)
def test_a_command_whose_stdout_is_lost_says_so_and_does_not_exit_0(
    argv: list[str], code: int, unbuffered: str
) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "batchsync", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**env_with({}), "PYTHONUNBUFFERED": unbuffered},
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == code, result.stderr
    assert result.stderr == "batchsync: stdout was not written: No space left on device\n"


def test_an_output_may_not_replace_a_file_the_inventory_references(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "acme.public").write_text("acme-public\n")
    (secrets / "acme.secret").write_text("acme-secret\n")
    (tmp_path / "set.json").write_text(
        '[{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]'
    )
    inventory = tmp_path / "inv.toml"
    inventory.write_text(
        '[accounts.acme]\npublic_key = "file:secrets/acme.public"\nsecret_key = "file:secrets/acme.secret"\n'
        '[status_sets.s]\nstatuses_file = "set.json"\n'
        '[[integrations]]\nid = 1\naccount = "acme"\nstatus_set = "s"\n'
    )
    for target in (secrets / "acme.secret", tmp_path / "set.json", inventory):
        result = batchsync("plan", str(inventory), "--sandbox", "--report", str(target), env=env_with({}))
        assert result.returncode == 2 and "which the inventory reads" in result.stderr, (target, result.stderr)
    assert (secrets / "acme.secret").read_text() == "acme-secret\n"


@pytest.mark.parametrize("closed", [(2,), (1,), (0, 1, 2)], ids=["stderr", "stdout", "all three"])
def test_a_run_with_its_standard_streams_closed_converges_and_exits_0(tmp_path: Path, closed: tuple[int, ...]) -> None:
    """`batchsync apply ... 2>&-` from a careless crontab: Python starts with no sys.stderr,
    and the run's first socket would take descriptor 2. It used to exit 1 with everything
    converged (and, with -v, stop its run half way)."""
    report = tmp_path / "report.jsonl"
    example = str(example_inventory(tmp_path))
    cmd = [sys.executable, "-m", "batchsync", "apply", example, "--sandbox", "-v"]

    def close_them() -> None:  # in the child, after the pipes are set up
        for fd in closed:
            os.close(fd)

    proc = subprocess.run(
        [*cmd, "--report", str(report)], cwd=ROOT, capture_output=True, timeout=120, preexec_fn=close_them
    )
    assert proc.returncode == 0
    *outcomes, summary = [line for line in report.read_text().splitlines() if '"header"' not in line]
    assert len(outcomes) == 23 and '"skipped":0' in summary and '"failed":0' in summary


def test_a_second_signal_that_cuts_an_outputs_close_counts_it_lost_and_the_others_still_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every integration has its outcome, a second signal while the outputs are
    written interrupts one of them: it is counted lost, the others close (the report last,
    its summary line saying 5, as the process then does), and the interrupt is raised after."""
    lost = Lost()
    start = Start(mode="apply", started_at=0.0)
    html, junit = tmp_path / "r.html", tmp_path / "r.xml"
    sinks: list[Sink] = [JUnit(str(junit), start, lost), Html(str(html), start, lost)]
    report = ReportWriter.open(str(tmp_path / "r.jsonl"), start, lost)

    def interrupted(end: End | None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sinks[1], "close", interrupted)
    summary = Summary({"acme": AccountStats(changed=1)})
    end = End(summary=summary, code=lambda: lost.exit_code(0), started_at=0.0, ended_at=1.0)
    with pytest.raises(KeyboardInterrupt):
        close_all([*sinks, report], end)
    assert junit.exists() and not html.exists()
    assert lost.lines() == [f"batchsync: --html {html} was not written: cut short by a second signal"]
    last = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[-1])
    assert last["exit_code"] == 5
