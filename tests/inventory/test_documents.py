"""Reading input files: only regular files under a cap, and keys given twice found in each format.

The duplicate-key check for JSON is a colon count that must never say "unique" for a
document that has a key twice: a property test feeds it generated documents with and
without repeats, written compact, indented and with escapes.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchsync import files
from batchsync.files import FileProblem, read_regular
from batchsync.inventory import documents
from batchsync.inventory.documents import json_duplicate_keys, json_keys_unique, parse

# -- only regular files -------------------------------------------------------------------


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b"x" * 100_000)
    assert read_regular(path, 100_000) == b"x" * 100_000
    with pytest.raises(FileProblem, match=r"is 97.66 KB, more than the 97.66 KB allowed; raise it"):
        read_regular(path, 99_999, "; raise it")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: os.mkfifo(d / "x"), "is a FIFO (named pipe), not a regular file"),
        (lambda d: os.symlink("/dev/zero", d / "x"), "is a character device, not a regular file"),
        (lambda d: os.symlink("/dev/urandom", d / "x"), "is a character device, not a regular file"),
        (lambda d: (d / "x").mkdir(), "is a directory, not a file"),
        (lambda d: os.symlink(d, d / "x"), "is a directory, not a file"),
        (lambda d: os.symlink("x", d / "x"), "cannot be read (Too many levels of symbolic links)"),
        (lambda d: None, "file does not exist"),
    ],
    ids=["fifo", "dev-zero", "dev-urandom", "directory", "symlink-to-directory", "symlink-loop", "missing"],
)
def test_anything_else_is_a_problem_at_once(tmp_path: Path, make: Any, message: str) -> None:
    make(tmp_path)
    with pytest.raises(FileProblem) as info:
        read_regular(tmp_path / "x", 1000)  # a FIFO with no writer would block a plain open()
    assert info.value.message == message


def test_a_sparse_file_over_the_cap_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(300 * files.MB)  # sparse: costs no disk
    with pytest.raises(FileProblem, match="is 300 MB, more than the 256 MB allowed"):
        read_regular(path, files.INVENTORY_LIMIT)


def test_a_nul_byte_in_the_name(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match="not a usable file name"):
        read_regular(f"{tmp_path}/a\x00b", 10)


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "data", "message"),
    [
        (
            ".json",
            '{"a": "Livr\xe9"}'.encode("latin-1"),
            "is not UTF-8 text (line 1, column 12: byte 0xE9): save it as UTF-8",
        ),
        (".json", b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply"),
        (".toml", b"a = " + b"[" * 100_000 + b"]" * 100_000, "invalid TOML: nested too deeply"),
        (".yaml", b"a: " + b"[" * 100_000 + b"]" * 100_000, "invalid YAML at line 1"),
        (".toml", b"a = " + b"1" * 5000, "invalid TOML: a number of more than 4,300 digits is out of range"),
        (".yaml", b"a: " + b"1" * 5000, "invalid YAML: a number of more than 4,300 digits is out of range"),
        (".json", b'{"a": ' + b"1" * 5000 + b"}", "invalid JSON at line 1, column 7: a number of 5,000 digits is out"),
        (".toml", b"a = 1\na = 2\n", "invalid TOML: Cannot overwrite a value"),
        (".toml", b"x = 1\n" + b"a." * 100_000 + b"a = 1", "a key of more than 64 dotted parts at line 2"),
        (".toml", b'[ "a" . ' * 1 + b'"a".' * 100_000 + b"a]", "a key of more than 64 dotted parts at line 1"),
        (".yaml", b"a: &x [*x]\n", "a YAML alias refers to a value that contains it"),
        (".yaml", b"a: &x {b: *x}\n", "a YAML alias refers to a value that contains it"),
        (".yaml", b"a: 1\n---\nb: 2\n", "invalid YAML at line 2"),
        (".yaml", b"a: !!python/object:os.system x\n", "invalid YAML"),
    ],
    ids=[
        "latin1-json",
        "deep-json",
        "deep-toml",
        "deep-yaml",
        "huge-int-toml",
        "huge-int-yaml",
        "huge-int-json",
        "toml-key-twice",
        "toml-dotted-key",
        "toml-dotted-table",
        "yaml-self-list",
        "yaml-self-map",
        "yaml-two-documents",
        "yaml-python-tag",
    ],
)
def test_a_broken_document_is_a_problem(suffix: str, data: bytes, message: str) -> None:
    with pytest.raises(FileProblem) as info:
        parse(suffix, data)
    assert message in info.value.message


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 values
    with pytest.raises(FileProblem, match="YAML aliases expand it to more than"):
        parse(".yaml", "\n".join(lines).encode())


def test_yaml_aliases_within_reason_are_fine() -> None:
    text = "t: &t [{status: x, language: en-gb}]\nl: [" + ", ".join(["*t"] * 1000) + "]\n"
    doc, dups = parse(".yaml", text.encode())
    assert len(doc["l"]) == 1000 and dups == []


def test_yaml_keys_given_twice_with_lines() -> None:
    text = b"a:\n  x: 1\n  y: 2\n  x: 3\nb: [{k: 1, k: 2}]\nc: 1\nc: 2\n"
    doc, dups = parse(".yaml", text)
    assert doc == {"a": {"x": 3, "y": 2}, "b": [{"k": 2}], "c": 2}
    assert sorted(dups) == [
        (("a", "x"), "key 'x' is given twice (lines 2 and 4): keep one"),
        (("b", 0, "k"), "key 'k' is given twice (lines 5 and 5): keep one"),
        (("c",), "key 'c' is given twice (lines 6 and 7): keep one"),
    ]


def test_yaml_keys_that_are_one_value_in_two_spellings_are_named_as_written() -> None:
    """`1:` and `true:` are two keys as written, one to Python (1 == True): both spellings said."""
    doc, dups = parse(".yaml", b"m:\n  1: x\n  true: y\n")
    assert dups == [(("m", "True"), "keys '1' and 'true' (lines 2 and 3) are both read as True: keep one")]
    assert doc == {"m": {1: "y"}}  # Python kept the first key, with the last value


def test_yaml_merge_keys_are_overrides_not_repeats() -> None:
    doc, dups = parse(".yaml", b"base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  x: 3\n")
    assert doc["mine"] == {"x": 3, "y": 2}
    assert dups == []


def test_yaml_non_text_keys_give_quoted_paths() -> None:
    from batchsync.wire import to_jsonpath

    doc, dups = parse(".yaml", b"m:\n  ~: 1\n  2024-01-01: 2\n  1.5: 3\n  7: 4\n  7: 5\n")
    assert None in doc["m"]
    assert [to_jsonpath(loc) for loc, _ in dups] == ["$.m['7']"]


def test_json_keys_given_twice() -> None:
    data = b'{"a": {"id": 1, "id": 2, "x": [{"k": 0, "k": 1}]}, "a": {}}'
    doc, dups = parse(".json", data)
    assert doc == {"a": {}}
    assert sorted(loc for loc, _ in dups) == [("a",), ("a", "id"), ("a", "x", 0, "k")]
    assert all("is given twice" in message for _, message in dups)


def test_json_without_repeats_has_no_problem() -> None:
    doc, dups = parse(".json", b'{"a": "x:y", "b": {"c": ": \\" :"}, "d": [":"]}')
    assert dups == [] and doc["a"] == "x:y"


def test_an_escaped_colon_takes_the_exact_path() -> None:
    # "\u003a" decodes to a colon: the count cannot settle it, the exact check does.
    data = b'{"a\\u003a": 1, "b": 2}'
    assert not json_keys_unique(data, msgspec.json.encode(msgspec.json.decode(data)))
    assert json_duplicate_keys(data) == []
    assert parse(".json", data) == ({"a:": 1, "b": 2}, [])


# -- the colon count never misses a repeat --------------------------------------------------

KEYS = st.sampled_from(["a", "b", "id", "x:y", 'q"', "\\", "é", "k\u003a"])
SCALARS = st.one_of(st.integers(-5, 5), st.sampled_from(["", ":", "a:b", ' " : ', "\\:", "\u003a"]), st.none())


def _with_repeats(draw: Any, depth: int) -> Any:
    """A JSON-like tree as a list of pairs per object, so that keys may repeat."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(SCALARS)
    if draw(st.booleans()):
        return [_with_repeats(draw, depth - 1) for _ in range(draw(st.integers(0, 3)))]
    return ("obj", [(draw(KEYS), _with_repeats(draw, depth - 1)) for _ in range(draw(st.integers(0, 4)))])


