"""The recap and the run's JSON document: per account or per tag, and the limits found too high."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec

from batchsync.diff import Change
from batchsync.outcome import AccountStats, Outcome, Summary
from batchsync.outputs.terminal import UNTAGGED, TagTally, limits_too_high, outcome_lines, print_recap, summary_document


def recap(summary: Summary, mode: str = "apply", by_tag: TagTally | None = None) -> list[str]:
    out = io.StringIO()
    print_recap(summary, mode, out, by_tag.groups if by_tag is not None else None)
    return out.getvalue().splitlines()


def throttled_summary() -> Summary:
    return Summary(
        {
            "acme": AccountStats(
                changed=3, throttled=9, write_rate=64.0, write_declared=100.0, read_rate=None, read_declared=1000.0
            ),
            "globex": AccountStats(unchanged=2, read_rate=100.0, read_declared=1000.0, write_declared=100.0),
            "initech": AccountStats(unchanged=1, read_declared=1000.0, write_declared=100.0),
        },
        duration_s=3.0,
    )


def test_the_recap_names_the_limits_that_were_too_high_with_the_rate_that_worked() -> None:
    lines = recap(throttled_summary())
    at = lines.index("declared limits too high (the API answered 429; fix them in the inventory):")
    assert lines[at + 1 :] == [
        "  acme: 429s on writes: declared 100/min, worked at 64/min: lower writes_per_minute",
        # 10% of the declared rate is as low as the engine goes: saying "worked" would be a guess.
        "  globex: 429s on reads: declared 1000/min, slowed to its floor, 100/min: lower reads_per_minute",
    ]
    assert any(line.startswith("acme ") and line.endswith("throttled=9") for line in lines)


def test_no_429_no_limits_block() -> None:
    lines = recap(Summary({"acme": AccountStats(changed=1, write_declared=100.0)}))
    assert not [line for line in lines if "too high" in line or "429" in line]
    assert limits_too_high(Summary({"acme": AccountStats()})) == []


def test_a_rate_without_a_declared_one_still_names_the_setting() -> None:
    [entry] = limits_too_high(Summary({"acme": AccountStats(write_rate=8.4)}))
    assert entry["text"] == "acme: 429s on writes: worked at 8.4/min: lower writes_per_minute"
    assert entry["declared_per_minute"] is None and entry["at_floor"] is False


def test_the_json_document_carries_the_limits_and_the_account_grouping() -> None:
    doc = msgspec.json.decode(msgspec.json.encode(summary_document(throttled_summary(), "apply")))
    assert doc["recap_by"] == "account"
    assert doc["groups"]["acme"] == {"unchanged": 0, "changed": 3, "failed": 0, "skipped": 0}
    assert list(doc["groups"]) == ["acme", "globex", "initech"]
    acme, globex = doc["limits_too_high"]
    assert acme == {
        "account": "acme",
        "meter": "writes",
        "declared_per_minute": 100.0,
        "worked_per_minute": 64.0,
        "at_floor": False,
        "setting": "writes_per_minute",
        "text": "acme: 429s on writes: declared 100/min, worked at 64/min: lower writes_per_minute",
    }
    assert (globex["account"], globex["meter"], globex["at_floor"]) == ("globex", "reads", True)
    assert doc["accounts"]["acme"]["write_rate"] == 64.0


def outcomes() -> list[Outcome]:
    return [
        Outcome(1, "acme", "changed", tags=("client-a", "nl")),
        Outcome(2, "acme", "failed", tags=("client-a",)),
        Outcome(3, "globex", "unchanged", tags=("client-b", "nl", "nl")),
        Outcome(4, "globex", "skipped"),
        Outcome(5, "acme", "unchanged"),
    ]


def test_tags_count_each_integration_under_every_tag_and_the_untagged_apart() -> None:
    tally = TagTally()
    for o in outcomes():
        tally.add(o)
    assert tally.groups == {
        "client-a": {"unchanged": 0, "changed": 1, "failed": 1, "skipped": 0},
        "nl": {"unchanged": 1, "changed": 1, "failed": 0, "skipped": 0},  # a tag twice counts once
        "client-b": {"unchanged": 1, "changed": 0, "failed": 0, "skipped": 0},
        UNTAGGED: {"unchanged": 1, "changed": 0, "failed": 0, "skipped": 1},
    }


def test_the_recap_by_tag() -> None:
    tally = TagTally()
    for o in outcomes():
        tally.add(o)
    summary = Summary(
        {"acme": AccountStats(unchanged=1, changed=1, failed=1), "globex": AccountStats(unchanged=1, skipped=1)},
        duration_s=2.0,
    )
    lines = recap(summary, by_tag=tally)
    assert lines[1] == "RECAP by tag"
    rows = [line.split()[0] for line in lines[2:7]]
    assert rows == ["client-a", "client-b", "nl", UNTAGGED, "TOTAL"]  # (untagged) last
    assert lines[2].split()[1:5] == ["unchanged=0", "changed=1", "failed=1", "skipped=0"]
    assert lines[6].split()[1:5] == ["unchanged=2", "changed=1", "failed=1", "skipped=1"]  # each once
    assert lines[7] == "(an integration with several tags counts under each)"
    doc = summary_document(summary, "apply", tally.groups)
    assert doc["recap_by"] == "tag"
    assert list(doc["groups"]) == ["client-a", "client-b", "nl", UNTAGGED]
    assert doc["groups"]["nl"] == tally.groups["nl"]
    assert doc["totals"]["unchanged"] == 2


def test_a_tag_with_a_control_character_cannot_forge_a_recap_line() -> None:
    tally = TagTally()
    tally.add(Outcome(1, "acme", "changed", tags=("evil\nTOTAL  unchanged=999",)))
    lines = recap(Summary({"acme": AccountStats(changed=1)}), by_tag=tally)
    assert lines[2].startswith('"evil\\nTOTAL  unchanged=999"')
    assert sum(1 for line in lines if line.startswith("TOTAL")) == 1


def test_the_plan_recap_says_nothing_was_written() -> None:
    lines = recap(Summary({"acme": AccountStats(unchanged=2)}), mode="plan")
    assert "to change=0" in lines[2]
    assert lines[-1] == "plan only: nothing was written; every integration is in its desired state"


def test_a_language_code_a_server_wrote_cannot_act_on_a_terminal() -> None:
    # A language code comes from the server's answer as much as a name: neither may carry
    # anything a terminal acts on (JSON quoting alone lets C1 controls and bidi marks through).
    changes = (
        Change("~", "1", before={"en-gb\x1b[2J": "Paid"}, after={"en-gb": "Paid"}),
        Change("-", "2", before={"nl-nl\u202e": "W\x9beg\u2066"}),  # a C1 control, a bidi isolate
        Change("+", "3", after={"de-de": "Neu"}),
    )
    outcome = Outcome(7, "acme", "changed", 1, 1, 1, changes=changes)
    text = "\n".join(outcome_lines(outcome, "apply"))
    assert not any(c in text for c in "\x1b\u202e\x9b\u2066")
    assert '"en-gb\\u001b[2J" - "Paid"' in text and "de-de " in text  # a plain code stays as it is


def test_a_report_file_spells_out_what_json_lets_through_raw(tmp_path: Path) -> None:
    """JSON escapes C0 controls but not DEL, C1 controls or bidi characters: a report shown
    on a terminal (``tail -f``, ``less -R``) would have a U+202E reorder its line. Written
    ``\\uXXXX``, it is the same JSON; a plain accented name stays as it is."""
    from batchsync.outputs.report import ReportWriter, read_report

    path = tmp_path / "r.jsonl"
    writer = ReportWriter(str(path))
    writer.header("apply", "inv.toml", 1)
    name = {"nl-nl": "W\u202eeg\x9b\x7f Zürich"}
    writer.add(Outcome(7, "acme", "changed", 1, 1, 1, changes=(Change("-", "2\u2066", before=name),)))
    writer.finish(Summary({"acme": AccountStats(changed=1)}), "apply", 0)
    raw = path.read_bytes()
    assert not any(c.encode() in raw for c in "\u202e\x9b\x7f\u2066"), raw
    assert "Zürich".encode() in raw and b"\\u202e" in raw
    [row] = read_report(str(path)).outcomes
    assert row.changes[0].before == name and row.changes[0].external_id == "2\u2066"
