"""Plan files that must be refused whole: ``apply --plan`` and ``show`` exit 2 with a message
naming the file and what is wrong, never a traceback, and send nothing.

A valid plan is made first with the embedded sandbox (``plan --sandbox --out``), then
broken in each way a file can be: truncated, nested past any depth, too large, of wrong
types, of another format or version, made by another batchsync, too old, hand-edited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import batchsync, env_with, example_inventory
from sandbox_fixture import SANDBOX_ENV, write_sandbox_inventory

Edit = Callable[[dict[str, Any]], Any]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("plan")
    inv = write_sandbox_inventory(folder)
    out = folder / "p.json"
    done = batchsync("plan", str(inv), "--sandbox", "--out", str(out), env=env_with(SANDBOX_ENV))
    assert done.returncode == 0, done.stderr
    plan: dict[str, Any] = json.loads(out.read_text())
    assert any(e["action"] == "change" for e in plan["integrations"])
    return inv, plan


def first_change(plan: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in plan["integrations"] if e["action"] == "change")
    return entry


def written(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The status list the first change writes."""
    statuses: list[dict[str, Any]] = plan["statuses"][first_change(plan)["write"]["statuses"]]
    return statuses


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    doc[key] = value


def _move(entry: dict[str, Any], iid: int) -> None:
    entry["integration_id"] = entry["outcome"]["integration_id"] = iid


