"""The msgspec structs of batchsync.wire agree with Sendcloud's official OpenAPI schema.

The schema and its examples are read from the repository's copy (tests/spec); the one
test that compares that copy with its source, ``../shared/spec/integrations-v3.yaml``,
skips when the source is not beside the clone.

Documents are generated from the spec's own JSON Schemas (hypothesis-jsonschema) and
checked both ways: what the schema accepts decodes, what it rejects does not. "Decodes"
means ``msgspec.json.decode(body, type=...)`` succeeds *and* the checks beside the
structs (``check_statuses`` / ``check_mapping``) find nothing, since together they are
what batchsync accepts.

Where batchsync is deliberately stricter than the schema (DEVIATIONS below), the
accepted direction filters those documents out, and a separate test asserts that each
deviation is exactly what makes us reject a schema-valid document.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as _cu

from batchsync import wire

# -- hypothesis-jsonschema 0.23.1 vs hypothesis >= 6.16x ---------------------------------
# hypothesis-jsonschema drives hypothesis' private ``many`` helper with ``while
# elements.more():``; recent hypothesis turned ``many`` into a context manager that is
# iterated and dropped ``more()``, so every object schema fails with AttributeError.
# 0.23.1 is the latest release: give ``many`` its old method back, in terms of the new
# protocol. Drop this when hypothesis-jsonschema catches up.
if not hasattr(_cu.many, "more"):

    def _more(self: Any) -> bool:
        if getattr(self, "_compat_iter", None) is None:
            self.__enter__()
            self._compat_iter = iter(self)
        try:
            next(self._compat_iter)
        except StopIteration:
            self.__exit__(None)
            return False
        return True

    _cu.many.more = _more  # type: ignore[attr-defined]

import spec
from hypothesis_jsonschema import from_schema
from spec import component, extract, resolve_refs

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # No shrinking: with hypothesis-jsonschema's object strategy it can take minutes;
    # a failure still prints the (unshrunk) document and the seed to replay it.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


POST_STATUSES = component("post-shop-order-statuses")
POST_MAPPING = component("create-custom-status-mapping")
VALIDATORS: dict[type[Any], jsonschema.Draft202012Validator] = {
    wire.PostShopOrderStatuses: jsonschema.Draft202012Validator(POST_STATUSES),
    wire.PostMapping: jsonschema.Draft202012Validator(POST_MAPPING),
}
SCHEMAS: dict[type[Any], Any] = {wire.PostShopOrderStatuses: POST_STATUSES, wire.PostMapping: POST_MAPPING}


def strict(schema: Any) -> Any:
    """The schema with deviations 1 to 3 below written into it: every object closed
    (``additionalProperties: false``), strings non-empty, ``integration_id`` >= 1.

    Used to generate documents for the "accepted" direction: filtering those out with
    assume() instead would throw away most documents (unknown keys are generated in
    four documents out of five, a negative id in one out of two).
    """
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out["additionalProperties"] = False
            if "integration_id" in out["properties"]:
                out["properties"]["integration_id"] = {
                    **out["properties"]["integration_id"],
                    "minimum": 1,
                    "maximum": 2**63 - 1,
                }
        if out.get("type") == "string":
            out["minLength"] = 1
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def capped(schema: Any, most: int = 4) -> Any:
    """The schema with arrays of at most ``most`` items (where it allows that many)."""
    if isinstance(schema, dict):
        out = {k: capped(v, most) for k, v in schema.items()}
        if out.get("type") == "array":
            out["maxItems"] = max(min(out.get("maxItems", most), most), out.get("minItems", 0))
        return out
    if isinstance(schema, list):
        return [capped(v, most) for v in schema]
    return schema


# -- what batchsync accepts -----------------------------------------------------------------


def ours_accepts(kind: type[Any], doc: Any) -> bool:
    body = json.dumps(doc).encode()
    try:
        value = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError:
        return False
    if isinstance(value, wire.PostShopOrderStatuses):
        return not wire.check_statuses(value.statuses)
    assert isinstance(value, wire.PostMapping)
    return not wire.check_mapping(value)


# -- DEVIATIONS: where we are deliberately stricter than the schema -------------------------
# 1. Unknown fields are refused (forbid_unknown_fields): the schema does not close its
#    objects, but a typo in a POST body would silently be dropped or refused by the API.
# 2. An empty external_id or status name is refused: useless (it names nothing), yet a string.
# 3. integration_id must be in 1 .. 2**63 - 1: the schema says "integer" only; ids are
#    positive, and one past 64 bits is a mistake, not an id.
#    (An integral float such as 1.0 is an "integer" to JSON Schema 2020-12, not to us.)
# 4. Two statuses with the same external_id, or two translations of one status in the
#    same language, are refused: contradictions the schema's uniqueItems (whole items
#    only) lets through.
# 5. A mapping names each of the four categories exactly once (the API's own rule, in
#    its documentation); the schema only asks for 4 unique items.

STATUS_KEYS = {"external_id", "translations"}
TRANSLATION_KEYS = {"status", "language"}
MAPPING_KEYS = {"status_category", "external_id"}


def deviations(kind: type[Any], doc: dict[str, Any]) -> set[str]:
    """Which of the deviations above apply to a schema-valid document of ``kind``."""
    found: set[str] = set()
    iid = doc["integration_id"]
    if isinstance(iid, float) or not 1 <= iid <= 2**63 - 1:
        found.add("integration_id < 1")
    list_key = "statuses" if kind is wire.PostShopOrderStatuses else "mapping"
    if set(doc) - {"integration_id", list_key}:
        found.add("unknown field")
    if kind is wire.PostShopOrderStatuses:
        ids: set[str] = set()
        for status in doc["statuses"]:
            if set(status) - STATUS_KEYS:
                found.add("unknown field")
            if status["external_id"] == "":
                found.add("empty string")
            if status["external_id"] in ids:
                found.add("duplicate external_id")
            ids.add(status["external_id"])
            langs: set[str] = set()
            for tr in status["translations"]:
                if set(tr) - TRANSLATION_KEYS:
                    found.add("unknown field")
                if tr["status"] == "":
                    found.add("empty string")
                if tr["language"] in langs:
                    found.add("duplicate language")
                langs.add(tr["language"])
    else:
        for item in doc["mapping"]:
            if set(item) - MAPPING_KEYS:
                found.add("unknown field")
        if len({item["status_category"] for item in doc["mapping"]}) != len(doc["mapping"]):
            found.add("duplicate category")
    return found


KINDS = [wire.PostShopOrderStatuses, wire.PostMapping]
# Built once: from_schema canonicalises the schema, which costs far more than a draw.
# Lists capped at 4 items for speed: no deviation depends on a list's length.
OFFICIAL: dict[type[Any], st.SearchStrategy[Any]] = {kind: from_schema(capped(SCHEMAS[kind])) for kind in KINDS}
STRICT: dict[type[Any], st.SearchStrategy[Any]] = {
    kind: from_schema(capped(strict(SCHEMAS[kind]), 6)) for kind in KINDS
}


def without_duplicates(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Deviations 4-5 made impossible while keeping the document schema-valid: later
    statuses reusing an external_id and later translations reusing a language are
    dropped; the four mapping items get the four categories, in a drawn order."""
    if "mapping" in doc:
        order = data.draw(st.permutations(wire.STATUS_CATEGORIES))
        doc["mapping"] = [{**item, "status_category": c} for item, c in zip(doc["mapping"], order, strict=True)]
        return doc
    statuses, ids = [], set()
    for status in doc["statuses"]:
        if status["external_id"] not in ids:
            ids.add(status["external_id"])
            langs: dict[str, Any] = {}
            for tr in status["translations"]:
                langs.setdefault(tr["language"], tr)
            statuses.append({**status, "translations": list(langs.values())})
    doc["statuses"] = statuses
    return doc


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@SETTINGS
@given(data=st.data())
def test_what_the_schema_accepts_decodes(kind: type[Any], data: st.DataObject) -> None:
    # Generated from the official schema with deviations 1-3 written in (see strict());
    # deviations 4-5 are edited out, and assume() guards that none is left.
    doc = without_duplicates(data.draw(STRICT[kind]), data)
    assume(not deviations(kind, doc))
    assert VALIDATORS[kind].is_valid(doc)
    assert ours_accepts(kind, doc), doc


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@settings(SETTINGS, max_examples=50)
@given(data=st.data())
def test_we_reject_a_schema_valid_document_exactly_for_a_deviation(kind: type[Any], data: st.DataObject) -> None:
    doc = data.draw(OFFICIAL[kind])
    assert VALIDATORS[kind].is_valid(doc)
    why = deviations(kind, doc)
    note(f"deviations: {why}")
    assert ours_accepts(kind, doc) == (not why), doc


