"""Fuzzing ``batchsync validate``: whatever the input, exit 0 or 2, one JSON document on
stdout with ``--format json``, no traceback and no hang.

Inputs: inventories generated from scratch, generated then mutated (values swapped for
hostile ones, keys removed, added, repeated), their text mutated byte by byte, in JSON,
TOML and YAML; and files that are not files (FIFOs, devices, directories, loops, sparse
giants) as the inventory, a ``statuses_file`` or a ``file:`` secret. Cases run
in-process (``batchsync.cli.main``) for speed, a handful as real processes.

``make test`` runs a few hundred cases, the same ones every time; ``make fuzz`` runs
BATCHSYNC_FUZZ_EXAMPLES (10,000) random ones and prints a summary.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsync.cli import main

EXAMPLES = int(os.environ.get("BATCHSYNC_FUZZ_EXAMPLES", "300"))
FUZZING = "BATCHSYNC_FUZZ_EXAMPLES" in os.environ
HANG_SECONDS = 10.0
SHARES = {"generated": 0.3, "mutated": 0.3, "text": 0.3, "files": 0.1}
ENV = {f"FUZZ_{k}{i}": f"fuzz-{k.lower()}{i}-value" for k in ("PUB", "SEC", "ID") for i in ("", "1", "2")}
SECRET_VALUES = (*ENV.values(), "fuzz-file-secret")

# What must never reach a terminal from a problem: controls, line separators, bidi overrides.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
STATS: Counter[str] = Counter()
SLOWEST: list[float] = [0.0]


def _settings(share: str) -> Callable[[Any], Any]:
    return settings(
        max_examples=max(1, round(EXAMPLES * SHARES[share])),
        deadline=None,
        derandomize=not FUZZING,  # the suite is the same every run; make fuzz explores
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(autouse=True, scope="module")
def _environment() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    started = time.monotonic()
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if FUZZING:
        kinds = ", ".join(f"{k[5:]} {v}" for k, v in sorted(STATS.items()) if k.startswith("kind:"))
        print(
            f"\nfuzz: {STATS['cases']} cases in {time.monotonic() - started:.1f} s; "
            f"exit 0: {STATS['exit 0']}, exit 2: {STATS['exit 2']}, other exits: {STATS['other exit']}; "
            f"tracebacks: {STATS['traceback']}; hangs over {HANG_SECONDS:.0f} s: {STATS['hang']}; "
            f"unparseable JSON: {STATS['bad json']}; slowest case {SLOWEST[0]:.2f} s\n({kinds})",
            file=sys.__stderr__,
        )


class _Hang(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def validate(path: Path, kind: str) -> dict[str, Any]:
    """Run ``validate PATH --format json`` in-process; check every promise; the report."""
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    started = time.monotonic()
    crash = ""
    code: Any = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(path), "--format", "json"])
    except _Hang:
        STATS["hang"] += 1
        pytest.fail(f"validate {path} ({kind}) took more than {HANG_SECONDS} s")
    except BaseException:
        crash = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - started
    SLOWEST[0] = max(SLOWEST[0], elapsed)
    STATS["cases"] += 1
    STATS[f"kind:{kind}"] += 1
    text = out.getvalue() + err.getvalue()
    if crash or "Traceback" in text:
        STATS["traceback"] += 1
        pytest.fail(f"validate {path} ({kind}) crashed:\n{crash or text}")
    if code not in (0, 2):
        STATS["other exit"] += 1
        pytest.fail(f"validate {path} ({kind}) exited {code!r}")
    STATS[f"exit {code}"] += 1
    try:
        report = json.loads(out.getvalue())
    except ValueError:
        STATS["bad json"] += 1
        pytest.fail(f"validate {path} ({kind}): stdout is not one JSON document: {out.getvalue()[:500]!r}")
    assert set(report) == {"valid", "integrations", "problems", "warnings"}
    assert report["valid"] is (code == 0) and bool(report["problems"]) is (code == 2)
    for p in report["problems"] + report["warnings"]:
        assert p["file"] and p["path"].startswith("$") and p["message"]
        assert not UNSAFE.search(p["message"] + p["path"] + p["file"]), p
    for secret in SECRET_VALUES:
        assert secret not in text
    return dict(report)


# -- generated inventories -------------------------------------------------------------------

LANGS = ["en-us", "en-gb", "fr-fr", "de-de", "nl-nl", "es-es", "it-it"]
CATEGORIES = ["READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL"]
IDS = st.sampled_from(["1", "2", "3", "4", "5", "6", "x", "17-B"])


@st.composite
def statuses(draw: Any) -> list[dict[str, Any]]:
    out = []
    ids = draw(st.lists(IDS, max_size=5, unique=True))
    if draw(st.integers(0, 3)) and "1" not in ids:
        ids.insert(0, "1")  # what most mappings point at
    for eid in ids:
        langs = draw(st.lists(st.sampled_from(LANGS), min_size=1, max_size=3, unique=True))
        out.append({"external_id": eid, "translations": [{"status": f"S{eid} {la}", "language": la} for la in langs]})
    return out


@st.composite
def mappings(draw: Any) -> dict[str, str]:
    cats = draw(st.lists(st.sampled_from(CATEGORIES), max_size=4, unique=True))
    return {c: draw(st.sampled_from(["1", "1", "1", "", "2", "6"])) for c in cats}


@st.composite
def inventories(draw: Any) -> dict[str, Any]:
    """Mostly valid inventories with every feature: both auth schemes, sets by list and
    by file, overrides, removals, mappings, tags."""
    accounts: dict[str, Any] = {}
    for i, name in enumerate(draw(st.lists(st.sampled_from(["acme", "nord", "vogel"]), min_size=1, unique=True))):
        if draw(st.booleans()):
            acc: dict[str, Any] = {"public_key": f"env:FUZZ_PUB{i or ''}", "secret_key": "file:fuzz.key"}
        else:
            acc = {"auth": "oauth2", "client_id": f"env:FUZZ_ID{i or ''}", "client_secret": "env:FUZZ_SEC"}
        if draw(st.booleans()):
            acc["limits"] = {"writes_per_minute": draw(st.sampled_from([1, 50.5, 100]))}
        if draw(st.booleans()):
            acc["base_url"] = draw(st.sampled_from(["http://127.0.0.1:9/api", "http://example.com", "https://x.io"]))
        accounts[name] = acc
    sets: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["std", "mini", "file"]), unique=True)):
        entry: dict[str, Any] = {"statuses_file": "statuses.json"} if name == "file" else {"statuses": draw(statuses())}
        if draw(st.booleans()):
            entry["mapping"] = draw(mappings())
        sets[name] = entry
    integrations = []
    for n in range(draw(st.integers(0, 6))):
        entry = {"id": 1000 + n, "account": draw(st.sampled_from([*accounts, *accounts, *accounts, "nope"]))}
        source = draw(st.sampled_from(["set", "inline", "file"]))
        if source == "set" and sets:
            entry["status_set"] = draw(st.sampled_from(list(sets)))
        elif source == "file":
            entry["statuses_file"] = draw(st.sampled_from(["statuses.json", "get.json"] * 3 + ["missing.json"]))
        else:
            entry["statuses"] = draw(statuses())
        for key, strategy in (
            ("override_statuses", statuses()),
            ("remove_statuses", st.lists(st.sampled_from(["2", "3", "x", "9"]), max_size=2, unique=True)),
            ("mapping", mappings()),
            ("tags", st.lists(st.sampled_from(["eu", "b2b", "nl"]), max_size=2)),
        ):
            if draw(st.integers(0, 3)) == 0:
                entry[key] = draw(strategy)
        integrations.append(entry)
    doc: dict[str, Any] = {"accounts": accounts, "status_sets": sets, "integrations": integrations}
    if draw(st.booleans()):
        doc["defaults"] = {"limits": {"write_burst": draw(st.integers(1, 20))}}
    return doc


# -- hostile values and mutations ------------------------------------------------------------

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "env:",
            "env:NOT_SET_ANYWHERE",
            "file:",
            "file:../../../../etc/hostname",
            "file:/dev/zero",
            "file:/dev/urandom",
            "file:fifo.key",
            "file:dir",
            "file:fuzz.key\x00x",
            "file:~nosuchuser/key",
            "~nosuchuser/statuses.json",
            "sk_live_literal_secret",
            "\x1b[31mred\x1b[0m",
            "\u202eevil",
            "http://example.com",
            "EN-GB",
            "²",
            "1" * 40,
            "OAuth2",
            "oauth2",
            "basic",
        ]
    ),
    st.dates(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["id", "a", "CANCEL", "statuses"]), st.integers(), max_size=3),
    st.integers(1, 3000).map(lambda n: f"@@DEEP{n}@@"),  # nested lists, written in by serialize()
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "id",
            "account",
            "status_set",
            "statuses",
            "statuses_file",
            "mapping",
            "CANCEL",
            "cancel",
            "auth",
            "client_id",
            "public_key",
            "token_url",
            "allow_secret_files_outside",
            "limits",
            "",
        ]
    ),
    st.text(max_size=8),
)
YAML_KEYS = st.one_of(KEYS, st.none(), st.integers(), st.booleans(), st.dates(), st.floats(allow_nan=False))


def _containers(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    if isinstance(node, dict | list):
        yield node, path
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items)[:50]:
            yield from _containers(v, (*path, k))


@st.composite
def mutated(draw: Any, fmt: str) -> dict[str, Any]:
    doc: dict[str, Any] = draw(inventories())
    for _ in range(draw(st.integers(1, 6))):
        targets = [c for c, _ in _containers(doc) if c]
        target = draw(st.sampled_from(targets)) if targets else doc
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if isinstance(target, list):
            i = draw(st.integers(0, len(target) - 1)) if target else 0
            if action == "delete" and target:
                del target[i]
            elif target:
                target[i] = draw(HOSTILE)
            else:
                target.append(draw(HOSTILE))
        else:
            if action == "add" or not target:
                key = draw(YAML_KEYS if fmt == "yaml" else KEYS)
                target[key] = draw(HOSTILE)
            else:
                key = draw(st.sampled_from(list(target)))
                if action == "delete":
                    del target[key]
                else:
                    target[key] = draw(HOSTILE)
    return doc


# -- writing the three formats ---------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }"
    return json.dumps(str(value))


def serialize(doc: Any, fmt: str, style: int) -> bytes:
    if fmt == "json":
        text = json.dumps(doc, default=str, indent=2 if style % 2 else None, ensure_ascii=style % 3 == 0)
    elif fmt == "toml":
        if not isinstance(doc, dict):
            return _toml_value(doc).encode()
        text = "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in doc.items() if v is not None)
    else:
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None if style % 2 else False, width=10**6)
    # A list nested thousands deep is written into the text: no serializer here recurses that far.
    text = re.sub(r"""["']?@@DEEP(\d+)@@["']?""", lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)
    return text.encode("utf-8", "surrogatepass")


TEXT_INSERTS = [
    b"\x00",
    b"\xff\xfe",
    b"\xe9",
    b"\xef\xbb\xbf",
    b"[" * 3000,
    b"{" * 3000,
    b"&a ",
    b"*a ",
    b": ",
    b"- ",
    b'"id": 1, ',
    b"\n[accounts]\n",
    b"\t",
    b"\\u0000",
    b'"\\ud800"',
    b"!!python/object:os.system ",
    b"9" * 5000,
    b"\n" + b"a." * 3000 + b"a = 1\n",
    b"\n[" + b"b." * 3000 + b"b]\n",
]


@st.composite
def text_mutations(draw: Any, data: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 200)))
        action = draw(st.sampled_from(["delete", "repeat", "insert", "byte", "truncate", "latin1"]))
        if action == "delete":
            data = data[:i] + data[j:]
        elif action == "repeat":  # a line or a key twice, a block repeated
            data = data[:j] + data[i:j] + data[j:]
        elif action == "insert":
            data = data[:i] + draw(st.sampled_from(TEXT_INSERTS) | st.binary(max_size=8)) + data[i:]
        elif action == "byte" and n:
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
        elif action == "truncate":
            data = data[:i]
        else:
            data = data.decode("utf-8", "replace").encode("latin-1", "replace")
    return data


