"""The inventory loader: every kind of problem, in each of the three formats, and expansion.

Each problem case edits one valid inventory, writes it as JSON, TOML and YAML (same
keys), loads it and checks the problems: where (path inside the file), what (message)
and which integration. No case may ever quote a secret value.
"""

from __future__ import annotations

import copy
import gc
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from batchsync import files, wire
from batchsync.diff import translation_set
from batchsync.inventory.documents import fast_json
from batchsync.inventory.loader import load
from batchsync.inventory.select import select
from batchsync.inventory.spec import IntegrationSpec, merge_statuses
from batchsync.model import (
    PRODUCTION_URL,
    BasicCredentials,
    Inventory,
    InventoryProblem,
    Limits,
    OAuth2Credentials,
    pack,
    unpack,
)
from batchsync.secrets import Secret, SecretError, basic_auth, check_reference, resolve
from batchsync.urls import insecure_http

# -- writing one document in three formats ---------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"TOML cannot hold {value!r}")


def to_toml(doc: dict[str, Any]) -> str:
    """A minimal TOML writer (inline tables), enough for these tests: no tomli_w needed."""
    return "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in doc.items())


FORMATS = ("json", "toml", "yaml")


def write(directory: Path, doc: Any, fmt: str, name: str = "inventory") -> Path:
    path = directory / f"{name}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(doc), encoding="utf-8")
    elif fmt == "toml":
        path.write_text(to_toml(doc), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def tr(status: str, language: str = "en-gb") -> dict[str, str]:
    return {"status": status, "language": language}


def st(external_id: str, *translations: dict[str, str]) -> dict[str, Any]:
    return {"external_id": external_id, "translations": list(translations) or [tr(f"Status {external_id}")]}


DEFAULT_SET = [
    st("1", tr("Paid"), tr("Betaald", "nl-nl")),
    st("2", tr("Shipped"), tr("Verzonden", "nl-nl")),
    st("3", tr("Cancelled"), tr("Geannuleerd", "nl-nl")),
]
FILE_SET = [st("a", tr("Open")), st("b", tr("Closed"))]

ENV = {"MAIN_PUB": "pub-main-value", "OTHER_PUB": "pub-other-value", "OTHER_SEC": "sec-other-value"}
MAIN_SECRET = "sec-main-value"


def base_doc() -> dict[str, Any]:
    return {
        "defaults": {"limits": {"writes_per_minute": 50}},
        "accounts": {
            "main": {"public_key": "env:MAIN_PUB", "secret_key": "file:main.secret"},
            "other": {
                "public_key": "env:OTHER_PUB",
                "secret_key": "env:OTHER_SEC",
                "base_url": "http://127.0.0.1:8080/api/v3/",
                "limits": {"write_burst": 3},
            },
        },
        "status_sets": {
            "default": {"statuses": copy.deepcopy(DEFAULT_SET), "mapping": {"READY_TO_SEND": "1", "CANCEL": "3"}},
            "from-file": {"statuses_file": "statuses.json"},
        },
        "integrations": [
            {"id": 101, "account": "main", "status_set": "default", "tags": ["nl", "acme"]},
            {"id": 102, "account": "main", "status_set": "default"},
            {"id": 103, "account": "other", "statuses": [st("x", tr("Open"))]},
            {"id": 104, "account": "other", "status_set": "from-file"},
        ],
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "main.secret").write_text(MAIN_SECRET + "\n")
    (tmp_path / "statuses.json").write_text(json.dumps(FILE_SET))
    return tmp_path


def load_doc(workdir: Path, doc: Any, fmt: str) -> Inventory:
    return load(write(workdir, doc, fmt), environ=dict(ENV))


def assert_no_secret(inv: Inventory, *secrets: str) -> None:
    text = msgspec.json.encode(inv.problems).decode()
    for secret in (*secrets, *ENV.values(), MAIN_SECRET):
        assert secret not in text


# -- the valid inventory ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_inventory_expands_into_jobs(workdir: Path, fmt: str) -> None:
    inv = load_doc(workdir, base_doc(), fmt)
    assert inv.problems == []
    assert inv.valid
    assert [j.integration_id for j in inv.jobs] == [101, 102, 103, 104]
    assert [j.account for j in inv.jobs] == ["main", "main", "other", "other"]
    assert inv.jobs[0].tags == ("nl", "acme")
    assert [j.source for j in inv.jobs] == ["default", "default", "", "from-file"]
    assert [s.external_id for s in inv.jobs[3].desired.statuses] == ["a", "b"]
    main, other = inv.accounts["main"], inv.accounts["other"]
    assert main.credentials == BasicCredentials(Secret("pub-main-value"), Secret(MAIN_SECRET))
    assert main.identity.reveal() == "pub-main-value"
    assert main.secrets()[1].reveal() == MAIN_SECRET  # stripped of its newline
    # defaults and limits merge per account: defaults over the documented ones, the
    # account's own over the defaults.
    assert main.base_url == PRODUCTION_URL
    assert main.limits == Limits(writes_per_minute=50, write_burst=15, reads_per_minute=1000)
    assert other.base_url == "http://127.0.0.1:8080/api/v3"
    assert other.limits == Limits(writes_per_minute=50, write_burst=3, reads_per_minute=1000)
    # The set's mapping, shared; no mapping where none is declared.
    assert inv.jobs[0].mapping is inv.jobs[1].mapping
    assert inv.jobs[0].mapping is not None
    assert inv.jobs[0].mapping.as_dict() == {"READY_TO_SEND": "1", "IN_TRANSIT": None, "DELIVERED": None, "CANCEL": "3"}
    assert inv.jobs[2].mapping is None and inv.jobs[3].mapping is None
    assert inv.warnings == []  # http:// to loopback is the sandbox: nothing to warn about


def test_the_three_formats_give_the_same_jobs(workdir: Path) -> None:
    loaded = [load_doc(workdir, base_doc(), fmt) for fmt in FORMATS]
    shapes = [
        [(j.integration_id, j.account, j.desired.statuses, j.tags, j.mapping) for j in inv.jobs] for inv in loaded
    ]
    assert shapes[0] == shapes[1] == shapes[2]


def test_a_shared_status_set_is_one_desired_object(workdir: Path) -> None:
    doc = base_doc()
    doc["integrations"] += [{"id": 200 + i, "account": "main", "status_set": "default"} for i in range(50)]
    inv = load_doc(workdir, doc, "json")
    shared = [j.desired for j in inv.jobs if j.source == "default"]
    assert len(shared) == 52
    assert all(d is shared[0] for d in shared)
    assert shared[0].encoded is shared[0].encoded  # encoded once, then reused


def test_same_statuses_inline_are_interned_too(workdir: Path) -> None:
    doc = base_doc()
    doc["integrations"][2]["statuses"] = copy.deepcopy(DEFAULT_SET)
    inv = load_doc(workdir, doc, "json")
    assert inv.jobs[2].desired is inv.jobs[0].desired


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_status_list_is_held_once_in_its_compact_form(workdir: Path, fmt: str) -> None:
    # 100,000 shops, a fifth with a list of their own: a list held as structs costs a few
    # kilobytes of small objects per shop for the whole run; its JSON, a fraction of that.
    doc = base_doc()
    own = [st("o1", tr("Own"), tr("Eigen", "nl-nl")), st("o2", tr("Done"))]
    doc["integrations"][2]["statuses"] = copy.deepcopy(own)
    doc["integrations"].append({"id": 105, "account": "other", "statuses": copy.deepcopy(own), "tags": ["nl"]})
    doc["integrations"].append({"id": 106, "account": "other", "statuses": [st("x", tr("Alone"))], "tags": ["nl"]})
    inv = load_doc(workdir, doc, fmt)
    assert inv.problems == []
    by_id = {j.integration_id: j for j in inv.jobs}
    mine, alone = by_id[103].desired, by_id[106].desired
    assert by_id[105].desired is mine
    structs = (wire.Status, wire.Translation, tuple)  # a shared list's dict: its index, kept
    for desired in (mine, alone, by_id[101].desired):
        desired.index, desired.encoded  # noqa: B018 - made once: a shared list keeps them
        assert not [r for r in gc.get_referents(desired) if isinstance(r, structs)]
        assert isinstance(desired.packed, bytes)
    expected = tuple(msgspec.convert(s, wire.Status) for s in own)
    assert mine.statuses == expected and mine.count == 2
    assert mine.encoded == msgspec.json.encode(expected)  # the API's form, for the POST body
    assert len(mine.packed) < len(mine.encoded) * 0.6
    # The index and the encoding: kept on a list several jobs share, made anew for a list of one.
    assert mine.shared and by_id[101].desired.shared and not alone.shared
    assert mine.index is mine.index and mine.encoded is mine.encoded
    assert alone.index == {"x": translation_set({("en-gb", "Alone")})}
    assert alone.index is not alone.index and alone.encoded is not alone.encoded
    # An account name and a tuple of tags that integrations repeat are held once.
    assert by_id[105].account is by_id[106].account is by_id[103].account
    assert by_id[105].tags is by_id[106].tags


def test_desired_body_is_a_post_body(workdir: Path) -> None:
    inv = load_doc(workdir, base_doc(), "json")
    for job in inv.jobs:
        raw = job.desired.body(job.integration_id)
        assert json.loads(raw)["integration_id"] == job.integration_id
        body = msgspec.json.decode(raw, type=wire.PostShopOrderStatuses)
        assert body == wire.PostShopOrderStatuses(job.integration_id, job.desired.statuses)
        assert wire.check_statuses(body.statuses) == []
    index = inv.jobs[0].desired.index
    assert index["2"] == translation_set({("en-gb", "Shipped"), ("nl-nl", "Verzonden")})


def test_empty_statuses_is_allowed(workdir: Path) -> None:
    # An empty list is meaningful: it deletes every status of the integration.
    doc = base_doc()
    doc["integrations"][2]["statuses"] = []
    inv = load_doc(workdir, doc, "json")
    assert inv.valid
    assert json.loads(inv.jobs[2].desired.body(103)) == {"integration_id": 103, "statuses": []}


# -- every kind of problem -------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit: set ``value`` at a dotted path (ints index lists)."""

    def edit(doc: dict[str, Any]) -> None:
        parts: list[Any] = [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
        node: Any = doc
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value

    return edit


def _del(path: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        parts: list[Any] = [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
        node: Any = doc
        for p in parts[:-1]:
            node = node[p]
        del node[parts[-1]]

    return edit


SEVEN = [tr(f"s{i}", lang) for i, lang in enumerate(wire.LANGUAGES)]

# Without accounts, every integration names the account it cannot find.
# Without a usable accounts section, its one problem is all: no integration is blamed.
NO_ACCOUNT: list[tuple[str, str, int | None]] = []

# name: (edit, [(path, message fragment, integration_id)])
CASES: dict[str, tuple[Edit, list[tuple[str, str, int | None]]]] = {
    "unknown account": (
        _set("integrations.0.account", "nope"),
        [("$.integrations[0].account", "unknown account 'nope' (known: main, other)", 101)],
    ),
    "unknown status set": (
        _set("integrations.1.status_set", "defualt"),
        [("$.integrations[1].status_set", "unknown status set 'defualt'", 102)],
    ),
    "duplicate integration id": (
        _set("integrations.2.id", 101),
        [("$.integrations[2].id", "duplicate integration id 101 (first at $.integrations[0])", 101)],
    ),
    "negative id": (
        _set("integrations.0.id", -5),
        [("$.integrations[0].id", "Expected `int` >= 1", -5)],
    ),
    "zero id": (
        _set("integrations.0.id", 0),
        [("$.integrations[0].id", "Expected `int` >= 1", 0)],
    ),
    "string id": (
        _set("integrations.0.id", "101"),
        [("$.integrations[0].id", "Expected `int`, got `str`", 101)],
    ),
    "float id": (
        _set("integrations.0.id", 101.5),
        [("$.integrations[0].id", "Expected `int`, got `float`", None)],
    ),
    "env var not set": (
        _set("accounts.other.secret_key", "env:NOT_SET_ANYWHERE"),
        [("$.accounts.other.secret_key", "environment variable NOT_SET_ANYWHERE is not set", None)],
    ),
    "env reference without a name": (
        _set("accounts.other.secret_key", "env:"),
        [("$.accounts.other.secret_key", "env: needs a variable name", None)],
    ),
    "env reference of blanks": (
        _set("accounts.other.secret_key", "env:  "),
        [("$.accounts.other.secret_key", "env: needs a variable name without spaces or '='", None)],
    ),
    "a tag --limit cannot choose (a comma)": (
        _set("accounts.other.tags", ["client-a", "a,b"]),
        [("$.accounts.other.tags[1]", "a tag may not hold a comma: --limit splits its terms there", None)],
    ),
    "a tag --limit cannot choose (spaces)": (
        _set("accounts.other.tags", [" sp "]),
        [("$.accounts.other.tags[0]", "a tag may not begin or end with a space", None)],
    ),
    "a tag --limit cannot choose (an operator)": (
        _set("accounts.other.tags", ["!x"]),
        [("$.accounts.other.tags[0]", "a tag may not begin with '!': --limit reads it as an operator", None)],
    ),
    "file secret missing": (
        _set("accounts.main.secret_key", "file:missing.key"),
        [("$.accounts.main.secret_key", "missing.key does not exist", None)],
    ),
    "secret not a string": (
        _set("accounts.main.secret_key", 123456),
        [("$.accounts.main.secret_key", "must be a reference string", None)],
    ),
    "account missing a key": (
        _del("accounts.main.secret_key"),
        [("$.accounts.main.secret_key", "Object missing required field `secret_key`", None)],
    ),
    "bad language": (
        _set("integrations.2.statuses.0.translations.0.language", "EN-GB"),
        [("$.integrations[2].statuses[0].translations[0].language", "Invalid enum value 'EN-GB'", 103)],
    ),
    "0 translations": (
        _set("integrations.2.statuses.0.translations", []),
        [("$.integrations[2].statuses[0].translations", "Expected `array` of length >= 1", 103)],
    ),
    "8 translations": (
        _set("integrations.2.statuses.0.translations", [*SEVEN, tr("again")]),
        [("$.integrations[2].statuses[0].translations", "Expected `array` of length <= 7", 103)],
    ),
    "duplicate external_id in a set": (
        _set("status_sets.default.statuses.2.external_id", "1"),
        [("$.status_sets.default.statuses[2].external_id", "external_id '1' is used twice", None)],
    ),
    "duplicate external_id inline": (
        _set("integrations.2.statuses", [st("x"), st("y"), st("x")]),
        [("$.integrations[2].statuses[2].external_id", "external_id 'x' is used twice (first at index 0)", 103)],
    ),
    "duplicate language": (
        _set("integrations.2.statuses.0.translations", [tr("Open"), tr("Nieuw", "nl-nl"), tr("New")]),
        [("$.integrations[2].statuses[0].translations[2].language", "language 'en-gb' is used twice", 103)],
    ),
    "empty external_id": (
        _set("integrations.2.statuses.0.external_id", ""),
        [("$.integrations[2].statuses[0].external_id", "Expected `str` of length >= 1", 103)],
    ),
    "empty status": (
        _set("integrations.2.statuses.0.translations.0.status", ""),
        [("$.integrations[2].statuses[0].translations[0].status", "Expected `str` of length >= 1", 103)],
    ),
    "unknown field in an integration": (
        _set("integrations.0.stauts_set", "default"),
        [("$.integrations[0].stauts_set", "Object contains unknown field `stauts_set`", 101)],
    ),
    "unknown field in a translation": (
        _set("integrations.2.statuses.0.translations.0.lang", "en-gb"),
        [("$.integrations[2].statuses[0].translations[0].lang", "unknown field `lang`", 103)],
    ),
    "unknown field in an account": (
        _set("accounts.main.secret", "env:X"),
        [("$.accounts.main.secret", "unknown field `secret`", None)],
    ),
    "status_set and statuses": (
        _set("integrations.0.statuses", [st("1")]),
        [
            (
                "$.integrations[0]",
                "give exactly one of status_set, statuses or statuses_file (got status_set and statuses)",
                101,
            )
        ],
    ),
    "status_set and statuses_file": (
        _set("integrations.0.statuses_file", "statuses.json"),
        [("$.integrations[0]", "(got status_set and statuses_file)", 101)],
    ),
    "neither status_set nor statuses": (
        _del("integrations.1.status_set"),
        [("$.integrations[1]", "give exactly one of status_set, statuses or statuses_file (got none)", 102)],
    ),
    "a set with neither": (
        _set("status_sets.default", {}),
        [("$.status_sets.default", "give exactly one of statuses or statuses_file (got none)", None)],
    ),
    "statuses_file missing": (
        _set("integrations.2", {"id": 103, "account": "other", "statuses_file": "nope.json"}),
        [("$.integrations[2].statuses_file", "statuses_file nope.json: file does not exist", 103)],
    ),
    "remove of an unknown id": (
        _set("integrations.1.remove_statuses", ["2", "42"]),
        [("$.integrations[1].remove_statuses[1]", "external_id '42' is not in the statuses", 102)],
    ),
    "override with a duplicate": (
        _set("integrations.1.override_statuses", [st("9"), st("9")]),
        [("$.integrations[1].override_statuses[1].external_id", "external_id '9' is used twice", 102)],
    ),
    "wrong type of tags": (
        _set("integrations.0.tags", "nl"),
        [("$.integrations[0].tags", "Expected `array`, got `str`", 101)],
    ),
    "empty tag": (
        _set("integrations.0.tags", ["nl", ""]),
        [("$.integrations[0].tags[1]", "Expected `str` of length >= 1", 101)],
    ),
    "integration not an object": (
        _set("integrations.3", 104),
        [("$.integrations[3]", "Expected `object`, got `int`", None)],
    ),
    "integrations not a list": (
        _set("integrations", {"id": 1}),
        [("$.integrations", "must be a list of integrations", None)],
    ),
    "no integrations": (
        _del("integrations"),
        [("$.integrations", "missing: list the integrations to manage", None)],
    ),
    "no accounts": (
        _del("accounts"),
        [("$.accounts", "missing: declare at least one account", None), *NO_ACCOUNT],
    ),
    "accounts not a mapping": (
        _set("accounts", ["main"]),
        [("$.accounts", "must be a mapping of account name to account", None), *NO_ACCOUNT],
    ),
    "status_sets not a mapping": (
        _set("status_sets", ["default"]),
        [
            ("$.status_sets", "must be a mapping of set name", None),
        ],
    ),
    "unknown top-level key": (
        _set("integrationz", []),
        [("$.integrationz", "unknown key 'integrationz': expected one of defaults, accounts, status_sets", None)],
    ),
    "base_url not a URL": (
        _set("accounts.other.base_url", "panel.sendcloud.sc/api/v3"),
        [("$.accounts.other.base_url", "Expected `str` matching regex", None)],
    ),
    "base_url with a space": (
        _set("defaults.base_url", "https://panel sendcloud.sc"),
        [("$.defaults.base_url", "Expected `str` matching regex", None)],
    ),
    "base_url ftp": (
        _set("accounts.main.base_url", "ftp://example.com/api"),
        [("$.accounts.main.base_url", "Expected `str` matching regex", None)],
    ),
    "limits not positive": (
        _set("accounts.main.limits", {"writes_per_minute": 0}),
        [("$.accounts.main.limits.writes_per_minute", "Expected `float` >= 0.01", None)],
    ),
    "limits so small a second holds none": (  # divided by 60: 0.0, a division by zero later
        _set("defaults.limits", {"reads_per_minute": 5e-324}),
        [("$.defaults.limits.reads_per_minute", "Expected `float` >= 0.01", None)],
    ),
    "limits past any server": (
        _set("accounts.main.limits", {"reads_per_minute": 1e308}),
        [("$.accounts.main.limits.reads_per_minute", "Expected `float` <= 1000000000.0", None)],
    ),
    "limits unknown field": (
        _set("defaults.limits", {"write_per_minute": 10}),
        [("$.defaults.limits.write_per_minute", "unknown field `write_per_minute`", None)],
    ),
    "burst too large": (
        _set("accounts.other.limits", {"write_burst": 100000}),
        [("$.accounts.other.limits.write_burst", "Expected `int` <= 1000", None)],
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_problem(workdir: Path, case: str, fmt: str) -> None:
    edit, expected = CASES[case]
    doc = base_doc()
    edit(doc)
    inv = load_doc(workdir, doc, fmt)
    assert not inv.valid
    assert inv.jobs == []  # nothing is run from an invalid inventory
    got = [(p.path, p.message, p.integration_id) for p in inv.problems]
    assert len(got) == len(expected), got
    for (path, message, iid), (want_path, want_message, want_iid) in zip(got, expected, strict=True):
        assert path == want_path, got
        assert want_message in message, got
        assert iid == want_iid, got
    assert all(p.file == str(workdir / f"inventory.{fmt}") for p in inv.problems)
    assert_no_secret(inv)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "literal",
    ["sk_live_5f0e0d1c2b3a", "env_9f3a77", "file9f3a77", "ENV:NAME", "  env:X", "c2VjcmV0OnZhbHVl", "not a reference"],
)
def test_a_literal_secret_is_refused_and_never_quoted(workdir: Path, fmt: str, literal: str) -> None:
    doc = base_doc()
    doc["accounts"]["main"]["public_key"] = literal
    doc["accounts"]["other"]["secret_key"] = literal + "-2"
    inv = load_doc(workdir, doc, fmt)
    got = [(p.path, p.integration_id) for p in inv.problems]
    assert got == [("$.accounts.main.public_key", None), ("$.accounts.other.secret_key", None)]
    assert all("literal secret is not allowed" in p.message for p in inv.problems)
    # The value appears nowhere in what we would print: messages, paths, files.
    assert_no_secret(inv, literal, literal.strip())
    # Integrations of a broken account are not reported again.
    assert all(p.integration_id is None for p in inv.problems)


def test_a_literal_secret_with_other_problems_is_still_never_quoted(workdir: Path) -> None:
    doc = base_doc()
    doc["accounts"]["main"] = {"public_key": "hunter2hunter2", "secret_key": ["hunter3"], "colour": "blue"}
    inv = load_doc(workdir, doc, "json")
    assert len(inv.problems) == 3
    assert_no_secret(inv, "hunter2hunter2", "hunter3")


def test_a_secret_file_that_is_empty_or_a_directory(workdir: Path) -> None:
    (workdir / "empty.key").write_text("\n")
    (workdir / "dir.key").mkdir()
    doc = base_doc()
    doc["accounts"]["main"]["secret_key"] = "file:empty.key"
    doc["accounts"]["other"]["secret_key"] = "file:dir.key"
    inv = load_doc(workdir, doc, "json")
    assert [p.path for p in inv.problems] == ["$.accounts.main.secret_key", "$.accounts.other.secret_key"]
    assert "is empty" in inv.problems[0].message
    assert "is a directory" in inv.problems[1].message


def test_an_env_var_that_is_blank(workdir: Path) -> None:
    inv = load(write(workdir, base_doc(), "json"), environ={**ENV, "OTHER_SEC": "   "})
    assert [(p.path, p.message) for p in inv.problems] == [
        ("$.accounts.other.secret_key", "cannot resolve env:OTHER_SEC: environment variable OTHER_SEC is empty")
    ]


def test_every_problem_is_reported_not_just_the_first(workdir: Path) -> None:
    doc = base_doc()
    for name in ("unknown account", "bad language", "remove of an unknown id", "unknown top-level key"):
        CASES[name][0](doc)
    inv = load_doc(workdir, doc, "yaml")
    assert len(inv.problems) == 4
    assert {p.integration_id for p in inv.problems} == {101, 102, 103, None}


# -- statuses files --------------------------------------------------------------------------


def _with_file(workdir: Path, content: str | bytes, name: str = "mine.json", iid: int = 103) -> Inventory:
    target = workdir / name
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    doc = base_doc()
    doc["integrations"][2] = {"id": iid, "account": "other", "statuses_file": name}
    return load_doc(workdir, doc, "toml")


def test_statuses_file_as_a_list(workdir: Path) -> None:
    inv = _with_file(workdir, json.dumps(FILE_SET))
    assert inv.valid
    assert [s.external_id for s in inv.jobs[2].desired.statuses] == ["a", "b"]
    # The same list as the "from-file" set: one Desired for both.
    assert inv.jobs[2].desired is inv.jobs[3].desired


def test_statuses_file_as_a_whole_post_body(workdir: Path) -> None:
    inv = _with_file(workdir, json.dumps({"integration_id": 103, "statuses": FILE_SET}))
    assert inv.valid
    assert json.loads(inv.jobs[2].desired.body(103)) == {"integration_id": 103, "statuses": FILE_SET}


def test_statuses_file_as_a_post_body_without_id(workdir: Path) -> None:
    assert _with_file(workdir, json.dumps({"statuses": FILE_SET})).valid


def test_statuses_file_in_yaml_and_toml(workdir: Path) -> None:
    assert _with_file(workdir, yaml.safe_dump(FILE_SET), "mine.yaml").valid
    assert _with_file(workdir, to_toml({"statuses": FILE_SET}), "mine.toml").valid


def test_statuses_file_for_another_integration(workdir: Path) -> None:
    inv = _with_file(workdir, json.dumps({"integration_id": 999, "statuses": FILE_SET}))
    assert [(p.path, p.message, p.integration_id) for p in inv.problems] == [
        ("$.integrations[2].statuses_file", "mine.json is a POST body for integration 999, not 103", 103)
    ]


@pytest.mark.parametrize(
    ("content", "message", "path"),
    [
        ("[{", "statuses_file mine.json: invalid JSON", "$.integrations[2].statuses_file"),
        ("", "statuses_file mine.json: file is empty", "$.integrations[2].statuses_file"),
        (b"\x00\x01\x02binary", "statuses_file mine.json: is a binary file", "$.integrations[2].statuses_file"),
        ('"just a string"', "Expected `object`, got `str`", "$"),
        ('{"statuses": [], "integration_id": 103, "extra": 1}', "unknown field `extra`", "$.extra"),
        ('[{"external_id": "a", "translations": []}]', "length >= 1", "$[0].translations"),
        (
            '[{"external_id": "a", "translations": [{"status": "x", "language": "en-gb"}]}, '
            '{"external_id": "a", "translations": [{"status": "y", "language": "en-gb"}]}]',
            "external_id 'a' is used twice",
            "$[1].external_id",
        ),
    ],
)
def test_statuses_file_malformed(workdir: Path, content: str | bytes, message: str, path: str) -> None:
    inv = _with_file(workdir, content)
    assert len(inv.problems) == 1, inv.problems
    (p,) = inv.problems
    assert message in p.message
    assert p.path == path
    assert p.integration_id == 103
    # A problem inside the statuses file names that file.
    expected_file = str(workdir / "inventory.toml") if path.startswith("$.integrations") else str(workdir / "mine.json")
    assert p.file == expected_file


def test_a_broken_statuses_file_names_every_integration_using_it(workdir: Path) -> None:
    (workdir / "bad.json").write_text("[{")
    doc = base_doc()
    doc["integrations"][0] = {"id": 101, "account": "main", "statuses_file": "bad.json"}
    doc["integrations"][1] = {"id": 102, "account": "main", "statuses_file": "bad.json"}
    inv = load_doc(workdir, doc, "json")
    assert [p.integration_id for p in inv.problems] == [101, 102]


def test_a_broken_status_set_is_reported_once(workdir: Path) -> None:
    doc = base_doc()
    doc["status_sets"]["from-file"]["statuses_file"] = "nope.json"
    doc["integrations"] += [{"id": 200 + i, "account": "main", "status_set": "from-file"} for i in range(5)]
    inv = load_doc(workdir, doc, "json")
    assert [(p.path, p.integration_id) for p in inv.problems] == [("$.status_sets.from-file.statuses_file", None)]


# -- overrides -------------------------------------------------------------------------------


def test_override_extends_and_renames_one_translation(workdir: Path) -> None:
    doc = base_doc()
    doc["integrations"][1]["override_statuses"] = [
        st("2", tr("Onderweg", "nl-nl"), tr("Versandt", "de-de")),  # rename nl, add de, keep en
        st("4", tr("Ready for pickup")),  # new: appended
    ]
    doc["integrations"][1]["remove_statuses"] = ["3"]
    doc["integrations"][1]["mapping"] = {"CANCEL": ""}  # the set maps CANCEL to "3": unmap it here
    inv = load_doc(workdir, doc, "toml")
    assert inv.valid, inv.problems
    mapping = inv.jobs[1].mapping
    assert mapping is not None and mapping.as_dict()["CANCEL"] is None and mapping.as_dict()["READY_TO_SEND"] == "1"
    statuses = inv.jobs[1].desired.statuses
    assert [s.external_id for s in statuses] == ["1", "2", "4"]
    assert statuses[1].translations == (
        wire.Translation("Shipped", "en-gb"),
        wire.Translation("Onderweg", "nl-nl"),
        wire.Translation("Versandt", "de-de"),
    )
    # The shared set itself is untouched, and still shared by the others.
    assert inv.jobs[0].desired is not inv.jobs[1].desired
    assert [s.external_id for s in inv.jobs[0].desired.statuses] == ["1", "2", "3"]


def test_merge_statuses_semantics() -> None:
    base = (
        wire.Status("1", (wire.Translation("Paid", "en-gb"),)),
        wire.Status("2", (wire.Translation("Sent", "en-gb"), wire.Translation("Verzonden", "nl-nl"))),
    )
    over = (
        wire.Status("2", (wire.Translation("Onderweg", "nl-nl"),)),
        wire.Status("1", (wire.Translation("x", "it-it"),)),
    )
    merged = merge_statuses(base, over, ["1"])
    # remove first, then override: "1" is removed, then re-added by the override.
    assert merged == (
        wire.Status("2", (wire.Translation("Sent", "en-gb"), wire.Translation("Onderweg", "nl-nl"))),
        wire.Status("1", (wire.Translation("x", "it-it"),)),
    )
    assert merge_statuses(base, (), ()) == base


# -- the file itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("inv.toml", 'accounts = { main = { public_key = "env:A" ', "invalid TOML"),
        ("inv.toml", "[accounts]\nx = 1\n[accounts]\n", "invalid TOML"),
        ("inv.yaml", "accounts:\n\tmain: {}\n", "invalid YAML at line 2"),
        ("inv.yaml", "accounts: [\n", "invalid YAML"),
        ("inv.json", '{"accounts": }', "invalid JSON"),
        ("inv.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
        ("inv.toml", b"\xff\xfe[accounts]", "is not UTF-8 text"),
        ("inv.json", "", "file is empty"),
        ("inv.yaml", "  \n\n", "file is empty"),
        ("inv.ini", "[accounts]", "unknown file type '.ini'"),
        ("inventory", "{}", "unknown file type '(none)'"),
        (
            "inv.json",
            "[1, 2]",
            "an inventory is a mapping with keys defaults, accounts, status_sets, integrations, not list",
        ),
        ("inv.yaml", "just text", "not str"),
        ("inv.yaml", "---\n- a\n", "not list"),
    ],
)
def test_file_problems(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    inv = load(path, environ={})
    assert len(inv.problems) == 1, inv.problems
    (p,) = inv.problems
    assert p == InventoryProblem(str(path), None, "$", p.message)
    assert message in p.message
    assert inv.jobs == [] and inv.accounts == {}


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert load(tmp_path / "nope.toml").problems[0].message == "file does not exist"
    (tmp_path / "dir.json").mkdir()
    assert load(tmp_path / "dir.json").problems[0].message == "is a directory, not a file"
    assert load(tmp_path).problems[0].message == "is a directory, not a file"


def test_yaml_extension_yml(workdir: Path) -> None:
    path = workdir / "inventory.yml"
    path.write_text(yaml.safe_dump(base_doc()))
    assert load(path, environ=ENV).valid


# -- secrets ---------------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    s = Secret("hunter2", "env:PASSWORD")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr([s]), repr({"k": s})):
        assert "hunter2" not in text
    assert repr(Secret("hunter2")) == "Secret(***)"
    assert s.reveal() == "hunter2"
    assert s == Secret("hunter2", "file:other") and s != Secret("other")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)
    auth = basic_auth(Secret("user"), Secret("pass"))
    assert auth.reveal() == "Basic dXNlcjpwYXNz"
    assert "dXNlcjpwYXNz" not in repr(auth)


def test_secrets_in_accounts_do_not_print(workdir: Path) -> None:
    inv = load_doc(workdir, base_doc(), "json")
    text = repr(inv)
    for value in (*ENV.values(), MAIN_SECRET):
        assert value not in text


def test_resolve_and_check_reference(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(" v \n")
    assert resolve("file:k", tmp_path).reveal() == "v"
    assert resolve(f"file:{tmp_path / 'k'}", Path("/nonexistent")).reveal() == "v"
    assert resolve("env:X", tmp_path, {"X": "y"}).reveal() == "y"
    assert check_reference("env:X") is None and check_reference("file:x") is None
    assert check_reference("file:") is not None
    (tmp_path / "latin1").write_bytes(b"\xe9t\xe9")
    with pytest.raises(SecretError, match=r"latin1 is not UTF-8 text: save it as UTF-8$") as bad:
        resolve("file:latin1", tmp_path)
    assert "0xE9" not in str(bad.value) and "line" not in str(bad.value)  # nothing of the secret
    with pytest.raises(SecretError, match="literal secret") as info:
        resolve("topsecret", tmp_path)
    assert "topsecret" not in str(info.value)


# -- selection -------------------------------------------------------------------------------


def test_select(workdir: Path) -> None:
    jobs = load_doc(workdir, base_doc(), "json").jobs

    def ids(*sel: str) -> list[int]:
        return [j.integration_id for j in select(jobs, sel)[0]]

    assert ids() == [101, 102, 103, 104]
    assert ids("main") == [101, 102]
    assert ids("account:other") == [103, 104]
    assert ids("tag:nl") == [101]
    assert ids("acme,104") == [101, 104]
    assert ids("main", "!102") == [101]
    assert ids("!main") == [103, 104]
    assert select(jobs, ["main,nosuch", "!9999"])[1] == ["nosuch", "9999"]  # typos are named
    for empty in ("!", ",,", "tag:", " , main"):
        with pytest.raises(ValueError, match="empty selector"):
            select(jobs, [empty])


# -- the committed example inventories -------------------------------------------------------

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"
EXAMPLES = sorted(p for ext in ("toml", "yaml", "yml", "json") for p in INVENTORIES.glob(f"*.{ext}"))


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"example.toml", "example.yaml", "example.json"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_committed_inventories_validate(path: Path) -> None:
    inv = load(path, environ={})
    assert inv.problems == []
    assert len(inv.accounts) >= 3
    assert 20 <= len(inv.jobs) <= 40
    assert len({id(j.desired) for j in inv.jobs}) < len(inv.jobs)  # sets are shared


def test_the_examples_are_the_same_inventory() -> None:
    loaded = [load(INVENTORIES / f"example.{ext}", environ={}) for ext in ("toml", "yaml", "json")]
    shapes = [
        (
            [(j.integration_id, j.account, j.desired.statuses, j.tags, j.source, j.mapping) for j in inv.jobs],
            inv.accounts,
        )
        for inv in loaded
    ]
    assert shapes[0] == shapes[1] == shapes[2]


def test_a_valid_json_inventory_takes_the_fast_path(workdir: Path) -> None:
    path = write(workdir, base_doc(), "json")
    fast = fast_json(path.read_bytes())
    assert fast is not None
    assert all(isinstance(i, IntegrationSpec) for i in fast["integrations"])
    # One wrong field anywhere: the general path, which reports every problem.
    doc = base_doc()
    doc["integrations"][0]["id"] = "101"
    assert fast_json(write(workdir, doc, "json").read_bytes()) is None
    assert fast_json(write(workdir, base_doc(), "yaml").read_bytes()) is None


def test_the_fast_path_keeps_own_lists_as_their_compact_encoding(workdir: Path) -> None:
    # Each list decoded, checked and encoded on its own: the file's 20,000 own lists never
    # exist as structs all at once; equal lists (however written) share one bytes object.
    doc = base_doc()
    own = [st("o1", tr("Own"), tr("Eigen", "nl-nl"))]
    doc["integrations"][2]["statuses"] = copy.deepcopy(own)
    doc["integrations"].append({"id": 105, "account": "other", "statuses": copy.deepcopy(own)})
    text = json.dumps(doc, indent=1).replace('"Eigen"', '"\\u0045igen"')  # one of them spelt with an escape
    text = text.replace('"\\u0045igen"', '"Eigen"', 1)
    fast = fast_json(text.encode())
    assert fast is not None
    given = {spec.id: spec.statuses for spec in fast["integrations"]}
    statuses = tuple(msgspec.convert(s, wire.Status) for s in own)
    expected = msgspec.json.encode(statuses)
    assert given[103] == b'[["o1",[["Own","en-gb"],["Eigen","nl-nl"]]]]' == pack(statuses)
    assert given[103] is given[105]
    assert unpack(given[103]) == statuses
    assert given[101] is msgspec.UNSET
    # Decoded one integration at a time, what they repeat is held once.
    specs = {spec.id: spec for spec in fast["integrations"]}
    assert specs[103].account is specs[104].account is specs[105].account
    assert specs[101].status_set is specs[102].status_set
    inv = load(write(workdir, doc, "json"), environ=dict(ENV))
    assert inv.problems == []
    assert inv.jobs[2].desired.encoded == expected and inv.jobs[2].desired is inv.jobs[4].desired
    # A key given twice inside a list, or a list that is not one: the general path reports it.
    twice = json.dumps(doc).replace('{"external_id": "o1",', '{"external_id": "o0", "external_id": "o1",', 1)
    assert fast_json(twice.encode()) is None
    path = workdir / "twice.json"
    path.write_text(twice)
    problems = load(path, environ=dict(ENV)).problems
    assert [(p.path, p.integration_id) for p in problems] == [("$.integrations[2].statuses[0].external_id", 103)]
    doc["integrations"][2]["statuses"] = [{"external_id": "o1", "translations": []}]
    assert fast_json(json.dumps(doc).encode()) is None
    problems = load(write(workdir, doc, "json"), environ=dict(ENV)).problems
    assert [(p.path, p.integration_id) for p in problems] == [("$.integrations[2].statuses[0].translations", 103)]


def test_load_leaves_the_gc_as_it_found_it(workdir: Path) -> None:
    import gc

    path = write(workdir, base_doc(), "json")
    assert gc.isenabled()
    load(path, environ=ENV)
    assert gc.isenabled()
    gc.disable()
    try:
        load(path, environ=ENV)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_every_problem_of_one_integration_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "multi.toml"
    path.write_text(
        """
[accounts.a]
public_key = "env:A_PUB"
secret_key = "env:A_SEC"
limits = { writes_per_minute = 0, write_burst = 0 }

[[integrations]]
id = 1
account = "a"
tgas = ["x"]
statuses = [ { external_id = "", translations = [ { language = "en-GB", status = "" } ] } ]
"""
    )
    inv = load(path, {"A_PUB": "p", "A_SEC": "s"})
    got = {(p.path, p.integration_id) for p in inv.problems}
    assert got == {
        ("$.accounts.a.limits.writes_per_minute", None),
        ("$.accounts.a.limits.write_burst", None),
        ("$.integrations[0].tgas", 1),
        ("$.integrations[0].statuses[0].external_id", 1),
        ("$.integrations[0].statuses[0].translations[0].language", 1),
        ("$.integrations[0].statuses[0].translations[0].status", 1),
    }
    messages = " ".join(p.message for p in inv.problems)
    assert "did you mean `tags`?" in messages
    assert "expected one of en-us, en-gb" in messages


def test_bom_multiline_secret_and_one_account_declared_twice(tmp_path: Path) -> None:
    (tmp_path / "two.key").write_text("first\nsecond\n")
    path = tmp_path / "inv.json"
    doc = {
        "accounts": {
            "a": {"public_key": "env:PUB", "secret_key": "env:SEC"},
            "b": {"public_key": "env:PUB", "secret_key": "env:SEC"},
            "c": {"public_key": "env:OTHER", "secret_key": "file:two.key"},
        },
        "integrations": [],
    }
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())  # a BOM is not a syntax error
    inv = load(path, {"PUB": "p", "SEC": "s", "OTHER": "o"})
    got = {p.path: p.message for p in inv.problems}
    assert set(got) == {"$.accounts.b.public_key", "$.accounts.c.secret_key"}
    assert "the same public key as account 'a'" in got["$.accounts.b.public_key"]
    assert "more than one line" in got["$.accounts.c.secret_key"]
    assert "first" not in " ".join(got.values())


# -- hostile files: a problem each, never a traceback -----------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "path", "message"),
    [
        ("i.yaml", "accounts:\n  ~: {}\nintegrations: []\n", "$.accounts['None']", "must be text, not null"),
        ("i.yaml", "accounts:\n  2024-01-01: {}\nintegrations: []\n", "$.accounts['2024-01-01']", "not a date"),
        ("i.yaml", "status_sets:\n  1.5: {statuses: []}\n", "$.status_sets['1.5']", "must be text, not a number"),
        ("i.yaml", "true: 1\n", "$['True']", "unknown key True"),
        ("i.yaml", "integrations:\n  - {id: 1, 2024-01-01: x}\n", "$.integrations[0]['2024-01-01']", "unknown field"),
        ("i.yaml", "defaults: {~: 1}\n", "$.defaults['None']", "unknown field None (null, not text)"),
        (
            "i.json",
            '{"accounts": {"Livr\xe9": {}}}'.encode("latin-1"),
            "$",
            "is not UTF-8 text (line 1, column 20: byte 0xE9)",
        ),
        ("i.json", '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}", "$", "nested too deeply"),
        ("i.toml", "a = " + "[" * 50_000 + "]" * 50_000, "$", "nested too deeply"),
        ("i.yaml", "a: " + "[" * 50_000 + "]" * 50_000, "$", "exceeded maximum nesting depth"),
        ("i.toml", "x = " + "9" * 5000, "$", "invalid TOML: a number of more than 4,300 digits is out of range"),
        ("i.yaml", "integrations: &x [*x]\n", "$", "a YAML alias refers to a value that contains it"),
        ("i.json", '{"integrations": [{"id": "' + "1" * 5000 + '"}]}', "$.integrations[0].id", "got `str`"),
        ("i.yaml", "integrations: [{id: '²'}]\n", "$.integrations[0].id", "got `str`"),
        ("i.yaml", 'accounts: {"\\e[31mred": {public_key: 1}}\n', "$.accounts['\\x1b[31mred'].public_key", ""),
    ],
)
def test_a_hostile_file_is_a_problem_not_a_traceback(
    tmp_path: Path, name: str, content: str | bytes, path: str, message: str
) -> None:
    target = tmp_path / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    inv = load(target, environ={})
    assert not inv.valid and inv.jobs == []
    hit = [p for p in inv.problems if p.path == path and message in p.message]
    assert hit, inv.problems
    for p in inv.problems:  # nothing that could drive a terminal, and encodable
        assert p.message.isprintable() and p.path.isprintable()
        msgspec.json.encode(p)


def test_an_integer_account_name_next_to_an_unknown_one(tmp_path: Path) -> None:
    path = tmp_path / "i.yaml"
    path.write_text(
        "accounts:\n  1234: {public_key: 'env:P', secret_key: 'env:S'}\n"
        "  acme: {public_key: 'env:P2', secret_key: 'env:S'}\n"
        "status_sets: {s: {statuses: []}}\n"
        "integrations:\n  - {id: 1, account: '1234', status_set: s}\n  - {id: 2, account: acne, status_set: s}\n"
    )
    inv = load(path, environ={"P": "p", "S": "s", "P2": "p2"})
    got = {(p.path, p.integration_id): p.message for p in inv.problems}
    assert got == {
        ("$.accounts['1234']", None): "an account name must be text, not a number: quote it",
        ("$.integrations[1].account", 2): "unknown account 'acne' (known: acme, 1234); did you mean 'acme'?",
    }


@pytest.mark.parametrize("where", ["inventory", "statuses_file", "secret"])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, n: os.mkfifo(d / n), "is a FIFO (named pipe), not a regular file"),
        (lambda d, n: os.symlink("/dev/zero", d / n), "is a character device, not a regular file"),
        (lambda d, n: os.symlink("/dev/urandom", d / n), "is a character device, not a regular file"),
        (lambda d, n: (d / n).mkdir(), "is a directory"),
        (lambda d, n: os.symlink(d, d / n), "is a directory"),
    ],
    ids=["fifo", "dev-zero", "dev-urandom", "directory", "symlink-to-directory"],
)
def test_only_regular_files_are_read(workdir: Path, where: str, make: Any, message: str) -> None:
    doc = base_doc()
    if where == "inventory":
        make(workdir, "odd.json")
        inv = load(workdir / "odd.json", environ=ENV)
        assert [(p.path, p.message) for p in inv.problems] == [
            ("$", message if "directory" not in message else "is a directory, not a file")
        ]
        return
    if where == "statuses_file":
        make(workdir, "odd.json")
        doc["integrations"][2] = {"id": 103, "account": "other", "statuses_file": "odd.json"}
        expected = ("$.integrations[2].statuses_file", f"statuses_file odd.json: {message}")
    else:
        make(workdir, "odd.key")
        doc["accounts"]["main"]["secret_key"] = "file:odd.key"
        doc["allow_secret_files_outside"] = True  # a symlink to /dev/zero leaves the folder too
        expected = ("$.accounts.main.secret_key", f"secret file {workdir / 'odd.key'} {message}")
    inv = load_doc(workdir, doc, "toml")
    assert len(inv.problems) == 1, inv.problems
    assert inv.problems[0].path == expected[0]
    assert expected[1] in inv.problems[0].message


def test_size_caps(workdir: Path) -> None:
    path = write(workdir, base_doc(), "json")
    assert load(path, environ=ENV, max_file_size=path.stat().st_size).valid
    inv = load(path, environ=ENV, max_file_size=path.stat().st_size - 1)
    assert [p.message for p in inv.problems] == [
        f"is {files.size_text(path.stat().st_size)}, more than the "
        f"{files.size_text(path.stat().st_size - 1)} allowed (--max-file-size raises it)"
    ]
    with (workdir / "big.json").open("wb") as f:  # sparse
        f.truncate(17 * 1024 * 1024)
    with (workdir / "big.key").open("wb") as f:
        f.truncate(65 * 1024)
    doc = base_doc()
    doc["integrations"][2] = {"id": 103, "account": "other", "statuses_file": "big.json"}
    doc["accounts"]["main"]["secret_key"] = "file:big.key"
    inv = load_doc(workdir, doc, "yaml")
    assert [(p.path, p.message.split(",")[0]) for p in inv.problems] == [
        ("$.accounts.main.secret_key", f"cannot resolve file:big.key: secret file {workdir / 'big.key'} is 65 KB"),
        ("$.integrations[2].statuses_file", "statuses_file big.json: is 17 MB"),
    ]


# -- keys given twice ------------------------------------------------------------------------


def test_a_key_twice_in_json(workdir: Path) -> None:
    text = json.dumps(base_doc())
    text = text.replace('{"id": 102,', '{"id": 105, "id": 102,', 1)
    text = text.replace('"accounts": {', '"accounts": {"main": {"public_key": "env:X", "secret_key": "env:Y"}, ', 1)
    path = workdir / "dup.json"
    path.write_text(text)
    inv = load(path, environ=ENV)
    assert [(p.path, p.integration_id) for p in inv.problems] == [
        ("$.accounts.main", None),
        ("$.integrations[1].id", 102),
    ]
    assert all("is given twice" in p.message for p in inv.problems)
    assert fast_json(path.read_bytes()) is None  # the fast path's check sees it too


def test_a_key_twice_in_pretty_json_and_with_escapes(workdir: Path) -> None:
    doc = base_doc()
    pretty = json.dumps(doc, indent=2, ensure_ascii=True)
    assert fast_json(pretty.encode()) is not None  # no repeat: still the fast path
    path = workdir / "pretty.json"
    # "t\u0061gs" is "tags" again, written with an escape.
    path.write_text(pretty.replace('"tags": [', '"t\\u0061gs": ["x"], "tags": [', 1))
    inv = load(path, environ=ENV)
    assert [(p.path, p.message, p.integration_id) for p in inv.problems] == [
        ("$.integrations[0].tags", "key 'tags' is given twice: keep one", 101)
    ]


def test_a_key_twice_in_yaml_and_in_a_statuses_file(workdir: Path) -> None:
    (workdir / "twice.yaml").write_text(
        "- external_id: a\n  external_id: b\n  translations: [{status: x, language: en-gb}]\n"
    )
    doc = base_doc()
    doc["integrations"][2] = {"id": 103, "account": "other", "statuses_file": "twice.yaml"}
    text = yaml.safe_dump(doc, sort_keys=False).replace("  main:\n", "  main:\n    public_key: env:MAIN_PUB\n", 1)
    path = workdir / "inv.yaml"
    path.write_text(text)
    inv = load(path, environ=ENV)
    got = [(Path(p.file).name, p.path, p.message, p.integration_id) for p in inv.problems]
    assert got == [
        ("inv.yaml", "$.accounts.main.public_key", "key 'public_key' is given twice (lines 6 and 7): keep one", None),
        ("twice.yaml", "$[0].external_id", "key 'external_id' is given twice (lines 1 and 2): keep one", 103),
    ]


# -- every independent problem in one run ------------------------------------------------------


def _many_mistakes() -> dict[str, tuple[Edit, tuple[str, int | None]]]:
    """25 independent mistakes, several in the same entry: (edit, (path, integration)).
    Each alone gives exactly its one problem; all together must give all 25 at once."""
    return {
        # integration 101: four mistakes side by side
        "tags not a list": (_set("integrations.0.tags", "nl"), ("$.integrations[0].tags", 101)),
        "unknown account": (_set("integrations.0.account", "mian"), ("$.integrations[0].account", 101)),
        "removal not in the set": (
            _set("integrations.0.remove_statuses", ["9"]),
            ("$.integrations[0].remove_statuses[0]", 101),
        ),
        "unknown category": (
            _set("integrations.0.mapping", {"CANCLE": "1"}),
            ("$.integrations[0].mapping.CANCLE", 101),
        ),
        # integration 102: three
        "unknown field": (_set("integrations.1.colour", "blue"), ("$.integrations[1].colour", 102)),
        "override bad language": (
            _set("integrations.1.override_statuses", [st("2", tr("x", "EN-GB"))]),
            ("$.integrations[1].override_statuses[0].translations[0].language", 102),
        ),
        "mapping to a missing id": (
            _set("integrations.1.mapping", {"DELIVERED": "42"}),
            ("$.integrations[1].mapping.DELIVERED", 102),
        ),
        # integration 103 (inline): three
        "string id": (_set("integrations.2.id", "103"), ("$.integrations[2].id", 103)),
        "inline bad language": (
            _set("integrations.2.statuses.0.translations.0.language", "xx"),
            ("$.integrations[2].statuses[0].translations[0].language", 103),
        ),
        "other unknown account": (_set("integrations.2.account", "ohter"), ("$.integrations[2].account", 103)),
        # integration 104: a set that is wrong elsewhere does not hide this one's own
        "removal from a file set": (
            _set("integrations.3.remove_statuses", ["zz"]),
            ("$.integrations[3].remove_statuses[0]", 104),
        ),
        # accounts
        "account unknown field": (_set("accounts.main.colour", "blue"), ("$.accounts.main.colour", None)),
        "account env not set": (
            _set("accounts.main.public_key", "env:NOT_SET_HERE"),
            ("$.accounts.main.public_key", None),
        ),
        "account limits": (
            _set("accounts.main.limits", {"writes_per_minute": 0}),
            ("$.accounts.main.limits.writes_per_minute", None),
        ),
        "account base_url": (_set("accounts.other.base_url", "ftp://x"), ("$.accounts.other.base_url", None)),
        "literal secret": (
            _set("accounts.other.public_key", "sk_live_abcdef123456"),
            ("$.accounts.other.public_key", None),
        ),
        # status sets
        "set mapping to a missing id": (
            _set("status_sets.default.mapping.READY_TO_SEND", "99"),
            ("$.status_sets.default.mapping.READY_TO_SEND", None),
        ),
        "set unknown field": (
            _set("status_sets.from-file.descripton", "x"),
            ("$.status_sets.from-file.descripton", None),
        ),
        # top level and defaults
        "defaults burst": (_set("defaults.limits.write_burst", 0), ("$.defaults.limits.write_burst", None)),
        "unknown top key": (_set("integration", []), ("$.integration", None)),
        "switch not a boolean": (_set("allow_secret_files_outside", "yes"), ("$.allow_secret_files_outside", None)),
        # more integrations, appended by _extra
        "duplicate id": (_set("integrations.4.id", 101), ("$.integrations[4].id", 101)),
        "missing statuses file": (
            _set("integrations.5.statuses_file", "missing.json"),
            ("$.integrations[5].statuses_file", 106),
        ),
        "unknown status set": (_set("integrations.6.status_set", "defualt"), ("$.integrations[6].status_set", 107)),
        "inherited mapping removed": (
            _set("integrations.7.remove_statuses", ["3"]),
            ("$.integrations[7].remove_statuses[0]", 108),
        ),
    }


def _extra(doc: dict[str, Any]) -> dict[str, Any]:
    doc["integrations"] += [
        {"id": 105, "account": "main", "status_set": "default"},
        {"id": 106, "account": "main", "statuses_file": "statuses.json"},
        {"id": 107, "account": "main", "status_set": "default"},
        {"id": 108, "account": "main", "status_set": "default"},
    ]
    return doc


@pytest.mark.parametrize("fmt", FORMATS)
def test_twenty_five_independent_mistakes_in_one_round(workdir: Path, fmt: str) -> None:
    mistakes = _many_mistakes()
    assert len(mistakes) == 25
    assert load_doc(workdir, _extra(base_doc()), fmt).valid  # without them: valid
    for name, (edit, where) in mistakes.items():  # each alone: its one problem
        doc = _extra(base_doc())
        edit(doc)
        got = [(p.path, p.integration_id) for p in load_doc(workdir, doc, fmt).problems]
        assert got == [where], name
    doc = _extra(base_doc())
    for edit, _ in mistakes.values():
        edit(doc)
    inv = load_doc(workdir, doc, fmt)
    got = sorted((p.path, p.integration_id or 0) for p in inv.problems)
    assert got == sorted((path, iid or 0) for _, (path, iid) in mistakes.values())
    assert_no_secret(inv, "sk_live_abcdef123456")


# -- secret files outside the inventory's folder ------------------------------------------------


def test_a_home_that_does_not_exist(workdir: Path) -> None:
    doc = base_doc()
    doc["accounts"]["main"]["secret_key"] = "file:~nosuchuser/key"
    doc["integrations"][2] = {"id": 103, "account": "other", "statuses_file": "~nosuchuser/s.json"}
    inv = load_doc(workdir, doc, "json")
    assert [p.path for p in inv.problems] == ["$.accounts.main.secret_key", "$.integrations[2].statuses_file"]
    assert "does not exist" in inv.problems[1].message


def test_a_secret_file_outside_the_folder(tmp_path: Path) -> None:
    inside = tmp_path / "inv"
    inside.mkdir()
    (tmp_path / "outside.key").write_text("outside-value\n")
    (inside / "link.key").symlink_to(tmp_path / "outside.key")
    (inside / "ok.key").write_text("inside-value\n")
    doc: dict[str, Any] = {
        "accounts": {
            "a": {"public_key": "file:../outside.key", "secret_key": "file:link.key"},
            "b": {"public_key": f"file:{tmp_path / 'outside.key'}", "secret_key": "file:ok.key"},
            "c": {"public_key": "file:../inv/ok.key", "secret_key": f"file:{inside / 'ok.key'}"},
        },
        "integrations": [],
    }
    inv = load(write(inside, doc, "toml"), environ={})
    assert [p.path for p in inv.problems] == [
        "$.accounts.a.public_key",
        "$.accounts.a.secret_key",
        "$.accounts.b.public_key",
    ]
    assert all(
        "is outside the inventory's folder: set allow_secret_files_outside = true" in p.message for p in inv.problems
    )
    assert "outside-value" not in repr(inv)
    doc["allow_secret_files_outside"] = True
    del doc["accounts"]["a"]  # a and b would be one account: the same public key
    inv = load(write(inside, doc, "toml"), environ={})
    assert inv.problems == [] and inv.accounts["b"].identity.reveal() == "outside-value"


def test_a_secret_file_that_is_a_symlink_loop_is_said_so_not_outside(tmp_path: Path) -> None:
    (tmp_path / "a.key").symlink_to(tmp_path / "b.key")
    (tmp_path / "b.key").symlink_to(tmp_path / "a.key")
    doc: dict[str, Any] = {"accounts": {"a": {"public_key": "file:a.key", "secret_key": "env:S"}}, "integrations": []}
    inv = load(write(tmp_path, doc, "toml"), environ={"S": "s"})
    [problem] = inv.problems
    assert problem.path == "$.accounts.a.public_key" and "is a loop of symbolic links" in problem.message
    assert "outside" not in problem.message


# -- warnings: http:// where credentials would cross the network --------------------------------


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://127.0.0.1:8080/api", False),
        ("http://127.9.9.9", False),
        ("http://localhost:1/x", False),
        ("http://[::1]:8080", False),
        ("https://example.com", False),
        ("http://example.com/api/v3", True),
        ("http://10.0.0.1", True),
        ("http://PANEL.sendcloud.sc", True),
        ("http://localhost.example.com", True),
    ],
)
def test_insecure_http_is_a_warning(workdir: Path, url: str, warned: bool) -> None:
    assert insecure_http(url) is warned
    doc = base_doc()
    doc["accounts"]["other"]["base_url"] = url
    inv = load_doc(workdir, doc, "json")
    assert inv.valid  # a warning does not block
    assert [(w.path, "unencrypted" in w.message) for w in inv.warnings] == (
        [("$.accounts.other.base_url", True)] if warned else []
    )


