"""The process's collection policy at start-up: paused while the command's modules are
imported, then what start-up made frozen and collection on again."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cli_helpers import ROOT

from batchsync import gcpolicy
from batchsync.commands._run import rare_gc


@pytest.fixture
def restored() -> Iterator[None]:
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    gcpolicy.started()
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("restored")
def test_starting_pauses_collection_and_started_freezes_what_it_made() -> None:
    gc.enable()
    gcpolicy.starting()
    assert not gc.isenabled()
    made: list[list[int]] = [[] for _ in range(1000)]  # what start-up makes lives on
    frozen = gc.get_freeze_count()
    gcpolicy.started()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(made)
    gcpolicy.started()  # once only: a second call changes nothing
    assert gc.isenabled()


@pytest.mark.usefixtures("restored")
def test_started_alone_changes_nothing() -> None:
    # A command run in-process (a test, the docs' hooks): no start-up pause was asked for.
    gc.disable()
    frozen = gc.get_freeze_count()
    gcpolicy.started()
    assert not gc.isenabled() and gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("restored")
def test_a_run_collects_nothing_until_its_engine_starts_and_leaves_collection_as_it_was() -> None:
    gc.enable()
    with rare_gc():
        assert not gc.isenabled()  # the event loop's and the HTTP client's imports
        gcpolicy.started()  # execute(), as the engine starts
        assert gc.isenabled() and gc.get_threshold()[0] >= 20_000
    assert gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.usefixtures("restored")
def test_a_run_that_breaks_off_before_its_engine_starts_collects_again() -> None:
    gc.enable()
    with pytest.raises(KeyboardInterrupt), rare_gc():
        raise KeyboardInterrupt
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_command_pauses_collection_until_it_starts() -> None:
    # A real `batchsync validate`: collection off while its parser is built, on (what
    # start-up made frozen) when the command runs.
    program = (
        "import gc, os, sys\n"
        "from batchsync import cli\n"
        "from batchsync.commands import validate\n"
        "seen = []\n"
        "build_parser, run, exit_now = cli.build_parser, validate.run, os._exit\n"
        "cli.build_parser = lambda verb=None: seen.append(gc.isenabled()) or build_parser(verb)\n"
        "validate.run = lambda settings: seen.append(gc.isenabled()) or run(settings)\n"
        "os._exit = lambda code: (print('seen', seen, flush=True), exit_now(code))\n"
        "sys.argv = ['batchsync', 'validate', 'inventories/example.toml']\n"
        "cli.entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "seen [False, True]"
