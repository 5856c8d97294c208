"""Sharding: the split is disjoint, complete, deterministic and balanced; I/N is parsed strictly."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsync.inventory.shard import (
    MAX_SHARDS,
    ShardSpec,
    Split,
    account_sizes,
    balance_bound,
    parse_count,
    parse_shard,
    partition,
    select_shard,
    shard_from_env,
    split_document,
    split_lines,
)
from bench.gen_inventory import zipf_sizes

names = st.text(alphabet="abcdefghij-_0123456789ÄÖ ", min_size=1, max_size=8)
fleets = st.dictionaries(names, st.integers(min_value=0, max_value=5000), max_size=60)
counts = st.integers(min_value=1, max_value=12)


def loads(split: Split, sizes: dict[str, int]) -> list[int]:
    return [sum(sizes[a] for a in shard) for shard in split.shards]


@given(fleets, counts)
def test_every_account_is_in_exactly_one_shard(sizes: dict[str, int], n: int) -> None:
    split = partition(sizes, n)
    assert split.count == n
    placed = [a for shard in split.shards for a in shard]
    assert sorted(placed) == sorted(sizes)  # complete, and no account twice
    assert list(split.integrations) == loads(split, sizes)
    assert sum(split.integrations) == sum(sizes.values())
    for index, shard in enumerate(split.shards):
        for account in shard:
            assert split.shard_of(account) == index


@given(fleets, counts, st.randoms(use_true_random=False))
def test_the_split_ignores_the_order_accounts_come_in(sizes: dict[str, int], n: int, rnd: random.Random) -> None:
    # Every pod builds the mapping from its own parse of the inventory: only content may matter.
    shuffled = list(sizes.items())
    rnd.shuffle(shuffled)
    assert partition(dict(shuffled), n) == partition(sizes, n)


@given(fleets, counts)
def test_the_largest_shard_is_within_the_proven_bound(sizes: dict[str, int], n: int) -> None:
    split = partition(sizes, n)
    biggest = max(split.integrations)
    bound = balance_bound(sizes, n)
    assert biggest <= bound
    # The bound in plain words: the fair share plus (1 - 1/N) of the (N+1)-th largest
    # account, or the largest account alone when that is more.
    ordered = sorted(sizes.values(), reverse=True) + [0] * (n + 1)
    total = sum(sizes.values())
    assert bound <= max(ordered[0], total / n + (1 - 1 / n) * ordered[n])
    assert biggest >= max(ordered[0], -(-total // n))  # nobody can do better than this


@settings(max_examples=150)
@given(st.dictionaries(names, st.integers(min_value=0, max_value=50), max_size=7), st.integers(1, 3))
def test_no_worse_than_four_thirds_of_the_best_split(sizes: dict[str, int], n: int) -> None:
    # Graham (1969): largest-first is within 4/3 - 1/(3N) of the optimum; brute force checks it.
    accounts = list(sizes)
    best = min(
        (
            max(sum(sizes[a] for a, s in zip(accounts, assign, strict=True) if s == k) for k in range(n))
            for assign in itertools.product(range(n), repeat=len(accounts))
        ),
        default=0,
    )
    assert max(partition(sizes, n).integrations) <= (4 / 3 - 1 / (3 * n)) * best + 1e-9


def test_largest_first_onto_the_least_loaded_ties_by_name_then_shard_index() -> None:
    split = partition({"b": 5, "a": 5, "c": 3, "d": 2, "e": 2}, 2)
    # a (tie with b, by name) -> shard 0; b -> 1; c -> 0 (tie at 5, lowest index); d -> 1; e -> 1
    assert split.shards == (("a", "c"), ("b", "d", "e"))
    assert split.integrations == (8, 9)


def test_more_shards_than_accounts_leaves_empty_shards() -> None:
    split = partition({"x": 3, "y": 1}, 4)
    assert split.shards == (("x",), ("y",), (), ())
    assert split.integrations == (3, 1, 0, 0)
    assert split.header(2) == {"index": 2, "count": 4, "integrations": [3, 1, 0, 0], "accounts": [1, 1, 0, 0]}


def test_zipf_fleets_of_forty_accounts_split_in_four_within_ten_percent() -> None:
    # The fleet shape of the check: 40 accounts, Zipf-sized, four shards.
    worst = 0.0
    for s in (0.6, 0.8, 1.0, 1.1, 1.3, 1.6):
        for n in (40, 200, 400, 1000, 4000, 20_000):
            sizes = {f"account-{i:03d}": size for i, size in enumerate(zipf_sizes(n, 40, s))}
            split = partition(sizes, 4)
            floor = max(max(sizes.values()), n / 4)
            worst = max(worst, max(split.integrations) / floor)
    assert worst <= 1.1


def test_negative_sizes_and_no_shards_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        partition({"a": -1}, 2)
    with pytest.raises(ValueError, match="at least one"):
        partition({"a": 1}, 0)


class J:
    def __init__(self, integration_id: int, account: str) -> None:
        self.integration_id = integration_id
        self.account = account


def test_select_shard_keeps_whole_accounts_and_the_shards_cover_every_job() -> None:
    jobs = [J(i, f"acct{i % 7}") for i in range(100)] + [J(1000 + i, "big") for i in range(40)]
    assert account_sizes(jobs)["big"] == 40
    seen: list[int] = []
    for index in range(3):
        mine, split = select_shard(jobs, ShardSpec(index, 3))
        assert {j.account for j in mine} == set(split.shards[index])
        seen += [j.integration_id for j in mine]
    assert sorted(seen) == sorted(j.integration_id for j in jobs)


@pytest.mark.parametrize(
    ("text", "spec"), [("0/4", ShardSpec(0, 4)), ("3/4", ShardSpec(3, 4)), (" 1 / 2 ", ShardSpec(1, 2))]
)
def test_parse_shard(text: str, spec: ShardSpec) -> None:
    assert parse_shard(text) == spec
    assert str(spec) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4/4", "numbered from 0: the index must be 0 to 3, not 4"),
        ("1/0", "from 1 to"),
        (f"0/{MAX_SHARDS + 1}", "from 1 to"),
        ("-1/4", "expected I/N"),
        ("1", "expected I/N"),
        ("a/4", "expected I/N"),
        ("1/4/5", "expected I/N"),
        ("١/٤", "expected I/N"),  # Arabic-Indic digits: int() would take them, we do not
        ("", "expected I/N"),
    ],
)
def test_parse_shard_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_shard(text)


def test_parse_count() -> None:
    assert parse_count("4") == 4
    for bad in ("0", "-2", "x", "2.5", str(MAX_SHARDS + 1), ""):
        with pytest.raises(ValueError, match="shards"):
            parse_count(bad)


def test_shard_from_env() -> None:
    assert shard_from_env("JOB_COMPLETION_INDEX", 4, {"JOB_COMPLETION_INDEX": "2"}) == ShardSpec(2, 4)
    with pytest.raises(ValueError, match=r"\$JOB_COMPLETION_INDEX is not set \(Kubernetes sets"):
        shard_from_env("JOB_COMPLETION_INDEX", 4, {})
    # The value is never shown: the variable may hold anything, a credential included.
    for value in ("two\nlines", "sk_live_4f9a8c", "4", "9137"):
        with pytest.raises(ValueError) as info:
            shard_from_env("IDX", 4, {"IDX": value})
        assert str(info.value).startswith("$IDX is not a shard index")
        assert value not in str(info.value)


def test_split_lines_and_document() -> None:
    sizes = {"acme": 6, "nord": 3, "blau": 2, "tiny": 1}
    split = partition(sizes, 2)
    lines = split_lines(split, sizes)
    assert lines[0] == "shard 0/2: 6 integrations, 1 account: acme (6)"
    assert lines[1] == "shard 1/2: 6 integrations, 3 accounts: nord (3), blau (2), tiny (1)"
    assert lines[2] == "largest shard: 6 integrations = 1.000 x max(largest account 6, total/2 6.0)"
    doc = split_document(split, sizes)
    assert doc["total"] == 12 and doc["largest_account"] == 6
    assert doc["shards"][1] == {"index": 1, "integrations": 6, "accounts": ["nord", "blau", "tiny"]}
    assert split_lines(partition({}, 2), {})[-1] == "largest shard: 0 integrations max(largest account 0, total/2 0.0)"