# -- what the schema rejects does not decode ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=8,
)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*here, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw: st.DrawFn, kind: type[Any]) -> Any:
    """A valid document with one thing changed: a key dropped, a value replaced, a list
    emptied, grown or given a duplicate, a string swapped for a near miss."""
    doc = copy.deepcopy(draw(STRICT[kind]))
    path = draw(st.sampled_from(_paths(doc)))
    op = draw(st.sampled_from(["drop", "replace", "empty", "grow", "duplicate", "near-miss"]))
    note(f"{op} at {path}")
    if not path:
        return draw(json_values) if op in ("replace", "drop") else [doc]
    parent, last = _get(doc, path[:-1]), path[-1]
    target = parent[last]
    if op == "drop":
        del parent[last]
    elif op == "replace":
        parent[last] = draw(json_values.filter(lambda v: type(v) is not type(target)))
    elif op == "empty" and isinstance(target, list):
        target.clear()
    elif op == "grow" and isinstance(target, list) and target:
        target.extend(copy.deepcopy(target[-1:]) * draw(st.integers(1, 8)))
    elif op == "duplicate" and isinstance(target, list) and target:
        target.append(copy.deepcopy(target[0]))
    elif op == "near-miss" and isinstance(target, str):
        parent[last] = draw(st.sampled_from([target.upper(), target + " ", target.replace("-", "_"), "xx-yy"]))
    elif op == "near-miss" and isinstance(target, int) and not isinstance(target, bool):
        parent[last] = draw(st.sampled_from([str(target), float(target) + 0.5, None, True]))
    else:
        parent[last] = None
    return doc


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@SETTINGS
@given(data=st.data())
def test_what_the_schema_rejects_does_not_decode(kind: type[Any], data: st.DataObject) -> None:
    doc = data.draw(mutated(kind))
    assume(not VALIDATORS[kind].is_valid(doc))
    assert not ours_accepts(kind, doc), doc


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@settings(SETTINGS, max_examples=100)
@given(doc=json_values)
def test_arbitrary_json_the_schema_rejects_does_not_decode(kind: type[Any], doc: Any) -> None:
    assume(not VALIDATORS[kind].is_valid(doc))
    assert not ours_accepts(kind, doc)


