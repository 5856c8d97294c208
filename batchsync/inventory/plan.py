"""A saved plan (``plan --out``, ``apply --plan``, ``show``): the file's structs, reading one
within bounds, the inventory's content hash, and the fingerprint of what a plan read.

The file is a value (docs: "Saved plans"): what to write to each integration, exactly as
the POST bodies carry it, and what was read when the plan was made, so that ``apply --plan``
can tell, before each write, whether the shop moved since. It holds no credential and no
reference to one (accounts are named; the apply takes them from the inventory), and its
inventory hash leaves out the secret files: a rotated key does not stale a plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

from batchsync import files
from batchsync.diff import Change, TranslationSet, diff
from batchsync.files import FileProblem
from batchsync.model import Desired, Inventory, Job
from batchsync.outcome import ErrorInfo, Outcome
from batchsync.text import display, json_safe, quoted
from batchsync.wire import (
    STATUS_CATEGORIES,
    CurrentMapping,
    CurrentStatus,
    CurrentTranslation,
    IntegrationId,
    MappingItem,
    StatusCategory,
    Statuses,
    check_statuses,
)

FORMAT: Literal["batchsync-plan"] = "batchsync-plan"
VERSION: Literal[1] = 1  # of the file's schema (docs/plan.schema.json); another is refused
PLAN_FILE_LIMIT = 256 * files.MB  # a plan of 100,000 integrations is a few tens of MB
SHOWN_MOVES = 6  # what moved, named in a stale_plan's detail; the rest counted

T = TypeVar("T")
Action = Literal["change", "none"]
Pairs = tuple[tuple[str, str], ...]  # (language, name), sorted


class Source(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The inventory a plan was made from: its path as given, and its content hash."""

    path: str
    sha256: str


class Selection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the plan's run was narrowed to, as given on its command line."""

    limit: tuple[str, ...] = ()
    shard: str | None = None
    retry_failed: str | None = None


class ReadStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True, array_like=True):
    """One status as read, canonical: ``[external_id, [[language, name], ...]]``."""

    external_id: str
    translations: Pairs


