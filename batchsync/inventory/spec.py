"""The inventory file's format, as msgspec structs: what each section may hold, field by
field. The loader converts a parsed document into these, then checks what no type can say.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from batchsync.model import PRODUCTION_URL, Limits
from batchsync.urls import BASE_URL_PATTERN
from batchsync.wire import STATUS_CATEGORIES, IntegrationId, NonEmpty, Status, Statuses, Translation

# Requests a minute: at least one in 100 minutes. Below that a run would wait for hours a
# request, and a rate near the smallest float divides by its per-second value, 0.0.
MIN_RATE = 0.01
PositiveRate = Annotated[float, Meta(ge=MIN_RATE, le=1e9)]


Burst = Annotated[int, Meta(ge=1, le=1000)]


class LimitsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    writes_per_minute: PositiveRate | None = None
    write_burst: Burst | None = None
    reads_per_minute: PositiveRate | None = None

    def over(self, base: Limits) -> Limits:
        return Limits(
            writes_per_minute=base.writes_per_minute if self.writes_per_minute is None else self.writes_per_minute,
            write_burst=base.write_burst if self.write_burst is None else self.write_burst,
            reads_per_minute=base.reads_per_minute if self.reads_per_minute is None else self.reads_per_minute,
        )


BaseUrl = Annotated[str, Meta(pattern=BASE_URL_PATTERN)]


class DefaultsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base_url: BaseUrl = PRODUCTION_URL
    limits: LimitsSpec = LimitsSpec()


AUTH_SCHEMES: dict[str, tuple[str, str]] = {
    "basic": ("public_key", "secret_key"),
    "oauth2": ("client_id", "client_secret"),
}


OAUTH2_ONLY = ("client_id", "client_secret", "token_url", "scope")


class AccountSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An account as written. Which keys it must have depends on ``auth``: checked by the loader."""

    auth: Literal["basic", "oauth2"] = "basic"
    public_key: str | None = None
    secret_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    token_url: BaseUrl | None = None
    scope: NonEmpty | None = None
    base_url: BaseUrl | None = None
    limits: LimitsSpec | None = None
    tags: tuple[NonEmpty, ...] | None = None  # inherited by every integration of the account
    ignore_integrations: tuple[IntegrationId, ...] | None = None  # known, not managed: never `undeclared`


MaybeId = str | None | UnsetType


class MappingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A mapping as written: external id per category. Left out: inherited from the
    status set (on an integration) or not mapped; ``""`` (or null): not mapped."""

    READY_TO_SEND: MaybeId = UNSET
    IN_TRANSIT: MaybeId = UNSET
    DELIVERED: MaybeId = UNSET
    CANCEL: MaybeId = UNSET


class StatusSetSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    statuses: Statuses | None = None
    statuses_file: NonEmpty | None = None
    mapping: MappingSpec | None = None


class IntegrationSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    # Optional fields default to UNSET, not to a value: a JSON inventory's duplicate-key
    # check re-encodes these structs and needs exactly the keys the file gave.
    # gc=False: 100k of them hold no cycle, and the collector need not track them.
    id: IntegrationId
    account: NonEmpty
    name: NonEmpty | UnsetType = UNSET  # the shop's name, for people: every output shows it
    shop_url: NonEmpty | UnsetType = UNSET  # the shop's address, for people
    status_set: NonEmpty | UnsetType | None = UNSET
    statuses: Statuses | UnsetType | None = UNSET
    statuses_file: NonEmpty | UnsetType | None = UNSET
    override_statuses: Statuses | UnsetType = UNSET
    remove_statuses: tuple[NonEmpty, ...] | UnsetType = UNSET
    tags: tuple[NonEmpty, ...] | UnsetType = UNSET
    mapping: MappingSpec | UnsetType = UNSET
    comment: str | UnsetType = UNSET  # for people (import writes the shop's name and URL here in JSON); ignored


class StatusesFileBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A statuses file may be a whole POST body; its integration id is checked, not used."""

    statuses: Statuses
    integration_id: IntegrationId | None = None