GOOD_TR = {"status": "Paid", "language": "en-gb"}


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"statuses": []}, id="no integration_id"),
        pytest.param({"integration_id": 1}, id="no statuses"),
        pytest.param({"integration_id": "12", "statuses": []}, id="string id"),
        pytest.param({"integration_id": True, "statuses": []}, id="bool id"),
        pytest.param({"integration_id": 1.5, "statuses": []}, id="fractional id"),
        pytest.param({"integration_id": 1, "statuses": {}}, id="statuses not a list"),
        pytest.param({"integration_id": 1, "statuses": [{"translations": [GOOD_TR]}]}, id="no external_id"),
        pytest.param(
            {"integration_id": 1, "statuses": [{"external_id": 3, "translations": [GOOD_TR]}]}, id="int external_id"
        ),
        pytest.param(
            {"integration_id": 1, "statuses": [{"external_id": "1", "translations": []}]}, id="0 translations"
        ),
        pytest.param(
            {
                "integration_id": 1,
                "statuses": [
                    {
                        "external_id": "1",
                        "translations": [{"status": f"s{i}", "language": lang} for i, lang in enumerate(wire.LANGUAGES)]
                        + [GOOD_TR],
                    }
                ],
            },
            id="8 translations",
        ),
        pytest.param(
            {
                "integration_id": 1,
                "statuses": [{"external_id": "1", "translations": [{"status": "x", "language": "EN-GB"}]}],
            },
            id="bad language",
        ),
        pytest.param(
            {
                "integration_id": 1,
                "statuses": [{"external_id": "1", "translations": [{"status": None, "language": "en-gb"}]}],
            },
            id="null status",
        ),
        pytest.param(
            {"integration_id": 1, "statuses": [{"external_id": "1", "translations": [GOOD_TR]}] * 2},
            id="identical items",
        ),
    ],
)
def test_known_invalid_statuses_bodies(doc: Any) -> None:
    assert not VALIDATORS[wire.PostShopOrderStatuses].is_valid(doc)
    assert not ours_accepts(wire.PostShopOrderStatuses, doc)