def _write(node: Any, style: int, rng: random.Random) -> str:
    def key(k: str) -> str:
        text = json.dumps(k, ensure_ascii=style == 2)
        return text.replace(":", "\\u003a") if style == 3 and rng.random() < 0.5 else text

    if isinstance(node, tuple):
        sep = ", " if style else ","
        colon = " : " if style == 1 else ":"
        return "{" + sep.join(f"{key(k)}{colon}{_write(v, style, rng)}" for k, v in node[1]) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(_write(v, style, rng) for v in node) + "]"
    return json.dumps(node, ensure_ascii=style == 2)


def _has_repeat(node: Any) -> bool:
    if isinstance(node, tuple):
        keys = [k for k, _ in node[1]]
        return len(keys) != len(set(keys)) or any(_has_repeat(v) for _, v in node[1])
    if isinstance(node, list):
        return any(_has_repeat(v) for v in node)
    return False


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(0, 3), st.randoms(use_true_random=False))
def test_the_colon_count_never_calls_a_repeat_unique(data: Any, style: int, rng: random.Random) -> None:
    tree = ("obj", [("top", _with_repeats(data.draw, 4))])
    text = _write(tree, style, rng).encode()
    decoded = msgspec.json.decode(text)
    if _has_repeat(tree):
        assert not json_keys_unique(text, msgspec.json.encode(decoded))
        assert json_duplicate_keys(text)  # and the exact check names it
        assert parse(".json", text)[1]
    else:
        assert json_duplicate_keys(text) == []
        assert parse(".json", text)[1] == []


