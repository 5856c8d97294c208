"""A server that echoes an account's credentials where no error carries them: in a 200's
texts (an undeclared shop's name and URL, a status's name, the exception logs), in the
forms no ``Basic`` before them gives away (the base64 of ``user:secret`` alone, its
padding percent-encoded or cut, the pair itself). Real processes against
tests/hostile_server.py's ``echo-quietly`` behaviour: no form of a credential in any
output, from the first line of the run; and one such account costs a saved plan nothing
but its own integration.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from hostile_server import ECHO_DECLARED, ECHO_UNDECLARED

# 24 characters, a multiple of 3: the base64 of "pub:secret" then starts with the base64 of
# "pub", which a redactor that knows the parts but not the pair masks alone, leaving the
# rest, which decodes to ":secret".
PUB, SEC = "echoPublicKey-AAAA111122", "echoSecretValue-ZZZZ9999"
OK_PUB, OK_SEC = "okPublicKey-BBBB33334444", "okSecretValue-YYYY8888"
ENV = {"ECHO_PUB": PUB, "ECHO_SEC": SEC, "OK_PUB": OK_PUB, "OK_SEC": OK_SEC}


def _forms(pub: str, sec: str) -> list[str]:
    pair = f"{pub}:{sec}"
    b64 = base64.b64encode(pair.encode()).decode()
    return [pub, sec, pair, b64.rstrip("="), b64[len(base64.b64encode(pub.encode())) :]]


FORMS = _forms(PUB, SEC) + _forms(OK_PUB, OK_SEC)


def _inventory(tmp_path: Path, hostile: dict[str, str], with_ok: bool = False) -> Path:
    status = [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]
    accounts: dict[str, Any] = {
        "echo": {"public_key": "env:ECHO_PUB", "secret_key": "env:ECHO_SEC", "base_url": hostile["echo-quietly"]}
    }
    integrations = [{"id": ECHO_DECLARED, "account": "echo", "statuses": status}]
    if with_ok:
        accounts["ok"] = {"public_key": "env:OK_PUB", "secret_key": "env:OK_SEC", "base_url": hostile["ok"]}
        integrations.append({"id": 201, "account": "ok", "statuses": status})
    path = tmp_path / "echo.json"
    path.write_text(json.dumps({"accounts": accounts, "integrations": integrations}))
    return path


def _batchsync(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "XDG_STATE_HOME": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "batchsync", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)


def _history(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "state" / "batchsync" / "history.sqlite3") as db:
        return "\n".join(db.iterdump())


def _no_credential(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for form in FORMS:
            assert form not in text, (form, where)


def test_an_undeclared_shop_and_the_exception_logs_that_echo_credentials_are_redacted(
    tmp_path: Path, hostile: dict[str, str]
) -> None:
    inventory = _inventory(tmp_path, hostile)
    report, html = tmp_path / "r.jsonl", tmp_path / "r.html"
    done = _batchsync(
        tmp_path, "plan", str(inventory), "--format", "json", "--report", str(report), "--html", str(html),
        "--with-health", "--since", "1d", "-v",
    )  # fmt: skip
    assert done.returncode in (0, 4), done.stdout + done.stderr
    document = json.loads(done.stdout)
    [undeclared] = document["undeclared"]
    assert undeclared["integration_id"] == ECHO_UNDECLARED and "***" in undeclared["name"], undeclared
    assert "***" in undeclared["shop_url"]
    texts = {"stdout": done.stdout, "stderr": done.stderr, "report": report.read_text(), "html": html.read_text()}
    texts["history"] = _history(tmp_path)
    assert "exception_count" in texts["report"] or "health" in texts["report"]
    _no_credential(texts)
    health = _batchsync(tmp_path, "health", str(inventory), "--since", "1d", "-v")
    assert health.returncode in (0, 1), health.stdout + health.stderr
    assert f"integration {ECHO_DECLARED}" in health.stdout and "***" in health.stdout, health.stdout
    _no_credential({"health stdout": health.stdout, "health stderr": health.stderr})
    imported = _batchsync(tmp_path, "import", str(inventory), "-o", str(tmp_path / "imported.toml"), "-v")
    _no_credential({"import stdout": imported.stdout, "import stderr": imported.stderr, "history": _history(tmp_path)})
    # The undeclared shop's status name quotes the Basic pair's base64, cut of its padding: no
    # inventory to write (the check knew only the raw values).
    assert imported.returncode == 1 and "would contain a credential value" in imported.stderr, imported.stderr
    assert not (tmp_path / "imported.toml").exists()


def test_a_plan_does_not_save_what_echoes_credentials_and_the_other_accounts_plan_stays_usable(
    tmp_path: Path, hostile: dict[str, str]
) -> None:
    inventory = _inventory(tmp_path, hostile, with_ok=True)
    plan = tmp_path / "plan.json"
    done = _batchsync(tmp_path, "plan", str(inventory), "--out", str(plan), "--no-preflight", "--report", "r.jsonl")
    assert done.returncode == 1, done.stdout + done.stderr
    _no_credential({"plan": plan.read_text(), "stdout": done.stdout, "stderr": done.stderr})
    entries = {e["integration_id"]: e for e in json.loads(plan.read_text())["integrations"]}
    echo = entries[ECHO_DECLARED]
    assert echo["action"] == "none" and echo["outcome"]["error"]["kind"] == "refused", echo
    assert "credentials" in echo["outcome"]["error"]["detail"] and "read" not in echo
    assert entries[201]["action"] == "change"
    shown = _batchsync(tmp_path, "show", str(plan))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    applied = _batchsync(
        tmp_path, "apply", str(inventory), "--plan", str(plan), "--no-preflight", "--report", "a.jsonl"
    )
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    results = {r["integration_id"]: r["result"] for r in rows if "integration_id" in r}
    assert results == {201: "changed"}, (results, applied.stdout, applied.stderr)


def test_an_id_listed_again_on_the_last_page_is_no_list(tmp_path: Path, hostile: dict[str, str]) -> None:
    """The pre-flight's bound on ids listed twice holds on the last page too (import's does):
    the account goes on without the pre-flight, and lists no undeclared shop twice."""
    status = [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]
    account = {"public_key": "env:OK_PUB", "secret_key": "env:OK_SEC", "base_url": hostile["list-twice-at-the-end"]}
    inventory = tmp_path / "twice.json"
    doc = {
        "accounts": {"twice": account},
        "integrations": [{"id": ECHO_DECLARED, "account": "twice", "statuses": status}],
    }
    inventory.write_text(json.dumps(doc))
    done = _batchsync(tmp_path, "plan", str(inventory), "--format", "json")
    assert done.returncode in (0, 4), done.stdout + done.stderr
    assert json.loads(done.stdout)["undeclared"] == []
    assert "listed" in done.stderr and "without the pre-flight" in done.stderr, done.stderr