def test_warnings_for_defaults_and_token_url(workdir: Path) -> None:
    doc = base_doc()
    doc["defaults"]["base_url"] = "http://api.example.com"
    doc["accounts"]["other"] = {
        "auth": "oauth2",
        "client_id": "env:OTHER_PUB",
        "client_secret": "env:OTHER_SEC",
        "token_url": "http://auth.example.com/token",
    }
    inv = load_doc(workdir, doc, "yaml")
    assert inv.valid, inv.problems
    assert [w.path for w in inv.warnings] == ["$.defaults.base_url", "$.accounts.other.token_url"]


def test_a_url_that_matches_but_cannot_be_used(workdir: Path) -> None:
    doc = base_doc()
    doc["accounts"]["other"]["base_url"] = "http://[::1/api"
    doc["accounts"]["main"]["base_url"] = "https://host:notaport/api"
    inv = load_doc(workdir, doc, "json")
    assert [p.path for p in inv.problems] == ["$.accounts.main.base_url", "$.accounts.other.base_url"]
    assert all(p.message.startswith("not a usable URL") for p in inv.problems)


# -- mappings ----------------------------------------------------------------------------------


def test_mapping_on_a_set_and_overridden_by_an_integration(workdir: Path) -> None:
    doc = base_doc()
    doc["status_sets"]["default"]["mapping"] = {"READY_TO_SEND": "1", "IN_TRANSIT": "2", "CANCEL": "3"}
    doc["integrations"][0]["mapping"] = {"DELIVERED": "2", "CANCEL": ""}  # adds one, unmaps one
    doc["integrations"][2]["mapping"] = {"CANCEL": "x"}  # inline statuses, a mapping of its own
    doc["integrations"] += [{"id": 105, "account": "main", "status_set": "default"}]
    for fmt in FORMATS:
        inv = load_doc(workdir, doc, fmt)
        assert inv.valid, inv.problems
        m101, m102, m103, m104, m105 = (j.mapping for j in inv.jobs)
        assert m101 is not None and m101.items == (
            ("READY_TO_SEND", "1"),
            ("IN_TRANSIT", "2"),
            ("DELIVERED", "2"),  # two categories may map to one status
            ("CANCEL", None),
        )
        assert m102 is m105  # the set's, interned
        assert m102 is not None and m102.as_dict()["CANCEL"] == "3"
        assert m103 is not None and m103.as_dict() == {
            "READY_TO_SEND": None,
            "IN_TRANSIT": None,
            "DELIVERED": None,
            "CANCEL": "x",
        }
        assert m104 is None