class Read(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the plan read of one integration it changes: every live status (sorted by
    external id) and the mapping (category -> external id, null: unmapped), and their
    fingerprint, the sha256 of both in this canonical form."""

    fingerprint: str
    statuses: tuple[ReadStatus, ...]
    mapping: dict[StatusCategory, str | None]


class Write(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What ``apply --plan`` writes, as the POST bodies carry it: ``statuses`` names a list
    of the plan's ``statuses`` (shared: a fleet on one status set holds it once);
    ``mapping`` null: no mapping write."""

    statuses: str
    mapping: Annotated[tuple[MappingItem, ...], Meta(min_length=4, max_length=4)] | None = None


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One integration of the plan: ``change`` (with its write and read) or ``none``
    (nothing to change, or the plan could not find out: see its outcome)."""

    integration_id: IntegrationId
    account: str
    action: Action
    outcome: Outcome  # what ``plan`` printed for it (the diff): what ``show`` prints
    name: str | None = None
    write: Write | None = None
    read: Read | None = None


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A saved plan: what made it, from which inventory content and selection, and one
    entry per integration its run selected."""

    format: Literal["batchsync-plan"]
    version: Literal[1]
    batchsync: str
    created_at: str  # UTC, ISO 8601
    inventory: Source
    selection: Selection
    complete: bool  # False: the plan's run was stopped before it had read every integration
    statuses: dict[str, Statuses]  # the lists to write, each once, by the name its writes give
    integrations: tuple[Entry, ...]


class _Head(msgspec.Struct):
    format: object = None
    version: object = None
    batchsync: object = None


class PlanError(ValueError):
    """A plan that cannot be used: unreadable, malformed, or refused; the message says why."""


# -- the canonical form of what was read, and its fingerprint ----------------------------


def read_statuses(current: Iterable[CurrentStatus]) -> tuple[ReadStatus, ...]:
    """The live statuses as :func:`batchsync.diff.diff` sees them: deleted ones left out,
    translations as a set."""
    live = {s.external_id: {(t.language, t.status) for t in s.translations} for s in current if s.deleted_at is None}
    return tuple(ReadStatus(k, tuple(sorted(v))) for k, v in sorted(live.items()))


def desired_statuses(desired: Desired) -> tuple[ReadStatus, ...]:
    """What reading ``desired`` back would give (the diff found nothing to change)."""
    live = {s.external_id: {(t.language, t.status) for t in s.translations} for s in desired.statuses}
    return tuple(ReadStatus(k, tuple(sorted(v))) for k, v in sorted(live.items()))


def read_mapping(current: CurrentMapping) -> dict[StatusCategory, str | None]:
    have = {item.status_category: item.external_id for item in current.mapping}
    return {c: have.get(c) for c in STATUS_CATEGORIES}


def fingerprint(statuses: Sequence[ReadStatus], mapping: Mapping[StatusCategory, str | None]) -> str:
    ordered = [[c, mapping.get(c)] for c in STATUS_CATEGORIES]
    return "sha256:" + hashlib.sha256(msgspec.json.encode([list(statuses), ordered])).hexdigest()


def make_read(statuses: tuple[ReadStatus, ...], mapping: dict[StatusCategory, str | None]) -> Read:
    return Read(fingerprint(statuses, mapping), statuses, mapping)


ECHOED = (
    "what the shop has holds a value of the account's credentials (a server that echoes them): "
    "not saved in a plan, a file that is shared and approved; remove it from the shop, or apply without a plan"
)


class Recorder:
    """``plan --out``'s step before a write (the engine's ``before_write``): what each
    integration to change was read as. It refuses only an integration whose read holds a
    credential value (``redact``, the run's redactor, changes it): the plan records what
    was read as it was, or its fingerprint would not be the shop's, and no credential is
    in the file."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        self.reads: dict[int, Read] = {}
        self.redact = redact

    def __call__(
        self, job: Job, current: tuple[CurrentStatus, ...] | None, mapping: CurrentMapping
    ) -> ErrorInfo | None:
        statuses = desired_statuses(job.desired) if current is None else read_statuses(current)
        read = read_mapping(mapping)
        if self.redact is not None:
            # One pass over all the texts a server wrote (the redactor's gate makes a clean one cheap).
            texts = [s.external_id for s in statuses]
            texts += [text for s in statuses for pair in s.translations for text in pair]  # languages too
            texts += [v for v in read.values() if v is not None]
            joined = "\0".join(texts)  # no whitespace: "Basic" and a name after it are not a header
            if self.redact(joined) != joined:
                return ErrorInfo("refused", detail=ECHOED)
        self.reads[job.integration_id] = make_read(statuses, read)
        return None


class Checker:
    """``apply --plan``'s step before a write: the integration as read now against the
    fingerprint its plan recorded; ``stale_plan``, naming what moved, when they differ."""

    def __init__(self, reads: Mapping[int, Read]) -> None:
        self.reads = reads

    def __call__(
        self, job: Job, current: tuple[CurrentStatus, ...] | None, mapping: CurrentMapping
    ) -> ErrorInfo | None:
        then = self.reads[job.integration_id]
        statuses = desired_statuses(job.desired) if current is None else read_statuses(current)
        now = read_mapping(mapping)
        if fingerprint(statuses, now) == then.fingerprint:
            return None
        if current is None and job.mapping is not None and now == then.mapping:
            # Its statuses are the plan's already and its mapping is still what the plan read:
            # a run of this plan wrote the one and stopped before the other (a kill, a mapping
            # POST that failed). The rest of the plan's own work, not a change of the shop.
            return None
        moved = what_moved(then, statuses, now)
        detail = "the shop changed since the plan was made: " + "; ".join(moved) + ": make a new plan"
        return ErrorInfo("stale_plan", detail=detail)


def _shown(external_id: str | None) -> str:
    return "unmapped" if external_id is None else quoted(external_id)


def what_moved(then: Read, statuses: Sequence[ReadStatus], mapping: Mapping[StatusCategory, str | None]) -> list[str]:
    """In words, how ``statuses``/``mapping`` differ from what the plan read (a few, then a count)."""
    moved: list[str] = []
    before = {s.external_id: dict(s.translations) for s in then.statuses}
    after = {s.external_id: dict(s.translations) for s in statuses}
    for external_id in sorted(before.keys() | after.keys()):
        was, now = before.get(external_id), after.get(external_id)
        name = f"status {quoted(external_id)}"
        if was is None:
            moved.append(f"{name} added")
        elif now is None:
            moved.append(f"{name} removed")
        else:
            for language in sorted(was.keys() | now.keys()):
                a, b = was.get(language), now.get(language)
                if a == b:
                    continue
                if a is None:
                    moved.append(f"{name} gained {display(language)} ({quoted(b)})")
                elif b is None:
                    moved.append(f"{name} lost {display(language)} ({quoted(a)})")
                else:
                    moved.append(f"{name} renamed in {display(language)} ({quoted(a)} -> {quoted(b)})")
    for category in STATUS_CATEGORIES:
        a, b = then.mapping.get(category), mapping.get(category)
        if a != b:
            moved.append(f"mapping {category} moved ({_shown(a)} -> {_shown(b)})")
    if not moved:  # a fingerprint that disagrees with its own lists (a hand-edited plan)
        moved.append("what was read no longer matches the plan's fingerprint")
    if len(moved) > SHOWN_MOVES:
        rest = len(moved) - SHOWN_MOVES + 1
        moved = [*moved[: SHOWN_MOVES - 1], f"and {rest} more"]
    return moved


# -- the inventory's content ------------------------------------------------------------


def inventory_hash(inv: Inventory) -> str:
    """sha256 over the inventory file and every file it references except the secret
    files (each by its path relative to the inventory's folder); PlanError if one cannot
    be read."""
    folder = os.path.dirname(os.path.abspath(inv.path))
    secret = {os.path.abspath(f) for f in inv.secret_files}
    referenced = sorted({os.path.abspath(f) for f in inv.files} - secret - {os.path.abspath(inv.path)})
    h = hashlib.sha256()
    for i, path in enumerate([os.path.abspath(inv.path), *referenced]):
        try:
            data = files.read_regular(path, files.INVENTORY_LIMIT if i == 0 else files.STATUSES_FILE_LIMIT)
        except FileProblem as exc:
            raise PlanError(f"{display(path)}: {exc.message}") from None
        name = "" if i == 0 else os.path.relpath(path, folder)
        h.update(msgspec.json.encode([name, hashlib.sha256(data).hexdigest()]) + b"\n")
    return h.hexdigest()


# -- the file ---------------------------------------------------------------------------


def compatible(made_by: str, running: str) -> bool:
    """The rule: a plan applies with the batchsync of the same major and minor version
    that made it (a patch release changes no diff rule and no write; a minor one may)."""
    return made_by.split(".")[:2] == running.split(".")[:2]


def decode(data: bytes, where: str, running: str | None) -> Plan:
    """The plan in ``data`` (the file ``where``), checked: PlanError naming what is wrong.
    ``running``: the batchsync version that is to apply it (None: it is only shown)."""
    if data.startswith(b"\xef\xbb\xbf"):  # an editor's byte order mark: JSON has none
        raise PlanError(f"{where}: starts with a byte order mark (BOM): save it as UTF-8 without one")
    head = _decoded(data, _Head, where, "not a plan file ({})")
    if head.format != FORMAT:
        raise PlanError(f"{where}: not a plan file (its format is {_said(head.format)}, not {FORMAT!r})")
    if head.version != VERSION:
        raise PlanError(
            f"{where}: plan format version {_said(head.version)}; this batchsync reads version {VERSION}: "
            "make the plan again with this batchsync"
        )
    if not isinstance(head.batchsync, str) or (running is not None and not compatible(head.batchsync, running)):
        raise PlanError(
            f"{where}: made by batchsync {_said(head.batchsync)}; this is {running}, and a plan applies only with "
            "the same major and minor version: make the plan again"
        )
    plan = _decoded(data, Plan, where, "{}")
    _check(plan, where)
    return plan


def _decoded(data: bytes, kind: type[T], where: str, why: str) -> T:
    """``data`` as ``kind``; PlanError ``where: why`` (``{}``: msgspec's words) otherwise."""
    try:
        return msgspec.json.decode(data, type=kind)
    except RecursionError:  # msgspec's own bound on nesting
        raise PlanError(f"{where}: nested too deeply to be a plan") from None
    except msgspec.DecodeError as exc:
        raise PlanError(f"{where}: {why.format(exc)}") from None


def _said(value: object) -> str:
    text = msgspec.json.encode(value).decode() if isinstance(value, str | int | float | bool | None) else "not a value"
    return display(text[:60])


def _check(plan: Plan, where: str) -> None:
    """The rules no type says: one entry per integration; a change carries its write and a
    read whose fingerprint is its own; the write's statuses obey the API's rules."""
    try:
        created = dt.datetime.fromisoformat(plan.created_at)
    except ValueError:
        raise PlanError(f"{where}: $.created_at: not an ISO 8601 time") from None
    if created.tzinfo is None:
        raise PlanError(f"{where}: $.created_at: has no time zone")
    for key, statuses in plan.statuses.items():
        problems = check_statuses(statuses, ())
        if problems:
            inner = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in problems[0].loc)
            raise PlanError(f"{where}: $.statuses[{display(repr(key))}]{inner}: {problems[0].message}")
    seen: set[int] = set()
    indexes: dict[str, dict[str, TranslationSet]] = {}  # each written list as a diff compares it
    for i, entry in enumerate(plan.integrations):
        at = f"{where}: $.integrations[{i}]"
        if entry.integration_id in seen:
            raise PlanError(f"{at}: integration {entry.integration_id} is planned twice")
        seen.add(entry.integration_id)
        if entry.action == "none":
            why = _not_none(entry)
            if why is not None:
                raise PlanError(f"{at}.outcome: {why}: an entry that changes nothing must not show a change")
            continue
        if entry.write is None or entry.read is None:
            raise PlanError(f"{at}: a change needs its write and its read")
        if fingerprint(entry.read.statuses, entry.read.mapping) != entry.read.fingerprint:
            raise PlanError(f"{at}.read: the fingerprint is not that of the statuses and mapping recorded")
        if entry.write.statuses not in plan.statuses:
            raise PlanError(f"{at}.write.statuses: {display(repr(entry.write.statuses))} is not one of $.statuses")
        if entry.write.mapping is not None and {m.status_category for m in entry.write.mapping} != set(
            STATUS_CATEGORIES
        ):
            raise PlanError(f"{at}.write.mapping: needs each of {', '.join(STATUS_CATEGORIES)} once")
        key = entry.write.statuses
        index = indexes.get(key)
        if index is None:  # each list once: a fleet on one status set shares it
            index = indexes[key] = Desired(plan.statuses[key]).index
        why = _not_as_shown(entry, index)
        if why is not None:
            raise PlanError(f"{at}.outcome: {why}: it is not what its write does to what it read")


def _not_none(entry: Entry) -> str | None:
    """What of a ``none`` entry's outcome (what ``show`` prints, what a client approves)
    says a change that ``apply --plan`` would not make, or None. Its outcome is what the
    plan found: unchanged, or a failure (a read that failed, a write the guard refused),
    which may show the changes it did not make."""
    outcome = entry.outcome
    if (outcome.integration_id, outcome.account) != (entry.integration_id, entry.account):
        return "another integration's"
    if outcome.result == "changed":
        return "it says changed"
    if outcome.result == "unchanged" and (
        outcome.changes or outcome.mapping_changes or outcome.added or outcome.changed or outcome.removed
    ):
        return "unchanged, with changes"
    return None


def _change_key(change: Change) -> tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]:
    return change.op, change.external_id, sorted((change.before or {}).items()), sorted((change.after or {}).items())


def _not_as_shown(entry: Entry, desired: dict[str, TranslationSet]) -> str | None:
    """What of a change's outcome (what ``show`` prints, what a client approves) differs
    from what its write does to what its read recorded, or None: a plan edited by hand
    must not write what it does not show."""
    read, write, outcome = entry.read, entry.write, entry.outcome
    assert read is not None and write is not None
    if (outcome.integration_id, outcome.account, outcome.result) != (entry.integration_id, entry.account, "changed"):
        return "another integration's, or not a change"
    current = [
        CurrentStatus(s.external_id, tuple(CurrentTranslation(name, language) for language, name in s.translations))
        for s in read.statuses
    ]
    done = diff(desired, current)
    if sorted(map(_change_key, outcome.changes)) != sorted(map(_change_key, done.changes)) or (
        outcome.added,
        outcome.changed,
        outcome.removed,
    ) != (done.added, done.changed, done.removed):
        return "its status changes"
    shown = {m.category: (m.before, m.after) for m in outcome.mapping_changes}
    if len(shown) != len(outcome.mapping_changes):
        return "its mapping changes"
    if write.mapping is None:
        return "its mapping changes" if shown else None
    want = {m.status_category: m.external_id for m in write.mapping}
    for category in STATUS_CATEGORIES:
        pair = (read.mapping.get(category), want.get(category))
        if category in shown:  # shown with the same id before and after: it was invalid
            if shown.pop(category) != pair:
                return "its mapping changes"
        elif pair[0] != pair[1]:  # written, never shown
            return "its mapping changes"
    return "its mapping changes" if shown else None


def read_plan(path: str, running: str | None) -> tuple[Plan, str]:
    """The plan file at ``path`` and its sha256: PlanError naming the file and what is wrong."""
    try:
        data = files.read_regular(path, PLAN_FILE_LIMIT)
    except FileProblem as exc:
        raise PlanError(f"{display(path)}: {exc.message}") from None
    return decode(data, display(path), running), hashlib.sha256(data).hexdigest()


def age_problem(plan: Plan, max_age: float, now: dt.datetime) -> str | None:
    """Why the plan is too old (or from the future) to apply, or None."""
    created = dt.datetime.fromisoformat(plan.created_at)
    age = (now - created).total_seconds()
    if age < -300:
        return f"it was made at {plan.created_at}, in the future of this machine's clock"
    if age > max_age:
        return f"it was made at {plan.created_at}, {_span(age)} ago, more than --max-age {_span(max_age)}"
    return None


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.3g}{unit}" if value < 1000 else f"{value:.0f}{unit}"  # 2530d, not 2.53e+03d
    return f"{seconds:.0f}s"


def encode(plan: Plan) -> bytes:
    return json_safe(msgspec.json.encode(plan)) + b"\n"


def json_schema() -> dict[str, object]:
    """The file's JSON Schema (docs/plan.schema.json holds it; a test keeps them equal)."""
    schema: dict[str, object] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "batchsync plan file",
        "description": (
            f"What `batchsync plan --out` writes and `apply --plan` reads: format {FORMAT!r}, version {VERSION}."
        ),
    }
    schema.update(msgspec.json.schema(Plan))
    return schema
