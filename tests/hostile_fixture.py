"""The ``hostile`` fixture: tests/hostile_server.py run as its own process for a module's
tests; the URL of each behaviour by name (and ``ca``: the file of the CA its HTTPS
certificate is issued by)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "hostile_server.py"), "--seconds", "300", "--ca-file", str(ca)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while True:
            line = proc.stdout.readline()
            assert line, "the hostile server did not start"
            lines.append(line)
            if line.startswith("}"):
                break
        yield {**json.loads("".join(lines)), "ca": str(ca)}
    finally:
        proc.terminate()
        proc.wait(10)