def first_mapped(plan: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = next(
        e for e in plan["integrations"] if e["action"] == "change" and e["write"].get("mapping")
    )
    return entry


def _another_list(plan: dict[str, Any]) -> None:
    """The first change's write names a list of its own: the one it wrote, less its first status."""
    plan["statuses"]["shorter"] = written(plan)[1:]
    first_change(plan)["write"]["statuses"] = "shorter"


def _both_edited(plan: dict[str, Any]) -> None:
    """A status renamed in the list written and in the outcome shown, consistently."""
    entry = first_change(plan)
    status = written(plan)[0]
    status["translations"] = [{**t, "status": t["status"] + " (edited)"} for t in status["translations"]]
    read = {s[0]: dict(s[1]) for s in entry["read"]["statuses"]}
    after = {t["language"]: t["status"] for t in status["translations"]}
    eid = status["external_id"]
    changes = [c for c in entry["outcome"]["changes"] if c["external_id"] != eid]
    if eid not in read:
        changes.append({"op": "+", "external_id": eid, "after": after})
    elif read[eid] != after:
        changes.append({"op": "~", "external_id": eid, "before": read[eid], "after": after})
    entry["outcome"]["changes"] = changes
    for key in ("added", "changed", "removed"):
        entry["outcome"][key] = sum(
            1 for c in changes if c["op"] == {"added": "+", "changed": "~", "removed": "-"}[key]
        )
    for other in plan["integrations"]:  # every change of that list, or the first is not alone in it
        if (
            other is not entry
            and other["action"] == "change"
            and other["write"]["statuses"] == entry["write"]["statuses"]
        ):
            other["action"] = "none"
            other.pop("write")
            other.pop("read")
            # shown as unchanged too (a none entry that shows a change is refused for that)
            other["outcome"].update(result="unchanged", changes=[], mapping_changes=[], added=0, changed=0, removed=0)


def _none_says_changed(plan: dict[str, Any]) -> None:
    """A change made a `none` entry: show would still list it as a change, apply skip it."""
    entry = first_change(plan)
    entry["action"] = "none"
    entry.pop("write")
    entry.pop("read")


def _unchanged_shows_a_change(plan: dict[str, Any]) -> None:
    entry = next(e for e in plan["integrations"] if e["action"] == "none")
    entry["outcome"]["changes"] = [{"op": "-", "external_id": "2", "before": {"en-gb": "Paid"}}]
    entry["outcome"]["removed"] = 1


def _none_of_another_account(plan: dict[str, Any]) -> None:
    entry = next(e for e in plan["integrations"] if e["action"] == "none")
    entry["integration_id"] = entry["outcome"]["integration_id"] = 999999
    entry["account"] = entry["outcome"]["account"] = "no-such-account"


EDITS: dict[str, tuple[Edit, str]] = {
    "a change made none, still shown changed": (_none_says_changed, "it says changed"),
    "an unchanged entry showing a change": (_unchanged_shows_a_change, "unchanged, with changes"),
    "an entry left alone of an undeclared account": (_none_of_another_account, "is not in the inventory"),
    "version 999": (lambda p: _set(p, "version", 999), "plan format version 999"),
    "another format": (lambda p: _set(p, "format", "terraform-plan"), "not a plan file"),
    "another minor version": (lambda p: _set(p, "batchsync", "0.2.0"), "same major and minor"),
    "integrations not a list": (lambda p: _set(p, "integrations", {"a": 1}), "$.integrations"),
    "an id of the wrong type": (lambda p: _set(first_change(p), "integration_id", "101"), "integration_id"),
    "an unknown field": (lambda p: _set(p, "extra", 1), "extra"),
    "a change without its read": (lambda p: first_change(p).pop("read"), "needs its write and its read"),
    "a fingerprint not its own": (
        lambda p: _set(first_change(p)["read"], "fingerprint", "sha256:" + "0" * 64),
        "fingerprint",
    ),
    "a language twice": (
        lambda p: written(p)[0]["translations"].append(dict(written(p)[0]["translations"][0])),
        "$.statuses[",
    ),
    "an unknown language": (lambda p: _set(written(p)[0]["translations"][0], "language", "xx-xx"), "language"),
    "a write of no list": (lambda p: _set(first_change(p)["write"], "statuses", "nope"), "is not one of $.statuses"),
    "a bad time": (lambda p: _set(p, "created_at", "yesterday"), "created_at"),
    "too old": (lambda p: _set(p, "created_at", "2020-01-01T00:00:00+00:00"), "--max-age"),
    "from the future": (lambda p: _set(p, "created_at", "2999-01-01T00:00:00+00:00"), "in the future"),
    "an integration twice": (lambda p: p["integrations"].append(first_change(p)), "planned twice"),
    "an integration not in the inventory": (lambda p: _move(first_change(p), 999_999), "is not in the inventory"),
    # Edited so that apply would write what show does not show (the client approves what it shows).
    "a write of another list": (_another_list, "$.integrations[0].outcome: its status changes"),
    "a status added to the list written": (
        lambda p: written(p).append({"external_id": "evil", "translations": [{"status": "X", "language": "en-gb"}]}),
        "its status changes: it is not what its write does to what it read",
    ),
    "a change shown that is not written": (
        lambda p: first_change(p)["outcome"]["changes"].pop(),
        "its status changes",
    ),
    # Write and outcome edited alike: what the inventory declares is not that.
    "a write and its outcome edited alike": (_both_edited, "is not what the inventory declares for it"),
}


def refused(inv: Path, plan: Path, expect: str) -> None:
    env = env_with(SANDBOX_ENV)
    # --base-url on a port nothing listens on: were anything sent, the run would fail otherwise.
    done = batchsync("apply", str(inv), "--base-url", "http://127.0.0.1:9", "--plan", str(plan), env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and expect in done.stderr, done.stderr
    assert "nothing was sent" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("case", sorted(EDITS))
def test_an_edited_plan_is_refused_whole(case: str, made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    inv, plan = made
    doc = json.loads(json.dumps(plan))
    edit, expect = EDITS[case]
    edit(doc)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    refused(inv, path, expect)


@pytest.mark.parametrize(
    ("case", "content", "expect"),
    [
        ("truncated", None, "not a plan file"),
        ("nested", b'{"format": "batchsync-plan", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
        ("empty", b"", "not a plan file"),
        ("not JSON", b"\x00\xff garbage", "not a plan file"),
        ("a list", b"[1, 2, 3]", "not a plan file"),
        ("a byte order mark", b"\xef\xbb\xbf{}", "starts with a byte order mark (BOM): save it as UTF-8 without one"),
    ],
)
def test_a_broken_plan_file_is_refused_whole(
    case: str, content: bytes | None, expect: str, made: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    inv, plan = made
    path = tmp_path / "p.json"
    whole = json.dumps(plan).encode()
    path.write_bytes(whole[: len(whole) // 2] if content is None else content)
    refused(inv, path, expect)
    shown = batchsync("show", str(path), env=env_with({}))
    assert shown.returncode == 2 and "Traceback" not in shown.stderr and expect in shown.stderr


def test_a_huge_plan_file_is_refused_unread(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    inv, _ = made
    path = tmp_path / "p.json"
    with path.open("wb") as f:  # sparse: 300 MB on paper, nothing on disk
        f.truncate(300 * 1024 * 1024)
    refused(inv, path, "more than the 256 MB allowed")


def test_a_plan_that_is_not_a_file_is_refused(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    inv, _ = made
    refused(inv, tmp_path, "is a directory")
    refused(inv, tmp_path / "missing.json", "does not exist")


def test_max_age_and_the_flags_a_plan_does_not_take(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    inv, plan = made
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan))
    env = env_with(SANDBOX_ENV)
    for flags, expect in (
        (["--max-age", "1s"], "more than --max-age 1s"),
        (["--max-age", "soon"], "--max-age soon: expected a positive duration"),
        (["--max-age", ""], "--max-age '': expected a positive duration"),  # an unset variable: not the default
        (["--shard", "0/2"], "does not go with --shard"),
        (["--no-read"], "does not go with --no-read"),
    ):
        if flags[0] == "--max-age" and flags[1] == "1s":
            doc = json.loads(json.dumps(plan))
            doc["created_at"] = "2026-01-01T00:00:00+00:00"
            path.write_text(json.dumps(doc))
        done = batchsync("apply", str(inv), "--base-url", "http://127.0.0.1:9", "--plan", str(path), *flags, env=env)
        assert done.returncode == 2 and expect in done.stderr, done.stderr
    alone = batchsync("apply", str(inv), "--base-url", "http://127.0.0.1:9", "--max-age", "7d", env=env)
    assert alone.returncode == 2 and "--max-age goes with --plan" in alone.stderr


def test_no_output_replaces_the_inventory_or_the_plan_being_applied(
    made: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    inv, plan = made
    env = env_with(SANDBOX_ENV)
    before = inv.read_bytes()
    out = batchsync("plan", str(inv), "--sandbox", "--out", str(inv), env=env)
    assert out.returncode == 2 and "--out" in out.stderr and "which the inventory reads" in out.stderr
    assert inv.read_bytes() == before
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan))
    report = batchsync("apply", str(inv), "--sandbox", "--plan", str(path), "--report", str(path), env=env)
    assert report.returncode == 2 and "--report" in report.stderr, report.stderr
    assert json.loads(path.read_text()) == plan


def _mapped(plan: dict[str, Any]) -> dict[str, Any]:
    """The first change that writes the mapping and shows a change of it."""
    entry: dict[str, Any] = next(
        e for e in plan["integrations"] if e["action"] == "change" and e["outcome"].get("mapping_changes")
    )
    return entry


MAPPING_EDITS: dict[str, tuple[Edit, str]] = {
    "a mapping to a status that is not there": (
        lambda p: _set(_mapped(p)["write"]["mapping"][0], "external_id", "ghost"),
        "its mapping changes",
    ),
    "a mapping change shown that is not written": (lambda p: _mapped(p)["write"].pop("mapping"), "its mapping changes"),
    "a mapping change written that is not shown": (
        lambda p: _set(_mapped(p)["outcome"], "mapping_changes", []),
        "its mapping changes",
    ),
}


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    inv = example_inventory(tmp_path_factory.mktemp("mapped"))
    out = inv.parent / "p.json"
    done = batchsync("plan", str(inv), "--sandbox", "--out", str(out), env=env_with(SANDBOX_ENV))
    assert done.returncode in (0, 2), done.stderr  # 2: --detailed-exitcode is not asked; 0 expected
    plan: dict[str, Any] = json.loads(out.read_text())
    assert _mapped(plan)["outcome"]["mapping_changes"]
    return inv, plan


@pytest.mark.parametrize("case", sorted(MAPPING_EDITS))
def test_a_plan_whose_mapping_write_is_not_what_it_shows_is_refused(
    case: str, mapped: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    inv, plan = mapped
    doc = json.loads(json.dumps(plan))
    edit, expect = MAPPING_EDITS[case]
    edit(doc)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    refused(inv, path, expect)
    shown = batchsync("show", str(path), env=env_with(SANDBOX_ENV))
    assert shown.returncode == 2 and expect in shown.stderr and "Traceback" not in shown.stderr


def test_an_empty_plan_path_is_refused_not_ignored(made: tuple[Path, dict[str, Any]]) -> None:
    """``--plan "$PLAN"`` with PLAN unset must not become an apply of what the inventory says."""
    inv, _ = made
    env = env_with(SANDBOX_ENV)
    for empty in ("", " "):
        done = batchsync("apply", str(inv), "--base-url", "http://127.0.0.1:9", "--plan", empty, env=env)
        assert done.returncode == 2 and "--plan: an empty path; nothing was sent" in done.stderr, done.stderr


def test_no_two_outputs_share_a_file_nor_write_the_plan(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    inv, plan = made
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan))
    env = env_with(SANDBOX_ENV)
    same = str(tmp_path / "out.txt")
    for flags, said in (
        (["--report", same, "--html", same], f"--html {same}: is --report's file too: each output needs"),
        (["--report", same, "--junit", str(tmp_path / "." / "out.txt")], "--junit"),
        (["--report", str(path)], f"--report {path}: is the plan --plan reads"),
    ):
        done = batchsync("apply", str(inv), "--base-url", "http://127.0.0.1:9", "--plan", str(path), *flags, env=env)
        assert done.returncode == 2 and said in done.stderr, (flags, done.stderr)
        assert not (tmp_path / "out.txt").exists()
    planned = batchsync("plan", str(inv), "--sandbox", "--out", same, "--report", same, env=env)
    assert planned.returncode == 2 and "is --report's file too" in planned.stderr, planned.stderr


def test_an_old_plan_says_its_age_in_days() -> None:
    from batchsync.inventory.plan import _span

    assert _span(2530 * 86400.0) == "2530d" and _span(8 * 86400.0) == "8d" and _span(90.0) == "1.5m"
