"""Shared fixtures: the aioresponses shim and the in-process sandbox server."""

from __future__ import annotations

import tempfile

import _aioresponses_shim  # noqa: F401  (patches aioresponses for aiohttp 3.14; see the module)
import pytest
from cli_helpers import sandbox_proc  # noqa: F401 - a fixture
from sandbox_fixture import *  # noqa: F403


@pytest.fixture(autouse=True)
def _own_temp_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own temp dir, for itself and the processes it starts: the account
    locks and the budget records a run leaves (batchsync.budget) never pass from one test
    to the next, whose sandbox may get the port an earlier one had; nor do they touch the
    machine's real runs."""
    temp = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
