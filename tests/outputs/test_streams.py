"""Standard streams whose encoding is not UTF-8 (a Latin-1 or ASCII locale under cron):
no traceback, text escaped, JSON still valid and the same."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import ROOT, env_with

from batchsync.outputs.streams import is_utf8, json_for

NAME = "Exp\u00e9di\u00e9"  # in inventories/example.toml


def test_json_for_a_stream_that_is_not_utf8_is_ascii_and_the_same_json() -> None:
    text = json.dumps({"name": "Exp\u00e9di\u00e9 \u20ac \U0001f600", "n": 1}, ensure_ascii=False)
    latin = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="UTF8")
    assert is_utf8(utf8) and not is_utf8(latin) and is_utf8(io.StringIO())
    assert json_for(utf8, text) is text
    escaped = json_for(latin, text)
    assert escaped.isascii() and "\\ud83d\\ude00" in escaped and "\\u00e9" in escaped
    assert json.loads(escaped) == json.loads(text)


def _batchsync(encoding: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "batchsync", *argv],
        capture_output=True,
        env={**env_with({}), "PYTHONIOENCODING": encoding},
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_run_under_a_locale_without_a_names_characters(encoding: str) -> None:
    text = _batchsync(encoding, "plan", "inventories/example.toml", "--sandbox")
    assert text.returncode == 0 and b"Traceback" not in text.stderr, text.stderr
    out = text.stdout.decode(encoding)
    assert "RECAP" in out
    assert ("Exp\\xe9di\\xe9" if encoding == "ascii" else NAME) in out
    doc = _batchsync(encoding, "plan", "inventories/example.toml", "--sandbox", "--format", "json")
    assert doc.returncode == 0, doc.stderr
    assert doc.stdout.isascii()  # \u escapes: valid JSON whatever the reader assumes
    outcomes = json.loads(doc.stdout)["outcomes"]
    assert len(outcomes) == 23
    assert NAME in json.dumps(outcomes, ensure_ascii=False)
    logs = _batchsync(encoding, "plan", "inventories/example.toml", "--sandbox", "-q", "-v", "--log-format", "json")
    assert logs.returncode == 0 and logs.stderr.isascii()
    lines = [json.loads(line) for line in logs.stderr.splitlines()]
    assert len(lines) > 23 and all("message" in line for line in lines)


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_validate_json_under_such_a_locale(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "acme.key").write_text("dummy-acme-key\n")
    statuses = [{"external_id": "1", "translations": [{"status": NAME, "language": "fr-fr"}]}]
    inventory = tmp_path / "inv.json"
    inventory.write_text(
        json.dumps(
            {
                "accounts": {"acme": {"public_key": "file:acme.key", "secret_key": "file:acme.key"}},
                "integrations": [{"id": 1, "account": "Z\u00fcrich", "statuses": statuses}],
            }
        )
    )
    done = _batchsync(encoding, "validate", str(inventory), "--format", "json")
    assert done.returncode == 2 and done.stdout.isascii(), done.stderr
    (problem,) = json.loads(done.stdout)["problems"]
    assert "Z\u00fcrich" in problem["message"]
