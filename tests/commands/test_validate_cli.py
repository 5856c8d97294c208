"""``batchsync validate``: exit codes, the JSON report, and no traceback for a user's mistake.

The must-show scenario: 240 integrations over 3 accounts and shared status sets, 30 of
them made invalid in 15 different ways (2 each). ``validate --format json`` must name
exactly those 30 integrations and exit 2.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchsync.cli import main

REPO = Path(__file__).resolve().parents[2]
LANGS = ("en-gb", "nl-nl", "de-de", "fr-fr", "es-es", "it-it", "en-us")


def tr(status: str, language: str = "en-gb") -> dict[str, str]:
    return {"status": status, "language": language}


def st(external_id: str, *translations: dict[str, str]) -> dict[str, Any]:
    return {"external_id": external_id, "translations": list(translations) or [tr(f"S{external_id}")]}


def valid_inventory(directory: Path, n: int = 240) -> dict[str, Any]:
    """n valid integrations, ids 5001.., over 3 accounts, mostly on 2 shared sets."""
    for account in ("acme", "nordwind", "vogel"):
        (directory / f"{account}.key").write_text(f"dummy-{account}-key\n")
    accounts = {
        a: {"public_key": f"file:{a}.key", "secret_key": f"file:{a}.key"} for a in ("acme", "nordwind", "vogel")
    }
    integrations: list[dict[str, Any]] = []
    for i in range(n):
        entry: dict[str, Any] = {"id": 5001 + i, "account": ("acme", "nordwind", "vogel")[i % 3], "tags": ["nl"]}
        if i % 10 == 9:
            entry["statuses"] = [st("paid", tr("Paid"), tr("Betaald", "nl-nl")), st("sent", tr("Sent"))]
        else:
            entry["status_set"] = "default" if i % 4 else "minimal"
        integrations.append(entry)
    return {
        "accounts": accounts,
        "status_sets": {
            "default": {"statuses": [st("1", tr("Paid"), tr("Betaald", "nl-nl")), st("2"), st("3"), st("4")]},
            "minimal": {"statuses": [st("2"), st("4")]},
        },
        "integrations": integrations,
    }


Breaker = Callable[[dict[str, Any], dict[str, Any]], int]
"""Makes one integration invalid (given the document too); returns the id a problem must name."""


def _inline(entry: dict[str, Any], statuses: list[dict[str, Any]]) -> int:
    entry.pop("status_set", None)
    entry["statuses"] = statuses
    return int(entry["id"])


def duplicate_external_ids(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    return _inline(entry, [st("1"), st("2"), st("1")])


def duplicate_languages(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    return _inline(entry, [st("1", tr("Paid"), tr("Betaald", "nl-nl"), tr("Payed"))])


def unknown_account(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry["account"] = "acme-typo"
    return int(entry["id"])


def negative_id(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry["id"] = -entry["id"]
    return int(entry["id"])


def string_id(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry["id"] = str(entry["id"])  # "5042": the problem names 5042, guessed from the string
    return int(entry["id"])


def duplicate_id(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    # Take the id of a valid integration listed before this one (index 0 and 1 are never
    # broken): the problem names the id, on this, its second occurrence.
    first = doc["integrations"][doc["integrations"].index(entry) % 2]
    entry["id"] = first["id"]
    return int(entry["id"])


def unknown_status_set(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry.pop("statuses", None)
    entry["status_set"] = "defualt"
    return int(entry["id"])


def bad_language(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    return _inline(entry, [st("1", tr("Paid", "en-GB"))])


def translation_count(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    # One with no translation, the other with 8 (more than the 7 languages there are).
    many = entry["id"] % 2 == 0
    translations = [tr(f"s{i}", LANGS[i % 7]) for i in range(8)] if many else []
    return _inline(entry, [{"external_id": "1", "translations": translations}])


def unknown_field(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry["stauts_set"] = entry.pop("status_set", "default")
    entry.pop("statuses", None)
    return int(entry["id"])


def both_set_and_statuses(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry["status_set"] = "default"
    entry["statuses"] = [st("1")]
    return int(entry["id"])


def remove_unknown(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry.pop("statuses", None)
    entry["status_set"] = "default"
    entry["remove_statuses"] = ["99"]
    return int(entry["id"])


def bad_statuses_file(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry.pop("status_set", None)
    entry.pop("statuses", None)
    entry["statuses_file"] = "statuses/missing.json"  # both broken entries share it
    return int(entry["id"])


def empty_external_id(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    return _inline(entry, [st("1"), st("")])


def tags_not_a_list(entry: dict[str, Any], doc: dict[str, Any]) -> int:
    entry["tags"] = "nl"
    return int(entry["id"])


KINDS: list[Breaker] = [
    duplicate_external_ids,
    duplicate_languages,
    unknown_account,
    negative_id,
    string_id,
    duplicate_id,
    unknown_status_set,
    bad_language,
    translation_count,
    unknown_field,
    both_set_and_statuses,
    remove_unknown,
    bad_statuses_file,
    empty_external_id,
    tags_not_a_list,
]


def broken_inventory(directory: Path) -> tuple[dict[str, Any], dict[int, str]]:
    """The 240 integrations with 30 broken (2 per kind); returns {named id: kind}."""
    doc = valid_inventory(directory)
    entries = doc["integrations"]
    broken: dict[int, str] = {}
    for k, kind in enumerate(KINDS):
        # Spread over the file and over the accounts; indexes 0 and 1 stay valid.
        for index in (7 + 15 * k, 8 + 15 * k):  # consecutive: one odd, one even
            named = kind(entries[index], doc)
            assert named not in broken, (kind.__name__, named)
            broken[named] = kind.__name__
    return doc, broken


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- the must-show scenario ------------------------------------------------------------------


def test_240_integrations_30_broken_15_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, broken = broken_inventory(tmp_path)
    assert len(doc["integrations"]) == 240
    assert len(broken) == 30
    assert len(set(broken.values())) == 15
    path = write_json(tmp_path / "big.json", doc)

    code, out, err = run(capsys, "validate", str(path), "--format", "json")
    assert code == 2
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 1  # exactly one JSON object
    report = json.loads(lines[0])
    assert set(report) == {"valid", "integrations", "problems", "warnings"}
    assert report["valid"] is False
    assert isinstance(report["integrations"], int)
    problems = report["problems"]
    named = {p["integration_id"] for p in problems if p["integration_id"] is not None}
    assert named == set(broken)
    # One problem per broken integration, none without an integration.
    assert sorted(p["integration_id"] for p in problems) == sorted(broken)
    for p in problems:
        assert set(p) == {"file", "integration_id", "path", "message"}
        assert p["file"] == str(path)
        assert p["path"].startswith("$.integrations[")
        assert p["message"]
    by_kind = {broken[p["integration_id"]]: p for p in problems}
    assert "used twice" in by_kind["duplicate_external_ids"]["message"]
    assert "language 'en-gb' is used twice" in by_kind["duplicate_languages"]["message"]
    assert "unknown account 'acme-typo'" in by_kind["unknown_account"]["message"]
    assert "duplicate integration id" in by_kind["duplicate_id"]["message"]
    assert "Expected `int`, got `str`" in by_kind["string_id"]["message"]
    assert by_kind["tags_not_a_list"]["path"].endswith(".tags")
    counts = sorted(p["message"] for p in problems if broken[p["integration_id"]] == "translation_count")
    assert "length <= 7" in counts[0] and "length >= 1" in counts[1]
    files = [p["message"] for p in problems if broken[p["integration_id"]] == "bad_statuses_file"]
    assert "missing.json: file does not exist" in files[0] and "is not usable" in files[1]


def test_the_broken_inventory_in_text_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, broken = broken_inventory(tmp_path)
    path = write_json(tmp_path / "big.json", doc)
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 2
    assert out.rstrip().endswith("30 problems; nothing was sent")
    for iid in broken:
        assert f"(integration {iid})" in out


def test_the_same_in_a_real_process(tmp_path: Path) -> None:
    doc, broken = broken_inventory(tmp_path)
    path = write_json(tmp_path / "big.json", doc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSYNC")}
    proc = subprocess.run(
        [sys.executable, "-m", "batchsync", "validate", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert {p["integration_id"] for p in report["problems"]} == set(broken)


# -- valid inventories -----------------------------------------------------------------------


def test_valid_inventory_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "ok.json", valid_inventory(tmp_path))
    code, out, err = run(capsys, "validate", str(path), "--format", "json")
    assert code == 0
    assert json.loads(out) == {"valid": True, "integrations": 240, "problems": [], "warnings": []}
    assert err == ""


def test_valid_inventory_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "ok.json", valid_inventory(tmp_path))
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0
    # 2 shared sets + 1 inline list that 24 integrations happen to share.
    assert out.strip() == f"{path}: valid: 240 integrations, 3 accounts, 3 distinct status lists"


@pytest.mark.parametrize("name", ["example.toml", "example.yaml", "example.json"])
def test_the_example_inventories_validate(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(REPO / "inventories" / name), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True and report["problems"] == []
    assert report["integrations"] >= 20


def test_example_toml_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "batchsync", "validate", "inventories/example.toml"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid: " in proc.stdout


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_validate_imports_only_the_parser_its_file_needs(tmp_path: Path, kind: str) -> None:
    # Each import is paid at every start (part 5 of `make bench`): a JSON inventory needs
    # neither the TOML nor the YAML parser, a valid one no spelling suggestions, and
    # validate no HTTP client.
    path = write_json(tmp_path / "ok.json", valid_inventory(tmp_path, n=5))
    if kind == "toml":
        path = REPO / "inventories" / "example.toml"
    program = (
        "import sys\n"
        "from batchsync.cli import main\n"
        f"assert main(['validate', {str(path)!r}]) == 0\n"
        "print(' '.join(m for m in ('tomllib', 'yaml', 'difflib', 'aiohttp', 'anyio') if m in sys.modules))\n"
    )
    # Not measured by coverage (pytest-cov starts it in subprocesses): it reads its settings with tomllib.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=REPO, env=env
    )
    assert done.returncode == 0, done.stderr
    imported = done.stdout.splitlines()[-1].split()
    assert imported == (["tomllib"] if kind == "toml" else [])


# -- a user's mistakes never show a traceback ------------------------------------------------


def _literal_secret(tmp_path: Path) -> Path:
    doc = valid_inventory(tmp_path, 3)
    doc["accounts"]["acme"]["secret_key"] = "sk_live_do_not_print_me"
    return write_json(tmp_path / "inv.json", doc)


def _file(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    return make


MISTAKES: dict[str, Callable[[Path], Path]] = {
    "missing file": lambda d: d / "nope.toml",
    "directory": lambda d: d,
    "empty file": _file("e.toml", ""),
    "binary file": _file("b.json", b"\x00\xff" * 10),
    "not UTF-8": _file("u.yaml", b"accounts: \xff\xfe"),
    "bad TOML": _file("b.toml", "[accounts\n"),
    "tab in YAML": _file("t.yaml", "accounts:\n\tx: 1\n"),
    "unknown extension": _file("inv.txt", "{}"),
    "top level a list": _file("l.json", "[1, 2]"),
    "literal secret": _literal_secret,
    "name too long": lambda d: d / ("a" * 5000 + ".json"),
    "name too long, no suffix": lambda d: d / ("a" * 5000),
}


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistakes_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mistake: str, fmt: str
) -> None:
    path = MISTAKES[mistake](tmp_path)
    code, out, _ = run(capsys, "validate", str(path), "--format", fmt)
    assert code == 2
    assert "sk_live_do_not_print_me" not in out
    if fmt == "json":
        report = json.loads(out)
        assert report["valid"] is False and report["problems"]
    else:
        assert "nothing was sent" in out


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["validate"]) == 2
    assert main(["validate", "x.toml", "--format", "xml"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_missing_file_in_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "batchsync", "validate", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "file does not exist" in proc.stdout


def test_broken_inventory_is_deterministic(tmp_path: Path) -> None:
    a, _ = broken_inventory(tmp_path)
    b, _ = broken_inventory(tmp_path)
    assert a == copy.deepcopy(b)


# -- warnings, the file size cap ---------------------------------------------------------------


def test_warnings_are_printed_and_do_not_change_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = valid_inventory(tmp_path, 3)
    doc["accounts"]["acme"]["base_url"] = "http://api.example.com/v3"
    path = write_json(tmp_path / "inv.json", doc)
    code, out, _ = run(capsys, "validate", str(path), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True and report["problems"] == []
    assert [(w["path"], w["integration_id"]) for w in report["warnings"]] == [("$.accounts.acme.base_url", None)]
    assert "unencrypted" in report["warnings"][0]["message"]
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{path}: $.accounts.acme.base_url: warning: http:// to a host that is not loopback")
    assert lines[1] == f"{path}: valid: 3 integrations, 3 accounts, 2 distinct status lists"


def test_max_file_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "inv.json", valid_inventory(tmp_path, 30))
    assert path.stat().st_size > 2048
    code, out, _ = run(capsys, "validate", str(path), "--max-file-size", "0.002", "--format", "json")
    assert code == 2
    (problem,) = json.loads(out)["problems"]
    assert problem["path"] == "$" and "(--max-file-size raises it)" in problem["message"]
    assert run(capsys, "validate", str(path), "--max-file-size", "1")[0] == 0
    for bad in ("0", "-1", "lots"):
        code, _, err = run(capsys, "validate", str(path), "--max-file-size", bad)
        assert code == 2 and "--max-file-size" in err
    # plan and apply read the inventory the same way, before anything is sent.
    code, _, err = run(capsys, "plan", str(path), "--max-file-size", "0.002")
    assert code == 2 and "more than the 2.048 KB allowed" in err and "nothing was sent" in err


def test_a_fifo_and_dev_zero_in_a_real_process(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    for name in ("fifo.toml", "zero.json"):
        proc = subprocess.run(
            [sys.executable, "-m", "batchsync", "validate", name, "--format", "json"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=30,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        (problem,) = json.loads(proc.stdout)["problems"]
        assert "not a regular file" in problem["message"]