def test_known_deviations_are_schema_valid_but_refused() -> None:
    def body(external_id: str = "1", status: str = "Paid", **extra: Any) -> dict[str, Any]:
        return {
            "integration_id": 1,
            "statuses": [{"external_id": external_id, "translations": [{"status": status, "language": "en-gb"}]}],
            **extra,
        }

    cases = {
        "unknown field": body(note="typo"),
        "empty string": body(external_id=""),
        "empty status": body(status=""),
        "integration_id < 1": {**body(), "integration_id": 0},
        "integration_id past 64 bits": {**body(), "integration_id": 2**63},
        "integral float id": {**body(), "integration_id": 1.0},
        "duplicate external_id": {
            "integration_id": 1,
            "statuses": [
                {"external_id": "1", "translations": [GOOD_TR]},
                {"external_id": "1", "translations": [{"status": "Other", "language": "en-gb"}]},
            ],
        },
        "duplicate language": {
            "integration_id": 1,
            "statuses": [{"external_id": "1", "translations": [GOOD_TR, {"status": "Betaald", "language": "en-gb"}]}],
        },
    }
    for name, doc in cases.items():
        assert VALIDATORS[wire.PostShopOrderStatuses].is_valid(doc), name
        assert not ours_accepts(wire.PostShopOrderStatuses, doc), name
    twice = {
        "integration_id": 1,
        "mapping": [
            {"status_category": "READY_TO_SEND", "external_id": "1"},
            {"status_category": "READY_TO_SEND", "external_id": "2"},
            {"status_category": "IN_TRANSIT", "external_id": None},
            {"status_category": "DELIVERED", "external_id": None},
        ],
    }
    assert VALIDATORS[wire.PostMapping].is_valid(twice)
    assert not ours_accepts(wire.PostMapping, twice)


# -- the spec's own examples ----------------------------------------------------------------

SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "integrations-v3.yaml"


def test_in_repo_spec_matches_its_source() -> None:
    """The only test that reads outside the repository, and only to compare: tests/spec
    is what ``extract.py`` makes of the official description, nothing lost or edited."""
    if not SOURCE.is_file():
        pytest.skip(f"no official description at {SOURCE} to compare tests/spec with (a clone on its own)")
    source = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    assert spec.document() == extract.reduce(source), "tests/spec/integrations-v3.json: run tests/spec/extract.py"
    assert spec.examples() == extract.examples_of(source), "tests/spec/examples.json: run tests/spec/extract.py"


