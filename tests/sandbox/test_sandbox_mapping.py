"""The sandbox's status mappings: kept per integration, made invalid by removals as the API does, seeded.

Over loopback HTTP where it is behaviour; seeding from an inventory is checked on the
``Seed`` it builds and on what the endpoints then show.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from sandbox_fixture import SandboxFactory, auth_header
from test_sandbox import call, statuses_body

from batchsync.model import DesiredMapping, Inventory
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.state import EXTRA_STATUS_ID, AccountSeed, IntegrationSeed, Seed, seed_from_inventory
from batchsync.wire import STATUS_CATEGORIES, Status, Translation

Auth = dict[str, dict[str, str]]
MAPPING = "/shop-order-statuses/mapping"


def status(ext: str) -> Status:
    return Status(ext, (Translation(f"Status {ext}", "en-gb"),))


def mapping_body(iid: int, **items: str | None) -> dict[str, Any]:
    return {
        "integration_id": iid,
        "mapping": [{"status_category": c, "external_id": items.get(c)} for c in STATUS_CATEGORIES],
    }


async def read_mapping(box: Any, auth: dict[str, str], iid: int) -> list[tuple[str, str | None, bool]]:
    answer = await call(box, "GET", MAPPING, auth, query={"integration_id": str(iid)})
    assert answer.status == 200, answer.body
    assert answer.json["data"]["integration_id"] == iid
    return [(m["status_category"], m["external_id"], m["is_valid"]) for m in answer.json["data"]["mapping"]]


async def post_statuses(box: Any, auth: dict[str, str], iid: int, *ids: str) -> None:
    body = statuses_body(iid, *((ext, [(f"Status {ext}", "en-gb")]) for ext in ids))
    answer = await call(box, "POST", "/shop-order-statuses", auth, body=body)
    assert answer.status == 200, answer.body


# -- removals and validity, over HTTP ----------------------------------------------------------------


async def test_a_removal_invalidates_every_item_pointing_at_it(sandbox: Any, sandbox_auth: Auth) -> None:
    acme = sandbox_auth["acme"]
    await post_statuses(sandbox, acme, 101, "2", "4", "6")
    body = mapping_body(101, READY_TO_SEND="2", IN_TRANSIT="6", CANCEL="6")
    assert (await call(sandbox, "POST", MAPPING, acme, body=body)).status == 200
    assert await read_mapping(sandbox, acme, 101) == [
        ("READY_TO_SEND", "2", True),
        ("IN_TRANSIT", "6", True),
        ("DELIVERED", None, True),
        ("CANCEL", "6", True),
    ]
    other = await read_mapping(sandbox, acme, 102)

    await post_statuses(sandbox, acme, 101, "2", "4")  # "6" removed (soft-deleted)
    # Both items on "6" are invalid and keep pointing at it; null stays valid; nothing else moved.
    assert await read_mapping(sandbox, acme, 101) == [
        ("READY_TO_SEND", "2", True),
        ("IN_TRANSIT", "6", False),
        ("DELIVERED", None, True),
        ("CANCEL", "6", False),
    ]
    assert sandbox.mapping(101) == {"READY_TO_SEND": "2", "IN_TRANSIT": "6", "DELIVERED": None, "CANCEL": "6"}
    assert await read_mapping(sandbox, acme, 102) == other
    # The removed status still exists as deleted: that does not make it a valid target.
    deleted = await call(
        sandbox, "GET", "/shop-order-statuses", acme, query={"integration_id": "101", "show_deleted": "true"}
    )
    assert {s["external_id"]: s["deleted_at"] is not None for s in deleted.json["data"]}["6"]

    # Reviving "6" makes the items valid again; an empty list invalidates every non-null item.
    await post_statuses(sandbox, acme, 101, "2", "4", "6")
    assert all(valid for _, _, valid in await read_mapping(sandbox, acme, 101))
    await post_statuses(sandbox, acme, 101)
    assert [valid for _, _, valid in await read_mapping(sandbox, acme, 101)] == [False, False, True, False]
    # No mapping POST happened in between: only the statuses changed.
    assert sandbox.stats()["applied_mappings"] == {"101": 1}


async def test_a_mapping_to_an_unknown_id_is_stored_and_shown_invalid(sandbox: Any, sandbox_auth: Auth) -> None:
    acme = sandbox_auth["acme"]
    await post_statuses(sandbox, acme, 101, "1")
    answer = await call(sandbox, "POST", MAPPING, acme, body=mapping_body(101, DELIVERED="nope", CANCEL="1"))
    assert answer.status == 200
    assert await read_mapping(sandbox, acme, 101) == [
        ("READY_TO_SEND", None, True),
        ("IN_TRANSIT", None, True),
        ("DELIVERED", "nope", False),
        ("CANCEL", "1", True),
    ]
    # A later POST of statuses that adds it makes it valid, without touching the mapping.
    await post_statuses(sandbox, acme, 101, "1", "nope")
    assert ("DELIVERED", "nope", True) in await read_mapping(sandbox, acme, 101)


async def test_changed_and_applied_mappings_are_counted(sandbox: Any, sandbox_auth: Auth) -> None:
    acme = sandbox_auth["acme"]
    first = mapping_body(101, CANCEL="1")
    for body in (first, first, mapping_body(101, CANCEL="2"), mapping_body(102)):
        assert (await call(sandbox, "POST", MAPPING, acme, body=body)).status == 200
    stats = sandbox.stats()
    assert stats["applied_mappings"] == {"101": 3, "102": 1}
    # 102 was posted all-null, which it already was: applied, not changed.
    assert stats["changed_mappings"] == {"101": 2}
    # The ids in one account's sandbox are not shown to another account.
    refused = await call(sandbox, "POST", MAPPING, sandbox_auth["globex"], body=first)
    assert refused.status == 404
    assert sandbox.stats()["applied_mappings"] == {"101": 3, "102": 1}


async def test_sandbox_mappings_endpoint(sandbox: Any, sandbox_auth: Auth) -> None:
    acme = sandbox_auth["acme"]
    await call(sandbox, "POST", MAPPING, acme, body=mapping_body(101, IN_TRANSIT="x"))
    answer = await call(sandbox, "GET", "/_sandbox/mappings", None)
    assert answer.status == 200
    assert set(answer.json) == {"101", "102", "103", "104", "105", "201", "202"}
    got = await call(sandbox, "GET", MAPPING, acme, query={"integration_id": "101"})
    assert answer.json["101"] == got.json["data"]["mapping"]


# -- seeding ------------------------------------------------------------------------------------------


async def test_seeded_mapping_is_served(sandbox_factory: SandboxFactory) -> None:
    seed = Seed(
        accounts=(AccountSeed("solo", "pk", "sk"),),
        integrations=(
            IntegrationSeed(
                7,
                "solo",
                statuses=(status("2"), status("5")),
                deleted_statuses=(status("6"),),
                mapping={"READY_TO_SEND": "2", "CANCEL": "6"},
            ),
            IntegrationSeed(8, "solo"),
        ),
    )
    box = await sandbox_factory(source=seed)
    auth = auth_header("pk", "sk")
    # Categories left out are null; an item on a status seeded as deleted starts invalid.
    assert await read_mapping(box, auth, 7) == [
        ("READY_TO_SEND", "2", True),
        ("IN_TRANSIT", None, True),
        ("DELIVERED", None, True),
        ("CANCEL", "6", False),
    ]
    assert await read_mapping(box, auth, 8) == [(c, None, True) for c in STATUS_CATEGORIES]


def test_a_seed_with_an_unknown_category_is_refused() -> None:
    from batchsync.sandbox.state import Store

    seed = Seed(
        accounts=(AccountSeed("solo", "pk", "sk"),),
        integrations=(IntegrationSeed(7, "solo", mapping={"LOST": "1"}),),  # type: ignore[dict-item]
    )
    with pytest.raises(ValueError, match="LOST"):
        Store(seed)


def with_mappings(inv: Inventory, mappings: dict[int, dict[str, str | None]]) -> Inventory:
    """``inv`` with these integrations declaring these mappings (a category left out: not mapped)."""

    def declared(wanted: dict[str, str | None]) -> DesiredMapping:
        return DesiredMapping(tuple((c, wanted.get(c)) for c in STATUS_CATEGORIES))

    jobs = [
        msgspec.structs.replace(j, mapping=declared(mappings[j.integration_id])) if j.integration_id in mappings else j
        for j in inv.jobs
    ]
    return msgspec.structs.replace(inv, jobs=jobs)


# The test inventory's "standard" set has statuses 1, 2, 3 (see sandbox_fixture).
DECLARED: dict[str, str | None] = {"READY_TO_SEND": "1", "IN_TRANSIT": "2", "DELIVERED": "3", "CANCEL": None}


def declared_inventory(inv: Inventory) -> Inventory:
    return with_mappings(inv, {j.integration_id: DECLARED for j in inv.jobs if j.integration_id != 104})


def seeded(spec: IntegrationSeed) -> dict[str, str | None]:
    return {c: (spec.mapping or {}).get(c) for c in STATUS_CATEGORIES}


async def test_inventory_seeding_in_sync_gives_the_declared_mapping(
    sandbox_factory: SandboxFactory, sandbox_inventory: Inventory, sandbox_auth: Auth
) -> None:
    box = await sandbox_factory(SandboxConfig(in_sync=1.0), source=declared_inventory(sandbox_inventory))
    acme = sandbox_auth["acme"]
    for iid in (101, 102, 103, 105):
        assert await read_mapping(box, acme, iid) == [(c, DECLARED[c], True) for c in STATUS_CATEGORIES]
    # 104 declares no mapping: it starts with none.
    assert await read_mapping(box, acme, 104) == [(c, None, True) for c in STATUS_CATEGORIES]


def test_inventory_seeding_drifts_mappings_deterministically(sandbox_inventory: Inventory) -> None:
    # Many integrations on the same declared mapping, so that every kind of drift shows up.
    inv = declared_inventory(sandbox_inventory)
    kinds: set[str] = set()
    for seed in range(12):
        plan = seed_from_inventory(inv, in_sync=0.4, seed=seed)
        assert plan == seed_from_inventory(inv, in_sync=0.4, seed=seed)
        plain = seed_from_inventory(sandbox_inventory, in_sync=0.4, seed=seed)
        # Declaring mappings does not change how the statuses drift.
        assert [s.statuses for s in plan.integrations] == [s.statuses for s in plain.integrations]
        for spec, job in zip(plan.integrations, sandbox_inventory.jobs, strict=True):
            assert spec.id == job.integration_id
            current = seeded(spec)
            if spec.id == 104:
                assert spec.mapping is None
                continue
            in_sync_statuses = spec.statuses == job.desired.statuses
            if in_sync_statuses and current == DECLARED:
                kinds.add("in sync")
                continue
            assert not in_sync_statuses, "an integration picked in sync has its mapping in sync too"
            if current == DECLARED:
                kinds.add("statuses drifted only")
            elif all(v is None for v in current.values()):
                kinds.add("never set up")
            else:
                (off,) = [c for c in STATUS_CATEGORIES if current[c] != DECLARED[c]]
                ids = {s.external_id for s in spec.statuses}
                if EXTRA_STATUS_ID in ids:
                    # Applying the statuses would leave it invalid; the declared mapping repairs it.
                    assert current[off] == EXTRA_STATUS_ID
                    kinds.add("points at a status the inventory removes")
                else:
                    kinds.add("one category off")
    assert kinds == {
        "in sync",
        "statuses drifted only",
        "never set up",
        "points at a status the inventory removes",
        "one category off",
    }


async def test_drifted_mapping_removal_over_http(
    sandbox_factory: SandboxFactory, sandbox_inventory: Inventory, sandbox_auth: Auth
) -> None:
    """A seeded mapping on the stale status turns invalid when the desired statuses are posted."""
    inv = declared_inventory(sandbox_inventory)
    for seed in range(50):
        plan = seed_from_inventory(inv, seed=seed)
        stale = [s for s in plan.integrations if EXTRA_STATUS_ID in seeded(s).values() and s.account == "acme"]
        if stale:
            break
    else:
        pytest.fail("no seed gives a mapping on the stale status")
    spec = stale[0]
    box = await sandbox_factory(SandboxConfig(seed=seed), source=inv)
    acme = sandbox_auth["acme"]
    (category,) = [c for c, ext in seeded(spec).items() if ext == EXTRA_STATUS_ID]
    assert (category, EXTRA_STATUS_ID, True) in await read_mapping(box, acme, spec.id)
    await post_statuses(box, acme, spec.id, "1", "2", "3")
    assert (category, EXTRA_STATUS_ID, False) in await read_mapping(box, acme, spec.id)
    assert (await call(box, "POST", MAPPING, acme, body=mapping_body(spec.id, **DECLARED))).status == 200
    assert await read_mapping(box, acme, spec.id) == [(c, DECLARED[c], True) for c in STATUS_CATEGORIES]
    assert box.stats()["changed_mappings"] == {str(spec.id): 1}


def test_mapping_drift_covers_every_category() -> None:
    from batchsync.sandbox.state import drift_mapping

    rng = random.Random(1)
    off = set()
    for _ in range(400):
        got = drift_mapping(DECLARED, (), rng)
        if got is not None:
            off |= {c for c in STATUS_CATEGORIES if got[c] != DECLARED[c]}
    assert off == set(STATUS_CATEGORIES)


def test_jobs_without_a_declared_mapping_seed_none(sandbox_inventory: Inventory) -> None:
    """The test inventory declares no mapping: every integration starts with none."""
    plan = seed_from_inventory(sandbox_inventory, in_sync=0.5)
    assert all(spec.mapping is None for spec in plan.integrations)