def test_null_unmaps_in_json_and_yaml(workdir: Path) -> None:
    doc = base_doc()
    doc["integrations"][0]["mapping"] = {"CANCEL": None}
    for fmt in ("json", "yaml"):
        mapping = load_doc(workdir, doc, fmt).jobs[0].mapping
        assert mapping is not None and mapping.as_dict()["CANCEL"] is None


def test_mapping_body_is_the_post_body(workdir: Path) -> None:
    inv = load_doc(workdir, base_doc(), "json")
    mapping = inv.jobs[0].mapping
    assert mapping is not None
    raw = mapping.body(101)
    body = msgspec.json.decode(raw, type=wire.PostMapping)  # the struct is the schema
    assert body.integration_id == 101
    assert [i.status_category for i in body.mapping] == list(wire.STATUS_CATEGORIES)
    assert wire.check_mapping(body) == []
    assert json.loads(raw)["mapping"][1] == {"status_category": "IN_TRANSIT", "external_id": None}
    assert mapping.body(7) == raw.replace(b":101,", b":7,")  # one encoding, spliced


def test_mapping_problems_in_one_run(workdir: Path) -> None:
    doc = base_doc()
    doc["status_sets"]["default"]["mapping"] = {"READY_TO_SEND": "1", "CANCEL": "3", "cancel": "2", "DELIVERED": "7"}
    doc["integrations"][0]["remove_statuses"] = ["3"]  # the set maps CANCEL there
    doc["integrations"][1]["mapping"] = {"IN_TRANSIT": "22", "ready_to_send": "1", "DELIVERED": 5}
    doc["integrations"][1]["remove_statuses"] = ["2"]
    doc["integrations"][2]["mapping"] = {"CANCEL": "y"}
    inv = load_doc(workdir, doc, "yaml")
    got = {(p.path, p.integration_id): p.message for p in inv.problems}
    assert got == {
        (
            "$.status_sets.default.mapping.cancel",
            None,
        ): "Object contains unknown field `cancel`; did you mean `CANCEL`?",
        (
            "$.status_sets.default.mapping.DELIVERED",
            None,
        ): "mapping DELIVERED -> '7', but status set 'default' has no external_id '7'",
        ("$.integrations[0].remove_statuses[0]", 101): (
            "mapping CANCEL -> '3' (from status set 'default'), but '3' is removed by remove_statuses: "
            'map CANCEL to another status in this integration\'s mapping, or unmap it with CANCEL = ""'
        ),
        (
            "$.integrations[1].mapping.ready_to_send",
            102,
        ): "Object contains unknown field `ready_to_send`; did you mean `READY_TO_SEND`?",
        ("$.integrations[1].mapping.DELIVERED", 102): "Expected `str`, got `int`",
        (
            "$.integrations[1].mapping.IN_TRANSIT",
            102,
        ): "mapping IN_TRANSIT -> '22', but the integration's statuses have no external_id '22'",
        (
            "$.integrations[2].mapping.CANCEL",
            103,
        ): "mapping CANCEL -> 'y', but the integration's statuses have no external_id 'y'",
    }


