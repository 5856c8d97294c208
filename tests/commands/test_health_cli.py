"""``batchsync health`` and ``apply --with-health`` as a user runs them: real processes against
a sandbox process whose integrations have seeded exception logs (issue 30's Must show)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cli_helpers import SandboxProcess, batchsync, env_with, example_inventory
from inventory_factory import inventory_env, make_inventory

ACCOUNTS = {"acme": 7, "globex": 3}  # 10 integrations


def _seeded(box: SandboxProcess) -> dict[int, list[dict[str, Any]]]:
    """Every seeded record, by integration."""
    out: dict[int, list[dict[str, Any]]] = {}
    for records in box.get("/_sandbox/logs").values():
        for record in records:
            out.setdefault(record["integration_id"], []).append(record)
    return out


def _secrets_of(records: dict[int, list[dict[str, Any]]]) -> set[str]:
    """What a log holds that must never come out: its shop token (in headers, bodies and the
    URL's query) and the query string itself."""
    found: set[str] = set()
    for rs in records.values():
        for r in rs:
            found.add(r["request"]["headers"]["X-Shop-Token"])
            found.add(r["full_url"].split("?", 1)[1])
            found.add(r["response"]["headers"]["Set-Cookie"])
    return found


def _leaks(text: str, secrets: set[str]) -> list[str]:
    leaked = [s for s in secrets if s in text]
    if "ws_key" in text or "X-Shop-Token" in text:
        leaked.append("a header name or query parameter of a log")
    return leaked


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_health_json_counts_codes_and_last_time_per_shop(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    ids = [j.integration_id for j in inv.jobs]
    failing = {ids[0]: 4, ids[3]: 7, ids[5]: 9}  # all of acme: 20 records over 3 pages of 8
    # One record every 2 h: the oldest of ids[5]'s 9 (18 h) are still within the default 24 h.
    args = [a for i, n in failing.items() for a in ("--exception-logs", f"{i}={n}")]
    box = SandboxProcess(Path(inv.path), env, *args, "--logs-page-size", "8", "--log-interval", "7200")
    sandbox_proc.append(box)
    seeded = _seeded(box)
    assert {i: len(r) for i, r in seeded.items()} == failing

    done = batchsync("health", inv.path, "--base-url", box.url, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    by_id = {row["integration_id"]: row for row in doc["integrations"]}
    assert sorted(by_id) == sorted(ids)
    for iid, records in seeded.items():
        health = by_id[iid]["health"]
        assert health["count"] == len(records)
        codes: dict[str, int] = {}
        for r in records:
            key = str(r["response_code"]) if r["response_code"] is not None else "none"
            codes[key] = codes.get(key, 0) + 1
        assert health["response_codes"] == codes
        newest = max(records, key=lambda r: _time(r["created_at"]))
        assert _time(health["last_at"]) == _time(newest["created_at"])
        assert _time(health["first_at"]) == min(_time(r["created_at"]) for r in records)
        assert health["last"]["url"] == newest["full_url"].split("?")[0]  # scheme, host, path: no query
        assert health["last"]["response_code"] == newest["response_code"]
    for iid in set(ids) - set(seeded):
        assert by_id[iid]["health"]["count"] == 0 and by_id[iid]["health"]["last"] is None
    assert sorted(doc["failing"]) == sorted(failing)
    assert doc["accounts"]["acme"]["error"] is None
    # acme's logs are one listing of 3 pages; globex's one empty page.
    assert box.stats()["requests"]["acme"]["GET"] == 3
    assert box.stats()["requests"]["globex"]["GET"] == 1
    assert box.stats()["requests"]["acme"]["POST"] == 0
    assert _leaks(done.stdout + done.stderr, _secrets_of(seeded)) == []
    # Text: one line per failing shop, and the same, with nothing of the logs' secrets.
    text = batchsync("health", inv.path, "--base-url", box.url, env=env)
    assert text.returncode == 0, text.stderr
    assert sorted(int(m) for m in re.findall(r"^! integration (\d+) ", text.stdout, re.M)) == sorted(failing)
    assert "health: 3 of 10 shops with exception logs" in text.stdout
    assert _leaks(text.stdout + text.stderr, _secrets_of(seeded)) == []


def test_since_counts_only_the_logs_after_it(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, {"acme": 2})
    env = env_with(inventory_env({"acme": 2}))
    iid = inv.jobs[0].integration_id
    box = SandboxProcess(Path(inv.path), env, "--exception-logs", f"{iid}=10", "--log-interval", "3600")
    sandbox_proc.append(box)
    # Records at 1 h, 2 h, ... 10 h before the start: 5.5 h back keeps the 5 newest;
    # the default (24 h) all 10; an explicit moment wins over the default.
    for since, expected in (("330m", 5), (None, 10)):
        extra = ["--since", since] if since else []
        done = batchsync("health", inv.path, "--base-url", box.url, "--format", "json", *extra, env=env)
        assert done.returncode == 0, done.stderr
        row = next(r for r in json.loads(done.stdout)["integrations"] if r["integration_id"] == iid)
        assert row["health"]["count"] == expected, since
    moment = (datetime.now(UTC) - timedelta(minutes=150)).isoformat()
    done = batchsync("health", inv.path, "--base-url", box.url, "--format", "json", "--since", moment, env=env)
    row = next(r for r in json.loads(done.stdout)["integrations"] if r["integration_id"] == iid)
    assert row["health"]["count"] == 2 and _time(row["health"]["since"]) == _time(moment)
    bad = batchsync("health", inv.path, "--base-url", box.url, "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr and "Traceback" not in bad.stderr


def test_apply_with_health_shows_the_failing_shops_everywhere(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    ids = [j.integration_id for j in inv.jobs]
    failing = {ids[1]: 3, ids[8]: 6}
    args = [a for i, n in failing.items() for a in ("--exception-logs", f"{i}={n}")]
    box = SandboxProcess(Path(inv.path), env, *args, "--logs-page-size", "4")
    sandbox_proc.append(box)
    secrets = _secrets_of(_seeded(box))
    out = {name: tmp_path / name for name in ("page.html", "report.jsonl", "junit.xml", "metrics.prom")}
    done = batchsync(
        "apply",
        inv.path,
        "--base-url",
        box.url,
        "--with-health",
        "--html",
        str(out["page.html"]),
        "--report",
        str(out["report.jsonl"]),
        "--junit",
        str(out["junit.xml"]),
        "--metrics",
        str(out["metrics.prom"]),
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # failing shops do not change the exit code
    page = out["page.html"].read_text()
    section = page[page.index('<section id="health">') :]
    section = section[: section.index("</section>")]
    assert "Failing shops (2)" in section
    assert sorted(int(i) for i in re.findall(r'<tr id="h(\d+)">', section)) == sorted(failing)
    counts = dict(
        re.findall(r'<tr id="h(\d+)"><td class="num">\d+</td><td>\w+</td><td class="num">(\d+)</td>', section)
    )
    assert {int(k): int(v) for k, v in counts.items()} == failing
    assert "failing shops: 2 with exception logs" in done.stdout
    assert re.search(rf"integration {ids[1]} \(acme\).*\[health: 3 logs, last 401\]", done.stdout)
    rows = [json.loads(line) for line in out["report.jsonl"].read_text().splitlines()]
    healths = {r["integration_id"]: r["health"]["count"] for r in rows if "integration_id" in r}
    assert healths == {i: failing.get(i, 0) for i in ids}
    assert f'integration="{ids[8]}"}} 6' in out["metrics.prom"].read_text()
    assert out["junit.xml"].read_text().count('name="exception_logs" value="0"') == 8
    # report merge keeps it.
    merged = batchsync("report", "merge", str(out["report.jsonl"]), "--format", "json", env=env)
    assert json.loads(merged.stdout)["failing_shops"] == [ids[8], ids[1]]
    for name, path in out.items():
        assert _leaks(path.read_text(), secrets) == [], name
    assert _leaks(done.stdout + done.stderr + merged.stdout, secrets) == []
    # The logs were read on the read budget: the writes are the statuses' and mappings' alone.
    assert box.stats()["requests"]["acme"]["GET"] >= 2


def test_a_never_ending_log_listing_stops_at_its_bound(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, {"acme": 3})
    env = env_with(inventory_env({"acme": 3}))
    box = SandboxProcess(Path(inv.path), env, "--endless-logs", "--logs-page-size", "5")
    sandbox_proc.append(box)
    done = batchsync("health", inv.path, "--base-url", box.url, "--health-max-pages", "7", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    message = "the list of exception logs of account acme goes on past 7 pages; not read further"
    assert message in done.stdout and message in done.stderr
    assert box.stats()["requests"]["acme"]["GET"] == 7
    assert "Traceback" not in done.stderr
    # Under apply the same costs only the health: the statuses are synced, the exit code is theirs.
    applied = batchsync(
        "apply",
        inv.path,
        "--base-url",
        box.url,
        "--with-health",
        "--health-max-pages",
        "3",
        "--format",
        "json",
        env=env,
    )
    assert applied.returncode == 0, applied.stderr
    doc = json.loads(applied.stdout)
    assert {o["result"] for o in doc["outcomes"]} == {"changed"}
    assert all(message.replace("7", "3") in o["health"]["unknown"] for o in doc["outcomes"])


def test_one_accounts_unreadable_logs_cost_its_health_only(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    first = inv.jobs[0].integration_id
    box = SandboxProcess(Path(inv.path), env, "--exception-logs", f"{first}=2", "--down-account", "globex")
    sandbox_proc.append(box)
    quick = ("--max-attempts", "2", "--retry-max-time", "2")
    done = batchsync("health", inv.path, "--base-url", box.url, "--format", "json", *quick, env=env)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["accounts"]["acme"]["error"] is None
    assert "server 500" in doc["accounts"]["globex"]["error"]
    rows = {r["integration_id"]: r for r in doc["integrations"]}
    assert rows[first]["health"]["count"] == 2
    assert all(r["health"]["unknown"] for r in rows.values() if r["account"] == "globex")
    assert "globex" in done.stderr and "Traceback" not in done.stderr
    # plan --with-health: acme's statuses are read and its shop's health shown; exit code the statuses'.
    plan = batchsync(
        "plan", inv.path, "--base-url", box.url, "--with-health", "--limit", "account:acme", *quick, env=env
    )
    assert plan.returncode == 0, plan.stderr
    assert f"integration {first} (acme): 2 exception logs" in plan.stdout


def test_an_account_whose_credentials_cannot_be_resolved_costs_only_its_own_health(tmp_path: Path) -> None:
    example = example_inventory(tmp_path)
    text = example.read_text().replace('"file:secrets/nordwind.public"', '"env:NORDWIND_PUB_UNSET"')
    example.write_text(text)
    env = {k: v for k, v in env_with({}).items() if k != "NORDWIND_PUB_UNSET"}
    done = batchsync("health", str(example), "--sandbox", "--format", "json", env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    accounts = doc["accounts"]
    assert "NORDWIND_PUB_UNSET is not set" in accounts["nordwind"]["error"]
    assert accounts["acme-eu"]["error"] is None and accounts["blauwe-vogel"]["error"] is None
    unknown = {i["integration_id"] for i in doc["integrations"] if i["health"].get("unknown")}
    assert unknown and all(str(i).startswith("23") for i in unknown)  # nordwind's shops, and only those


def test_health_counts_since_the_last_run_recorded_in_the_history_it_is_given(tmp_path: Path) -> None:
    example = str(example_inventory(tmp_path))
    store = f"sqlite:///{tmp_path / 'runs.sqlite3'}"
    env = env_with({})
    assert batchsync("apply", example, "--sandbox", "-q", "--with-health", "--history", store, env=env).returncode == 0
    runs = json.loads(batchsync("history", "runs", "--format", "json", "--history", store, env=env).stdout)
    started = datetime.fromisoformat(runs[0]["started_at"])
    # A later plan that does not read the logs does not move the window: the logs written
    # before it would never be reported.
    assert batchsync("plan", example, "--sandbox", "-q", "--history", store, env=env).returncode == 0
    done = batchsync("health", example, "--sandbox", "--format", "json", "--history", store, env=env)
    assert done.returncode == 0, done.stderr
    since = {datetime.fromisoformat(a["since"]) for a in json.loads(done.stdout)["accounts"].values()}
    assert since == {started}
    # Without it (the default file, where nothing was recorded): the last 24 hours.
    default = batchsync("health", example, "--sandbox", "--format", "json", env=env)
    [other] = {datetime.fromisoformat(a["since"]) for a in json.loads(default.stdout)["accounts"].values()}
    assert timedelta(hours=23) < datetime.now(UTC) - other < timedelta(hours=25)


def test_a_429_on_the_logs_hands_the_engine_the_cut_rate_and_is_counted(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """``--with-health`` reads the logs on the read budget the statuses' reads then use: a
    429 there means the declared read rate is too high, and the engine goes on at the rate
    the logs were cut to (not the declared one again, to be cut anew), paused as they were;
    every 429 the server sent is counted, the logs' too."""
    accounts = {"acme": 12}
    # Declared 25x the sandbox's reads (15,000 a minute against 600): the logs' 30 pages of
    # one record meet 429s at once.
    declared = {"writes_per_minute": 3000, "reads_per_minute": 15000, "write_burst": 5}
    inv = make_inventory(tmp_path, accounts, limits={"acme": declared})
    env = env_with(inventory_env(accounts))
    iid = inv.jobs[0].integration_id
    limits = ("--reads-per-minute", "600", "--writes-per-minute", "3000", "--write-burst", "5")
    box = SandboxProcess(Path(inv.path), env, "--exception-logs", f"{iid}=30", "--logs-page-size", "1", *limits)
    sandbox_proc.append(box)
    prom = tmp_path / "batchsync.prom"
    done = batchsync(
        "apply", inv.path, "--base-url", box.url, "--with-health", "--log-format", "json",
        "--metrics", str(prom), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    logs = [json.loads(line) for line in done.stderr.splitlines()]
    cuts = [row for row in logs if row["level"] == "WARNING" and "429 on reads" in row["message"]]
    from_logs = [row for row in cuts if row["logger"] == "batchsync.health"]
    assert from_logs, "the logs' read met no 429: the test proves nothing"
    rates = [row["rate_per_minute"] for row in cuts]
    # One story of one overload: each cut lower than the one before, the engine's included
    # (it started at the declared 15,000 a minute again before, and cut from there).
    assert all(b < a for a, b in itertools.pairwise(rates)), rates
    assert all(row["account"] == "acme" and row["meter"] == "reads" for row in cuts)
    sent = box.stats()["throttled"]["acme"]
    counted = re.search(r'^batchsync_throttled_responses\{[^}]*account="acme"[^}]*\} (\d+)', prom.read_text(), re.M)
    assert counted is not None and int(counted.group(1)) == sent


def test_an_account_without_credentials_and_far_moments_end_in_messages(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """Against a server (not --sandbox): an account whose secret is not set costs its own
    health (exit 1, the others read); a --since before the calendar's start is a usage error."""
    inv = make_inventory(tmp_path, ACCOUNTS)
    full = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), full)
    sandbox_proc.append(box)
    env = {k: v for k, v in full.items() if k != "GLOBEX_SEC"}
    done = batchsync("health", inv.path, "--base-url", box.url, "--format", "json", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    doc = json.loads(done.stdout)
    rows = {r["integration_id"]: r["health"] for r in doc["integrations"]}
    globex = [j.integration_id for j in inv.jobs if j.account == "globex"]
    assert all("GLOBEX_SEC" in (rows[i]["unknown"] or "") for i in globex)
    assert all(rows[j.integration_id]["unknown"] is None for j in inv.jobs if j.account == "acme")
    requests = box.stats()["requests"]
    assert requests["acme"]["GET"] >= 1 and requests.get("globex", {}).get("GET", 0) == 0
    for since in ("99999999999d", "800000d", "0001-01-01T00:00:00+01:00"):
        for command in (["health"], ["plan", "--with-health"]):
            bad = batchsync(*command, inv.path, "--base-url", box.url, "--since", since, env=full)
            assert bad.returncode == 2, (since, command, bad.stderr)
            assert "further back than this machine's calendar goes" in bad.stderr and "Traceback" not in bad.stderr