# -- our words, whichever parser version --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{\n  "a": 1,\n}', "invalid JSON at line 3, column 1: expecting property name"),
        (b'{"a": [1, 2', "invalid JSON: the file ends at line 1 before the document does"),
        (b'{"a": 1}\n{"b": 2}\n', "invalid JSON at line 2, column 1:"),
        (b'{"s": "NaN",\n "a": NaN}', "invalid JSON at line 2, column 7: NaN is not a JSON number: write the value"),
        (b'{"a": [-Infinity]}', "invalid JSON at line 1, column 8: -Infinity is not a JSON number"),
        (b'{"a": 1e400}', "invalid JSON at line 1, column 7: the number 1e400 is out of range"),
        (b'{"a": "x\\ud800y"}', "invalid JSON at line 1, column 9: \\ud800 is half of a character"),
        (b"a: [1, 2\nb: 3\n", "invalid YAML at line 2, column 2: "),
        (b"a: 1\n---\nb: 2\n", "invalid YAML at line 2, column 1: expected a single document in the stream"),
    ],
    ids=[
        "json-comma",
        "json-cut",
        "json-two",
        "json-nan",
        "json-infinity",
        "json-1e400",
        "json-surrogate",
        "yaml",
        "yaml-2",
    ],
)
def test_a_syntax_error_names_its_line_and_column(data: bytes, message: str) -> None:
    suffix = ".yaml" if message.startswith("invalid YAML") else ".json"
    with pytest.raises(FileProblem) as info:
        parse(suffix, data)
    assert info.value.message.startswith(message)


LATIN1 = '{\n  "accounts": {},\n  "statuses": ["Livr\xe9"]\n}\n'.encode("latin-1")
NOT_UTF8 = "is not UTF-8 text (line 3, column 21: byte 0xE9): save it as UTF-8"


@pytest.mark.parametrize(
    "refusal",
    [
        UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte"),  # msgspec 0.22
        msgspec.DecodeError("Invalid UTF-8 encoded string"),  # msgspec 0.23
        msgspec.DecodeError("some wording of a release to come"),
        ValueError("anything"),
    ],
    ids=["msgspec-0.22", "msgspec-0.23", "future", "value-error"],
)
def test_the_json_messages_do_not_depend_on_msgspecs_words(monkeypatch: pytest.MonkeyPatch, refusal: Exception) -> None:
    def refuse(data: bytes, **kwargs: Any) -> Any:
        raise refusal

    monkeypatch.setattr(msgspec.json, "decode", refuse)
    with pytest.raises(FileProblem) as info:
        parse(".json", LATIN1)
    assert info.value.message == NOT_UTF8
    with pytest.raises(FileProblem) as info:
        documents.decode_json(LATIN1)  # what a caller that has not checked the encoding gets
    assert info.value.message == NOT_UTF8
    with pytest.raises(FileProblem) as info:
        parse(".json", b'{\n  "a": [1,, 2]\n}')
    assert info.value.message.startswith("invalid JSON at line 2, column 11: ")


@pytest.mark.parametrize("suffix", [".json", ".toml", ".yaml"])
def test_every_format_names_the_line_column_and_byte_that_are_not_utf8(suffix: str) -> None:
    data = {
        ".json": LATIN1,
        ".toml": 'accounts = {}\n\nstatuses = ["Livr\xe9"]\n'.encode("latin-1"),
        ".yaml": "accounts: {}\n\nstatuses: [Livr\xe9]\n".encode("latin-1"),
    }[suffix]
    with pytest.raises(FileProblem) as info:
        parse(suffix, data)
    column = {".json": 21, ".toml": 18, ".yaml": 16}[suffix]
    assert info.value.message == f"is not UTF-8 text (line 3, column {column}: byte 0xE9): save it as UTF-8"


def test_the_utf8_check_reads_across_its_chunks() -> None:
    chunk = files._CHUNK
    # A two-byte character cut in half by the chunk boundary is fine...
    straddling = b"a" * (chunk - 1) + "\xe9".encode() + b"\n" + "\u20ac".encode() * 10
    assert files.not_utf8(straddling) is None
    # ...a bad byte after it is found where it is, counted in characters on its line.
    problem = files.not_utf8(straddling + b"x\xff")
    assert problem is not None and problem.message.startswith("is not UTF-8 text (line 2, column 12: byte 0xFF)")
    # A character that the file's end cuts off.
    problem = files.not_utf8(b"ok\n" + "\u20ac".encode()[:2])
    assert problem is not None and "(line 2, column 1: byte 0xE2)" in problem.message
    assert files.not_utf8("Livr\xe9 \u20ac".encode() * 100_000) is None
