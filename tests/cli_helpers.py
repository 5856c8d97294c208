"""Running the command line in tests: real processes, and a sandbox process to run them against.

``sandbox_proc`` (a fixture, registered in conftest) is a list to append started
:class:`SandboxProcess` objects to; each is stopped at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def example_inventory(tmp_path: Path) -> Path:
    """A copy of inventories/ (the example, its secrets and statuses files) in ``tmp_path``:
    an apply takes the lock beside its inventory, so tests that run at once in several
    workers must not apply the repository's own file."""
    folder = shutil.copytree(ROOT / "inventories", tmp_path / "inventories")
    return folder / "example.toml"


def env_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra, "PYTHONUNBUFFERED": "1"}


class SandboxProcess:
    """``batchsync sandbox`` in a process: seeded from ``inventory``, or (None) from ``--seed-file`` in ``args``."""

    def __init__(self, inventory: Path | None, env: dict[str, str], *args: str) -> None:
        seeding = ["--inventory", str(inventory)] if inventory is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchsync", "sandbox", "--port", "0", *seeding, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "http://" in line, (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.url = line[line.index("http://") :].split()[0]

    def stats(self) -> Any:
        return self.get("/_sandbox/stats")

    def get(self, path: str) -> Any:
        """The JSON answer of one of the sandbox's own endpoints (``/_sandbox/...``)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}{path}") as resp:  # loopback only
            return json.load(resp)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(10) == 0


@pytest.fixture
def sandbox_proc() -> Iterator[list[SandboxProcess]]:
    started: list[SandboxProcess] = []
    yield started
    for box in started:
        if box.proc.poll() is None:
            box.stop()


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``batchsync ARGS...`` started in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchsync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def wait_for_lines(report: Path, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not report.exists() or report.read_text().count("\n") < count):
        time.sleep(0.05)


def batchsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchsync", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


def read_report(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(outcome lines, summary lines); the header line is checked and left out."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and rows[0].get("header") is True and rows[0]["version"] == 2, rows[:1]
    rows = rows[1:]
    return [r for r in rows if "integration_id" in r], [r for r in rows if "integration_id" not in r]
