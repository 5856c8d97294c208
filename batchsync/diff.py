"""Desired versus current statuses of one integration, by external id.

Order does not matter (the API keeps no order); a status differs when its set of
(language, name) translations differs. Deleted statuses (``deleted_at``) count as absent.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from batchsync.wire import CurrentStatus

TranslationSet = frozenset[tuple[str, str]]


class Change(msgspec.Struct, frozen=True, omit_defaults=True):
    """One status's change: ``+`` added, ``~`` changed, ``-`` removed (deleted)."""

    op: str
    external_id: str
    before: dict[str, str] | None = None
    after: dict[str, str] | None = None


class Diff(msgspec.Struct, frozen=True):
    changes: tuple[Change, ...]

    @property
    def added(self) -> int:
        return sum(1 for c in self.changes if c.op == "+")

    @property
    def changed(self) -> int:
        return sum(1 for c in self.changes if c.op == "~")

    @property
    def removed(self) -> int:
        return sum(1 for c in self.changes if c.op == "-")

    def __bool__(self) -> bool:
        return bool(self.changes)


def _names(translations: Iterable[tuple[str, str]]) -> dict[str, str]:
    return dict(sorted(translations))


def diff(desired: dict[str, TranslationSet], current: Iterable[CurrentStatus]) -> Diff:
    """What a POST of ``desired`` would do to ``current``."""
    now: dict[str, TranslationSet] = {}
    for status in current:
        if status.deleted_at is None:
            now[status.external_id] = frozenset((t.language, t.status) for t in status.translations)
    if now == desired:  # the common case, decided without building anything
        return Diff(())
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
