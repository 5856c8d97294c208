"""The sandbox holds a fleet once: integrations on one list share it, and an answer read
once (a plan reads each integration once) is not kept."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import msgspec
import pytest
from inventory_factory import inventory_env, make_inventory

from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import Sandbox
from batchsync.sandbox.state import Store, seed_from_inventory


def test_integrations_on_one_list_share_its_statuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in inventory_env({"a": 40, "b": 40}).items():
        monkeypatch.setenv(name, value)
    inv = make_inventory(tmp_path, {"a": 40, "b": 40})
    seed = seed_from_inventory(inv, in_sync=1.0)
    first, *rest = seed.integrations
    assert len(rest) == 79 and all(i.statuses is first.statuses for i in rest)
    # Drifted ones too: the statuses they keep from the list are the list's own.
    drifted = seed_from_inventory(inv, in_sync=0.0, seed=5)
    held = [s for i in drifted.integrations for s in i.statuses if s.external_id == "3"]
    assert len(held) > 10 and len({id(s) for s in held}) < len(held) / 2
    # The same drift as before the lists were shared: the seed is reproducible.
    again = seed_from_inventory(inv, in_sync=0.0, seed=5)
    assert msgspec.json.encode(again) == msgspec.json.encode(drifted)


def test_an_answer_is_kept_from_its_second_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in inventory_env({"a": 3}).items():
        monkeypatch.setenv(name, value)
    store = Store(seed_from_inventory(make_inventory(tmp_path, {"a": 3}), in_sync=1.0))
    state = next(iter(store.integrations.values()))
    answer = state.encoded_view("nl-nl", False)
    assert b"Verzonden" in answer
    assert not state._cache  # read once: nothing kept
    assert state.encoded_view("nl-nl", False) == answer
    assert state._cache is not None and state._cache[("nl-nl", False)] == answer  # read again: kept
    assert state.encoded_view("nl-nl", False) is state._cache[("nl-nl", False)]
    assert state.overwrite(())  # a change forgets it
    assert not state._cache and b"Verzonden" not in state.encoded_view("nl-nl", False)


def test_a_fleet_on_one_list_is_held_once_until_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in inventory_env({"a": 4000}).items():
        monkeypatch.setenv(name, value)
    seed = seed_from_inventory(make_inventory(tmp_path, {"a": 4000}), in_sync=1.0)
    tracemalloc.start()
    try:
        store = Store(seed)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Each integration's state and index entries; its three statuses (a StoredStatus each,
    # in a dict of its own), an empty mapping and a description of its own (its shop's name
    # and URL made up front) would be some 770 bytes more.
    assert held / 4000 < 300, held / 4000
    assert state_mapping_is_empty(store)
    state = store.integrations[seed.integrations[0].id]
    assert [s.external_id for s in state.view()] == ["1", "2", "3"]
    assert state.overwrite(seed.integrations[0].statuses[:2], "2026-12-04T00:00:00Z")  # a write: its own now
    assert [(s.external_id, s.deleted_at) for s in state.view(show_deleted=True)][-1] == ("3", "2026-12-04T00:00:00Z")
    other = store.integrations[seed.integrations[1].id]
    assert [s.external_id for s in other.view()] == ["1", "2", "3"]  # the others keep the list


def state_mapping_is_empty(store: Store) -> bool:
    """Nothing mapped: every category None, as the API shows it."""
    state = next(iter(store.integrations.values()))
    items = state.mapping_view()["mapping"]
    return isinstance(items, list) and all(i["external_id"] is None and i["is_valid"] for i in items)


def test_a_sandbox_seeded_from_an_inventory_serves_what_its_seed_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built one integration at a time, lists of their own held packed: the same state as
    the Seed that seed_from_inventory makes (and a seed file would hold)."""
    for name, value in inventory_env({"a": 30, "b": 30}).items():
        monkeypatch.setenv(name, value)
    own = [
        {
            "id": 5000 + k,
            "account": "a" if k % 2 else "b",
            "statuses": [
                {"external_id": f"s{k}", "translations": [{"status": f"Own {k}", "language": "en-gb"}]},
                {"external_id": "2", "translations": [{"status": "Sent", "language": "en-gb"}]},
            ],
            "mapping": {"CANCEL": f"s{k}"},
        }
        for k in range(40)
    ]
    inv = make_inventory(tmp_path, {"a": 30, "b": 30}, extra=own)
    config = SandboxConfig(in_sync=0.5, seed=3, absent_ids=frozenset({5001, 1003}))
    sandbox = Sandbox(inv, config)
    expected = Store(seed_from_inventory(inv, in_sync=0.5, seed=3, absent=(5001, 1003)))
    assert msgspec.json.encode(sandbox.store.snapshot()) == msgspec.json.encode(expected.snapshot())
    assert sandbox.store.mappings() == expected.mappings()
    assert sandbox.store.listing_ids == expected.listing_ids
    packed = [s for s in sandbox.store.integrations.values() if isinstance(s._seeded, bytes)]
    assert len(packed) > 20  # the lists of their own (a third of the drifted ones drifted to nothing)
    state = packed[0]  # written: its own statuses from then on, from the packed list
    before = [s.external_id for s in state.view()]
    assert state.overwrite((), "2026-12-04T00:00:00Z")
    assert [s.external_id for s in state.view(show_deleted=True)] == before
