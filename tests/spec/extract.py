"""Makes this folder's JSON files from Sendcloud's OpenAPI description (YAML).

    python tests/spec/extract.py ../shared/spec/integrations-v3.yaml

``reduce`` keeps what a validator reads and drops prose and examples; ``examples_of``
collects the examples. The comparison test in tests/test_wire.py runs both on the YAML
when it is there, so a copy that drifts from its source is caught.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

# Annotations: a validator ignores them, and the copy carries no prose.
PROSE = frozenset({"description", "summary", "title", "example", "examples", "x-mint", "tags", "contact", "license"})
# Maps whose keys are names chosen by the author (ErrorObject has a property called "title").
NAMED = frozenset({"properties", "paths", "schemas", "parameters", "responses", "content", "securitySchemes", "scopes"})
# Prose OpenAPI requires: without it openapi-core refuses the document.
REQUIRED = {"info": {"title"}, "responses[]": {"description"}}


def _strip(node: Any, parent: str = "") -> Any:
    if isinstance(node, dict):
        if parent in NAMED:
            return {name: _strip(value, f"{parent}[]") for name, value in node.items()}
        keep = REQUIRED.get(parent, set())
        return {
            key: _strip(value, key if isinstance(value, dict) else "")
            for key, value in node.items()
            if key not in PROSE or key in keep
        }
    if isinstance(node, list):
        return [_strip(value) for value in node]
    return node


def reduce(spec: dict[str, Any]) -> dict[str, Any]:
    """The description without prose or examples: what openapi-core and jsonschema read."""
    out = _strip(spec)
    assert isinstance(out, dict)
    return out


def examples_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every example of a JSON body: request bodies (``status`` None), then responses."""
    found: list[dict[str, Any]] = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            bodies = [(None, op.get("requestBody", {})), *op.get("responses", {}).items()]
            for status, body in bodies:
                media = body.get("content", {}).get("application/json", {})
                for name, example in media.get("examples", {}).items():
                    found.append(
                        {"path": path, "method": method, "status": status, "name": name, "value": example["value"]}
                    )
    return found


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


# The descriptions this folder holds: the YAML's name -> (the reduced copy, its examples).
OUTPUTS = {
    "integrations-v3.yaml": ("integrations-v3.json", "examples.json"),
    "integrations-logs-v3.yaml": ("integrations-logs-v3.json", "logs-examples.json"),
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or Path(argv[0]).name not in OUTPUTS:
        print(f"usage: python tests/spec/extract.py PATH/{{{','.join(OUTPUTS)}}}", file=sys.stderr)
        return 2
    spec = yaml.safe_load(Path(argv[0]).read_text(encoding="utf-8"))
    document, examples = OUTPUTS[Path(argv[0]).name]
    (HERE / document).write_text(dump(reduce(spec)), encoding="utf-8")
    (HERE / examples).write_text(dump(examples_of(spec)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