def test_in_repo_logs_spec_matches_its_source() -> None:
    """The same for the exception-log operations' description (GET /integrations/logs)."""
    source_path = SOURCE.with_name("integrations-logs-v3.yaml")
    if not source_path.is_file():
        pytest.skip(f"no official description at {source_path} to compare tests/spec with (a clone on its own)")
    source = yaml.safe_load(source_path.read_text(encoding="utf-8"))
    assert spec.logs_document() == extract.reduce(source), "tests/spec/integrations-logs-v3.json: run extract.py"
    assert spec.logs_examples() == extract.examples_of(source), "tests/spec/logs-examples.json: run extract.py"


def test_the_logs_description_examples_decode_as_log_records() -> None:
    """Every record of the description's examples decodes into what batchsync keeps of one,
    and the page shape (v2's ``results``) is one the client reads."""
    from batchsync.sendcloud.client import _decode_logs

    pages = [e for e in spec.logs_examples() if e["method"] == "get" and e["status"] == "200"]
    assert {e["path"] for e in pages} == {"/integrations/logs", "/integrations/{id}/logs"}
    for example in pages:
        records, following, rejected = _decode_logs(msgspec.json.encode(example["value"]))
        assert rejected == 0 and len(records) == len(example["value"]["results"])
        assert following == example["value"]["next"]
        assert records[0].exception_type == "requests.exceptions.SSLError" and records[0].response_code == 495


def test_in_repo_spec_carries_no_prose() -> None:
    doc = spec.document()
    assert extract.reduce(doc) == doc
    # Names are not prose: ErrorObject's "title" property survives the reduction.
    assert set(component("errors")["properties"]["errors"]["items"]["allOf"][0]["properties"]) >= {"title", "detail"}
    assert "description" not in component("post-shop-order-statuses")


RESPONSE_STRUCTS: dict[tuple[str, str, str], type[Any]] = {
    ("/shop-order-statuses", "get", "200"): wire.GetShopOrderStatuses,
    ("/shop-order-statuses", "get", "400"): wire.ErrorBody,
    ("/shop-order-statuses", "post", "400"): wire.ErrorBody,
    ("/shop-order-statuses/mapping", "get", "200"): wire.GetMapping,
    ("/shop-order-statuses/mapping", "get", "400"): wire.ErrorBody,
    ("/shop-order-statuses/mapping", "post", "400"): wire.ErrorBody,
}
REQUEST_STRUCTS: dict[tuple[str, str], type[Any]] = {
    ("/shop-order-statuses", "post"): wire.PostShopOrderStatuses,
    ("/shop-order-statuses/mapping", "post"): wire.PostMapping,
}


def _examples() -> list[Any]:
    doc = spec.document()
    out = []
    for ex in spec.examples():
        path, method, status, name, value = ex["path"], ex["method"], ex["status"], ex["name"], ex["value"]
        op = doc["paths"][path][method]
        if status is None:
            media = op["requestBody"]["content"]["application/json"]
            kind = REQUEST_STRUCTS[(path, method)]
            out.append(pytest.param(kind, media["schema"], value, id=f"{method} {path} request {name}"))
            continue
        if value is None:
            continue  # the 200 of the POSTs: the client checks for null itself
        media = op["responses"][status]["content"]["application/json"]
        kind = RESPONSE_STRUCTS[(path, method, status)]
        out.append(pytest.param(kind, media["schema"], value, id=f"{method} {path} {status} {name}"))
    return out


EXAMPLES = _examples()


def test_every_example_is_covered() -> None:
    # 2 request bodies, 2 GET 200s, 4 error bodies (the POSTs' 200s are a bare null).
    assert len(EXAMPLES) == 8


