"""The text output's waiting lines (printed at the end, sorted by account then id) kept on
disk past a bound, not in memory: the same text, whatever the bound; a temp file that cannot
be made or written keeps them in memory, and nothing is lost."""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import pytest

from batchsync.diff import Change
from batchsync.outcome import ErrorInfo, Outcome
from batchsync.outputs import terminal
from batchsync.outputs.sink import Lost, Start
from batchsync.outputs.spool import Spool
from batchsync.outputs.terminal import Screen, Terminal


def _outcomes(n: int, seed: int = 7) -> list[Outcome]:
    """Changed and failed outcomes over three accounts, in no order, names that are not ASCII."""
    rng = random.Random(seed)
    found: list[Outcome] = []
    for k in range(n):
        account = ("acme", "globex", "Ünïcode shop")[k % 3]
        iid = rng.randrange(1, 10**6)
        if k % 5 == 0:
            error = ErrorInfo("client", 400, None, f"bad {k} — ✗", None)
            found.append(Outcome(integration_id=iid, account=account, result="failed", error=error))
        else:
            change = Change("~", str(k), before={"en-gb": "Old"}, after={"en-gb": f"Prêt à partir {k}"})
            found.append(Outcome(integration_id=iid, account=account, result="changed", changed=1, changes=(change,)))
    return found


def _printed(outcomes: list[Outcome]) -> tuple[str, Terminal]:
    buffer = io.StringIO()
    term = Terminal(Start(mode="apply", started_at=0.0), Screen(buffer), io.StringIO(), Lost())
    for o in outcomes:
        term.add(o)
    term.settle()
    return buffer.getvalue(), term


def test_spilled_lines_print_as_the_held_ones_would(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outcomes = _outcomes(3000)
    held, _ = _printed(outcomes)
    assert held.count("\n") >= 3000 and "Prêt à partir" in held
    monkeypatch.setattr(terminal, "SPILL_CHARS", 2_000)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    peak = 0
    original = Terminal.add

    def add(self: Terminal, outcome: Outcome) -> None:
        nonlocal peak
        original(self, outcome)
        peak = max(peak, len(self.printed))

    monkeypatch.setattr(Terminal, "add", add)
    spilled, term = _printed(outcomes)
    assert spilled == held
    assert peak < 100  # held in memory at most: what fits the bound, not the run's 3,000
    assert term._spool is None and not term.printed
    assert list(tmp_path.iterdir()) == []  # the temp file never had a name


def test_a_temp_dir_that_cannot_be_written_keeps_the_lines_in_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = _outcomes(600)
    held, _ = _printed(outcomes)
    monkeypatch.setattr(terminal, "SPILL_CHARS", 2_000)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="batchsync"):
        spilled, term = _printed(outcomes)
    assert spilled == held and not term._spilling
    said = "the outcome lines to print could not go to a temp file (No such file or directory): held in memory"
    assert [r.getMessage() for r in caplog.records].count(f"{said} until the end") == 1


def test_a_spill_that_fails_midway_loses_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The third spill meets a full disk: the two before it are read back, the rest was held."""
    outcomes = _outcomes(900)
    held, _ = _printed(outcomes)
    monkeypatch.setattr(terminal, "SPILL_CHARS", 4_000)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    spills = 0
    original = Spool.add_all

    def add_all(self: Spool, parts: list[tuple[str, int, bytes]]) -> None:
        nonlocal spills
        spills += 1
        if spills == 3:
            self._file.write(parts[0][2][:10])  # what a full disk lets through
            raise OSError(28, "No space left on device")
        original(self, parts)

    monkeypatch.setattr(Spool, "add_all", add_all)
    spilled, term = _printed(outcomes)
    assert spills == 3 and not term._spilling
    assert spilled == held


def test_add_all_indexes_only_what_was_written(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), buffered=False)
    spool.add_all([("a", 2, b"two"), ("a", 1, b"one"), ("b", 1, b"bee")])

    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    real = spool._file
    spool._file = Full()  # type: ignore[assignment]
    with pytest.raises(OSError):
        spool.add_all([("a", 0, b"zero")])
    spool._file = real
    assert [k for k, _ in spool.items("a")] == [1, 2] and spool.count == 3
    spool.add_all([("a", 3, b"three")])
    assert list(spool.items("a")) == [(1, b"one"), (2, b"two"), (3, b"three")]
    assert list(spool.items("b")) == [(1, b"bee")]
    spool.close()


def test_quiet_says_an_accounts_credential_failure_once_and_counts_the_rest() -> None:
    """-q in a cron mail: one line for an account whose credentials failed each of its 500
    integrations, and how many more; other failures each their own line."""
    err = io.StringIO()
    term = Terminal(Start(mode="apply", started_at=0.0), Screen(io.StringIO()), err, Lost(), quiet=True)
    cred = ErrorInfo("credentials", None, None, "account 'acme': cannot resolve env:ACME_SECRET", None)
    for iid in (3, 1, 2):
        term.add(Outcome(integration_id=iid, account="acme", result="failed", error=cred))
    term.add(Outcome(integration_id=9, account="globex", result="failed", error=ErrorInfo("server", 503, None, "down")))
    term.add(Outcome(integration_id=8, account="globex", result="failed", error=ErrorInfo("server", 503, None, "down")))
    term.close(None)
    lines = err.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "! integration 3 (acme)",
        "! integration 9 (globex)",
        "! integration 8 (globex)",
        "! account acme",
    ]
    assert lines[-1] == "! account acme: 2 more integrations failed the same way (credentials)"
