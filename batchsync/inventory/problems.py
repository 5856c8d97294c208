"""The words for what is wrong in an inventory: every place a value does not fit its type
(not only the first), a near name for a typo, and why a name is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
from msgspec import UnsetType

from batchsync.inventory.documents import key_part
from batchsync.text import spelled
from batchsync.wire import Loc, split_validation_error


def name_problem(what: str, char: str) -> str:
    """Why a name (an account's, a status set's, a tag) holding ``char`` is refused."""
    return (
        f"{what} holds {spelled(char)}, a control or bidi character: not allowed in a name (a terminal would "
        "act on it, a JUnit file or a metrics label break on it, a page show it reordered)"
    )


def limit_problem(tag: str) -> str | None:
    """Why ``--limit tag:...`` could never choose ``tag`` (its terms are split at commas,
    stripped, and read ``!`` and ``&`` at their start as operators), or None."""
    if "," in tag:
        return "a tag may not hold a comma: --limit splits its terms there"
    if tag != tag.strip():
        return "a tag may not begin or end with a space: --limit strips its terms"
    if tag[:1] in ("!", "&"):
        return f"a tag may not begin with {tag[0]!r}: --limit reads it as an operator"
    return None


def kind_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", NoneType: "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def convert_strict(raw: Any, kind: Any) -> Any:
    # strict=True: an id written as "12" is a mistake to report, not to guess at.
    return msgspec.convert(raw, kind, strict=True)


def suggest(key: str, choices: Sequence[str]) -> str:
    import difflib  # only for a mistake: not on the path of every start

    by_lower = {c.lower(): c for c in choices}
    near = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
    return f"; did you mean `{by_lower[near[0]]}`?" if near else ""


def every_problem(raw: Any, kind: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Every place where ``raw`` does not fit ``kind``, not only the first that msgspec
    stops at: so that one run of ``validate`` names a typo, a bad language and an empty
    name in one integration together. The messages are msgspec's own."""
    try:
        convert_strict(raw, kind)
        return []
    except msgspec.ValidationError as exc:
        message, inner = split_validation_error(exc)
        first = [((*loc, *inner), message)]
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return [(loc, f"{message} (expected one of {', '.join(map(str, args))})")]
    found: list[tuple[Loc, str]] = []
    if origin is Annotated:  # the inner type first; then the constraint itself
        found = every_problem(raw, args[0], loc)
    elif origin in (Union, UnionType) and raw is not None:
        options = [a for a in args if a is not NoneType and a is not UnsetType]
        if len(options) == 1:
            found = every_problem(raw, options[0], loc)
    elif origin in (tuple, list) and isinstance(raw, list) and args:
        item = args[0]
        for i, value in enumerate(raw):
            found += every_problem(value, item, (*loc, i))
    elif isinstance(kind, type) and issubclass(kind, msgspec.Struct) and isinstance(raw, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(kind)}
        forbid = kind.__struct_config__.forbid_unknown_fields
        for key, value in raw.items():
            field = fields.get(key) if isinstance(key, str) else None
            if field is None and not forbid:
                continue
            if field is None:
                hint = suggest(str(key), list(fields))
                what = f"`{key}`" if isinstance(key, str) else f"{key} ({kind_name(key)}, not text)"
                found.append(((*loc, key_part(key)), f"Object contains unknown field {what}{hint}"))
            else:
                found += every_problem(value, field.type, (*loc, key))
        for name, field in fields.items():
            if field.required and name not in raw:
                found.append(((*loc, name), f"Object missing required field `{name}`"))
    return found or first


def guess_id(raw: Any) -> int | None:
    """The integration id a malformed entry was meant to have, for naming it."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isascii() and value.strip().lstrip("-").isdigit():
        text = value.strip()
        return int(text) if len(text) < 30 else None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None


def nearest(word: str, choices: Iterable[str]) -> str:
    import difflib

    near = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {near[0]!r}?" if near else ""
