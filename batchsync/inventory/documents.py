"""Reading the files an inventory names: only regular files, under a size cap, parsed as
JSON, TOML or YAML with the checks the parsers leave out (a key given twice, YAML aliases
that multiply a document). Whatever a file holds, the outcome is a document or a
:class:`FileProblem` with a printable reason, never another exception.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET

from batchsync.files import FileProblem, not_utf8, require_utf8
from batchsync.inventory.spec import JsonIntegrationSpec, JsonInventory
from batchsync.model import pack
from batchsync.wire import Loc, Statuses, TextKey

SUFFIXES = (".json", ".toml", ".yaml", ".yml")

KeyProblem = tuple[Loc, str]
"""A key given twice: where (the mapping's loc plus the key) and what to say."""


def check_suffix(path: Path) -> str:
    """The file's lower-case suffix if it names a format we read; FileProblem otherwise."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise FileProblem(f"unknown file type {suffix or '(none)'!r}: use .json, .toml, .yaml or .yml")
    return suffix


def parse(suffix: str, data: bytes) -> tuple[Any, list[KeyProblem]]:
    """One document from ``data`` in the format ``suffix`` names, and the keys it gives twice.

    A key given twice is not fatal (the rest is still worth checking) but it is a
    problem: every parser here would silently keep the last one.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as some Windows editors write
    if not data.strip():
        raise FileProblem("file is empty")
    if b"\x00" in data:
        raise FileProblem("is a binary file, not text")
    require_utf8(data)  # before any parser: each words this its own way, and one may change it
    if suffix == ".json":
        doc = decode_json(data)
        return doc, ([] if json_keys_unique(data, msgspec.json.encode(doc)) else json_duplicate_keys(data))
    text = data.decode("utf-8")
    if suffix == ".toml":
        return _toml(text), []  # tomllib refuses a key given twice itself
    return _yaml(text)


# -- our own words for what the parsers refuse -------------------------------------------
#
# A message a user reads never passes on a dependency's wording: msgspec 0.23 changed its
# message for invalid UTF-8, and an inventory's message lost its line and its fix. Where
# a parser refuses a file, its line and column come from structured data (the standard
# library's JSONDecodeError, PyYAML's problem mark), and the framing is ours.


def decode_json(data: bytes) -> Any:
    """One JSON document; FileProblem, in our words, for anything that is not."""
    try:
        return msgspec.json.decode(data)
    except RecursionError:
        raise FileProblem("invalid JSON: nested too deeply") from None
    except (msgspec.DecodeError, ValueError):  # ValueError: UnicodeDecodeError, as msgspec < 0.23 raised it
        pass
    raise json_problem(data)


# NaN, Infinity and -Infinity, outside strings: the standard library reads them, JSON does not.
_OUTSIDE_STRINGS = r'"(?:[^"\\]|\\.)*+"|({})'


def _where(text: str, at: int) -> str:
    line = text.count("\n", 0, at) + 1
    return f"line {line}, column {at - (text.rfind(chr(10), 0, at) + 1) + 1}"


def _find(text: str, token: str) -> str:
    for m in re.finditer(_OUTSIDE_STRINGS.format(re.escape(token)), text):
        if m.group(1) is not None:
            return f" at {_where(text, m.start(1))}"
    return ""


class _Refused(Exception):
    def __init__(self, token: str, why: str) -> None:
        super().__init__(why)
        self.token, self.why = token, why


def _constant(name: str) -> Any:
    raise _Refused(name, f"{name} is not a JSON number: write the value as a string or leave it out")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Refused(text, f"the number {text} is out of range")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise _Refused(text, f"a number of {len(text.lstrip('-')):,} digits is out of range") from None


def json_problem(data: bytes) -> FileProblem:
    """Why the JSON ``data`` cannot be read, where, in our words: what a JSON parser refused
    (msgspec, whose messages change from release to release) is read again by the standard
    library's, for the line and column of the first problem."""
    import json  # only for a file that msgspec refused

    problem = not_utf8(data)
    if problem is not None:
        return problem
    text = data.decode("utf-8")
    try:
        json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return FileProblem(f"invalid JSON: the file ends at line {exc.lineno} before the document does")
        return FileProblem(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg[:1].lower()}{exc.msg[1:]}")
    except _Refused as exc:
        return FileProblem(f"invalid JSON{_find(text, exc.token)}: {exc.why}")
    except RecursionError:
        return FileProblem("invalid JSON: nested too deeply")
    lone = re.search(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])", text)
    if lone is not None:
        return FileProblem(f"invalid JSON at {_where(text, lone.start())}: {lone.group()} is half of a character")
    return FileProblem("invalid JSON")


