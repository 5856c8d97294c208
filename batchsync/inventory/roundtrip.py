"""Import into an existing inventory, keeping the file: what a person wrote (comments,
key order, names, tags, set names, quoting) stays as it is, and only the new status sets
and the new integrations are added, each rendered by :mod:`batchsync.inventory.writer` and
inserted with a style-preserving library: tomlkit for TOML, ruamel.yaml for YAML (PyYAML
reads, but drops every comment); JSON has no comments, its key order is kept.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Iterable
from typing import Any

from batchsync.inventory.grouping import Document, Entry, Format
from batchsync.inventory.writer import render


def _part(doc: Document, sets: Iterable[str], ids: Collection[int]) -> Document:
    """The new entries alone, as a document of their own (rendered, then inserted)."""
    return Document(
        header=(),
        top={},
        status_sets={name: doc.status_sets[name] for name in sets},
        integrations=tuple(e for e in doc.integrations if e.data.get("id") in ids),
    )


def keep_file(existing: str, fmt: Format, doc: Document, new_sets: Iterable[str], new_ids: Collection[int]) -> str:
    """``existing`` (the inventory imported into) with ``doc``'s new sets and integrations
    added: sets after its sets, integrations after its integrations. ValueError when the
    file cannot be read this way (the caller then writes ``doc`` as a whole)."""
    part = _part(doc, new_sets, new_ids)
    if fmt == "toml":
        return _toml(existing, part)
    if fmt == "yaml":
        return _yaml(existing, part)
    return _json(existing, part)


def _toml(existing: str, part: Document) -> str:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        target = tomlkit.parse(existing)
        new = tomlkit.parse(render(part, "toml"))
    except TOMLKitError as exc:
        raise ValueError(str(exc)) from None
    if part.status_sets:
        sets = target.get("status_sets")
        if sets is None:
            target.append("status_sets", new["status_sets"])
        else:
            for name, table in new["status_sets"].items():
                sets[name] = table
    if part.integrations:
        entries = target.get("integrations")
        added = new["integrations"]
        if isinstance(entries, tomlkit.items.AoT):
            for table in added:
                entries.append(table)
        elif entries is None or (isinstance(entries, list) and not entries):
            if entries is not None:
                target.remove("integrations")  # `integrations = []`: becomes the tables
            target.append("integrations", added)
        else:
            raise ValueError("its integrations are not written as [[integrations]] tables")
    return tomlkit.dumps(target)


def _yaml_tool() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, order, flow style and quotes kept
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold a long line
    yaml.indent(mapping=2, sequence=4, offset=2)  # the writer's own layout
    return yaml


def _yaml(existing: str, part: Document) -> str:
    from ruamel.yaml.error import YAMLError

    yaml = _yaml_tool()
    try:
        target = yaml.load(existing)
        new = yaml.load(render(part, "yaml"))
    except YAMLError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(target, dict):
        raise ValueError("not a mapping")
    if part.status_sets:
        if target.get("status_sets") is None:
            target["status_sets"] = new["status_sets"]
        else:
            for name, value in new["status_sets"].items():
                target["status_sets"][name] = value
    if part.integrations:
        entries = target.get("integrations")
        if entries is None:
            target["integrations"] = new["integrations"]
        elif isinstance(entries, list):
            entries.extend(new["integrations"])
        else:
            raise ValueError("its integrations are not a list")
    out = io.StringIO()
    yaml.dump(target, out)
    return out.getvalue()


def _json(existing: str, part: Document) -> str:
    try:
        target = json.loads(existing)  # a dict keeps the file's key order
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(target, dict):
        raise ValueError("not an object")
    if part.status_sets:
        sets = target.setdefault("status_sets", {})
        sets.update({name: e.data for name, e in part.status_sets.items()})
    if part.integrations:
        entries = target.setdefault("integrations", [])
        entries.extend(_json_entry(e) for e in part.integrations)
    # The file's own indentation (that of its first indented line), 2 when it has none.
    indents = (len(line) - len(line.lstrip(" ")) for line in existing.splitlines() if line.startswith(" "))
    return json.dumps(target, indent=next(indents, 2) or 2, ensure_ascii=False) + "\n"


def _json_entry(e: Entry) -> dict[str, Any]:
    return {"comment": " / ".join(e.comments), **e.data} if e.comments else e.data
