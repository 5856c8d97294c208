"""``batchsync import``, the pure part: what the accounts have, as an inventory file.

Expand run backwards: each integration's current statuses and mapping become one
canonical list; identical lists, and lists within a few statuses of a common one, are
grouped into shared status sets (the near ones with ``override_statuses`` /
``remove_statuses``); the result is rendered as TOML, YAML or JSON, deterministically.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from batchsync.model import PRESTASHOP_V2, SECRET_FIELDS
from batchsync.text import one_line
from batchsync.wire import (
    STATUS_CATEGORIES,
    CurrentMapping,
    CurrentMappingItem,
    CurrentStatus,
    Status,
    Statuses,
    check_statuses,
    split_validation_error,
    to_jsonpath,
)

Format = Literal["toml", "yaml", "json"]
FORMATS: tuple[Format, ...] = ("toml", "yaml", "json")
SUFFIX_FORMATS: dict[str, Format] = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}

MAX_DIFFERENCES = 3
"""A shop uses a shared set with overrides when at most this many of its statuses differ
from the set (added, changed or removed), and at most half as many as the set has."""

MIN_SHARED = 2
"""A list becomes a shared set when at least this many integrations use it (exactly or
with overrides); a list nobody shares is written inline on its integration."""

MAX_LEADERS = 2000  # distinct lists compared against each other at most (the grouping is quadratic in them)

Mapping4 = tuple[str | None, ...]  # one external id (or None: not mapped) per STATUS_CATEGORIES
UNMAPPED: Mapping4 = (None,) * len(STATUS_CATEGORIES)


class Shop(msgspec.Struct, frozen=True):
    """An integration as ``GET /integrations`` lists it, under the account that lists it."""

    id: int
    account: str
    name: str | None = None
    url: str | None = None
    system: str | None = None
    failing_since: str | None = None


class Current(msgspec.Struct, frozen=True):
    """One integration whose state can be declared: canonical statuses and mapping.

    ``mapping`` is None when the shop's mapping cannot be declared as it is (it points
    at a status the shop does not have): the integration then declares none, and plan
    leaves it alone. ``UNMAPPED``: the shop maps no category.
    """

    shop: Shop
    statuses: Statuses
    mapping: Mapping4 | None
    note: str | None = None


class NotImportable(msgspec.Struct, frozen=True):
    shop: Shop
    reason: str


class ExistingSet(msgspec.Struct, frozen=True):
    """A status set the inventory declares inline, usable as a base for new integrations."""

    name: str
    statuses: Statuses
    mapping: Mapping4 | None  # None: the set declares no mapping


# -- canonical form -----------------------------------------------------------------------


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no file can hold it
        return False
    return True


def natural(text: str) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """A sort key that puts ``2`` before ``13`` (PrestaShop's ids are numbers)."""
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text) if p)
    return parts, text


def canonical_statuses(statuses: Iterable[Status]) -> Statuses:
    """Ordered by external id, translations by language: equal lists compare equal."""
    return tuple(
        sorted(
            (Status(s.external_id, tuple(sorted(s.translations, key=lambda t: t.language))) for s in statuses),
            key=lambda s: natural(s.external_id),
        )
    )