# tomllib takes time quadratic in the parts of a dotted key (a.b.c... = 1, [a.b.c...]):
# 100,000 parts in a 200 KB file would take minutes. No inventory key has 64. Possessive
# quantifiers, tried at line starts only: linear in the file.
_DEEP_TOML_KEY = re.compile(
    r"""^[ \t]*+\[*+[ \t]*+(?:(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')[ \t]*+\.[ \t]*+){64}""",
    re.MULTILINE,
)


def _toml(text: str) -> Any:
    import tomllib  # only TOML inventories pay for importing it (a few ms of every start)

    deep = _DEEP_TOML_KEY.search(text) if text.count(".") >= 64 else None
    if deep is not None:
        line = text.count("\n", 0, deep.start()) + 1
        raise FileProblem(f"invalid TOML: a key of more than 64 dotted parts at line {line}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # the standard library's words, with line and column
        raise FileProblem(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise FileProblem("invalid TOML: nested too deeply") from None
    except ValueError:  # an integer of thousands of digits
        raise FileProblem(f"invalid TOML: {_too_long()}") from None


def _too_long() -> str:
    return f"a number of more than {sys.get_int_max_str_digits():,} digits is out of range"


# -- duplicate keys in JSON -----------------------------------------------------------

_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


def json_keys_unique(data: bytes, encoded: bytes) -> bool:
    """True only if no object in the JSON ``data`` gives a key twice; False: cannot tell.

    ``encoded`` is msgspec's encoding of what ``data`` decoded to, every key it kept and
    none it did not see (a struct must leave absent fields UNSET, not default). The check
    runs at C speed: it counts colons. Each key has one colon after it; outside strings
    there are no others. Inside strings, a colon is written the same way in both texts,
    unless the source spells it ``\\u003a``, which is ruled out first. So the source has
    as many colons as the encoding exactly when no key-value pair was dropped, and a key
    given twice always drops one (with its colon).
    """
    if encoded == data:  # a compact file, as machines write them: a memcmp settles it
        return True
    return colons_match(data, encoded.count(b":"))


def colons_match(data: bytes, colons: int) -> bool:
    """:func:`json_keys_unique` given only the number of colons in the encoding."""
    if b"\\" in data and _ESCAPED_COLON.search(data):
        return False
    return data.count(b":") == colons


def json_duplicate_keys(data: bytes) -> list[KeyProblem]:
    """Every key given twice in the JSON ``data``, with where (the slow, exact check).

    Each container's parent is noted as it is built, so that a repeat inside a value
    that a later repeat replaced (and that is not in the decoded document) still gets
    its path.
    """
    import json  # the standard parser has the hook msgspec lacks (msgspec#648); only this path needs it

    found: list[tuple[dict[str, Any], list[str]]] = []
    parents: dict[int, tuple[Any, Any, str | int]] = {}  # id -> (itself, parent, key): kept alive

    def adopt(parent: Any, key: str | int, child: Any) -> None:
        stack = [(parent, key, child)]
        while stack:
            parent, key, child = stack.pop()
            parents[id(child)] = (child, parent, key)
            if isinstance(child, list):
                stack.extend((child, i, item) for i, item in enumerate(child) if isinstance(item, dict | list))

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping = dict(pairs)
        seen: set[str] = set()
        twice: list[str] = []
        for key, value in pairs:
            if key in seen and key not in twice:
                twice.append(key)
            seen.add(key)
            if isinstance(value, dict | list):
                adopt(mapping, key, value)
        if twice:
            found.append((mapping, twice))
        return mapping

    try:
        json.loads(data, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        # msgspec read it, so it is JSON; the standard parser refuses only extremes
        # (a number of thousands of digits, deep nesting): count it as not checked.
        return [((), "could not be checked for keys given twice (too deep or too large a number)")]

    def loc_of(node: Any) -> Loc:
        parts: list[str | int] = []
        while id(node) in parents:
            _, node, key = parents[id(node)]
            parts.append(key)
        return tuple(reversed(parts))

    return [((*loc_of(m), key), f"key {key!r} is given twice: keep one") for m, keys in found for key in keys]


def _children(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        yield from node.items()
    elif isinstance(node, list):
        yield from enumerate(node)


def key_part(key: Any) -> str:
    """A mapping key as a loc part: a YAML key may be a number, a date, null."""
    return key if type(key) is str else TextKey(key)


def _locate(doc: Any, wanted: set[int]) -> dict[int, Loc]:
    """The loc of each container whose id is in ``wanted`` (iterative: depth is no limit)."""
    where: dict[int, Loc] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, Loc]] = [(doc, ())]
    while stack and len(where) < len(wanted):
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in wanted:
            where[id(node)] = loc
        for key, child in _children(node):
            if isinstance(child, dict | list):
                stack.append((child, (*loc, key if isinstance(node, list) else key_part(key))))
    return where


# -- YAML -----------------------------------------------------------------------------

_ANCHOR = re.compile(r"&[^\s\[\]{},]")
_ALIAS = re.compile(r"\*[^\s\[\]{},]")
_loader: Any = None


def _yaml_loader() -> Any:
    """A safe loader (the C one where built) that also notes every key given twice."""
    global _loader
    if _loader is not None:
        return _loader
    import yaml  # only YAML users pay for importing it
    from yaml.nodes import MappingNode

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.pending: list[tuple[Any, Any, Any]] = []
            self.repeated: list[tuple[dict[Any, Any], Any, Any, Any]] = []  # (mapping, key, first node, again)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, MappingNode):
                first: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *base` then a key of its own is an override, not a repeat
                    key = self.construct_object(key_node, deep=deep)
                    try:
                        earlier = first.setdefault(key, key_node)
                    except TypeError:
                        continue  # unhashable: the base constructor says so
                    if earlier is not key_node:
                        self.pending.append((key, earlier, key_node))
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_map(self, node: Any) -> Iterator[dict[Any, Any]]:
            data: dict[Any, Any] = {}
            yield data
            start = len(self.pending)
            data.update(self.construct_mapping(node))
            for key, first, again in self.pending[start:]:
                self.repeated.append((data, key, first, again))
            del self.pending[start:]

    Loader.add_constructor("tag:yaml.org,2002:map", Loader.construct_yaml_map)
    _loader = Loader
    return Loader


def _yaml(text: str) -> tuple[Any, list[KeyProblem]]:
    import yaml

    loader = _yaml_loader()(text)
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise yaml_problem(exc) from None
    except RecursionError:
        raise FileProblem("invalid YAML: nested too deeply") from None
    except ValueError:  # an integer of thousands of digits
        raise FileProblem(f"invalid YAML: {_too_long()}") from None
    finally:
        loader.dispose()
    if _ANCHOR.search(text) and _ALIAS.search(text):
        _check_aliases(doc, 2_000_000 + 2 * len(text))
    located = _locate(doc, {id(m) for m, *_ in loader.repeated})
    problems: list[KeyProblem] = []
    for m, key, first, again in loader.repeated:
        lines = f"lines {first.start_mark.line + 1} and {again.start_mark.line + 1}"
        if first.value == again.value:
            message = f"key {key!r} is given twice ({lines}): keep one"
        else:  # `1:` and `true:`, `1:` and `0x1:`: two spellings YAML reads as one value
            message = f"keys {first.value!r} and {again.value!r} ({lines}) are both read as {key!r}: keep one"
        found = located.get(id(m))
        # A mapping that a later repeat replaced is not in the document: its lines say where.
        problems.append(((*found, key_part(key)), message) if found is not None else ((), message))
    return doc, problems


def yaml_problem(exc: Exception) -> FileProblem:
    """Line and column from PyYAML's mark (its structured data, not its message); what it
    found there in its own words, after ours."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    said = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    found = ", ".join(s for s in said if isinstance(s, str) and s)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return FileProblem(f"invalid YAML{where}" + (f": {found}" if found else ""))


def _check_aliases(doc: Any, limit: int) -> None:
    """Refuse a document whose aliases make it refer to itself or expand past ``limit``
    values: a few lines of anchors can stand for billions of nodes ("billion laughs"),
    and every check after this one walks the expanded document."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        children = [c for _, c in _children(node)]
        if leaving:
            open_.discard(key)
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > limit:
                raise FileProblem(f"its YAML aliases expand it to more than {limit:,} values: write it out")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_:
            raise FileProblem("a YAML alias refers to a value that contains it")
        open_.add(key)
        stack.append((node, True))
        for child in children:
            if isinstance(child, dict | list) and id(child) not in sizes:
                if id(child) in open_:
                    raise FileProblem("a YAML alias refers to a value that contains it")
                stack.append((child, False))


_spec_decoder = msgspec.json.Decoder(JsonIntegrationSpec)
_statuses_decoder = msgspec.json.Decoder(Statuses)


def fast_json(data: bytes) -> dict[str, Any] | None:
    """A JSON inventory decoded in one typed pass, or None to take the general path.

    Decoding the integrations straight into IntegrationSpec structs skips building a
    dict per integration and converting it: at 100k integrations, half the time and
    memory. Any problem at all (malformed, one wrong field, a key given twice) returns
    None: the general path then finds and reports every problem, not just the first.

    Memory: each integration is decoded on its own from its slice of the file, its own
    statuses (if any) decoded, checked and kept in their compact form (``model.pack``: one
    bytes object per distinct list), and the names and tags it repeats held once; so the
    file's integrations never exist all at once as structs, nor is the file encoded
    again whole for the duplicate-key check (its colons are counted piece by piece).
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        doc = msgspec.json.decode(data, type=JsonInventory)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    colons = msgspec.json.encode(msgspec.structs.replace(doc, integrations=[])).count(b":")
    compact: dict[bytes, bytes] = {}
    same: dict[object, Any] = {}
    integrations: list[JsonIntegrationSpec] = []
    pending = doc.integrations
    pending.reverse()
    while pending:
        item = pending.pop()  # each slice let go as its struct is made
        try:
            spec = _spec_decoder.decode(item)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        colons += msgspec.json.encode(spec).count(b":")  # its statuses as the file wrote them
        given: Any = spec.statuses
        if given is not UNSET:
            try:
                statuses = _statuses_decoder.decode(given)
            except (msgspec.DecodeError, RecursionError):
                return None
            colons_inside = msgspec.json.encode(statuses).count(b":")
            if memoryview(given).tobytes().count(b":") != colons_inside:  # a key given twice inside
                return None
            packed = pack(statuses)
            given = compact.setdefault(packed, packed)
        account, tags, set_name = spec.account, spec.tags, spec.status_set
        integrations.append(
            msgspec.structs.replace(
                spec,
                account=same.setdefault(account, account),
                tags=same.setdefault(tags, tags),
                status_set=same.setdefault(set_name, set_name),
                statuses=given,
            )
        )
    if not colons_match(data, colons):
        return None
    raw: dict[str, Any] = {"integrations": integrations}
    for key in ("defaults", "accounts", "status_sets", "allow_secret_files_outside", "notify", "history"):
        value = getattr(doc, key)
        if value is not UNSET:
            raw[key] = value
    return raw
