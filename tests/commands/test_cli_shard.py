"""Sharded runs as operators run them: ``plan``/``apply --shard`` in real processes against a
sandbox process, then ``batchsync report merge`` on their reports.

The issue's must-show: four shards of a 40-account Zipf fleet, one after another against one
sandbox, converge every integration exactly once, and their merged reports say what one
unsharded run says; without one report, merge names that shard and exits 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import SandboxProcess, batchsync, env_with
from inventory_factory import inventory_env, make_inventory

from batchsync.outcome import RESULTS
from bench.gen_inventory import zipf_sizes

FAST = {"reads_per_minute": 60_000, "writes_per_minute": 60_000, "write_burst": 50}


@pytest.fixture
def boxes() -> Iterator[list[SandboxProcess]]:
    """Sandbox processes, stopped at teardown."""
    started: list[SandboxProcess] = []
    yield started
    for box in started:
        if box.proc.poll() is None:
            box.stop()


class Report:
    """A --report file as the command line wrote it: header, outcome lines, summary."""

    def __init__(self, path: Path) -> None:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert rows[0].get("header") is True and rows[-1].get("summary") is True, (rows[:1], rows[-1:])
        self.header: dict[str, Any] = rows[0]
        self.summary: dict[str, Any] = rows[-1]
        self.outcomes: list[dict[str, Any]] = rows[1:-1]
        assert all("integration_id" in o for o in self.outcomes)

    @property
    def ids(self) -> list[int]:
        return [o["integration_id"] for o in self.outcomes]

    @property
    def accounts(self) -> set[str]:
        return {o["account"] for o in self.outcomes}


def results(accounts: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    return {name: [stats[r] for r in RESULTS] for name, stats in accounts.items()}


def test_four_shards_one_after_another_converge_once_and_merge_like_one_run(
    tmp_path: Path, boxes: list[SandboxProcess]
) -> None:
    sizes = zipf_sizes(400, 40, 1.1)
    fleet = {f"shop{i:02d}": n for i, n in enumerate(sizes)}
    inv = make_inventory(tmp_path, fleet, limits=dict.fromkeys(fleet, FAST))
    env = env_with(inventory_env(fleet))
    seeded = ("--in-sync", "0.5", "--seed", "7")
    box = SandboxProcess(Path(inv.path), env, *seeded)
    boxes.append(box)
    folder = tmp_path / "reports"
    folder.mkdir()

    for index in range(4):
        path = folder / f"shard-{index}.jsonl"
        done = batchsync(
            "apply", inv.path, "--base-url", box.url, "--shard", f"{index}/4", "--report", str(path), env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
    shards = [Report(folder / f"shard-{index}.jsonl") for index in range(4)]

    split = shards[0].header["shard"]
    for index, shard in enumerate(shards):  # every process computed the same split
        assert shard.header["shard"] == split | {"index": index}
        assert shard.header["selected"] == len(shard.outcomes) == split["integrations"][index]
        assert shard.summary["exit_code"] == 0
    ids = [i for shard in shards for i in shard.ids]
    assert sorted(ids) == sorted(j.integration_id for j in inv.jobs)  # each integration in exactly one shard
    owners = [shard.accounts for shard in shards]
    assert sum(map(len, owners)) == len(set().union(*owners)) == 40  # no account in two shards
    assert [len(a) for a in owners] == split["accounts"]
    largest = max(split["integrations"])
    assert largest <= 1.1 * max(max(sizes), 400 / 4), split  # measured: 102 of max(99, 100)
    # Converged exactly once: each drifted integration written once, by its own shard, and
    # nothing is left to change.
    posts = box.stats()["applied_posts"]
    changed = {o["integration_id"] for shard in shards for o in shard.outcomes if o["result"] == "changed"}
    assert {int(i) for i in posts} == changed and set(posts.values()) == {1}
    assert 100 < len(changed) < 300  # in_sync 0.5: about half were drifted
    after = batchsync("plan", inv.path, "--base-url", box.url, "--detailed-exitcode", "--quiet", env=env)
    assert after.returncode == 0, after.stdout + after.stderr

    # One unsharded run on a sandbox seeded alike: the same drift.
    twin = SandboxProcess(Path(inv.path), env, *seeded)
    boxes.append(twin)
    one_path = tmp_path / "one.jsonl"
    one = batchsync("apply", inv.path, "--base-url", twin.url, "--report", str(one_path), "--quiet", env=env)
    single = Report(one_path)

    merged = batchsync("report", "merge", str(folder / "shard-*.jsonl"), "--format", "json", env=env)
    doc = json.loads(merged.stdout)
    assert merged.returncode == doc["exit_code"] == one.returncode == single.summary["exit_code"] == 0
    assert doc["totals"] == single.summary["totals"]
    assert doc["totals"]["changed"] == len(changed) and doc["not_done"] == 0
    assert results(doc["accounts"]) == results(single.summary["accounts"])
    assert [p["state"] for p in doc["parts"]] == ["complete"] * 4

    (folder / "shard-2.jsonl").unlink()
    gone = batchsync("report", "merge", str(folder / "shard-*.jsonl"), env=env)
    assert gone.returncode == 3, gone.stdout + gone.stderr
    missing = split["integrations"][2]
    assert f"! shard 2/4: missing: no report; its {missing} integrations not done" in gone.stdout
    total = next(line for line in gone.stdout.splitlines() if line.startswith("TOTAL"))
    assert f"skipped={missing} " in total


def test_failures_merge_to_exit_1_and_each_shard_retries_its_own(tmp_path: Path, boxes: list[SandboxProcess]) -> None:
    fleet = {"a": 5, "b": 4, "c": 3, "d": 2, "e": 1}
    inv = make_inventory(tmp_path, fleet, limits=dict.fromkeys(fleet, FAST))
    env = env_with(inventory_env(fleet))
    absent = [next(j.integration_id for j in inv.jobs if j.account == name) for name in ("a", "d")]
    seeded = ("--in-sync", "0.3", "--seed", "2", "--absent", ",".join(map(str, absent)))
    box = SandboxProcess(Path(inv.path), env, *seeded)
    boxes.append(box)

    codes = []
    for index in range(3):
        report = tmp_path / f"shard-{index}.jsonl"
        done = batchsync(
            "apply", inv.path, "--base-url", box.url, "--shard", f"{index}/3", "--report", str(report), env=env
        )
        codes.append(done.returncode)
    shards = [Report(tmp_path / f"shard-{index}.jsonl") for index in range(3)]
    # a (5) alone; b (4) + e (1); c (3) + d (2): a and d fail one integration each.
    assert [shard.accounts for shard in shards] == [{"a"}, {"b", "e"}, {"c", "d"}]
    assert codes == [shard.summary["exit_code"] for shard in shards] == [1, 0, 1]

    twin = SandboxProcess(Path(inv.path), env, *seeded)
    boxes.append(twin)
    one = batchsync("apply", inv.path, "--base-url", twin.url, "--report", str(tmp_path / "one.jsonl"), env=env)
    merged = batchsync("report", "merge", *(str(tmp_path / f"shard-{i}.jsonl") for i in range(3)), env=env)
    assert merged.returncode == one.returncode == 1, merged.stdout + merged.stderr
    total = next(line for line in merged.stdout.splitlines() if line.startswith("TOTAL"))
    single = Report(tmp_path / "one.jsonl").summary["totals"]
    assert total.split()[1:5] == [
        f"unchanged={single['unchanged']}",
        f"changed={single['changed']}",
        "failed=2",
        "skipped=0",
    ]
    for iid in absent:
        assert f"! integration {iid} (" in merged.stdout

    # Each shard retries its own failures: --limit, then the shard, then --retry-failed, so
    # the retries split as the first run did and merge reads them as one run. Shard 1 has
    # nothing to retry and still reports.
    for index in range(3):
        done = batchsync(
            "apply", inv.path, "--base-url", box.url, "--shard", f"{index}/3",
            "--retry-failed", str(tmp_path / f"shard-{index}.jsonl"),
            "--report", str(tmp_path / f"retry-{index}.jsonl"),
            env=env,
        )  # fmt: skip
        assert done.returncode == (0 if index == 1 else 1), done.stdout + done.stderr
    retries = [Report(tmp_path / f"retry-{index}.jsonl") for index in range(3)]
    assert sorted(i for r in retries for i in r.ids) == absent
    assert retries[1].header["selected"] == 0 and retries[1].header["shard"] == shards[1].header["shard"]
    again = batchsync("report", "merge", str(tmp_path / "retry-*.jsonl"), "--format", "json", env=env)
    doc = json.loads(again.stdout)
    assert again.returncode == doc["exit_code"] == 1
    assert doc["totals"] == {"unchanged": 0, "changed": 0, "failed": 2, "skipped": 0}


def test_plan_shards_from_the_environment_with_an_empty_shard_merge_to_exit_4(
    tmp_path: Path, boxes: list[SandboxProcess]
) -> None:
    fleet = {"a": 3, "b": 2, "c": 1}
    inv = make_inventory(tmp_path, fleet)
    env = env_with(inventory_env(fleet))
    box = SandboxProcess(Path(inv.path), env)  # every integration drifted
    boxes.append(box)
    for index in range(4):  # four pods, three accounts: the last shard is empty
        report = tmp_path / f"plan-{index}.jsonl"
        done = batchsync(
            "plan", inv.path, "--base-url", box.url, "--detailed-exitcode", "--report", str(report),
            "--shard-index-from-env", "JOB_COMPLETION_INDEX", "--shard-count", "4",
            env=env | {"JOB_COMPLETION_INDEX": str(index)},
        )  # fmt: skip
        assert done.returncode == (0 if index == 3 else 4), done.stdout + done.stderr
    empty = Report(tmp_path / "plan-3.jsonl")
    assert empty.outcomes == [] and empty.header["selected"] == 0
    assert empty.header["shard"] == {"index": 3, "count": 4, "integrations": [3, 2, 1, 0], "accounts": [1, 1, 1, 0]}
    assert empty.summary["exit_code"] == 0 and empty.summary["totals"] == dict.fromkeys(RESULTS, 0)
    assert box.stats()["applied_posts"] == {}  # plan writes nothing

    one = batchsync("plan", inv.path, "--base-url", box.url, "--detailed-exitcode", "--format", "json", env=env)
    merged = batchsync("report", "merge", str(tmp_path / "plan-*.jsonl"), "--format", "json", env=env)
    doc = json.loads(merged.stdout)
    assert merged.returncode == doc["exit_code"] == one.returncode == 4
    assert doc["mode"] == "plan" and doc["totals"] == json.loads(one.stdout)["totals"]

    shown = batchsync("plan", inv.path, "--base-url", box.url, "--shard", "3/4", env=env)
    assert shown.returncode == 0
    assert "batchsync: shard 3/4 holds no account (3 accounts selected): nothing to do\n" in shown.stderr
