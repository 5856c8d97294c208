"""The exit codes: one table in exitcodes.py, the same codes in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

from batchsync import exitcodes
from batchsync.exitcodes import BY_COMMAND, MEANING, describe

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_has_exactly_the_codes_of_exitcodes_py() -> None:
    section = README.read_text().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, flags=re.MULTILINE)
    assert [int(code) for code, _ in rows] == list(MEANING)
    constants = {v for k, v in vars(exitcodes).items() if k.startswith("EXIT_")}
    assert constants == set(MEANING)


def test_a_command_either_narrows_a_code_or_takes_its_general_meaning() -> None:
    assert describe("apply")[0] == (0, MEANING[0])
    valid, invalid, lost = describe("validate")
    assert [valid, invalid] == [(0, "the inventory is valid"), (2, "the inventory is invalid, or a usage error")]
    assert lost[0] == 5 and "stdout" in lost[1]
    for command, codes in BY_COMMAND.items():
        assert set(codes) <= set(MEANING), command
        assert all(text for _, text in describe(command)), command