@pytest.mark.parametrize(("kind", "schema", "value"), EXAMPLES)
def test_spec_examples_decode(kind: type[Any], schema: Any, value: Any) -> None:
    jsonschema.Draft202012Validator(resolve_refs(schema)).validate(value)
    decoded = msgspec.json.decode(json.dumps(value).encode(), type=kind)
    # Nothing is lost: what we decode encodes back to the same document.
    assert json.loads(msgspec.json.encode(decoded)) == value
    if isinstance(decoded, wire.PostShopOrderStatuses):
        assert wire.check_statuses(decoded.statuses) == []
    if isinstance(decoded, wire.PostMapping):
        assert wire.check_mapping(decoded) == []


def test_get_statuses_example_details() -> None:
    [doc] = [
        ex["value"]
        for ex in spec.examples()
        if (ex["path"], ex["method"], ex["status"]) == ("/shop-order-statuses", "get", "200")
    ]
    got = msgspec.json.decode(json.dumps(doc).encode(), type=wire.GetShopOrderStatuses)
    assert [s.external_id for s in got.data] == ["17-B", "14-A"]
    assert got.data[0].deleted_at is None
    assert got.data[1].deleted_at == "2023-11-04T14:15:22Z"
    assert got.data[1].translations[1] == wire.CurrentTranslation("Geannuleerd", "nl-nl")


def required_everywhere(schema: Any) -> Any:
    """The schema with every declared property required (what the API does send)."""
    if isinstance(schema, dict):
        out = {k: required_everywhere(v) for k, v in schema.items()}
        if "properties" in out:
            out["required"] = sorted(out["properties"])
        if out.get("type") == "array":
            out["maxItems"] = 4  # keeps generation fast; sizes are not what is tested
        return out
    if isinstance(schema, list):
        return [required_everywhere(v) for v in schema]
    return schema


GET_STRATEGIES = {
    name: from_schema(required_everywhere(component(name)))
    for name in ("get-shop-order-statuses", "get-custom-status-mapping")
}


@pytest.mark.parametrize(
    ("name", "kind"),
    [("get-shop-order-statuses", wire.GetShopOrderStatuses), ("get-custom-status-mapping", wire.GetMapping)],
)
@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_get_responses_decode_tolerantly(name: str, kind: type[Any], data: st.DataObject) -> None:
    # Reads tolerate unknown fields (the API may add some); languages stay checked by the
    # schema here, and CurrentTranslation would take any string anyway.
    doc = data.draw(GET_STRATEGIES[name])
    msgspec.json.decode(json.dumps(doc).encode(), type=kind)


def test_post_body_round_trips() -> None:
    body = wire.PostShopOrderStatuses(
        42, (wire.Status("1", (wire.Translation("Paid", "en-gb"), wire.Translation("Betaald", "nl-nl"))),)
    )
    raw = msgspec.json.encode(body)
    assert VALIDATORS[wire.PostShopOrderStatuses].is_valid(json.loads(raw))
    assert msgspec.json.decode(raw, type=wire.PostShopOrderStatuses) == body


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("$", ()),
        ("$.statuses[0].external_id", ("statuses", 0, "external_id")),
        ("$.accounts['acme eu'].public_key", ("accounts", "acme eu", "public_key")),
        ("$.a[-1]", ("a", -1)),
    ],
)
def test_paths_round_trip(path: str, loc: wire.Loc) -> None:
    assert wire.parse_path(path) == loc
    assert wire.to_jsonpath(loc) == path


def test_split_validation_error_points_at_the_field() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(
            b'{"integration_id":1,"statuses":[{"translations":[{"status":"x","language":"en-gb"}]}]}',
            type=wire.PostShopOrderStatuses,
        )
    message, loc = wire.split_validation_error(info.value)
    assert loc == ("statuses", 0, "external_id")
    assert wire.error_code(message) == "required"
    assert wire.to_pointer(loc) == "/statuses/0/external_id"