def test_a_removed_status_named_by_the_integrations_own_mapping(workdir: Path) -> None:
    doc = base_doc()
    doc["integrations"][1]["mapping"] = {"CANCEL": "2"}
    doc["integrations"][1]["remove_statuses"] = ["2"]
    inv = load_doc(workdir, doc, "toml")
    assert [(p.path, p.message, p.integration_id) for p in inv.problems] == [
        ("$.integrations[1].mapping.CANCEL", "mapping CANCEL -> '2', but '2' is removed by remove_statuses", 102)
    ]


# -- statuses files saved from a GET ------------------------------------------------------------


def _get_answer(*items: dict[str, Any]) -> str:
    return json.dumps({"data": list(items), "next": None})


def test_a_saved_get_answer_loads_without_its_deleted_statuses(workdir: Path) -> None:
    answer = _get_answer(
        {**st("a", tr("Open")), "status": "Open", "deleted_at": None},
        {**st("old", tr("Gone")), "status": "Gone", "deleted_at": "2026-01-02T03:04:05Z"},
        {**st("b", tr("Closed")), "status": "Closed", "deleted_at": None, "created_at": "2025-01-01"},
        {**st("a", tr("Open before")), "status": "Open before", "deleted_at": "2025-01-01T00:00:00Z"},
    )
    inv = _with_file(workdir, answer, "saved.json")
    assert inv.valid, inv.problems
    assert inv.jobs[2].desired.statuses == (
        wire.Status("a", (wire.Translation("Open", "en-gb"),)),
        wire.Status("b", (wire.Translation("Closed", "en-gb"),)),
    )
    assert inv.jobs[2].desired is inv.jobs[3].desired  # the same list as statuses.json


