"""Desired versus current state of one integration: its statuses and its status mapping.

Statuses are compared by external id, order-free (the API keeps no order); a status
differs when its set of (language, name) translations differs, and deleted statuses
(``deleted_at``) count as absent. The mapping is compared category by category.
:func:`mapping_guard` is the one rule both ``plan`` and ``apply`` use to refuse a write
that would silently break a shop's mapping.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Literal

import msgspec

from batchsync.wire import STATUS_CATEGORIES, CurrentMapping, CurrentMappingItem, CurrentStatus, CurrentTranslation

# A status's translations as a set: a decoded ``CurrentTranslation`` is frozen, so hashable
# by value, and a GET answer's list becomes a set without a step per translation.
TranslationSet = frozenset[CurrentTranslation]
Op = Literal["+", "~", "-"]


def translation_set(pairs: Iterable[tuple[str, str]]) -> TranslationSet:
    """The set of ``(language, name)`` pairs, as :func:`diff` compares them."""
    return frozenset(CurrentTranslation(name, language) for language, name in pairs)


class Change(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One status's change: ``+`` added, ``~`` changed, ``-`` removed (deleted)."""

    op: Op
    external_id: str
    before: dict[str, str] | None = None
    after: dict[str, str] | None = None


class Diff:
    """The changes of one integration's statuses, with their counts by kind."""

    __slots__ = ("added", "changed", "changes", "removed")

    def __init__(self, changes: tuple[Change, ...]) -> None:
        self.changes = changes
        added = changed = removed = 0
        for c in changes:
            if c.op == "+":
                added += 1
            elif c.op == "~":
                changed += 1
            else:
                removed += 1
        self.added, self.changed, self.removed = added, changed, removed

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Diff) and other.changes == self.changes

    __hash__ = None  # type: ignore[assignment]  # compared by value, not hashed

    def __repr__(self) -> str:
        return f"Diff({self.changes!r})"


def _names(translations: TranslationSet) -> dict[str, str]:
    return dict(sorted([(t.language, t.status) for t in translations]))


_NO_CHANGE = Diff(())


def diff(desired: dict[str, TranslationSet], current: Iterable[CurrentStatus]) -> Diff:
    """What a POST of ``desired`` would do to ``current``."""
    now = {s.external_id: frozenset(s.translations) for s in current if s.deleted_at is None}
    if now == desired:  # the common case, decided without building anything
        return _NO_CHANGE
    changes: list[Change] = []
    for external_id, want in desired.items():
        have = now.get(external_id)
        if have is None:
            changes.append(Change("+", external_id, after=_names(want)))
        elif have != want:
            changes.append(Change("~", external_id, before=_names(have), after=_names(want)))
    for external_id, have in now.items():
        if external_id not in desired:
            changes.append(Change("-", external_id, before=_names(have)))
    return Diff(tuple(changes))


def everything_added(desired: dict[str, TranslationSet]) -> Diff:
    """The diff assumed when we write without reading (``--no-read``)."""
    return Diff(tuple(Change("+", k, after=_names(v)) for k, v in desired.items()))


class MappingChange(msgspec.Struct, frozen=True, gc=False):
    """One category of the mapping: ``before`` is what the shop has (None: not mapped),
    ``after`` what the inventory wants. ``was_valid`` is False when ``before`` pointed at
    a status that no longer exists."""

    category: str
    before: str | None
    after: str | None
    was_valid: bool = True


def mapping_diff(
    desired: Mapping[str, str | None], current: CurrentMapping, revived: Collection[str] = ()
) -> tuple[MappingChange, ...]:
    """The categories a POST of ``desired`` (all four) would change.

    ``revived``: external ids the statuses write of the same run brings back. An item the
    API marks invalid but that names the wanted id needs no write when its status is
    among them: the API derives ``is_valid`` from what exists (its documentation: "points
    at an external_id that no longer exists"), so the statuses write makes it valid, and a
    mapping write would spend the scarce budget for nothing. Otherwise (the status is
    there already, yet the item says invalid) it is rewritten: a write is then the only
    way to make sure the mapping is live.
    """
    have: dict[str, CurrentMappingItem] = {item.status_category: item for item in current.mapping}
    changes: list[MappingChange] = []
    for category in STATUS_CATEGORIES:
        want = desired.get(category)
        item = have.get(category)
        before = item.external_id if item is not None else None
        valid = item.is_valid if item is not None else True
        stale = want is not None and not valid and want not in revived
        if item is None or before != want or stale:
            changes.append(MappingChange(category, before, want, valid))
    return tuple(changes)


def mapping_guard(current: CurrentMapping, desired_ids: Collection[str]) -> tuple[MappingChange, ...]:
    """Categories of the shop's current mapping that writing ``desired_ids`` would break.

    A category is broken when it is valid now and points at an external id the write
    removes. One already invalid is not made worse by the write, so it is not counted.
    Only meaningful for an integration whose inventory entry declares no mapping: a
    declared mapping sets all four categories and is written after the statuses.
    """
    return tuple(
        MappingChange(item.status_category, item.external_id, None, True)
        for item in current.mapping
        if item.external_id is not None and item.is_valid and item.external_id not in desired_ids
    )


def removes_any(change: Diff) -> bool:
    """Whether a diff deletes a status (so the current mapping may point at it)."""
    return any(c.op == "-" for c in change.changes)
