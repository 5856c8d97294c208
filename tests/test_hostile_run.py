"""A whole ``batchsync apply`` against servers that misbehave in every way found so far.

One account per behaviour of tests/hostile_server.py (a gzip bomb, an endless body,
redirects to another port, 204, a Retry-After of a billion seconds or ``inf``, control
characters, echoed credentials, a self-signed certificate), run as a real process:
bounded memory and time, the right kind for each, no credential and no control
character in any output, and every output parses.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

# behaviour -> the kinds its integration may end with (the pre-flight list fails too,
# and the run goes on without it)
EXPECTED: dict[str, set[str]] = {
    "gzip-bomb": {"invalid_response"},
    "gzip-bomb-chunked": {"invalid_response"},
    "huge-declared": {"invalid_response"},
    "endless": {"invalid_response", "timeout"},
    "drip": {"timeout"},
    "redirect-301": {"client"},
    "redirect-302": {"client"},
    "redirect-307": {"client"},
    "redirect-308": {"client"},
    "no-content": {"invalid_response"},
    "throttle-huge": {"throttled"},
    "throttle-inf": {"throttled"},
    "control-chars": {"client", "server"},
    "control-chars-200": {"invalid_response"},
    "echo-credentials": {"auth", "client", "server"},
    "echo-credentials-text": {"auth", "client", "server"},
    "echo-credentials-200": {"invalid_response"},
}
TIMEOUT = 2.0
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e]")


def _secrets(name: str) -> tuple[str, str]:
    return f"pub-{name}-7Hq2", f"sec-{name}-Zx9w4LmP"


def _inventory(tmp_path: Path, hostile: dict[str, str]) -> tuple[Path, dict[str, str]]:
    accounts: dict[str, Any] = {}
    integrations = []
    env: dict[str, str] = {}
    bases = {name: hostile[name] for name in EXPECTED}
    bases["tls"] = hostile["https"] + "/ok"
    for i, (name, base) in enumerate(sorted(bases.items())):
        key = re.sub(r"\W", "_", name).upper()
        pub, sec = _secrets(name)
        env[f"{key}_PUB"], env[f"{key}_SEC"] = pub, sec
        accounts[name] = {
            "public_key": f"env:{key}_PUB",
            "secret_key": f"env:{key}_SEC",
            "base_url": base,
            "limits": {"reads_per_minute": 60000, "writes_per_minute": 60000},
        }
        integrations.append(
            {
                "id": 100 + i,
                "account": name,
                "statuses": [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}],
            }
        )
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps({"accounts": accounts, "integrations": integrations}))
    return path, env


def test_an_apply_against_every_hostile_server(tmp_path: Path, hostile: dict[str, str]) -> None:
    inventory, env = _inventory(tmp_path, hostile)
    report, junit, metrics = tmp_path / "r.jsonl", tmp_path / "j.xml", tmp_path / "m.prom"
    cmd = [sys.executable, "-m", "batchsync", "apply", str(inventory), "--report", str(report)]
    cmd += ["--junit", str(junit), "--metrics", str(metrics), "--timeout", str(TIMEOUT)]
    cmd += ["--max-attempts", "2", "--retry-max-time", "6", "-v"]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, text=True
    )
    stdout, stderr = proc.communicate(timeout=120)
    wall = time.monotonic() - started
    assert proc.returncode == 1, stdout + stderr
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    outcomes = {r["account"]: r for r in rows if "integration_id" in r}
    assert set(outcomes) == {*EXPECTED, "tls"}
    for name, kinds in {**EXPECTED, "tls": {"tls"}}.items():
        o = outcomes[name]
        assert o["result"] == "failed", (name, o)
        assert o["error"]["kind"] in kinds, (name, o["error"])
        # no request longer than --timeout: at most 2 attempts, plus the pre-flight's
        assert o["duration_ms"] <= 2 * (TIMEOUT * 1000 + 1500), (name, o["duration_ms"])
    assert "tls" not in {r["error"]["kind"] for n, r in outcomes.items() if n != "tls"}
    texts = {"stdout": stdout, "stderr": stderr, "report": report.read_text(), "junit": junit.read_text()}
    texts["metrics"] = metrics.read_text()
    for name in [*EXPECTED, "tls"]:
        pub, sec = _secrets(name)
        pair = f"{pub}:{sec}"
        for form in (pub, sec, pair, base64.b64encode(pair.encode()).decode()):
            for where, text in texts.items():
                assert form not in text, (name, form, where)
    for where, text in texts.items():
        assert not CONTROL.search(text), (where, CONTROL.search(text))
    ET.parse(junit)  # parses: no control character made it into the XML
    assert wall < 60


def test_peak_memory_of_an_apply_against_a_gzip_bomb_and_an_endless_body(
    tmp_path: Path, hostile: dict[str, str]
) -> None:
    names = ["gzip-bomb", "gzip-bomb-chunked", "endless", "huge-declared"]
    accounts = {}
    integrations = []
    env = {}
    for i, name in enumerate(names):
        key = name.replace("-", "_").upper()
        env[f"{key}_PUB"], env[f"{key}_SEC"] = _secrets(name)
        accounts[name] = {"public_key": f"env:{key}_PUB", "secret_key": f"env:{key}_SEC", "base_url": hostile[name]}
        integrations += [
            {
                "id": 1000 + 10 * i + k,
                "account": name,
                "statuses": [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}],
            }
            for k in range(5)
        ]
    path = tmp_path / "bombs.json"
    path.write_text(json.dumps({"accounts": accounts, "integrations": integrations}))
    cmd = [sys.executable, "-m", "batchsync", "apply", str(path), "--timeout", str(TIMEOUT), "-q"]
    cmd += ["--max-attempts", "3", "--retry-max-time", "10"]
    # On Linux a child's peak RSS starts at its parent's RSS at fork (exec keeps the
    # high-water mark), and this pytest process may be hundreds of MB by now: the apply is
    # started by a small Python that reports the apply's own peak.
    wrapper = (
        "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL); _, st, ru = os.wait4(p.pid, 0);"
        " print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", wrapper, *cmd], env={**os.environ, **env}, capture_output=True, text=True
    )
    code, maxrss_kb = map(int, proc.stdout.split())
    assert code == 1
    peak_mb = maxrss_kb / 1024
    print(f"peak RSS of the apply: {peak_mb:.0f} MB")
    assert peak_mb < 150, peak_mb


def test_https_works_with_a_trusted_certificate_and_fails_closed_without(
    tmp_path: Path, hostile: dict[str, str]
) -> None:
    """The connector's TLS context is the system's default, with the user's CA settings:
    the import of aiohttp without a CA bundle (batchsync/sendcloud/_aiohttp.py) changes nothing there."""
    pub, sec = _secrets("ok")
    env = {"OK_PUB": pub, "OK_SEC": sec}
    account = {"public_key": "env:OK_PUB", "secret_key": "env:OK_SEC", "base_url": hostile["https"] + "/ok"}
    doc = {
        "accounts": {"ok": account},
        "integrations": [{"id": 1, "account": "ok", "statuses": [
            {"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]}],
    }  # fmt: skip
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(doc))
    cmd = [sys.executable, "-m", "batchsync", "apply", str(path), "--no-preflight", "--format", "json"]
    trusted = subprocess.run(
        cmd, env={**os.environ, **env, "SSL_CERT_FILE": hostile["ca"]}, capture_output=True, text=True
    )
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["totals"]["changed"] == 1
    untrusted = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    assert untrusted.returncode == 1
    assert json.loads(untrusted.stdout)["outcomes"][0]["error"]["kind"] == "tls"


# -- import against lists that do not end ----------------------------------------------------------

_MEASURED = (
    "import os, subprocess, sys; err = open(sys.argv[1], 'w'); p = subprocess.Popen(sys.argv[2:],"
    " stdout=subprocess.DEVNULL, stderr=err); _, st, ru = os.wait4(p.pid, 0);"
    " print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)"
)


def _measured(cmd: list[str], env: dict[str, str], stderr: Path) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB, seconds) of ``cmd``, its stderr in ``stderr``.

    Started by a small Python that reports the child's own peak: on Linux a child's peak
    RSS starts at its parent's at fork, and this pytest process may be large by now."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _MEASURED, str(stderr), *cmd],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    code, maxrss_kb = map(int, proc.stdout.split())
    return code, maxrss_kb / 1024, time.monotonic() - started


def _accounts_only(tmp_path: Path, base: str, limits: dict[str, int] | None = None) -> tuple[Path, dict[str, str]]:
    pub, sec = _secrets("lister")
    account: dict[str, Any] = {"public_key": "env:LISTER_PUB", "secret_key": "env:LISTER_SEC", "base_url": base}
    if limits:
        account["limits"] = limits
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": {"shop-a": account}}))
    return path, {"LISTER_PUB": pub, "LISTER_SEC": sec}


@pytest.mark.parametrize(
    ("behaviour", "says", "option"),
    [
        ("list-endless", "has more than 50,000 integrations (at page 2)", "--max-list-items"),
        ("list-repeat", "does not end: integration 1 is listed on page 1 and again on page 2", None),
        ("list-big-page", "has a page larger than an answer may be (response body over the 1048576 byte", None),
        ("endless", "has a page larger than an answer may be (response body over the 1048576 byte", None),
    ],
)
def test_an_import_of_a_list_that_does_not_end_stops_and_writes_nothing(
    tmp_path: Path, hostile: dict[str, str], behaviour: str, says: str, option: str | None
) -> None:
    """30,000 integrations a page with a fresh next link, or the same 100 ids on every page:
    stopped by its bound, within two minutes and 300 MB, the account and the bound named,
    and the file named by -o left as it was."""
    inventory, env = _accounts_only(tmp_path, hostile[behaviour])
    out = tmp_path / "new.toml"
    out.write_text("# as it was\n")
    stderr = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "batchsync", "import", str(inventory), "-o", str(out)]
    code, peak_mb, wall = _measured(cmd, env, stderr)
    err = stderr.read_text()
    print(f"{behaviour}: exit {code}, peak RSS {peak_mb:.0f} MB, {wall:.1f} s")
    assert code == 1, err
    assert f"account shop-a: the list of integrations {says}" in err, err
    assert option is None or option in err
    assert "nothing was written" in err and "Traceback" not in err
    assert out.read_text() == "# as it was\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.json", "new.toml", "stderr.txt"]
    assert wall < 120 and peak_mb < 300


def test_an_import_stops_at_its_page_and_time_bounds(tmp_path: Path, hostile: dict[str, str]) -> None:
    inventory, env = _accounts_only(tmp_path, hostile["list-endless"], {"reads_per_minute": 600_000})
    cmd = ["import", str(inventory), "-o", str(tmp_path / "new.json"), "--max-list-items", "1000000"]
    proc = subprocess.run(
        [sys.executable, "-m", "batchsync", *cmd, "--max-list-pages", "3"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "account shop-a: the list of integrations goes on past 3 pages" in proc.stderr
    assert "--max-list-pages" in proc.stderr
    inventory, env = _accounts_only(tmp_path, hostile["drip"])
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchsync",
            "import",
            str(inventory),
            "-o",
            str(tmp_path / "o.json"),
            "--max-list-time",
            "1",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "account shop-a: the list of integrations took more than 1 s to read (at page 1)" in proc.stderr
    assert "--max-list-time" in proc.stderr
    assert time.monotonic() - started < 20
    assert not (tmp_path / "new.json").exists() and not (tmp_path / "o.json").exists()


def test_an_import_leaves_out_the_listed_items_that_are_not_integrations(
    tmp_path: Path, hostile: dict[str, str]
) -> None:
    """An id of 0, -1, 2**63 or 10**30, a string id, an item that is not an object: each
    costs itself, with a warning naming the account and the item; the rest are imported."""
    inventory, env = _accounts_only(tmp_path, hostile["list-bad-items"])
    out = tmp_path / "new.json"
    proc = subprocess.run(
        [sys.executable, "-m", "batchsync", "import", str(inventory), "-o", str(out)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "left out of the import" in line]
    assert len(warnings) == 8, proc.stderr
    assert all("account shop-a: GET /integrations, page 1: item " in w for w in warnings)
    for shown in ("(id 0)", "(id -1)", f"(id {2**63})", f"(id {10**30})", "(id 12)", "item 7 of the page"):
        assert any(shown in w for w in warnings), (shown, warnings)
    assert str(out) not in proc.stderr  # the server's data, not batchsync's own file
    assert sorted(i["id"] for i in json.loads(out.read_text())["integrations"]) == [7, 8]


def test_a_preflight_stops_at_the_same_bounds_and_the_run_goes_on(tmp_path: Path, hostile: dict[str, str]) -> None:
    inventory, env = _accounts_only(tmp_path, hostile["list-endless"])
    doc = json.loads(inventory.read_text())
    doc["integrations"] = [
        {"id": 10**12, "account": "shop-a", "statuses": [
            {"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]},
    ]  # fmt: skip
    inventory.write_text(json.dumps(doc))
    stderr = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "batchsync", "plan", str(inventory), "--detailed-exitcode"]
    code, peak_mb, wall = _measured(cmd, env, stderr)
    err = stderr.read_text()
    assert code == 4, err  # read and diffed without the pre-flight: a change to make
    assert "account shop-a: cannot list its integrations (the list of integrations has more than 50,000" in err
    assert wall < 60 and peak_mb < 300