# -- the workspace ---------------------------------------------------------------------------


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        d = Path(name)
        (d / "fuzz.key").write_text("fuzz-file-secret\n")
        st_list = [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]
        (d / "statuses.json").write_text(json.dumps(st_list))
        get = {"data": [{**st_list[0], "status": "Paid", "deleted_at": None}], "next": None}
        (d / "get.json").write_text(json.dumps(get))
        (d / "dir").mkdir()
        os.mkfifo(d / "fifo.key")
        yield d


# -- the tests -------------------------------------------------------------------------------

FORMATS = st.sampled_from(["json", "toml", "yaml"])


@_settings("generated")
@given(st.data(), FORMATS, st.integers(0, 5))
def test_generated_inventories(data: Any, fmt: str, style: int) -> None:
    doc = data.draw(inventories())
    with workspace() as d:
        path = d / f"inventory.{fmt}"
        path.write_bytes(serialize(doc, fmt, style))
        validate(path, "generated")


@_settings("mutated")
@given(st.data(), FORMATS, st.integers(0, 5))
def test_mutated_inventories(data: Any, fmt: str, style: int) -> None:
    doc = data.draw(mutated(fmt))
    with workspace() as d:
        path = d / f"inventory.{fmt}"
        path.write_bytes(serialize(doc, fmt, style))
        validate(path, "mutated")