def canonical(shop: Shop, statuses: Sequence[CurrentStatus], mapping: CurrentMapping) -> Current | NotImportable:
    """One integration's state as an inventory can declare it, or why it cannot.

    Deleted statuses are dropped (a POST of the rest leaves them deleted). A status the
    inventory format refuses (a language it does not know, an empty name, an external
    id used twice) makes the whole integration not importable: declaring anything else
    would change the shop on the next apply.
    """
    live = [s for s in statuses if s.deleted_at is None]
    raw = [
        {
            "external_id": s.external_id,
            "translations": _translations(s.translations),
        }
        for s in live
    ]
    try:
        converted: Statuses = msgspec.convert(raw, Statuses, strict=True)
    except msgspec.ValidationError as exc:
        message, loc = split_validation_error(exc)
        where = to_jsonpath(("statuses", *loc))
        return NotImportable(shop, f"its statuses cannot be declared: {message} (at {where})")
    problems = check_statuses(converted)
    if problems:
        return NotImportable(shop, f"its statuses cannot be declared: {problems[0].message}")
    for s in converted:
        if not encodable(s.external_id) or not all(encodable(t.status) for t in s.translations):
            return NotImportable(shop, f"status {s.external_id!a} has text that is not valid Unicode")
    ordered = canonical_statuses(converted)
    ids = {s.external_id for s in ordered}
    items: dict[str, CurrentMappingItem] = {item.status_category: item for item in mapping.mapping}
    if len(mapping.mapping) != len(STATUS_CATEGORIES) or set(items) != set(STATUS_CATEGORIES):
        note = "its mapping does not list each of the four categories once: left undeclared"
        return Current(shop, ordered, None, note)
    broken = [
        f"{c} -> {items[c].external_id!r}"
        for c in STATUS_CATEGORIES
        if items[c].external_id is not None and (not items[c].is_valid or items[c].external_id not in ids)
    ]
    if broken:
        note = (
            f"its mapping points at statuses it does not have ({', '.join(broken)}): left undeclared; "
            "declare one to repair it"
        )
        return Current(shop, ordered, None, note)
    return Current(shop, ordered, tuple(items[c].external_id for c in STATUS_CATEGORIES))


# -- differences between lists ----------------------------------------------------------

_Index = dict[str, Status]


def status_index(statuses: Statuses) -> _Index:
    return {s.external_id: s for s in statuses}


def differing(base: _Index, target: _Index, stop: int = 1 << 30) -> int:
    """How many statuses differ (added, changed or removed); stops counting past ``stop``."""
    n = 0
    for k, s in target.items():
        if base.get(k) != s:
            n += 1
            if n > stop:
                return n
    for k in base:
        if k not in target:
            n += 1
            if n > stop:
                return n
    return n


