"""The exit codes: one table in exitcodes.py, which the manual's tables are generated from."""

from __future__ import annotations

import re
from pathlib import Path

from batchsync import exitcodes
from batchsync.exitcodes import BY_COMMAND, MEANING, describe

COMMANDS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "commands.md"


def test_the_manual_s_table_is_generated_from_exitcodes_py() -> None:
    section = COMMANDS_PAGE.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert "<!-- generated: exit codes -->" in section  # docs/hooks/cli_reference.py writes it from MEANING
    assert not re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)  # no hand-written copy beside it
    constants = {v for k, v in vars(exitcodes).items() if k.startswith("EXIT_")}
    assert constants == set(MEANING)


def test_exit_75_names_both_locks() -> None:
    """The inventory's lock and the account locks both end a run with 75: --help says so."""
    assert "same inventory" in MEANING[75] and "Sendcloud account" in MEANING[75]


def test_a_command_either_narrows_a_code_or_takes_its_general_meaning() -> None:
    assert describe("apply")[0] == (0, MEANING[0])
    valid, invalid, lost = describe("validate")
    assert [valid, invalid] == [(0, "the inventory is valid"), (2, "the inventory is invalid, or a usage error")]
    assert lost[0] == 5 and "stdout" in lost[1]
    for command, codes in BY_COMMAND.items():
        assert set(codes) <= set(MEANING), command
        assert all(text for _, text in describe(command)), command