@_settings("text")
@given(st.data(), FORMATS, st.integers(0, 5))
def test_mutated_text(data: Any, fmt: str, style: int) -> None:
    raw = serialize(data.draw(inventories()), fmt, style)
    with workspace() as d:
        path = d / f"inventory.{fmt}"
        path.write_bytes(data.draw(text_mutations(raw)))
        validate(path, "text")


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _sparse(p: Path) -> None:
    with p.open("wb") as f:
        f.truncate(300 * 1024 * 1024)


ODD_FILES: dict[str, Callable[[Path], object]] = {
    "fifo": _fifo,
    "dev-zero": lambda p: p.symlink_to("/dev/zero"),
    "dev-urandom": lambda p: p.symlink_to("/dev/urandom"),
    "dev-null": lambda p: p.symlink_to("/dev/null"),
    "directory": lambda p: p.mkdir(),
    "symlink-to-directory": lambda p: p.symlink_to(p.parent),
    "symlink-loop": lambda p: p.symlink_to(p.name),
    "dangling-symlink": lambda p: p.symlink_to(p.parent / "nowhere"),
    "missing": lambda p: None,
    "sparse-300MB": _sparse,
    "empty": lambda p: p.write_bytes(b""),
    "binary": lambda p: p.write_bytes(bytes(range(256))),
}