def allowed(base: _Index, target: _Index, max_differences: int) -> int | None:
    """The number of differing statuses if ``target`` may use ``base`` with overrides, else None.

    The rule: at most ``max_differences``, and at most half the base's size, so that a
    shop keeps most of its set (a 2-status set takes 1 difference, a 1-status set none).
    """
    limit = min(max_differences, len(base) // 2)
    d = differing(base, target, limit)
    return d if d <= limit else None


def delta(base: Statuses, target: Statuses) -> tuple[Statuses, tuple[str, ...]]:
    """(override_statuses, remove_statuses) that turn ``base`` into ``target``.

    An override replaces a status's translations language by language and keeps the
    others: a changed status lists only the translations that differ, and one that loses
    a language is removed and added back whole.
    """
    have = status_index(base)
    wanted = {s.external_id for s in target}
    overrides: list[Status] = []
    removals: list[str] = [k for k in have if k not in wanted]
    for s in target:
        old = have.get(s.external_id)
        if old == s:
            continue
        if old is None:
            overrides.append(s)
        elif {t.language for t in old.translations} <= {t.language for t in s.translations}:
            kept = set(old.translations)
            overrides.append(Status(s.external_id, tuple(t for t in s.translations if t not in kept)))
        else:
            overrides.append(s)
            removals.append(s.external_id)
    return tuple(overrides), tuple(sorted(removals, key=natural))


# -- grouping -------------------------------------------------------------------------------


def _key(statuses: Statuses) -> bytes:
    return msgspec.json.encode(statuses)


class _Base:
    """A candidate set: fixed (the inventory has it already) or new (found here)."""

    __slots__ = ("existing", "index", "mapping", "name", "statuses")

    def __init__(self, statuses: Statuses, existing: ExistingSet | None = None) -> None:
        self.statuses = statuses
        self.index = status_index(statuses)
        self.existing = existing
        self.name = existing.name if existing else ""
        self.mapping: Mapping4 | None = existing.mapping if existing else None


def _consensus(members: Sequence[Statuses], weight: Mapping[Statuses, int]) -> Statuses:
    """The statuses most members have: each external id held by more than half of them
    (by weight), with the translations most of those give it (ties: the first in order)."""
    total = sum(weight[m] for m in members)
    versions: dict[str, Counter[Status]] = {}
    held: Counter[str] = Counter()
    for m in members:
        for s in m:
            held[s.external_id] += weight[m]
            versions.setdefault(s.external_id, Counter())[s] += weight[m]
    chosen = []
    for k in sorted(held, key=natural):
        if held[k] * 2 > total:
            counts = versions[k]
            chosen.append(min(counts, key=lambda s: (-counts[s], _key((s,)))))
    return tuple(chosen)


def _families(lists: Sequence[Statuses], radius: int) -> list[list[Statuses]]:
    """Leader clustering: each list (most used first) joins the nearest leader within
    ``radius`` differences (ties: the first), else leads a family of its own.

    Only leaders that share a status with it are compared, found through an index from
    each status to the leaders that have it: at least ``max(sizes) - radius`` statuses
    must be shared to be that near, and lists that share none are no family anyway.
    """
    leaders: list[tuple[_Index, list[Statuses]]] = []
    having: dict[Status, list[int]] = {}
    for s in lists:
        idx = status_index(s)
        shared: Counter[int] = Counter()
        for status in s:
            for k in having.get(status, ()):
                shared[k] += 1
        best: int | None = None
        best_d = radius + 1
        for k in sorted(shared):
            lead = leaders[k][0]
            if shared[k] < max(len(lead), len(idx)) - radius or abs(len(lead) - len(idx)) >= best_d:
                continue
            d = differing(lead, idx, best_d - 1)
            if d < best_d:
                best, best_d = k, d
        if best is not None:
            leaders[best][1].append(s)
        elif len(leaders) < MAX_LEADERS:
            for status in s:
                having.setdefault(status, []).append(len(leaders))
            leaders.append((idx, [s]))
    return [fam for _, fam in leaders]


class Placement(msgspec.Struct, frozen=True):
    """Where one integration's statuses come from in the file."""

    current: Current
    base: str | None  # the set's name; None: inline statuses
    overrides: Statuses = ()
    removals: tuple[str, ...] = ()
    mapping: dict[str, str | None] | None = None  # categories to write (None value: not mapped)


class NewSet(msgspec.Struct, frozen=True):
    name: str
    statuses: Statuses
    mapping: Mapping4 | None
    members: int
    accounts: tuple[tuple[str, int], ...]
    with_overrides: int


class Grouping(msgspec.Struct, frozen=True):
    sets: tuple[NewSet, ...]
    placements: tuple[Placement, ...]  # in the order of the integrations given


def group(
    currents: Sequence[Current],
    existing: Sequence[ExistingSet] = (),
    *,
    max_differences: int = MAX_DIFFERENCES,
    taken: Iterable[str] = (),
    account_tags: Mapping[str, Sequence[str]] | None = None,
) -> Grouping:
    """Shared sets for ``currents``: the inventory's own sets first, new ones where
    at least ``MIN_SHARED`` integrations share a list (exactly or within the
    :func:`allowed` rule); every other integration gets its list inline.

    Deterministic: the result depends on the set of integrations, not on their order.
    Integrations whose mapping cannot be declared go inline (a set's mapping would be
    inherited).
    """
    weight: Counter[Statuses] = Counter(c.statuses for c in currents if c.mapping is not None)
    keys = {s: _key(s) for s in weight}
    order = sorted(weight, key=lambda s: (-weight[s], keys[s]))
    fixed = [_Base(canonical_statuses(e.statuses), e) for e in existing]
    new: list[_Base] = []
    known = {b.statuses for b in fixed}

    def best_base(s: Statuses, bases: Sequence[_Base]) -> _Base | None:
        idx = status_index(s)
        best, best_d = None, max_differences + 1
        for b in bases:
            d = allowed(b.index, idx, max_differences)
            if d is not None and d < best_d:  # ties: the first (fixed sets, then the most used)
                best, best_d = b, d
        return best

    # Families of near lists, each represented by its consensus; lists no family takes
    # are grouped again among themselves, until no new set comes out.
    remaining = order
    while remaining:
        added = False
        for fam in _families(remaining, 2 * max_differences):
            if sum(weight[m] for m in fam) < MIN_SHARED:
                continue
            # The family's consensus, or its most used list when that serves more of it
            # (a family that is really two close ones has a consensus that is neither).
            best: tuple[int, int, int] | None = None
            base: Statuses = ()
            for rank, candidate in enumerate(dict.fromkeys((_consensus(fam, weight), fam[0]))):
                idx = status_index(candidate)
                near = total = 0
                for m in fam:
                    d = allowed(idx, status_index(m), max_differences)
                    if d is not None:
                        near += weight[m]
                        total += d * weight[m]
                score = (-near, total, rank)
                if best is None or score < best:
                    best, base = score, candidate
            assert best is not None
            near = -best[0]
            if base in known:
                continue
            if near >= MIN_SHARED:
                known.add(base)
                new.append(_Base(base))
                added = True
        if not added:
            break
        remaining = [s for s in remaining if best_base(s, fixed + new) is None]

    # Assign, then drop new sets too few use (their lists try the others), until stable.
    while True:
        chosen = {s: best_base(s, fixed + new) for s in order}
        use: Counter[int] = Counter()
        for s, b in chosen.items():
            if b is not None:
                use[id(b)] += weight[s]
        weak = [b for b in new if use[id(b)] < MIN_SHARED]
        if not weak:
            break
        new = [b for b in new if use[id(b)] >= MIN_SHARED]

    # New sets in order of use; each one's mapping is the one most of its members have.
    members: dict[int, list[Current]] = {}
    for c in currents:
        b = chosen.get(c.statuses) if c.mapping is not None else None
        if b is not None:
            members.setdefault(id(b), []).append(c)
    new.sort(key=lambda b: (-len(members.get(id(b), ())), keys.get(b.statuses) or _key(b.statuses)))
    for b in new:
        b.mapping = _set_mapping(b, members.get(id(b), []))
    memberships = [[c.shop for c in members.get(id(b), [])] for b in new]
    for b, name in zip(new, set_names(memberships, account_tags, taken), strict=True):
        b.name = name

    placements = []
    for c in currents:
        b = chosen.get(c.statuses) if c.mapping is not None else None
        placements.append(_place(c, b))
    sets = []
    for b in new:
        ms = members.get(id(b), [])
        per_account = Counter(c.shop.account for c in ms)
        sets.append(
            NewSet(
                b.name,
                b.statuses,
                b.mapping,
                len(ms),
                tuple(sorted(per_account.items())),
                sum(1 for c in ms if c.statuses != b.statuses),
            )
        )
    return Grouping(tuple(sets), tuple(placements))


def _set_mapping(base: _Base, members: Sequence[Current]) -> Mapping4 | None:
    """The mapping most members have, with what the set lacks left unmapped; None (the
    set declares no mapping) when that maps nothing."""
    ids = base.index.keys()
    counts: Counter[Mapping4] = Counter()
    for c in members:
        assert c.mapping is not None
        counts[tuple(e if e in ids else None for e in c.mapping)] += 1
    if not counts:
        return None
    best = min(counts, key=lambda m: (-counts[m], tuple(e or "" for e in m)))
    return None if best == UNMAPPED else best


def _place(c: Current, base: _Base | None) -> Placement:
    own = c.mapping
    written: dict[str, str | None] | None
    if base is None:
        written = None if own is None or own == UNMAPPED else dict(zip(STATUS_CATEGORIES, own, strict=True))
        return Placement(c, None, mapping=written)
    overrides, removals = delta(base.statuses, c.statuses)
    assert own is not None
    inherited = base.mapping
    if inherited is None:
        written = None if own == UNMAPPED else dict(zip(STATUS_CATEGORIES, own, strict=True))
    else:
        written = {
            cat: mine for cat, mine, theirs in zip(STATUS_CATEGORIES, own, inherited, strict=True) if mine != theirs
        }
    return Placement(c, base.name, overrides, removals, written or None)


# -- names ------------------------------------------------------------------------------------


def display_name(status: Status) -> str:
    """The name a person knows a status by: as the API picks it (en-gb, else the first language)."""
    by_lang = {t.language: t.status for t in status.translations}
    return by_lang.get("en-gb") or by_lang[min(by_lang)]


def slug(text: str, limit: int = 40) -> str:
    """``Click & Collect (Paris)`` -> ``click-collect-paris``: ASCII letters, digits and dashes."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:limit].strip("-")


def set_names(
    memberships: Sequence[Sequence[Shop]],
    account_tags: Mapping[str, Sequence[str]] | None = None,
    taken: Iterable[str] = (),
) -> list[str]:
    """One unique name per new set (given in order of size, largest first), as a person
    would name it: after the account most of its shops belong to (more than half), else
    after the tag most of them share through their account (more than half; the first by
    name on a tie), else ``set-1``, ``set-2``... in order of size. Never after a status.
    A name already used gets ``-2``, ``-3``... Deterministic."""
    used = set(taken)
    tags = account_tags or {}
    names = []
    numbered = 0
    for shops in memberships:
        n = len(shops)
        accounts = Counter(shop.account for shop in shops)
        shared = Counter(tag for shop in shops for tag in dict.fromkeys(tags.get(shop.account, ())))
        stem = ""
        if accounts:
            account, count = min(accounts.items(), key=lambda kv: (-kv[1], kv[0]))
            if count * 2 > n:
                stem = slug(account) or ""
        if not stem and shared:
            tag, count = min(shared.items(), key=lambda kv: (-kv[1], kv[0]))
            if count * 2 > n:
                stem = slug(tag) or ""
        if not stem:
            while True:
                numbered += 1
                stem = f"set-{numbered}"
                if stem not in used:
                    break
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        names.append(name)
    return names


# -- what the inventory already declares --------------------------------------------------------


def read_raw(path: Path) -> Any:
    """The inventory file as plain data (``inventory.load`` has checked it); ValueError otherwise."""
    from batchsync.files import FileProblem
    from batchsync.inventory import documents

    try:
        return documents.parse(documents.check_suffix(path), path.read_bytes())[0]
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    except FileProblem as exc:
        raise ValueError(exc.message) from None


def existing_sets(raw_sets: Any) -> list[ExistingSet]:
    """The inventory's sets with inline statuses (a set read from a file stays as it is,
    but is not offered to new integrations)."""
    found: list[ExistingSet] = []
    if not isinstance(raw_sets, dict):
        return found
    for name, raw in raw_sets.items():
        if not isinstance(name, str) or not isinstance(raw, dict) or "statuses" not in raw:
            continue
        try:
            statuses = msgspec.convert(raw["statuses"], Statuses, strict=True)
        except msgspec.ValidationError:
            continue
        mapping: Mapping4 | None = None
        if isinstance(raw.get("mapping"), dict):
            m = raw["mapping"]
            mapping = tuple((m.get(c) or None) if isinstance(m.get(c), str) else None for c in STATUS_CATEGORIES)
        found.append(ExistingSet(name, statuses, mapping))
    return found


def rebase(ref: str, source_dir: str, target_dir: str) -> str:
    """A relative path written for a file in ``source_dir``, rewritten for one in ``target_dir``."""
    if os.path.isabs(ref) or ref.startswith("~") or os.path.abspath(source_dir) == os.path.abspath(target_dir):
        return ref
    return os.path.relpath(os.path.join(os.path.abspath(source_dir), ref), os.path.abspath(target_dir))


def _rebase_entry(entry: Any, move: Callable[[str], str]) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get("statuses_file"), str):
        return {**entry, "statuses_file": move(entry["statuses_file"])}
    return entry


class UnsafeAccount(Exception):
    """An account field that is not a reference: copying it could write a secret."""


def copy_accounts(raw_accounts: Any, move: Callable[[str], str]) -> dict[str, Any]:
    """The accounts as references, ``file:`` paths rebased; UnsafeAccount when a
    credential field holds anything but an ``env:``/``file:`` reference."""
    from batchsync.secrets import check_reference

    out: dict[str, Any] = {}
    if not isinstance(raw_accounts, dict):
        return out
    for name, raw in raw_accounts.items():
        if not isinstance(raw, dict):
            raise UnsafeAccount(f"account {name!r} is not a table of fields")
        copied = dict(raw)
        for field in SECRET_FIELDS:
            if field not in raw:
                continue
            value = raw[field]
            if not isinstance(value, str) or check_reference(value) is not None:
                raise UnsafeAccount(f"account {name!r}: {field} is not an env: or file: reference")
            if value.startswith("file:"):
                copied[field] = "file:" + move(value[5:])
        out[str(name)] = copied
    return out


# -- the document --------------------------------------------------------------------------------


class Entry(msgspec.Struct, frozen=True):
    """A status set or an integration, with the comment lines a person finds it by."""

    data: dict[str, Any]
    comments: tuple[str, ...] = ()


class Document(msgspec.Struct, frozen=True):
    header: tuple[str, ...]
    top: dict[str, Any]  # allow_secret_files_outside, defaults, accounts: copied as they are
    status_sets: dict[str, Entry]
    integrations: tuple[Entry, ...]


def _translations(translations: Iterable[Any]) -> list[dict[str, str]]:
    return [{"status": t.status, "language": t.language} for t in translations]


def _statuses_data(statuses: Statuses) -> list[dict[str, Any]]:
    return [
        {
            "external_id": s.external_id,
            "translations": _translations(s.translations),
        }
        for s in statuses
    ]


def integration_entry(p: Placement) -> Entry:
    c = p.current
    data: dict[str, Any] = {"id": c.shop.id, "account": c.shop.account}
    # The server's words, made a name the loader accepts: no control or bidi character.
    name, url = one_line(c.shop.name or "", limit=200), one_line(c.shop.url or "", limit=500)
    if name:
        data["name"] = name
    if url:
        data["shop_url"] = url
    if p.base is None:
        data["statuses"] = _statuses_data(c.statuses)
    else:
        data["status_set"] = p.base
        if p.removals:
            data["remove_statuses"] = list(p.removals)
        if p.overrides:
            data["override_statuses"] = _statuses_data(p.overrides)
    if p.mapping is not None:
        data["mapping"] = dict(p.mapping)
    comments = [f"connection failing since {c.shop.failing_since}"] if c.shop.failing_since else []
    if c.note:
        comments.append(c.note)
    return Entry(data, tuple(comments))


def set_entry(s: NewSet) -> Entry:
    data: dict[str, Any] = {"statuses": _statuses_data(s.statuses)}
    if s.mapping is not None:
        data["mapping"] = dict(zip(STATUS_CATEGORIES, s.mapping, strict=True))
    where = ", ".join(f"{a} {n}" for a, n in s.accounts)
    plural = "s" if s.members != 1 else ""
    comment = f"{s.members} integration{plural} ({where}), {s.with_overrides} of them with overrides"
    return Entry(data, (comment,))


class Report(msgspec.Struct, frozen=True):
    """What an import found, for the command's summary."""

    new_sets: tuple[NewSet, ...]
    kept_sets: int
    kept_integrations: int
    added: tuple[Placement, ...]
    not_importable: tuple[NotImportable, ...]
    gone: tuple[tuple[str, int], ...]  # (account, id) declared but not listed by that account
    moved: tuple[tuple[str, int, str], ...]  # (declared account, id, account that lists it)
    unsupported: tuple[tuple[str, int, str], ...] = ()  # (account, id, system) declared, not PrestaShop V2


