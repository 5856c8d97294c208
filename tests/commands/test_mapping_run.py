"""The status mapping end to end: real processes against a sandbox seeded with shops whose
mapping points at a status the inventory removes (issue 10's must-show).

20 integrations remove status "6", which their shop's mapping uses for CANCEL: the 10 that
declare a mapping repairing it are applied (statuses first, then the mapping, valid when
read back); the 10 that do not are refused, with nothing written for them, exit 1;
--allow-invalid-mapping lets them through; a second apply sends no POST and a plan then
exits 0 with --detailed-exitcode.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

from cli_helpers import SandboxProcess, batchsync, env_with, read_report

PUB, SEC = "acme-public", "acme-secret"
STATUSES = [
    {"external_id": str(k), "translations": [{"status": name, "language": "en-gb"}]}
    for k, name in ((2, "Paid"), (4, "Shipped"), (5, "Delivered"), (6, "Cancelled"), (7, "Refunded"))
]
REPAIRING = range(1001, 1011)  # declare the shop's mapping with CANCEL -> "7"
UNREPAIRED = range(1011, 1021)  # declare none
OTHERS = range(1021, 1031)  # do not remove "6": untouched by the guard


def seed_file(tmp_path: Path) -> Path:
    mapping = {"READY_TO_SEND": "2", "IN_TRANSIT": "4", "DELIVERED": "5", "CANCEL": "6"}
    seed = {
        # The server's limits are far above the inventory's: the test reads the shops back itself.
        "accounts": [{"name": "acme", "public_key": PUB, "secret_key": SEC,
                      "limits": {"writes_per_minute": 1e6, "write_burst": 1000, "reads_per_minute": 1e6}}],
        "integrations": [
            {"id": i, "account": "acme", "statuses": STATUSES, "mapping": mapping}
            for i in (*REPAIRING, *UNREPAIRED, *OTHERS)
        ],
    }  # fmt: skip
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    return path


def inventory(tmp_path: Path) -> Path:
    integrations: list[dict[str, Any]] = []
    repair = {"READY_TO_SEND": "2", "IN_TRANSIT": "4", "DELIVERED": "5", "CANCEL": "7"}
    for i in REPAIRING:
        integrations.append(
            {"id": i, "account": "acme", "status_set": "shop", "remove_statuses": ["6"], "mapping": repair}
        )
    for i in UNREPAIRED:
        integrations.append({"id": i, "account": "acme", "status_set": "shop", "remove_statuses": ["6"]})
    for i in OTHERS:
        integrations.append({"id": i, "account": "acme", "status_set": "shop"})
    doc = {
        "accounts": {
            "acme": {
                "public_key": "env:ACME_PUB",
                "secret_key": "env:ACME_SEC",
                "limits": {"writes_per_minute": 60000, "write_burst": 10, "reads_per_minute": 60000},
            }
        },
        # The set declares no mapping: the shops' current one (CANCEL -> "6") is theirs.
        "status_sets": {"shop": {"statuses": STATUSES}},
        "integrations": integrations,
    }
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(doc))
    return path


def api(box: SandboxProcess, path: str) -> Any:
    request = urllib.request.Request(f"{box.url}{path}")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{PUB}:{SEC}".encode()).decode())
    with urllib.request.urlopen(request) as resp:  # loopback only
        return json.load(resp)["data"]


def live(box: SandboxProcess, iid: int) -> set[str]:
    return {s["external_id"] for s in api(box, f"/shop-order-statuses?integration_id={iid}")}


def mapping(box: SandboxProcess, iid: int) -> dict[str, tuple[str | None, bool]]:
    items = api(box, f"/shop-order-statuses/mapping?integration_id={iid}")["mapping"]
    return {m["status_category"]: (m["external_id"], m["is_valid"]) for m in items}


def test_the_guard_refuses_what_would_break_a_mapping_and_applies_what_repairs_it(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    env = env_with({"ACME_PUB": PUB, "ACME_SEC": SEC})
    box = SandboxProcess(None, env, "--seed-file", str(seed_file(tmp_path)))
    sandbox_proc.append(box)
    inv = inventory(tmp_path)
    assert batchsync("validate", str(inv), env=env).returncode == 0

    plan = batchsync("plan", str(inv), "--base-url", box.url, "--detailed-exitcode", env=env)
    assert plan.returncode == 1, plan.stdout  # the refusals are failures already at plan time
    assert plan.stdout.count("failed: refused") == 10 and "CANCEL -> '6'" in plan.stdout
    assert plan.stdout.count("= CANCEL: '6' -> '7'") == 10
    assert box.stats()["requests"]["acme"].get("POST", 0) == 0  # plan wrote nothing

    report = tmp_path / "apply.jsonl"
    first = batchsync("apply", str(inv), "--base-url", box.url, "--report", str(report), env=env)
    assert first.returncode == 1, first.stderr
    rows = {r["integration_id"]: r for r in read_report(report)[0]}
    for i in REPAIRING:
        assert rows[i]["result"] == "changed" and [m["category"] for m in rows[i]["mapping_changes"]] == ["CANCEL"]
        assert "6" not in live(box, i)  # the status is gone...
        assert mapping(box, i)["CANCEL"] == ("7", True)  # ...and the mapping, read back, is valid
        assert all(valid for _, valid in mapping(box, i).values())
    for i in UNREPAIRED:
        assert rows[i]["result"] == "failed" and rows[i]["error"]["kind"] == "refused"
        assert "CANCEL -> '6'" in rows[i]["error"]["detail"]
        assert live(box, i) == {"2", "4", "5", "6", "7"}  # its statuses untouched
        assert mapping(box, i)["CANCEL"] == ("6", True)
    stats = box.stats()
    written = {int(k) for k in stats["applied_posts"]} | {int(k) for k in stats["applied_mappings"]}
    assert written == set(REPAIRING)  # nothing was sent for the refused ones (nor the others)
    assert "mappings written: 10; refused by the mapping guard: 10" in first.stdout

    allowed = batchsync("apply", str(inv), "--base-url", box.url, "--allow-invalid-mapping", env=env)
    assert allowed.returncode == 0, allowed.stdout
    for i in UNREPAIRED:
        assert "6" not in live(box, i) and mapping(box, i)["CANCEL"] == ("6", False)

    before = box.stats()
    again = batchsync("apply", str(inv), "--base-url", box.url, env=env)
    assert again.returncode == 0
    after = box.stats()
    assert after["requests"]["acme"]["POST"] == before["requests"]["acme"]["POST"]  # no POST at all
    plan = batchsync("plan", str(inv), "--base-url", box.url, "--detailed-exitcode", env=env)
    assert plan.returncode == 0, plan.stdout


def test_a_mapping_change_that_unmaps_a_category_is_a_warning_in_plan(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """Issue 27: a set's mapping line removed unmaps that category of every shop that did
    not override it; plan showed only `=` lines. Now each such shop gets a warning."""
    env = env_with({"ACME_PUB": PUB, "ACME_SEC": SEC})
    box = SandboxProcess(None, env, "--seed-file", str(seed_file(tmp_path)))
    sandbox_proc.append(box)
    doc = json.loads(inventory(tmp_path).read_text())
    # The set maps three categories; CANCEL's line is gone. One shop overrides CANCEL itself.
    doc["status_sets"]["shop"]["mapping"] = {"READY_TO_SEND": "2", "IN_TRANSIT": "4", "DELIVERED": "5"}
    doc["integrations"] = [
        {"id": 1021, "account": "acme", "status_set": "shop"},
        {"id": 1022, "account": "acme", "status_set": "shop", "mapping": {"CANCEL": "6"}},
    ]
    path = tmp_path / "unmap.json"
    path.write_text(json.dumps(doc))
    result = batchsync("plan", str(path), "--base-url", box.url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    warned = [line for line in result.stdout.splitlines() if "unmaps CANCEL" in line]
    assert len(warned) == 1 and "'6'" in warned[0], result.stdout
    assert result.stdout.index("integration 1021") < result.stdout.index(warned[0])
    assert "integration 1022" not in result.stdout  # its own CANCEL keeps it: nothing to change
