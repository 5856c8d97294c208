"""The inventory's side of issue 27: account tags, names, credential isolation, routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchsync.inventory.loader import load
from batchsync.inventory.select import select

STATUSES = [{"external_id": "1", "translations": [{"language": "en-gb", "status": "Paid"}]}]


def write(tmp_path: Path, accounts: dict[str, Any], integrations: list[dict[str, Any]], **top: Any) -> Path:
    path = tmp_path / "inv.json"
    doc = {"accounts": accounts, "status_sets": {"s": {"statuses": STATUSES}}, "integrations": integrations, **top}
    path.write_text(json.dumps(doc))
    return path


def basic(name: str, **kw: Any) -> dict[str, Any]:
    return {"public_key": f"env:{name.upper()}_PUB", "secret_key": f"env:{name.upper()}_SEC", **kw}


ENV = {"ACME_PUB": "acme-public", "ACME_SEC": "acme-secret", "STARK_PUB": "stark-public", "STARK_SEC": "stark-secret"}


def test_account_tags_come_first_then_the_integration_s_own_each_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"acme": basic("acme", tags=["client-a", "nl"], ignore_integrations=[77])},
        [
            {"id": 1, "account": "acme", "status_set": "s", "tags": ["outlet", "nl"], "name": "Café Ö"},
            {"id": 2, "account": "acme", "status_set": "s"},
        ],
    )
    inv = load(path, ENV)
    assert inv.valid, inv.problems
    assert [(j.tags, j.name) for j in inv.jobs] == [
        (("client-a", "nl", "outlet"), "Café Ö"),
        (("client-a", "nl"), None),
    ]
    assert inv.accounts["acme"].ignore_integrations == frozenset({77})


def test_a_declared_integration_also_ignored_is_managed_and_warned_about(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"acme": basic("acme", ignore_integrations=[2, 77])},
        [{"id": 1, "account": "acme", "status_set": "s"}, {"id": 2, "account": "acme", "status_set": "s"}],
    )
    inv = load(path, ENV)
    assert inv.valid, inv.problems
    assert [j.integration_id for j in inv.jobs] == [1, 2]  # declared wins: it is written
    [warning] = inv.warnings
    assert warning.integration_id == 2 and warning.path == "$.accounts.acme.ignore_integrations"
    assert "integration 2 is declared" in warning.message and "remove it from one of the two" in warning.message


def test_an_unresolvable_account_is_isolated_only_when_asked_and_only_for_missing_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"acme": basic("acme"), "stark": basic("stark", tags=["client-s"])},
        [{"id": 1, "account": "acme", "status_set": "s"}, {"id": 2, "account": "stark", "status_set": "s"}],
    )
    env = {k: v for k, v in ENV.items() if k != "STARK_SEC"}
    strict = load(path, env)
    assert not strict.valid and "STARK_SEC" in strict.problems[0].message
    isolated = load(path, env, isolate_credentials=True)
    assert isolated.valid and set(isolated.accounts) == {"acme"}
    assert "'stark'" in isolated.unresolved["stark"] and "env:STARK_SEC" in isolated.unresolved["stark"]
    assert [(j.integration_id, j.tags) for j in isolated.jobs] == [(1, ()), (2, ("client-s",))]
    # A file outside the inventory's folder is the inventory's problem, not a missing value.
    outside = write(
        tmp_path,
        {"acme": basic("acme"), "stark": {"public_key": "env:STARK_PUB", "secret_key": "file:../elsewhere.key"}},
        [{"id": 1, "account": "acme", "status_set": "s"}],
    )
    inv = load(outside, ENV, isolate_credentials=True)
    assert not inv.valid and not inv.unresolved and "outside the inventory's folder" in inv.problems[0].message


def test_names_obey_the_rule_and_routes_need_a_reference(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"acme": basic("acme")},
        [
            {
                "id": 1,
                "account": "acme",
                "status_set": "s",
                "name": "Shop\x1b[31m",
                "shop_url": "https://x\u202e.example",
            }
        ],
        notify=[
            {"url": "https://hooks.example/T0/B0/secret", "tags": ["client-a"]},
            {"url": "env:HOOK", "accounts": ["acme*"], "on": "sometimes"},
            {"url": "env:HOOK", "tags": ["client-b"], "on": "always", "format": "json"},
        ],
    )
    inv = load(path, ENV)
    where = {p.path: p.message for p in inv.problems}
    assert set(where) == {"$.integrations[0].name", "$.integrations[0].shop_url", "$.notify[0].url", "$.notify[1].on"}
    assert "T0/B0" not in where["$.notify[0].url"]
    assert [(r.url, r.tags, r.on, r.format) for r in inv.notify] == [("env:HOOK", ("client-b",), "always", "json")]


def test_a_route_pattern_that_matches_nothing_is_a_warning(tmp_path: Path) -> None:
    """A typo in a route (``acmee``) would send that client an all-clear every night."""
    path = write(
        tmp_path,
        {"acme": basic("acme", tags=["client-a"]), "stark": basic("stark")},
        [{"id": 1, "account": "acme", "status_set": "s", "tags": ["nl"]}],
        notify=[
            {"url": "env:HOOK", "accounts": ["acmee", "stark"]},  # stark is declared: it matches
            {"url": "env:HOOK", "tags": ["client-*", "nl", "client-b"]},
        ],
    )
    inv = load(path, ENV)
    assert inv.valid and len(inv.notify) == 2
    assert [(w.path, w.message) for w in inv.warnings] == [
        ("$.notify[0].accounts[0]", "acmee matches no declared account: it reports nothing"),
        ("$.notify[1].tags[2]", "client-b matches no tag of an integration or its account: it reports nothing"),
    ]


def test_limit_patterns_intersections_and_exclusions_compose_as_ansible_s() -> None:
    from batchsync.model import Desired, Job

    d = Desired(())
    jobs = [
        Job(1, "acme", d, ("client-a", "nl"), name="Café Ö"),
        Job(2, "acme-2", d, ("client-a", "be")),
        Job(3, "globex", d, ("client-b", "nl")),
        Job(40, "stark", d, ()),
    ]

    def ids(*sel: str) -> list[int]:
        chosen, _ = select(jobs, sel)
        return [j.integration_id for j in chosen]

    assert ids("acme*") == [1, 2]
    assert ids("tag:client-?") == [1, 2, 3]
    assert ids("tag:client-a,&tag:nl") == [1]
    assert ids("&tag:nl") == [1, 3]  # no plain term: every integration, then the intersection
    assert ids("tag:client-*,!acme-2") == [1, 3]
    assert ids("name:Caf*", "4?") == [1, 40]
    assert ids("account:[ag]*") == [1, 2, 3]
    _, unmatched = select(jobs, ["tag:nobody-*", "acme"])
    assert unmatched == ["tag:nobody-*"]


def test_a_history_reference_that_holds_no_usable_url_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, {"acme": basic("acme")}, [{"id": 1, "account": "acme", "status_set": "s"}],
                 history={"url": "env:HISTORY_URL"})  # fmt: skip
    inv = load(path, {**ENV, "HISTORY_URL": "mysql://u:pw-secret@h/db"})
    assert [(p.path, p.message) for p in inv.problems] == [
        (
            "$.history.url",
            "env:HISTORY_URL holds no history URL batchsync can use: unknown history URL scheme 'mysql': "
            "expected sqlite:///PATH or postgresql://",
        )
    ]
    assert load(path, {**ENV, "HISTORY_URL": "postgresql://u:pw@db/h"}).valid