class SavedStatus(msgspec.Struct, frozen=True):
    """One item of a saved GET /shop-order-statuses answer (other fields it may grow are ignored)."""

    external_id: NonEmpty
    translations: Annotated[tuple[Translation, ...], Meta(min_length=1, max_length=7)]
    status: str | None = None
    deleted_at: str | None = None


class StatusesFileGet(msgspec.Struct, frozen=True):
    """A statuses file may be a saved GET answer: deleted statuses are dropped."""

    data: tuple[SavedStatus, ...]


TOP_KEYS = ("defaults", "accounts", "status_sets", "integrations", "allow_secret_files_outside", "notify", "history")


class NotifySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ``[[notify]]`` route as written (its url checked apart: a reference, never a literal)."""

    url: str
    tags: tuple[NonEmpty, ...] = ()
    accounts: tuple[NonEmpty, ...] = ()
    on: Literal["failure", "change", "always", "new"] = "failure"
    format: Literal["slack", "json"] = "slack"


class HistorySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[history]``: where runs are recorded. A PostgreSQL URL is a credential (env:NAME or
    file:PATH); a SQLite file may be named as it is."""

    url: str


class JsonIntegrationSpec(IntegrationSpec, frozen=True, forbid_unknown_fields=True, gc=False):
    """An integration as the JSON fast path decodes it: its own ``statuses`` left as the
    file's text (a slice of the file, no objects), which ``fast_json`` checks and replaces
    with their compact form (``bytes``, ``model.pack`` of the checked Statuses): 20,000
    shops' own lists never exist as structs all at once."""

    # Decoded as Raw; fast_json then puts bytes there (msgspec decodes no union of the two).
    statuses: msgspec.Raw | UnsetType = UNSET  # type: ignore[assignment]


class JsonInventory(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A JSON inventory whose integrations decode straight into structs (see fast_json),
    each from its own slice of the file (``Raw``), one at a time.
    Fields in the README's order: a file written in it re-encodes byte for byte."""

    allow_secret_files_outside: Any = UNSET
    history: Any = UNSET
    defaults: Any = UNSET
    accounts: Any = UNSET
    status_sets: Any = UNSET
    integrations: list[msgspec.Raw]
    notify: Any = UNSET


def merge_statuses(base: Statuses, overrides: Statuses, removals: Iterable[str]) -> Statuses:
    """A set with one shop's changes: ``remove_statuses`` first, then ``override_statuses``.

    An override whose external_id is new is appended; one whose external_id exists
    replaces that status's translations language by language, keeping the others.
    """
    removed = set(removals)
    merged: dict[str, Status] = {s.external_id: s for s in base if s.external_id not in removed}
    for over in overrides:
        old = merged.get(over.external_id)
        if old is None:
            merged[over.external_id] = over
            continue
        by_lang: dict[str, Translation] = {t.language: t for t in old.translations}
        for t in over.translations:
            by_lang[t.language] = t
        merged[over.external_id] = Status(over.external_id, tuple(by_lang.values()))
    return tuple(merged.values())


def mapping_categories(raw: Any) -> tuple[dict[str, str | None], set[str]]:
    """A mapping as written, category by category: those given (external id, or None for
    "not mapped") and those given wrong (reported by the convert that failed)."""
    given: dict[str, str | None] = {}
    wrong: set[str] = set()
    if isinstance(raw, MappingSpec):
        for category in STATUS_CATEGORIES:
            value = getattr(raw, category)
            if value is not UNSET:
                given[category] = value or None
    elif isinstance(raw, dict):
        for category in STATUS_CATEGORIES:
            if category in raw:
                value = raw[category]
                if value is None or isinstance(value, str):
                    given[category] = value or None
                else:
                    wrong.add(category)
    else:
        wrong.update(STATUS_CATEGORIES)
    return given, wrong


def is_given(value: Any) -> bool:
    return value is not None and value is not UNSET


UNKNOWN = "<unknown field>"  # in a set of fields that failed: the entry has a key no field has