def build(
    raw: Mapping[str, Any],
    snapshots: Sequence[Current | NotImportable],
    listings: Mapping[str, Sequence[Shop]],
    *,
    source_dir: str = ".",
    target_dir: str = ".",
    max_differences: int = MAX_DIFFERENCES,
    header: Sequence[str] = (),
) -> tuple[Document, Report]:
    """The new inventory: what ``raw`` (the parsed INVENTORY) declares, kept as it is,
    plus an entry for each of ``snapshots`` not declared yet. ``listings`` holds the
    integrations of every account that was listed in full: a declared integration of
    such an account that its list lacks is reported gone (it stays in the file).
    """

    def move(ref: str) -> str:
        return rebase(ref, source_dir, target_dir)

    top: dict[str, Any] = {}
    for key in ("allow_secret_files_outside", "defaults"):
        if key in raw:
            top[key] = raw[key]
    top["accounts"] = copy_accounts(raw.get("accounts"), move)
    raw_sets = raw.get("status_sets")
    sets: dict[str, Entry] = {}
    if isinstance(raw_sets, dict):
        sets = {str(k): Entry(_rebase_entry(v, move)) for k, v in raw_sets.items()}
    raw_entries = raw.get("integrations")
    declared = [e for e in raw_entries if isinstance(e, dict)] if isinstance(raw_entries, list) else []
    declared_ids = {e.get("id") for e in declared}

    fresh = [s for s in snapshots if s.shop.id not in declared_ids]
    currents = sorted((s for s in fresh if isinstance(s, Current)), key=lambda c: (c.shop.account, c.shop.id))
    refused = sorted((s for s in fresh if isinstance(s, NotImportable)), key=lambda r: (r.shop.account, r.shop.id))
    raw_accounts = raw.get("accounts")
    account_tags = {
        str(name): [t for t in acc.get("tags") or () if isinstance(t, str)]
        for name, acc in (raw_accounts.items() if isinstance(raw_accounts, dict) else ())
        if isinstance(acc, dict) and isinstance(acc.get("tags"), list)
    }
    grouping = group(
        currents, existing_sets(raw_sets), max_differences=max_differences, taken=sets, account_tags=account_tags
    )
    for s in grouping.sets:
        sets[s.name] = set_entry(s)
    entries = [Entry(_rebase_entry(e, move)) for e in declared]
    entries += [integration_entry(p) for p in grouping.placements]

    lister = {shop.id: shop for shops in listings.values() for shop in shops}
    gone, moved, unsupported = [], [], []
    for e in declared:
        iid, account = e.get("id"), e.get("account")
        if not isinstance(iid, int) or not isinstance(account, str) or account not in listings:
            continue
        found = lister.get(iid)
        if found is None:
            gone.append((account, iid))
        elif found.account != account:
            moved.append((account, iid, found.account))
        elif not is_prestashop(found):
            unsupported.append((account, iid, found.system or "unknown"))
    others = [
        NotImportable(shop, f"a {shop.system or 'unknown'} integration: only PrestaShop V2 has shop order statuses")
        for account in sorted(listings)
        for shop in listings[account]
        if shop.id not in declared_ids and not is_prestashop(shop)
    ]
    report = Report(
        grouping.sets,
        len(sets) - len(grouping.sets),
        len(declared),
        grouping.placements,
        tuple(sorted([*others, *refused], key=lambda r: (r.shop.account, r.shop.id))),
        tuple(sorted(gone)),
        tuple(sorted(moved)),
        tuple(sorted(unsupported)),
    )
    return Document(tuple(header), top, sets, tuple(entries)), report


def is_prestashop(shop: Shop) -> bool:
    # The engine's pre-flight lets an integration without a system through; so does import.
    return shop.system is None or shop.system == PRESTASHOP_V2


# -- rendering --------------------------------------------------------------------------------------


# TOML ----------------------------------------------------------------------------------------------


# YAML ----------------------------------------------------------------------------------------------
