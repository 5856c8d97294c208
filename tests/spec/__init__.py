"""Sendcloud's OpenAPI description, as the tests (and bench/) read it: from the repository.

``integrations-v3.json`` is the official description reduced to what a validator reads (its
JSON Schemas, parameters and operations; no prose, no examples); ``examples.json`` holds the
description's own examples. ``extract.py`` makes both from the YAML (see README.md).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOC_PATH = HERE / "integrations-v3.json"
EXAMPLES_PATH = HERE / "examples.json"
# The integration exception logs (GET /integrations/logs, /integrations/{id}/logs): another extract.
LOGS_DOC_PATH = HERE / "integrations-logs-v3.json"
LOGS_EXAMPLES_PATH = HERE / "logs-examples.json"


@cache
def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def document() -> dict[str, Any]:
    """A fresh copy of the reduced OpenAPI document (callers may edit it, e.g. ``servers``)."""
    doc = json.loads(json.dumps(_read(DOC_PATH)))
    assert isinstance(doc, dict)
    return doc


def logs_document() -> dict[str, Any]:
    """A fresh copy of the reduced description of the exception-log operations."""
    doc = json.loads(json.dumps(_read(LOGS_DOC_PATH)))
    assert isinstance(doc, dict)
    return doc


def logs_examples() -> list[dict[str, Any]]:
    found = _read(LOGS_EXAMPLES_PATH)
    assert isinstance(found, list)
    return found


def examples() -> list[dict[str, Any]]:
    """Every example of the description: ``path``, ``method``, ``status`` (None: the request
    body), ``name`` and ``value``."""
    found = _read(EXAMPLES_PATH)
    assert isinstance(found, list)
    return found


def resolve_refs(node: Any, root: dict[str, Any] | None = None) -> Any:
    """A copy of ``node`` with every local ``$ref`` (into the document) replaced by its target."""
    root = _read(DOC_PATH) if root is None else root
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return resolve_refs({**target, **rest}, root)
        return {k: resolve_refs(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_refs(v, root) for v in node]
    return node


def component(name: str) -> dict[str, Any]:
    """The JSON Schema ``components/schemas/<name>``, every ``$ref`` resolved."""
    schema = resolve_refs(_read(DOC_PATH)["components"]["schemas"][name])
    assert isinstance(schema, dict)
    return schema