def test_a_saved_get_answer_with_problems_points_into_it(workdir: Path) -> None:
    answer = _get_answer(
        {**st("gone", tr("x")), "deleted_at": "2026-01-01T00:00:00Z"},
        {**st("a", tr("x")), "deleted_at": None},
        {**st("a", tr("y")), "deleted_at": None},
        {"external_id": "c", "translations": [tr("z", "xx-yy")], "deleted_at": None},
    )
    inv = _with_file(workdir, answer, "saved.json")
    assert [(p.path, p.integration_id) for p in inv.problems] == [("$.data[3].translations[0].language", 103)]
    fixed = answer.replace("xx-yy", "en-gb")
    inv = _with_file(workdir, fixed, "saved.json")
    assert [(p.path, p.message) for p in inv.problems] == [
        ("$.data[2].external_id", "external_id 'a' is used twice (first at index 1)")
    ]


# -- OAuth2 accounts ---------------------------------------------------------------------------


def test_an_oauth2_account(workdir: Path) -> None:
    doc = base_doc()
    doc["accounts"]["other"] = {"auth": "oauth2", "client_id": "env:OTHER_PUB", "client_secret": "env:OTHER_SEC"}
    doc["accounts"]["third"] = {
        "auth": "oauth2",
        "client_id": "env:THIRD_ID",
        "client_secret": "file:main.secret",
        "token_url": "https://auth.example.com/oauth2/token",
        "scope": "api other",
    }
    for fmt in FORMATS:
        inv = load(write(workdir, doc, fmt), environ={**ENV, "THIRD_ID": "third-id"})
        assert inv.valid, inv.problems
        other, third = inv.accounts["other"], inv.accounts["third"]
        assert other.credentials == OAuth2Credentials(Secret("pub-other-value"), Secret("sec-other-value"))
        assert other.credentials.token_url == "https://account.sendcloud.com/oauth2/token"
        assert other.credentials.scope == "api"
        assert other.identity.reveal() == "pub-other-value"
        assert [s.reveal() for s in other.secrets()] == ["pub-other-value", "sec-other-value"]
        assert isinstance(third.credentials, OAuth2Credentials)
        assert (third.credentials.token_url, third.credentials.scope) == (
            "https://auth.example.com/oauth2/token",
            "api other",
        )
        assert [s.reveal() for s in inv.accounts["main"].secrets()] == ["pub-main-value", MAIN_SECRET]
        for value in (*ENV.values(), MAIN_SECRET, "third-id"):
            assert value not in repr(inv)


