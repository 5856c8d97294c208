"""The Sendcloud v3 shop-order-status API as msgspec structs.

The structs are the schema (field for field as ``integrations-v3.yaml``): decoding
validates in the same pass. The few rules a type cannot express (an external id or a
language used twice) live in :func:`check_statuses`, beside the structs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

Language = Literal["en-us", "en-gb", "fr-fr", "de-de", "nl-nl", "es-es", "it-it"]
LANGUAGES: tuple[Language, ...] = ("en-us", "en-gb", "fr-fr", "de-de", "nl-nl", "es-es", "it-it")

StatusCategory = Literal["READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL"]
STATUS_CATEGORIES: tuple[StatusCategory, ...] = ("READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL")

# The API takes any string; an empty one names nothing a shop could show, so we refuse it.
NonEmpty = Annotated[str, Meta(min_length=1)]
IntegrationId = Annotated[int, Meta(ge=1, le=2**63 - 1)]

ERROR_CODES: tuple[str, ...] = (
    "unknown_field",
    "invalid",
    "forbidden",
    "invalid_choice",
    "min_value",
    "null",
    "not_found",
    "required",
    "not_a_list",
    "non_field_errors",
    "authentication_failed",
    "validation_error",
    "parcel_announcement_error",
)


class Translation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: NonEmpty
    language: Language


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    external_id: NonEmpty
    translations: Annotated[tuple[Translation, ...], Meta(min_length=1, max_length=7)]


Statuses = tuple[Status, ...]


class PostShopOrderStatuses(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /shop-order-statuses``: replaces every status of one integration."""

    integration_id: IntegrationId
    statuses: Statuses


class CurrentTranslation(msgspec.Struct, frozen=True):
    # A language we do not know is still a difference to report, not a crash.
    status: str
    language: str


class CurrentStatus(msgspec.Struct, frozen=True):
    """One item of ``GET /shop-order-statuses``; unknown fields are tolerated (reads)."""

    external_id: str
    translations: tuple[CurrentTranslation, ...]
    status: str | None = None
    deleted_at: str | None = None


class GetShopOrderStatuses(msgspec.Struct, frozen=True):
    data: tuple[CurrentStatus, ...]


class MappingItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status_category: StatusCategory
    external_id: str | None


class PostMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST /shop-order-statuses/mapping``: exactly one item per category."""

    integration_id: IntegrationId
    mapping: Annotated[tuple[MappingItem, ...], Meta(min_length=4, max_length=4)]


class CurrentMappingItem(msgspec.Struct, frozen=True):
    status_category: StatusCategory
    external_id: str | None
    is_valid: bool


class CurrentMapping(msgspec.Struct, frozen=True):
    integration_id: int
    mapping: tuple[CurrentMappingItem, ...]


class GetMapping(msgspec.Struct, frozen=True):
    data: CurrentMapping


class ErrorSource(msgspec.Struct, frozen=True, omit_defaults=True):
    pointer: str | None = None
    parameter: str | None = None
    header: str | None = None


class ErrorObject(msgspec.Struct, frozen=True, omit_defaults=True):
    """One JSON:API error object."""

    status: str
    code: str
    detail: str
    title: str | None = None
    source: ErrorSource | None = None
    id: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    errors: tuple[ErrorObject, ...]


class Integration(msgspec.Struct, frozen=True):
    """An item of ``GET /integrations``: only the fields batchsync looks at."""

    id: IntegrationId
    shop_name: str | None = None
    shop_url: str | None = None
    system: str | None = None
    failing_since: str | None = None
    last_fetch: str | None = None


class ListedPage(NamedTuple):
    """One page of ``GET /integrations`` as read: its integrations, the next page's URL
    (None: the last page), the size of its body in bytes, and the items that are not an
    integration batchsync can use (an id of 0 or past 2**63 - 1, a wrong type), each
    described in a few words; they are left out of ``items``."""

    items: tuple[Integration, ...]
    next_url: str | None
    size: int = 0
    rejected: tuple[str, ...] = ()


class LogRecord(msgspec.Struct, frozen=True):
    """One integration exception log as batchsync decodes it: only these fields.
    ``request`` and ``response`` (headers, bodies: they may hold a shop's credentials) are
    skipped by the decoder, never built into a value."""

    integration_id: int | None = None
    id: int | None = None
    full_url: str | None = None
    method: str | None = None
    response_code: int | None = None
    exception_type: str | None = None
    exception: str | None = None
    created_at: str | None = None


class LogsPage(NamedTuple):
    """One page of ``GET /integrations/logs`` (or ``/integrations/{id}/logs``) as read: its
    records, the next page's URL (None: the last page), the size of its body in bytes, and
    how many items were not a record batchsync can read (left out of ``records``)."""

    records: tuple[LogRecord, ...]
    next_url: str | None
    size: int = 0
    rejected: int = 0


Loc = tuple[str | int, ...]


class TextKey(str):
    """A mapping key that was not text in its file (a YAML number, date, null), as its
    text: a path shows it quoted (``$.accounts['1234']``), not as an index or a name."""


class Problem(msgspec.Struct, frozen=True):
    """A rule broken at ``loc`` (keys and indexes into the checked document)."""

    loc: Loc
    message: str
    code: str = "invalid"


def check_statuses(
    statuses: Statuses, loc: Loc = ("statuses",), positions: Sequence[int] | None = None
) -> list[Problem]:
    """The rules the schema implies but no type can say: unique ids and languages.

    ``positions`` gives each status's index in the document it came from, where that
    is not its index here (a saved GET answer whose deleted statuses were dropped).
    """
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    for k, status in enumerate(statuses):
        i = k if positions is None else positions[k]
        first = seen_ids.setdefault(status.external_id, i)
        if first != i:
            problems.append(
                Problem(
                    (*loc, i, "external_id"),
                    f"external_id {status.external_id!r} is used twice (first at index {first})",
                    "invalid",
                )
            )
        seen_langs: dict[str, int] = {}
        for j, tr in enumerate(status.translations):
            first_j = seen_langs.setdefault(tr.language, j)
            if first_j != j:
                problems.append(
                    Problem(
                        (*loc, i, "translations", j, "language"),
                        f"language {tr.language!r} is used twice in status "
                        f"{status.external_id!r} (first at translations index {first_j})",
                        "invalid",
                    )
                )
    return problems


def check_mapping(body: PostMapping) -> list[Problem]:
    """Each of the four categories exactly once."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, item in enumerate(body.mapping):
        if item.status_category in seen:
            problems.append(
                Problem(
                    ("mapping", i, "status_category"),
                    f"status_category {item.status_category!r} is given twice",
                    "invalid",
                )
            )
        seen.add(item.status_category)
    return problems


def parse_path(path: str) -> Loc:
    """msgspec's error path ``$.a[0].b`` (or ``$.a['k']``) as a loc ``("a", 0, "b")``."""
    out: list[str | int] = []
    i = 1 if path.startswith("$") else 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == ".":
            j = i + 1
            while j < n and path[j] not in ".[":
                j += 1
            out.append(path[i + 1 : j])
            i = j
        elif c == "[":
            j = path.find("]", i)
            if j == -1:
                break
            key = path[i + 1 : j]
            if key[:1] in ("'", '"'):
                out.append(key[1:-1])
            else:
                out.append(int(key) if key.lstrip("-").isdigit() else key)
            i = j + 1
        else:
            i += 1
    return tuple(out)


def to_pointer(loc: Loc) -> str:
    """A loc as a JSON pointer (RFC 6901): ``/statuses/0/external_id``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def to_jsonpath(loc: Loc) -> str:
    """A loc in msgspec's own notation: ``$.statuses[0].external_id``."""
    parts = ["$"]
    for p in loc:
        if isinstance(p, int) and not isinstance(p, bool):
            parts.append(f"[{p}]")
        elif type(p) is not str:  # a YAML key may be a number, a date, null
            parts.append(f"[{str(p)!r}]")
        elif p.isidentifier() or p.replace("-", "_").isidentifier():
            parts.append("." + p)
        else:
            parts.append(f"[{p!r}]")
    return "".join(parts)


def split_validation_error(exc: Exception) -> tuple[str, Loc]:
    """msgspec's ``"Expected `int`, got `str` - at `$.id`"`` as (message, loc)."""
    text = str(exc)
    loc: Loc
    marker = " - at `"
    k = text.rfind(marker)
    if k == -1 or not text.endswith("`"):
        message, loc = text, ()
    else:
        message, loc = text[:k], parse_path(text[k + len(marker) : -1])
    # Point at the missing or unknown field itself, as the API's pointers do.
    for prefix in ("Object missing required field `", "Object contains unknown field `"):
        if message.startswith(prefix) and message.endswith("`"):
            loc = (*loc, message[len(prefix) : -1])
    return message, loc


def error_code(message: str) -> str:
    """The JSON:API code the real API would give for a msgspec message."""
    if message.startswith("Object missing required field"):
        return "required"
    if message.startswith("Object contains unknown field"):
        return "unknown_field"
    if message.startswith("Invalid enum value"):
        return "invalid_choice"
    if message.startswith("Expected `array`, got"):
        return "not_a_list"
    if message.startswith("Expected") and message.endswith("got `null`"):
        return "null"
    if ">= 1" in message and "length" not in message:
        return "min_value"
    return "invalid"
