"""The sandbox holds a fleet once: integrations on one list share it, and an answer read
once (a plan reads each integration once) is not kept."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from inventory_factory import inventory_env, make_inventory

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
    assert not any(state._cache.values())  # read once: nothing kept
    assert state.encoded_view("nl-nl", False) == answer
    assert state._cache[("nl-nl", False)] == answer  # read again: kept
    assert state.encoded_view("nl-nl", False) is state._cache[("nl-nl", False)]
    assert state.overwrite(())  # a change forgets it
    assert state._cache == {} and b"Verzonden" not in state.encoded_view("nl-nl", False)
