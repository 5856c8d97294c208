"""The pre-flight end to end (issue 11's must-show): integrations the account does not have,
or that are not PrestaShop V2, fail with those kinds and no status request is sent for them."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import SandboxProcess, batchsync, env_with, read_report
from inventory_factory import inventory_env, make_inventory

FAST = {"reads_per_minute": 60000, "writes_per_minute": 60000}


def test_unknown_and_unsupported_integrations_cost_no_status_request(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    inv = make_inventory(tmp_path, {"acme": 30}, limits={"acme": FAST})
    ids = [j.integration_id for j in inv.jobs]
    absent, other = ids[:5], ids[5:10]
    env = env_with(inventory_env({"acme": 30}))
    args = ["--in-sync", "1.0", "--page-size", "7", "--absent", ",".join(map(str, absent))]
    for i in other:
        args += ["--system-for", f"{i}=woocommerce"]
    box = SandboxProcess(Path(inv.path), env, *args)
    sandbox_proc.append(box)
    report = tmp_path / "report.jsonl"
    done = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), env=env)
    assert done.returncode == 1, done.stderr
    rows = {r["integration_id"]: r for r in read_report(report)[0]}
    for i in absent:
        assert rows[i]["result"] == "failed" and rows[i]["error"]["kind"] == "not_found", rows[i]
        assert "is not one of account acme's integrations" in rows[i]["error"]["detail"]
        assert rows[i]["attempts"] == 0
    for i in other:
        assert rows[i]["result"] == "failed" and rows[i]["error"]["kind"] == "not_supported", rows[i]
        assert "woocommerce" in rows[i]["error"]["detail"] and rows[i]["attempts"] == 0
    assert {rows[i]["result"] for i in ids[10:]} == {"unchanged"}
    gets = box.stats()["requests"]["acme"]["GET"]
    assert gets == 4 + 20  # 4 pages of 7 (25 integrations listed), then one read per remaining integration
    # --no-preflight: the API answers for itself, one request each (404, and a 400 for the other system)
    report2 = tmp_path / "report2.jsonl"
    done = batchsync("apply", inv.path, "--base-url", box.url, "--no-preflight", "--report", str(report2), env=env)
    rows = {r["integration_id"]: r for r in read_report(report2)[0]}
    assert {rows[i]["error"]["kind"] for i in absent} == {"not_found"}
    assert {rows[i]["error"]["kind"] for i in other} == {"not_supported"}
    assert {rows[i]["attempts"] for i in absent + other} == {1}
