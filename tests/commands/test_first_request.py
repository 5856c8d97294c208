"""A run's first request goes out before anything it does not need first (part 5 of `make bench`).

The process below is a real ``batchsync apply``, stopped at the moment its first request's
connection is about to be opened (aiohttp's connector, patched as it is imported): it says
then what it had imported and made. The run history's store, the outputs' modules and a
saved plan's come after; the report, which a run must be able to write before it sends
anything, before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli_helpers import ROOT
from inventory_factory import inventory_env, make_inventory

# Stops the process at its first request and prints, as JSON, what had been imported by then
# and which of the files named in argv[1] (a JSON list) existed.
STOP_AT_FIRST_REQUEST = """
import gc, importlib.util, json, os, sys

WATCHED = json.loads(sys.argv[1])
FILES = json.loads(sys.argv[2])


class StopAtFirstRequest:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "aiohttp.connector":
            return None
        sys.meta_path.remove(cls)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)

            async def first_request(self, req, *args, **kwargs):
                seen = {
                    "imported": sorted(m for m in WATCHED if m in sys.modules),
                    "files": sorted(f for f in FILES if os.path.exists(f)),
                    "gc": gc.isenabled(),
                    "url": str(req.url),
                }
                os.write(1, (json.dumps(seen) + "\\n").encode())
                os._exit(0)

            module.TCPConnector._create_direct_connection = first_request

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, StopAtFirstRequest)
sys.argv = ["batchsync", *sys.argv[3:]]
from batchsync.cli import entry

entry()
"""

LATER = [
    "sqlite3",
    "batchsync.history.db",
    "batchsync.history.store",
    "batchsync.outputs.history",
    "batchsync.outputs.notify",
    "batchsync.outputs.report",
    "batchsync.commands._saved",
    "batchsync.inventory.plan",
]


def at_first_request(tmp_path: Path, *args: str, files: list[str]) -> dict[str, Any]:
    inv = make_inventory(tmp_path, {"acme": 3})
    env = {**os.environ, **inventory_env({"acme": 3})}
    # The coverage of child processes (pytest-cov) imports sqlite3 for its data at start.
    env = {k: v for k, v in env.items() if not k.startswith("COV")}
    argv = ["apply", inv.path, "--base-url", "http://127.0.0.1:9", "-q", *args]
    done = subprocess.run(
        [sys.executable, "-c", STOP_AT_FIRST_REQUEST, json.dumps(LATER), json.dumps(files), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert seen["url"].startswith("http://127.0.0.1:9/integrations"), seen  # the pre-flight
    return seen


def test_the_first_request_goes_before_the_history_and_the_outputs_are_opened(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite3"
    junit = tmp_path / "junit.xml"
    seen = at_first_request(tmp_path, "--history", str(history), "--junit", str(junit), files=[str(history)])
    assert seen["imported"] == [], seen
    assert seen["files"] == [], seen
    # Collection is on again once the engine starts (paused while the modules were imported).
    assert seen["gc"] is True


def test_the_report_is_made_before_the_first_request(tmp_path: Path) -> None:
    # A report that cannot be written stops the run before anything is sent: it is opened first.
    # The run history is not opened for it (its header needs no digest of the inventory).
    report, history = tmp_path / "report.jsonl", tmp_path / "history.sqlite3"
    seen = at_first_request(
        tmp_path, "--history", str(history), "--report", str(report), files=[str(report), str(history)]
    )
    assert seen["files"] == [str(report)]
    assert seen["imported"] == ["batchsync.outputs.report"], seen
    assert json.loads(report.read_text().splitlines()[0])["header"] is True
