"""The one rule of unprintable text (batchsync.text) and the quoting built on it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchsync import text
from batchsync.text import control_in, display, escape_controls, quoted

HOSTILE = ["plain", 'é"\n\x1b[2J', "\ud800x", "\u2028 \u202e", "\x85\x7f", "tab\t", "", "a\\b"]


@pytest.mark.parametrize("value", [*HOSTILE, None], ids=repr)
def test_quoted_is_json_with_the_rules_characters_spelled_out(value: str | None) -> None:
    got = quoted(value)
    assert got == escape_controls(json.dumps(value, ensure_ascii=False))
    assert control_in(got) is None and "\n" not in got
    if value is None or control_in(value) is None:  # nothing spelled out: the JSON reads back as given
        assert json.loads(got) == value


def test_quoted_builds_its_json_encoder_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outcome line quotes every status name: json.dumps with an option builds a new
    encoder per call, which cost the run's hot path about 2% of its instructions."""
    made: list[object] = []
    original = json.JSONEncoder.__init__

    def counting(self: json.JSONEncoder, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(json.JSONEncoder, "__init__", counting)
    monkeypatch.setattr(text, "_json_string", None)
    assert [quoted(v) for v in ('a"', "b\\", "c\n")] == ['"a\\""', '"b\\\\"', '"c\\n"']
    assert len(made) == 1
    # A clean ASCII name (most of them: each outcome line quotes some) needs no encoder at all.
    monkeypatch.setattr(text, "_json_string", None)
    assert [quoted(v) for v in ("Status s4 (it-it)", "", "a'b")] == ['"Status s4 (it-it)"', '""', '"a\'b"']
    assert len(made) == 1


def test_display_leaves_a_clean_name_alone_and_quotes_one_that_holds_the_rules_characters() -> None:
    assert display("acme-eu") == "acme-eu"
    assert display("acme\x1b]0;x\x07") == '"acme\\u001b]0;x\\u0007"'
