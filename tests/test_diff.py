"""Desired versus current: order-free, by external id, deleted statuses count as absent."""

from __future__ import annotations

from batchsync.diff import diff, everything_added
from batchsync.model import Desired
from batchsync.wire import CurrentStatus, CurrentTranslation, Status, Translation


def want(*items: tuple[str, dict[str, str]]) -> Desired:
    return Desired(tuple(Status(eid, tuple(Translation(n, lang) for lang, n in tr.items())) for eid, tr in items))  # type: ignore[arg-type]


def have(eid: str, tr: dict[str, str], deleted: str | None = None) -> CurrentStatus:
    return CurrentStatus(eid, tuple(CurrentTranslation(n, lang) for lang, n in tr.items()), deleted_at=deleted)


def test_same_statuses_in_any_order_are_unchanged() -> None:
    d = want(("1", {"en-gb": "Paid", "nl-nl": "Betaald"}), ("2", {"en-gb": "Sent"}))
    current = [have("2", {"en-gb": "Sent"}), have("1", {"nl-nl": "Betaald", "en-gb": "Paid"})]
    assert not diff(d.index, current)


def test_added_changed_removed() -> None:
    d = want(("1", {"en-gb": "Paid"}), ("2", {"en-gb": "Shipped"}), ("3", {"en-gb": "New"}))
    current = [have("1", {"en-gb": "Paid"}), have("2", {"en-gb": "Sent"}), have("9", {"en-gb": "Old"})]
    result = diff(d.index, current)
    assert (result.added, result.changed, result.removed) == (1, 1, 1)
    ops = {c.external_id: c.op for c in result.changes}
    assert ops == {"3": "+", "2": "~", "9": "-"}
    changed = next(c for c in result.changes if c.op == "~")
    assert changed.before == {"en-gb": "Sent"} and changed.after == {"en-gb": "Shipped"}


def test_deleted_statuses_count_as_absent() -> None:
    d = want(("1", {"en-gb": "Paid"}))
    current = [have("1", {"en-gb": "Paid"}, deleted="2024-01-01T00:00:00Z")]
    result = diff(d.index, current)
    assert [c.op for c in result.changes] == ["+"]
    assert not diff(d.index, [*current, have("1", {"en-gb": "Paid"})])


def test_extra_translation_is_a_change() -> None:
    d = want(("1", {"en-gb": "Paid"}))
    result = diff(d.index, [have("1", {"en-gb": "Paid", "de-de": "Bezahlt"})])
    assert result.changed == 1


def test_everything_added_without_reading() -> None:
    d = want(("1", {"en-gb": "Paid"}), ("2", {"en-gb": "Sent"}))
    assert everything_added(d.index).added == 2
