"""The sandbox's fleet generator (``batchsync.sandbox.fleet``): what import is shown and benchmarked on."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchsync.commands.import_ import load_source
from batchsync.model import PRESTASHOP_V2
from batchsync.sandbox.fleet import account_env, fleet_seed, main
from batchsync.sandbox.state import Store, load_seed
from batchsync.wire import check_statuses


def test_a_fleet_is_what_it_says_and_the_same_for_the_same_seed() -> None:
    seed = fleet_seed(3, 120, families=4, others=7, seed=2)
    assert seed == fleet_seed(3, 120, families=4, others=7, seed=2)
    assert seed != fleet_seed(3, 120, families=4, others=7, seed=3)
    prestashop = [s for s in seed.integrations if s.system == PRESTASHOP_V2]
    others = [s for s in seed.integrations if s.system != PRESTASHOP_V2]
    assert len(prestashop) == 120 and len(others) == 7 and len({s.system for s in others}) == 5
    assert {s.account for s in seed.integrations} == {"acme", "globex", "initech"}
    assert len({s.id for s in seed.integrations}) == 127
    for s in prestashop:
        assert check_statuses(s.statuses) == []
        ids = {x.external_id for x in s.statuses}
        assert all(e is None or e in ids for e in (s.mapping or {}).values())
    # Families with variations: a few lists shared by many, and many one-off variants.
    lists = {s.statuses for s in prestashop}
    assert 4 < len(lists) < 120
    assert sum(1 for s in prestashop if s.mapping) > 90
    assert all(s.mapping is None for s in fleet_seed(1, 30, mappings=False).integrations)
    Store(seed)  # the sandbox takes it


def test_the_command_writes_a_seed_and_an_inventory_of_its_accounts(tmp_path: Path) -> None:
    assert main([str(tmp_path / "fleet"), "--integrations", "12", "--others", "2", "--accounts", "2"]) == 0
    seed = load_seed(tmp_path / "fleet" / "seed.json")
    assert len(seed.integrations) == 14 and [a.name for a in seed.accounts] == ["acme", "globex"]
    inv, raw, problems = load_source(tmp_path / "fleet" / "accounts.toml", environ=account_env(seed))
    assert problems == [] and sorted(inv.accounts) == ["acme", "globex"]
    assert set(raw) == {"defaults", "accounts"}


@pytest.mark.parametrize(
    "args", [["--accounts", "0"], ["--accounts", "2", "--oauth2", "3"], ["--oauth2", "-1"], ["--families", "0"]]
)
def test_impossible_fleets_are_refused(tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), *args]) == 2
    assert "fleet:" in capsys.readouterr().err
