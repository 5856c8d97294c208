"""Shared fixtures: the aioresponses shim and the in-process sandbox server."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _aioresponses_shim  # noqa: F401  (patches aioresponses for aiohttp 3.14; see the module)
import pytest
from cli_helpers import sandbox_proc  # noqa: F401 - a fixture
from hostile_fixture import hostile  # noqa: F401 - a fixture
from pg_server import pg_url, postgres_server  # noqa: F401 - fixtures: a throwaway PostgreSQL
from sandbox_fixture import *  # noqa: F403


@pytest.fixture(autouse=True, scope="session")
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The run history's default store of the processes that module- and session-scoped
    fixtures start (made before any test's own, :func:`_own_temp_dir`): never the machine's
    real one, which `make test` on an operator's host would otherwise fill with its runs."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    patch.delenv("BATCHSYNC_HISTORY_URL", raising=False)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _own_temp_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own temp dir, for itself and the processes it starts: the account
    locks and the budget records a run leaves (batchsync.engine.budget) never pass from one test
    to the next, whose sandbox may get the port an earlier one had; nor do they touch the
    machine's real runs."""
    temp = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    # The run history's default store (XDG_STATE_HOME/batchsync/history.sqlite3): each test
    # its own, never the machine's real one; the processes a test starts inherit it.
    monkeypatch.setenv("XDG_STATE_HOME", str(temp / "state"))
    monkeypatch.delenv("BATCHSYNC_HISTORY_URL", raising=False)


# -- make test-fast: the in-process layers ---------------------------------------------------
#
# A test is marked `cli` when it starts a process: the command line as users run it, a
# sandbox process, a tool. Found from the source of the test, of the fixtures it uses and
# of the test helpers they call (to any depth), so that a new test is placed without a
# marker to remember; `make test-fast` deselects `cli`, `slow` and `browser`, and there any
# process a test still starts fails it (BATCHSYNC_TEST_FAST), so the split cannot go stale.

TESTS = Path(__file__).resolve().parent
_STARTS = re.compile(r"\bsubprocess\.|\bPopen\b|\bos\.(?:fork|exec|spawn|system)|\bopen_process\b|\bpexpect\b")
_NAME = re.compile(r"\b[A-Za-z_]\w*\b")
_BODY = re.compile(r"^(?:async\s+def|def|class)\s", re.MULTILINE)
_verdicts: dict[int, bool] = {}


def _starts_a_process(obj: Any) -> bool:
    """Whether a test, fixture or helper of the tests' own starts a process."""
    obj = inspect.unwrap(obj)
    key = id(obj)
    if key in _verdicts:
        return _verdicts[key]
    _verdicts[key] = False  # a helper that calls itself
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        where = Path(inspect.getfile(obj)).resolve()
    except (OSError, TypeError):
        return False
    if TESTS not in where.parents or where.name == "conftest.py":
        return False  # batchsync's own code, the guard below: the guard tells if one starts a process
    body = _BODY.search(source)
    source = source[body.start() :] if body else source  # not its decorators' data
    found = bool(_STARTS.search(source))
    if not found:
        names = getattr(obj, "__globals__", None) or vars(inspect.getmodule(obj) or object)
        for name in set(_NAME.findall(source)):
            helper = names.get(name)
            if (inspect.isfunction(helper) or inspect.isclass(helper)) and _starts_a_process(helper):
                found = True
                break
    _verdicts[key] = found
    return found


@pytest.fixture(autouse=True)
def _event_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop a ``both_loops`` test runs on, for it and every process it starts; otherwise
    whatever the environment says (``auto``: uvloop)."""
    name = getattr(request, "param", None)
    if name is not None:
        monkeypatch.setenv("BATCHSYNC_EVENT_LOOP", name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_loops"):
        metafunc.parametrize("_event_loop", ["uvloop", "asyncio"], indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("cli"):
            continue
        fixtures = [d[-1].func for d in item._fixtureinfo.name2fixturedefs.values() if d]
        if any(_starts_a_process(f) for f in (item.function, *fixtures)):
            item.add_marker(pytest.mark.cli)


@pytest.fixture(autouse=True)
def _in_process_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get("BATCHSYNC_TEST_FAST"):
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process, so it is not for make test-fast: mark it cli")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