@_settings("files")
@given(
    st.data(),
    st.sampled_from(["inventory", "statuses_file", "secret"]),
    st.sampled_from(sorted(ODD_FILES)),
    st.sampled_from([".json", ".toml", ".yaml", ".yml", "", ".key"]),
    st.booleans(),
)
def test_files_that_are_not_files(data: Any, where: str, kind: str, suffix: str, outside_ok: bool) -> None:
    with workspace() as d:
        odd = d / f"odd{suffix}"
        ODD_FILES[kind](odd)
        if where == "inventory":
            validate(odd, f"file:{kind}")
            return
        doc = data.draw(inventories())
        doc["accounts"] = {"a": {"public_key": "env:FUZZ_PUB", "secret_key": "file:fuzz.key"}}
        doc["integrations"] = [{"id": 1, "account": "a", "statuses": []}]
        if where == "statuses_file":
            doc["integrations"][0] = {"id": 1, "account": "a", "statuses_file": odd.name}
        else:
            doc["accounts"]["a"]["secret_key"] = f"file:{odd.name}"
        doc["allow_secret_files_outside"] = outside_ok
        path = d / "inventory.toml"
        path.write_bytes(serialize(doc, "toml", 0))
        report = validate(path, f"file:{kind}")
        field = "$.integrations[0].statuses_file" if where == "statuses_file" else "$.accounts.a.secret_key"
        assert field in [p["path"] for p in report["problems"]], report


CASES: dict[str, Callable[[Path], Path]] = {}


def _case(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(make: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES[name] = make
        return make

    return register


@_case("fifo")
def _(d: Path) -> Path:
    os.mkfifo(d / "i.json")
    return d / "i.json"


@_case("dev-zero")
def _(d: Path) -> Path:
    (d / "i.json").symlink_to("/dev/zero")
    return d / "i.json"


@_case("deep-json")
def _(d: Path) -> Path:
    (d / "i.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return d / "i.json"


@_case("latin1-json")
def _(d: Path) -> Path:
    (d / "i.json").write_bytes('{"accounts": {"Livré": {}}}'.encode("latin-1"))
    return d / "i.json"


@_case("key-twice")
def _(d: Path) -> Path:
    (d / "i.json").write_text('{"accounts": {}, "integrations": [{"id": 1, "id": 2}]}')
    return d / "i.json"


@_case("yaml-bomb")
def _(d: Path) -> Path:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (d / "i.yaml").write_text("\n".join(lines))
    return d / "i.yaml"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_handful_as_real_processes(tmp_path: Path, case: str) -> None:
    path = CASES[case](tmp_path)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "batchsync", "validate", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS * 3,
    )
    assert time.monotonic() - started < HANG_SECONDS
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is False and report["problems"]
