"""Sharding: a deterministic split of the selected integrations' accounts into N shards.

Every pod of a Kubernetes Indexed Job computes the same split from the same inventory and
runs only its own shard. Accounts are never split: an account's API budget is one limit,
and two machines sharing it would each believe they had all of it.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

MAX_SHARDS = 10_000  # far beyond any sensible fleet; stops a typo allocating a billion shards

_SPEC = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


class ShardSpec(msgspec.Struct, frozen=True):
    """One shard of N: ``index`` counts from 0, as Kubernetes' ``JOB_COMPLETION_INDEX`` does."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_count(text: str) -> int:
    """The number of shards (``--shard-count``, ``validate --shards``)."""
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"expected a whole number of shards from 1 to {MAX_SHARDS}")
    count = int(text)
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be from 1 to {MAX_SHARDS}")
    return count


def _spec(index: int, count: int) -> ShardSpec:
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be from 1 to {MAX_SHARDS}")
    if index >= count:
        raise ValueError(f"shards are numbered from 0: the index must be 0 to {count - 1}, not {index}")
    return ShardSpec(index, count)


def parse_shard(text: str) -> ShardSpec:
    """``I/N`` (``--shard``): shard I (0 to N-1) of N."""
    m = _SPEC.fullmatch(text)
    if m is None:
        raise ValueError("expected I/N: this shard's index (from 0) and the number of shards, e.g. 0/4")
    return _spec(int(m.group(1)), int(m.group(2)))


def shard_from_env(var: str, count: int, environ: Mapping[str, str]) -> ShardSpec:
    """``--shard-index-from-env VAR --shard-count N``: the index is the value of ``VAR``."""
    value = environ.get(var)
    if value is None:
        raise ValueError(f"${var} is not set (Kubernetes sets JOB_COMPLETION_INDEX in each pod of an Indexed Job)")
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        # Its value is never shown: a variable may hold anything, a credential included
        # (a mistyped name), and this message goes to a log.
        raise ValueError(f"${var} is not a shard index, a whole number from 0 (its value is not shown)")
    index = int(text)
    if index >= count:
        raise ValueError(f"${var} is not a shard index from 0 to {count - 1} (shards are numbered from 0)")
    return _spec(index, count)


class Split(msgspec.Struct, frozen=True):
    """The accounts of each shard, and their integration counts."""

    shards: tuple[tuple[str, ...], ...]  # account names per shard, largest account first
    integrations: tuple[int, ...]  # integrations per shard

    @property
    def count(self) -> int:
        return len(self.shards)

    @property
    def accounts(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.shards)

    def shard_of(self, account: str) -> int | None:
        for index, names in enumerate(self.shards):
            if account in names:
                return index
        return None

    def header(self, index: int) -> dict[str, Any]:
        """The report header's ``shard`` block: what ``report merge`` needs to know what a
        missing shard should have done."""
        return {
            "index": index,
            "count": self.count,
            "integrations": list(self.integrations),
            "accounts": list(self.accounts),
        }


def partition(sizes: Mapping[str, int], count: int) -> Split:
    """Split accounts into ``count`` shards, balanced by integration count.

    Largest account first, each onto the shard holding the fewest integrations so far
    (LPT, "longest processing time first"); ties: accounts by name, shards by index. It
    depends on nothing but ``sizes`` and ``count``, so every pod computes the same split.

    The largest shard holds at most ``balance_bound(sizes, count)`` integrations: the fair
    share ``total/count`` plus (1 - 1/count) of the (count+1)-th largest account, or the
    largest account alone when that is more.
    """
    if count < 1:
        raise ValueError("at least one shard")
    if any(size < 0 for size in sizes.values()):
        raise ValueError("an account cannot have a negative number of integrations")
    order = sorted(sizes, key=lambda name: (-sizes[name], name))
    heap = [(0, index) for index in range(count)]  # (load, index): the least loaded, lowest index on top
    members: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for name in order:
        load, index = heap[0]
        members[index].append(name)
        loads[index] = load + sizes[name]
        heapq.heapreplace(heap, (loads[index], index))
    return Split(tuple(tuple(m) for m in members), tuple(loads))


def balance_bound(sizes: Mapping[str, int], count: int) -> int:
    """The most integrations :func:`partition` can put on one shard.

    Let j be the last account placed on the largest shard. If j was among the first
    ``count`` placed, it went onto an empty shard, which then holds p_j <= the largest
    account. Otherwise p_j <= q, the (count+1)-th largest account, and when j was placed
    the least loaded shard held at most floor((total - p_j) / count); floor((T - p)/N) + p
    never decreases as p grows, so the shard ends at most floor((T - q)/N) + q.
    """
    ordered = sorted(sizes.values(), reverse=True)
    if not ordered:
        return 0
    total = sum(ordered)
    q = ordered[count] if len(ordered) > count else 0
    return max(ordered[0], (total - q) // count + q)


class _HasAccount(Protocol):
    @property
    def account(self) -> str: ...


J = TypeVar("J", bound=_HasAccount)


def account_sizes(jobs: Iterable[_HasAccount]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for job in jobs:
        sizes[job.account] = sizes.get(job.account, 0) + 1
    return sizes


def select_shard(jobs: Sequence[J], spec: ShardSpec) -> tuple[list[J], Split]:
    """The jobs of shard ``spec``, and the whole split (for the report header).

    Split what was selected (after ``--limit``), so the shards balance the work actually
    done; every pod must then be given the same selection.
    """
    split = partition(account_sizes(jobs), spec.count)
    mine = frozenset(split.shards[spec.index])
    return [j for j in jobs if j.account in mine], split


def split_lines(split: Split, sizes: Mapping[str, int]) -> list[str]:
    """``validate --shards N``: one line per shard, then how balanced the split is."""
    n = split.count
    lines = []
    for index, names in enumerate(split.shards):
        listed = ", ".join(f"{name} ({sizes[name]})" for name in names)
        lines.append(
            f"shard {index}/{n}: {split.integrations[index]} integrations, "
            f"{len(names)} account{'s' if len(names) != 1 else ''}" + (f": {listed}" if listed else "")
        )
    total = sum(split.integrations)
    largest = max(sizes.values(), default=0)
    floor = max(largest, total / n)
    biggest = max(split.integrations, default=0)
    ratio = f" = {biggest / floor:.3f} x" if floor else ""
    lines.append(
        f"largest shard: {biggest} integrations{ratio} max(largest account {largest}, total/{n} {total / n:.1f})"
    )
    return lines


def split_document(split: Split, sizes: Mapping[str, int]) -> dict[str, Any]:
    """``validate --shards N --format json``: the split as one object."""
    return {
        "count": split.count,
        "total": sum(split.integrations),
        "largest_account": max(sizes.values(), default=0),
        "shards": [
            {"index": i, "integrations": split.integrations[i], "accounts": list(names)}
            for i, names in enumerate(split.shards)
        ],
    }
