"""Saved plans end to end: ``plan --out``, a hand change on the server, ``apply --plan``,
``show``; real processes against a sandbox process.

The issue's must-show: the moved integration fails ``stale_plan`` while every other planned
one converges and the ones the plan leaves alone are not written (exit 1); an inventory
edited after the plan is refused whole (exit 2, nothing sent); no credential in the plan
file; ``show --html`` renders the plan's changes.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cli_helpers import ROOT, SandboxProcess, batchsync, env_with, read_report

from batchsync.sandbox.oauth2 import TOKEN_PREFIX

TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{8,}")
SECRETS = {
    "ACME_PUBLIC": "acme-public-0f3c9a",
    "ACME_SECRET": "acme-secret-7d21e4",
    "OAUTH_ID": "oauthco-client-5b8e",
}
FILE_SECRETS = {
    "globex.public": "globex-public-1a2b",
    "globex.secret": "globex-secret-3c4d",
    "oauth.secret": "oc-9f8e7d",
}
SCHEMA = ROOT / "docs" / "plan.schema.json"


def write_inventory(folder: Path) -> Path:
    for name, value in FILE_SECRETS.items():
        (folder / name).write_text(value + "\n")
    (folder / "set.json").write_text(
        json.dumps(
            [
                {"external_id": "1", "translations": [{"status": "Awaiting payment", "language": "en-gb"}]},
                {"external_id": "17-B", "translations": [{"status": "Versandt", "language": "de-de"}]},
                {"external_id": "3", "translations": [{"status": "Delivered", "language": "en-gb"}]},
            ]
        )
    )
    doc: dict[str, Any] = {
        "accounts": {
            "acme": {"public_key": "env:ACME_PUBLIC", "secret_key": "env:ACME_SECRET"},
            "globex": {"public_key": "file:globex.public", "secret_key": "file:globex.secret"},
            "oauthco": {"auth": "oauth2", "client_id": "env:OAUTH_ID", "client_secret": "file:oauth.secret"},
        },
        "integrations": [
            *({"id": 100 + i, "account": "acme", "statuses_file": "set.json"} for i in range(1, 9)),
            *({"id": 200 + i, "account": "globex", "statuses_file": "set.json"} for i in range(1, 4)),
            *({"id": 300 + i, "account": "oauthco", "statuses_file": "set.json"} for i in range(1, 4)),
        ],
    }
    path = folder / "inventory.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def call(box: SandboxProcess, method: str, path: str, body: Any = None) -> Any:
    """One request to the sandbox's API as acme: a person's hand change."""
    auth = base64.b64encode(f"{SECRETS['ACME_PUBLIC']}:{SECRETS['ACME_SECRET']}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{box.url}{path}", data=data, method=method)
    req.add_header("Authorization", f"Basic {auth}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:  # loopback only
        raw = resp.read()
    return json.loads(raw) if raw else None


def posts(box: SandboxProcess) -> dict[str, int]:
    return {str(k): v for k, v in box.stats()["applied_posts"].items()}


def requests(box: SandboxProcess) -> dict[str, Any]:
    counts: dict[str, Any] = box.stats()["requests"]
    return counts


@pytest.fixture
def setup(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> tuple[Path, dict[str, str], SandboxProcess]:
    inv = write_inventory(tmp_path)
    env = env_with(SECRETS)
    box = SandboxProcess(inv, env, "--in-sync", "0.3", "--seed", "5")
    sandbox_proc.append(box)
    return inv, env, box


def make_plan(inv: Path, env: dict[str, str], box: SandboxProcess, out: Path) -> dict[str, Any]:
    done = batchsync("plan", str(inv), "--base-url", box.url, "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    plan: dict[str, Any] = json.loads(out.read_text())
    return plan


def test_a_hand_change_between_plan_and_apply_fails_that_integration_alone(
    tmp_path: Path, setup: tuple[Path, dict[str, str], SandboxProcess]
) -> None:
    inv, env, box = setup
    plan_path = tmp_path / "p.json"
    plan = make_plan(inv, env, box, plan_path)
    jsonschema.validate(plan, json.loads(SCHEMA.read_text()))
    change = sorted(e["integration_id"] for e in plan["integrations"] if e["action"] == "change")
    alone = sorted(e["integration_id"] for e in plan["integrations"] if e["action"] == "none")
    assert len(change) >= 4 and alone, plan["integrations"]
    assert not posts(box), "plan wrote"
    acme = [i for i in change if 100 < i < 200]
    moved_statuses, moved_mapping = acme[0], acme[1]

    # By hand, on the server: a status renamed in de-de on one shop, the mapping moved on another.
    now = call(box, "GET", f"/shop-order-statuses?integration_id={moved_statuses}")["data"]
    renamed = [
        {"external_id": s["external_id"], "translations": s["translations"]} for s in now if s.get("deleted_at") is None
    ]
    renamed.append({"external_id": "17-B", "translations": [{"status": "Von Hand", "language": "de-de"}]})
    renamed = list({s["external_id"]: s for s in renamed}.values())
    call(box, "POST", "/shop-order-statuses", {"integration_id": moved_statuses, "statuses": renamed})
    mapping = [
        {"status_category": c, "external_id": "3" if c == "DELIVERED" else None}
        for c in ("READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL")
    ]
    call(box, "POST", "/shop-order-statuses/mapping", {"integration_id": moved_mapping, "mapping": mapping})
    before = posts(box)

    report = tmp_path / "r.jsonl"
    applied = batchsync(
        "apply", str(inv), "--base-url", box.url, "--plan", str(plan_path), "--report", str(report), env=env
    )
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "Traceback" not in applied.stderr
    rows, _ = read_report(report)
    by_id = {r["integration_id"]: r for r in rows}
    assert sorted(by_id) == change  # only what the plan changes is in the run
    for iid in (moved_statuses, moved_mapping):
        assert by_id[iid]["result"] == "failed" and by_id[iid]["error"]["kind"] == "stale_plan", by_id[iid]
    assert 'status "17-B"' in by_id[moved_statuses]["error"]["detail"]
    assert "mapping DELIVERED moved" in by_id[moved_mapping]["error"]["detail"]
    converged = [i for i in change if i not in (moved_statuses, moved_mapping)]
    assert all(by_id[i]["result"] == "changed" for i in converged), rows
    after = posts(box)
    written = {int(k) for k, v in after.items() if v != before.get(k)}
    assert written == set(converged)  # neither the moved ones nor the ones the plan leaves alone
    header = json.loads(report.read_text().splitlines()[0])
    assert header["plan"]["path"] == str(plan_path) and len(header["plan"]["sha256"]) == 64

    # Applied once, the plan applies again only where it is still current: nothing written.
    again = batchsync("apply", str(inv), "--base-url", box.url, "--plan", str(plan_path), "--format", "json", env=env)
    assert again.returncode == 1, again.stderr
    doc = json.loads(again.stdout)
    results = {o["integration_id"]: o["result"] for o in doc["outcomes"]}
    assert {results[i] for i in converged} == {"unchanged"}
    assert results[moved_statuses] == results[moved_mapping] == "failed"
    assert doc["plan"]["sha256"] == header["plan"]["sha256"]
    assert posts(box) == after


def test_an_inventory_edited_after_the_plan_is_refused_whole(
    tmp_path: Path, setup: tuple[Path, dict[str, str], SandboxProcess]
) -> None:
    inv, env, box = setup
    plan_path = tmp_path / "p.json"
    make_plan(inv, env, box, plan_path)
    seen = requests(box)
    (tmp_path / "set.json").write_text((tmp_path / "set.json").read_text().replace("Delivered", "Geliefert"))
    refused = batchsync("apply", str(inv), "--base-url", box.url, "--plan", str(plan_path), env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "another content of the inventory" in refused.stderr and "nothing was sent" in refused.stderr
    assert requests(box) == seen  # not one request, not even a read
    # The plan of another inventory file is named as such.
    other = inv.with_name("other-" + inv.name)
    other.write_text(inv.read_text())
    refused = batchsync("apply", str(other), "--base-url", box.url, "--plan", str(plan_path), env=env)
    assert refused.returncode == 2 and f"was made from another inventory ({inv}, not {other};" in refused.stderr
    assert requests(box) == seen


def test_a_rotated_key_does_not_stale_the_plan(
    tmp_path: Path, setup: tuple[Path, dict[str, str], SandboxProcess]
) -> None:
    inv, env, box = setup
    plan_path = tmp_path / "p.json"
    make_plan(inv, env, box, plan_path)
    (tmp_path / "oauth.secret").write_text("rotated-but-unknown-to-the-sandbox\n")
    applied = batchsync("apply", str(inv), "--base-url", box.url, "--plan", str(plan_path), "--limit", "x", env=env)
    assert applied.returncode == 2 and "does not go with --limit" in applied.stderr
    applied = batchsync("apply", str(inv), "--base-url", box.url, "--plan", str(plan_path), "--format", "json", env=env)
    # The inventory's hash leaves the secret files out: the plan applies; the sandbox refuses the key
    # (a token endpoint refusing the client fails that account as kind credentials).
    assert applied.returncode == 1, applied.stderr
    kinds = {o["account"]: (o["error"] or {}).get("kind") for o in json.loads(applied.stdout)["outcomes"]}
    assert kinds.get("acme") is None and kinds.get("oauthco") == "credentials"  # the token endpoint refused the client


def test_no_credential_in_the_plan_file(tmp_path: Path, setup: tuple[Path, dict[str, str], SandboxProcess]) -> None:
    inv, env, box = setup
    plan_path = tmp_path / "p.json"
    make_plan(inv, env, box, plan_path)
    assert box.stats()["tokens_issued"]["oauthco"] >= 1  # a token was issued during the plan
    text = plan_path.read_text()
    for value in [*SECRETS.values(), *FILE_SECRETS.values()]:
        assert value not in text
    assert not TOKEN.search(text)
    for reference in ("env:", "file:", "ACME_PUBLIC", "globex.secret", "oauth.secret"):
        assert reference not in text


def test_show_renders_the_plan_as_text_json_and_html(
    tmp_path: Path, setup: tuple[Path, dict[str, str], SandboxProcess]
) -> None:
    inv, env, box = setup
    plan_path = tmp_path / "p.json"
    planned = batchsync("plan", str(inv), "--base-url", box.url, "--out", str(plan_path), env=env)
    seen = requests(box)
    shown = batchsync("show", str(plan_path), env=env)
    assert shown.returncode == 0, shown.stderr
    # The same outcome lines (in the file's order, not the run's) and the same recap's counts.
    lines, recap = shown.stdout.split("\nRECAP\n")
    planned_lines, planned_recap = planned.stdout.split("\nRECAP\n")
    assert sorted(lines.splitlines()) == sorted(planned_lines.splitlines())
    assert recap.splitlines()[:2] == planned_recap.splitlines()[:2]
    as_json = batchsync("show", str(plan_path), "--format", "json", env=env)
    assert json.loads(as_json.stdout) == json.loads(plan_path.read_text())
    html = tmp_path / "out.html"
    page = batchsync("show", str(plan_path), "--html", str(html), "--format", "json", env=env)
    assert page.returncode == 0, page.stderr
    text = html.read_text()
    plan = json.loads(plan_path.read_text())
    for entry in plan["integrations"]:
        if entry["action"] == "change":
            assert f"integration {entry['integration_id']}" in text
    assert "Versandt" in text and "Changes to make" in text and "batchsync plan to approve" in text
    assert f"saved plan {plan_path}" in text
    # The totals count the plan's reads, as its accounts' lanes draw them (not "0 requests").
    attempts = sum(e["outcome"].get("attempts", 0) for e in plan["integrations"])
    assert attempts > 0 and f" · {attempts} requests</p>" in text
    assert requests(box) == seen  # show reads no inventory and sends nothing
    # A full disk under stdout: the document a tool reads from it is not there, and said so.
    for form in (["--format", "json"], ["--format", "json", "--html", str(html)], []):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "batchsync", "show", str(plan_path), *form], stdout=full, stderr=subprocess.PIPE,
                text=True, env=env, cwd=ROOT, timeout=60,
            )  # fmt: skip
        assert done.returncode == 5 and "stdout was not written" in done.stderr, (form, done.stderr)


def test_a_plan_cut_between_an_integrations_two_writes_is_finished_by_applying_it_again(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """The statuses are written, then the mapping: a run of the plan killed (or its mapping
    POST failing) in between leaves the shop with the plan's statuses and the mapping the
    plan read. Applying the plan again writes the mapping: that is the plan's own work,
    not a change of the shop that makes it stale."""
    inv = write_inventory(tmp_path)
    doc = json.loads(inv.read_text())
    mapped = {"READY_TO_SEND": "1", "IN_TRANSIT": "17-B", "DELIVERED": "3", "CANCEL": None}
    for integration in doc["integrations"]:
        integration["mapping"] = mapped
    inv.write_text(json.dumps(doc))
    env = env_with(SECRETS)
    box = SandboxProcess(inv, env, "--in-sync", "0", "--seed", "5")
    sandbox_proc.append(box)
    plan_path = tmp_path / "p.json"
    plan = make_plan(inv, env, box, plan_path)
    entries = {e["integration_id"]: e for e in plan["integrations"]}
    half = next(i for i in sorted(entries) if 100 < i < 200 and entries[i]["action"] == "change")
    assert entries[half]["write"]["mapping"] is not None, entries[half]
    # The first of its two writes, as the cut run sent it.
    statuses = plan["statuses"][entries[half]["write"]["statuses"]]
    call(box, "POST", "/shop-order-statuses", {"integration_id": half, "statuses": statuses})
    report = tmp_path / "r.jsonl"
    applied = batchsync(
        "apply", str(inv), "--base-url", box.url, "--plan", str(plan_path), "--report", str(report), env=env
    )
    rows, _ = read_report(report)
    by_id = {r["integration_id"]: r for r in rows}
    assert by_id[half]["result"] == "changed", by_id[half]
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert by_id[half]["mapping_changes"] and not by_id[half].get("changes"), by_id[half]  # the mapping only