def test_oauth2_account_problems(workdir: Path) -> None:
    doc = base_doc()
    doc["accounts"]["main"] = {
        "auth": "oauth2",
        "client_id": "env:MAIN_PUB",
        "client_secret": "cs_live_9f8e7d6c5b4a",
        "public_key": "env:MAIN_PUB",
    }
    doc["accounts"]["other"] = {
        "public_key": "env:OTHER_PUB",
        "secret_key": "env:OTHER_SEC",
        "client_id": "env:X",
        "scope": "api",
    }
    doc["accounts"]["third"] = {"auth": "oauth2", "client_id": "env:NOPE"}
    doc["accounts"]["fourth"] = {"auth": "OAuth2", "client_id": "env:MAIN_PUB", "client_secret": "env:MAIN_PUB"}
    inv = load_doc(workdir, doc, "toml")
    got = {p.path: p.message for p in inv.problems}
    uses_oauth2 = "this account uses auth = 'oauth2' (client_id and client_secret): remove one scheme's keys"
    uses_basic = "this account uses auth = 'basic' (public_key and secret_key): remove one scheme's keys"
    assert got == {
        "$.accounts.main.client_secret": got["$.accounts.main.client_secret"],
        "$.accounts.main.public_key": f"public_key belongs to auth = 'basic'; {uses_oauth2}",
        "$.accounts.other.client_id": f"client_id belongs to auth = 'oauth2'; {uses_basic}",
        "$.accounts.other.scope": f"scope belongs to auth = 'oauth2'; {uses_basic}",
        "$.accounts.third.client_secret": "Object missing required field `client_secret` (auth = 'oauth2')",
        "$.accounts.third.client_id": "cannot resolve env:NOPE: environment variable NOPE is not set",
        "$.accounts.fourth.auth": "Invalid enum value 'OAuth2' (expected one of basic, oauth2)",
    }
    assert "literal secret is not allowed" in got["$.accounts.main.client_secret"]
    assert_no_secret(inv, "cs_live_9f8e7d6c5b4a")


def test_one_oauth2_account_declared_twice(workdir: Path) -> None:
    doc = base_doc()
    doc["accounts"]["other"] = {"auth": "oauth2", "client_id": "env:MAIN_PUB", "client_secret": "env:OTHER_SEC"}
    inv = load_doc(workdir, doc, "json")
    assert [(p.path, p.message.split(":")[0]) for p in inv.problems] == [
        ("$.accounts.other.client_id", "the same client id as account 'main'")
    ]


def test_select_ignores_digits_that_are_not_ascii(workdir: Path) -> None:
    jobs = load_doc(workdir, base_doc(), "json").jobs
    assert select(jobs, ["²"]) == ([], ["²"])


def test_a_problem_of_the_whole_file_is_said_without_a_path(tmp_path: Path) -> None:
    """`nosuch.toml: file does not exist`, not `nosuch.toml: $: file does not exist`."""
    inv = load(tmp_path / "nosuch.toml", environ={})
    [problem] = inv.problems
    assert problem.line() == f"{tmp_path / 'nosuch.toml'}: file does not exist"
    assert InventoryProblem("inv.toml", 7, "$.integrations[0].id", "bad").line() == (
        "inv.toml: $.integrations[0].id: bad (integration 7)"
    )
