"""Clients are first-class (issue 27), as an operator runs it: real processes against a
sandbox process over loopback.

One client's broken setup costs only that client; shops carry names; accounts carry tags
that ``--limit`` selects with patterns and intersections; undeclared integrations are
listed; notification routes see only their own client's integrations.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from cli_helpers import SandboxProcess, batchsync, env_with, read_report
from inventory_factory import inventory_env, make_inventory


def test_an_account_whose_key_is_unset_fails_alone_and_the_others_converge(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 3, "globex": 2, "stark": 2}
    inv = make_inventory(tmp_path, accounts)
    full = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), full)
    sandbox_proc.append(box)
    env = {k: v for k, v in full.items() if k != "STARK_SEC"}
    report = tmp_path / "report.jsonl"
    result = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines, [summary] = read_report(report)
    by_account: dict[str, list[dict[str, Any]]] = {}
    for row in lines:
        by_account.setdefault(row["account"], []).append(row)
    assert {a: len(rows) for a, rows in by_account.items()} == accounts
    for row in by_account["stark"]:
        assert row["result"] == "failed"
        assert row["error"]["kind"] == "credentials"
        assert "STARK_SEC" in row["error"]["detail"] and "'stark'" in row["error"]["detail"]
    for name in ("acme", "globex"):
        assert {row["result"] for row in by_account[name]} <= {"changed", "unchanged"}
    assert summary["exit_code"] == 1
    assert "stark" in result.stdout and "credentials" in result.stdout
    # Nothing of stark's was sent: not even the pre-flight.
    requests = box.stats()["requests"]
    assert sum(requests["stark"].values()) == 0 and requests["acme"]["POST"] and requests["globex"]["POST"], requests
    # The two others converged: a second plan of theirs has nothing to do.
    again = batchsync("plan", inv.path, "--base-url", box.url, "--limit", "acme,globex", "--detailed-exitcode", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    # All or nothing, for those who want it: exit 2, nothing sent.
    strict = batchsync("apply", inv.path, "--base-url", box.url, "--require-all-credentials", env=env)
    assert strict.returncode == 2, strict.stdout + strict.stderr
    assert "STARK_SEC" in strict.stderr
    # validate still reports it.
    checked = batchsync("validate", inv.path, env=env)
    assert checked.returncode == 2 and "STARK_SEC" in checked.stdout + checked.stderr


def test_a_shop_s_name_is_in_every_output(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    import xml.etree.ElementTree as ET

    accounts = {"acme": 2}
    named = {"id": 340301, "account": "acme", "name": "Café Ö", "shop_url": "https://cafe.example", "status_set": "std"}
    inv = make_inventory(tmp_path, accounts, extra=[named])
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    report, junit, page = tmp_path / "r.jsonl", tmp_path / "j.xml", tmp_path / "p.html"
    outputs = ("--report", str(report), "--junit", str(junit), "--html", str(page), "-v")
    result = batchsync("apply", inv.path, "--base-url", box.url, *outputs, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'integration 340301 "Café Ö" (acme)' in result.stdout
    lines, _ = read_report(report)
    [row] = [r for r in lines if r["integration_id"] == 340301]
    assert row["name"] == "Café Ö"
    assert '"name":"Café Ö"' in report.read_text(encoding="utf-8")
    cases = [c.get("name") for c in ET.parse(junit).iter("testcase")]
    assert 'integration 340301 "Café Ö"' in cases, cases
    assert "Café Ö" in page.read_text(encoding="utf-8")
    # A plan's JSON document carries it too.
    doc = json.loads(batchsync("plan", inv.path, "--base-url", box.url, "--format", "json", env=env).stdout)
    assert [o["name"] for o in doc["outcomes"] if o["integration_id"] == 340301] == ["Café Ö"]


def test_validate_refuses_a_name_with_a_control_character(tmp_path: Path) -> None:
    accounts = {"acme": 1}
    inv = make_inventory(tmp_path, accounts)
    doc = json.loads(Path(inv.path).read_text())
    doc["integrations"][0]["name"] = "Evil\u202eShop"
    Path(inv.path).write_text(json.dumps(doc))
    result = batchsync("validate", inv.path, env=env_with(inventory_env(accounts)))
    assert result.returncode == 2 and "$.integrations[0].name" in result.stdout + result.stderr


def test_integrations_an_account_has_and_the_inventory_does_not_are_listed_as_undeclared(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 5, "globex": 1}
    seeded = make_inventory(tmp_path, accounts, name="seed.json")
    env = env_with(inventory_env(accounts))
    # 1005 is a WooCommerce shop: only PrestaShop V2 integrations are worth declaring.
    box = SandboxProcess(Path(seeded.path), env, "--system-for", "1005=woocommerce_v2", "--page-size", "2")
    sandbox_proc.append(box)
    doc = json.loads(Path(seeded.path).read_text())
    # The inventory declares 1001 and 1002 of acme's five, and ignores 1004 knowingly.
    doc["integrations"] = [i for i in doc["integrations"] if i["id"] in (1001, 1002, 1006)]
    doc["accounts"]["acme"]["ignore_integrations"] = [1004]
    inventory = tmp_path / "inv.json"
    inventory.write_text(json.dumps(doc))
    # Seeded the same way, the sandbox names its shops; the ids 1003 (undeclared) and
    # 1004 (ignored) are acme's, 1006 is globex's and declared.
    doc["accounts"]["acme"]["ignore_integrations"] = []
    result = batchsync("plan", str(inventory), "--base-url", box.url, "--format", "json", env=env)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    undeclared = json.loads(result.stdout)["undeclared"]
    assert [(u["account"], u["integration_id"]) for u in undeclared] == [("acme", 1003)], undeclared
    assert undeclared[0]["name"] and "shop_url" in undeclared[0]
    # Without the ignore list: both, in text too, and as a metric.
    inventory.write_text(json.dumps(doc))
    prom, page = tmp_path / "batchsync.prom", tmp_path / "plan.html"
    result = batchsync(
        "plan", str(inventory), "--base-url", box.url, "--metrics", str(prom), "--html", str(page), env=env
    )
    assert '<section id="undeclared"><h2>Undeclared (2)</h2>' in page.read_text()
    assert "UNDECLARED: 2 PrestaShop V2 integrations" in result.stdout, result.stdout
    assert "integration 1003 " in result.stdout and "integration 1004 " in result.stdout
    assert "integration 1005 " not in result.stdout.split("UNDECLARED")[1]
    assert 'batchsync_undeclared_integrations{inventory="inv",command="plan",account="acme"} 2' in prom.read_text()
    # --limit does not make the rest of the inventory undeclared.
    result = batchsync("plan", str(inventory), "--base-url", box.url, "--limit", "1001", "--format", "json", env=env)
    assert {u["integration_id"] for u in json.loads(result.stdout)["undeclared"]} == {1003, 1004}


def test_a_declared_account_without_integrations_is_listed_for_its_undeclared_shops(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """A new client declared before its first import: its shops are undeclared, named like
    any other account's (and an account whose list fails costs only its own listing)."""
    accounts = {"acme": 2, "globex": 2, "initech": 1}
    seeded = make_inventory(tmp_path, accounts, name="seed.json")
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(seeded.path), env, "--down-account", "initech")
    sandbox_proc.append(box)
    doc = json.loads(Path(seeded.path).read_text())
    globex = [i["id"] for i in doc["integrations"] if i["account"] == "globex"]
    doc["integrations"] = [i for i in doc["integrations"] if i["account"] == "acme"]
    inventory = tmp_path / "inv.json"
    inventory.write_text(json.dumps(doc))
    prom = tmp_path / "batchsync.prom"
    result = batchsync(
        "plan", str(inventory), "--base-url", box.url, "--format", "json", "--metrics", str(prom),
        "--max-attempts", "1", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    undeclared = json.loads(result.stdout)["undeclared"]
    assert sorted((u["account"], u["integration_id"]) for u in undeclared) == [("globex", i) for i in sorted(globex)]
    assert 'batchsync_undeclared_integrations{inventory="inv",command="plan",account="globex"} 2' in prom.read_text()
    assert "account initech: cannot list its integrations" in result.stderr and "Traceback" not in result.stderr
    # Their lists' requests are theirs in the summary, as the sandbox counted them, and
    # what they left of their budgets is recorded for the next run, like any account's.
    stats, sent = json.loads(result.stdout)["accounts"], box.stats()["requests"]
    for name in ("globex", "initech"):
        assert stats[name]["requests"] == stats[name]["reads"] == sum(sent[name].values()) > 0, (stats, sent)
        assert stats[name]["writes"] == 0 and stats[name]["unchanged"] == 0
    assert stats["acme"]["requests"] == sum(sent["acme"].values())
    assert len(list(Path(tempfile.gettempdir()).glob("batchsync-*/budget/*.budget"))) == 3
    # Narrowed to acme, the run lists no other account.
    before = box.stats()["requests"].get("globex", {}).get("GET", 0)
    narrowed = batchsync("plan", str(inventory), "--base-url", box.url, "--limit", "acme", "--format", "json", env=env)
    assert narrowed.returncode == 0 and json.loads(narrowed.stdout)["undeclared"] == []
    assert box.stats()["requests"].get("globex", {}).get("GET", 0) == before


class Listener:
    """A local webhook receiver: every POST body it gets, as JSON."""

    def __init__(self) -> None:
        import http.server
        import threading

        bodies: list[Any] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tagged_inventory(tmp_path: Path, accounts: dict[str, int]) -> tuple[Path, dict[str, Any]]:
    """make_inventory's, with acme tagged client-a and nl, globex client-b, stark client-a."""
    inv = make_inventory(tmp_path, accounts)
    doc = json.loads(Path(inv.path).read_text())
    tags = {"acme": ["client-a", "nl"], "globex": ["client-b"], "stark": ["client-a"]}
    for name, spec in doc["accounts"].items():
        spec["tags"] = tags[name]
    for i in doc["integrations"]:
        i["tags"] = []
    doc["integrations"][0]["name"] = "Acme Amsterdam"
    Path(inv.path).write_text(json.dumps(doc))
    return Path(inv.path), doc


def test_two_notification_routes_by_tag_each_hear_of_their_client_only(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 3, "globex": 2}
    path, doc = tagged_inventory(tmp_path, accounts)
    a, b = Listener(), Listener()
    try:
        doc["notify"] = [
            {"url": "env:HOOK_A", "tags": ["client-a"], "on": "always", "format": "json"},
            {"url": "env:HOOK_B", "tags": ["client-*b"], "on": "always", "format": "json"},
        ]
        path.write_text(json.dumps(doc))
        env = env_with({**inventory_env(accounts), "HOOK_A": a.url, "HOOK_B": b.url})
        box = SandboxProcess(path, env)
        sandbox_proc.append(box)
        result = batchsync("apply", str(path), "--base-url", box.url, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        a.close()
        b.close()
    [to_a], [to_b] = a.bodies, b.bodies
    assert set(to_a["accounts"]) == {"acme"} and sum(to_a["totals"].values()) == 3
    assert set(to_b["accounts"]) == {"globex"} and sum(to_b["totals"].values()) == 2
    assert to_a["exit_code"] == to_b["exit_code"] == 0


def test_a_route_on_new_hears_of_a_failure_once_and_of_its_recovery(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 2, "globex": 2}
    path, doc = tagged_inventory(tmp_path, accounts)
    bad = doc["integrations"][0]["id"]  # acme's: client-a
    a, b = Listener(), Listener()
    try:
        doc["notify"] = [
            {"url": "env:HOOK_A", "tags": ["client-a"], "on": "new", "format": "json"},
            {"url": "env:HOOK_B", "tags": ["client-b"], "on": "new", "format": "json"},
        ]
        path.write_text(json.dumps(doc))
        env = env_with({**inventory_env(accounts), "HOOK_A": a.url, "HOOK_B": b.url})
        failing = SandboxProcess(path, env, "--system-for", f"{bad}=woocommerce")
        sandbox_proc.append(failing)
        codes = [batchsync("apply", str(path), "--base-url", failing.url, env=env).returncode for _ in range(2)]
        assert codes == [1, 1]
        assert [body["history"]["new"] for body in a.bodies] == [[bad]]  # the second night: nothing new
        healthy = SandboxProcess(path, env)
        sandbox_proc.append(healthy)
        assert batchsync("apply", str(path), "--base-url", healthy.url, env=env).returncode == 0
        assert [r["integration_id"] for r in a.bodies[-1]["history"]["recovered"]] == [bad]
        # Without a history, a route on "new" hears of every failing run, as "failure".
        assert batchsync("apply", str(path), "--base-url", failing.url, "--no-history", env=env).returncode == 1
    finally:
        a.close()
        b.close()
    assert len(a.bodies) == 3 and "history" not in a.bodies[-1] and a.bodies[-1]["exit_code"] == 1
    assert b.bodies == []  # client-b's shops never failed: nothing new for it, any night


def test_a_literal_webhook_url_in_the_inventory_is_refused(tmp_path: Path) -> None:
    accounts = {"acme": 1}
    path, doc = tagged_inventory(tmp_path, {"acme": 1})
    doc["notify"] = [{"url": "https://hooks.example/T000/secret", "tags": ["client-a"]}]
    path.write_text(json.dumps(doc))
    result = batchsync("validate", str(path), env=env_with(inventory_env(accounts)))
    assert result.returncode == 2 and "$.notify[0].url" in result.stdout + result.stderr
    assert "T000/secret" not in result.stdout + result.stderr


def test_a_route_whose_reference_is_unset_is_said_with_nothing_a_terminal_acts_on(tmp_path: Path) -> None:
    accounts = {"acme": 1}
    path, doc = tagged_inventory(tmp_path, {"acme": 1})
    doc["notify"] = [{"url": "env:HOOK_\x1b]0;PWNED\x07", "tags": ["client-a"]}]
    path.write_text(json.dumps(doc))
    result = batchsync("plan", str(path), "--sandbox", "-q", env=env_with(inventory_env(accounts)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[[notify]] route 1" in result.stderr and "not sent" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr and "\\x1b]0;PWNED" in result.stderr


def test_limit_selects_by_account_tag_pattern_and_intersection(tmp_path: Path) -> None:
    accounts = {"acme": 3, "globex": 2, "stark": 2}
    path, _ = tagged_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))

    def selected(*limit: str) -> set[int]:
        args = [a for term in limit for a in ("--limit", term)]
        result = batchsync("plan", str(path), "--sandbox", "--format", "json", *args, env=env)
        assert result.returncode in (0, 1), result.stdout + result.stderr
        return {o["integration_id"] for o in json.loads(result.stdout)["outcomes"]}

    acme, globex, stark = {1001, 1002, 1003}, {1004, 1005}, {1006, 1007}
    assert selected("tag:client-a") == acme | stark  # every integration of the tagged accounts
    assert selected("acme*") == acme
    assert selected("tag:client-a,&tag:nl") == acme  # client-a and nl: acme only
    assert selected("tag:client-*,!stark") == acme | globex
    assert selected("account:[ag]*") == acme | globex
    assert selected("name:Acme*") == {1001}


def test_an_oauth2_account_on_a_test_server_without_token_url_is_a_validate_problem(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "accounts": {
            "staging": {
                "auth": "oauth2",
                "client_id": "env:STAGING_ID",
                "client_secret": "env:STAGING_SECRET",
                "base_url": "https://sendcloud-test.example/api/v3",
            }
        },
        "integrations": [{"id": 1, "account": "staging", "statuses": [
            {"external_id": "1", "translations": [{"language": "en-gb", "status": "Paid"}]}]}],
    }  # fmt: skip
    path = tmp_path / "staging.json"
    path.write_text(json.dumps(doc))
    env = env_with({"STAGING_ID": "id", "STAGING_SECRET": "secret"})
    result = batchsync("validate", str(path), env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "$.accounts.staging.token_url" in out and "https://sendcloud-test.example/api/v3" in out
    # Naming it makes the inventory valid; so does --base-url, which derives it (plan).
    doc["accounts"]["staging"]["token_url"] = "https://sendcloud-test.example/oauth2/token"
    path.write_text(json.dumps(doc))
    assert batchsync("validate", str(path), env=env).returncode == 0


def test_plan_prints_its_lines_sorted_by_account_then_id(tmp_path: Path) -> None:
    import re

    accounts = {"zulu": 3, "acme": 3, "mike": 2}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    runs = [batchsync("plan", inv.path, "--sandbox", "-v", env=env).stdout.split("\nRECAP")[0] for _ in range(2)]
    assert runs[0] == runs[1]  # two runs diff alike (up to the recap's duration)
    seen = [(m.group(2), int(m.group(1))) for m in re.finditer(r"^. integration (\d+) \((\w+)\)", runs[0], re.M)]
    assert len(seen) == 8 and seen == sorted(seen), seen
    assert [a for a, _ in seen][:3] == ["acme"] * 3
