"""The event loop a run starts: uvloop by default, the standard loop on request or where
uvloop is missing, and a usage error for a name that is neither."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from batchsync import eventloop
from batchsync.cli import main
from batchsync.usage import UsageError


async def _running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(("asked", "module"), [(None, "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_run_starts_the_loop_asked_for(monkeypatch: pytest.MonkeyPatch, asked: str | None, module: str) -> None:
    if asked is None:
        monkeypatch.delenv(eventloop.ENV, raising=False)
    else:
        monkeypatch.setenv(eventloop.ENV, f" {asked.upper()} ")  # case and blanks as a user types them
    assert eventloop.run(_running_loop_module).split(".")[0] == module


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    monkeypatch.setenv(eventloop.ENV, "auto")
    assert eventloop.loop_name() == "asyncio"
    assert eventloop.run(_running_loop_module).startswith("asyncio")
    monkeypatch.setenv(eventloop.ENV, "uvloop")
    with pytest.raises(UsageError, match="uvloop is not installed"):
        eventloop.loop_name()


def test_a_name_that_is_no_loop_stops_the_command_before_it_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(eventloop.ENV, "tokio-sk_live_SECRET")
    report = tmp_path / "r.jsonl"
    code = main(
        [
            "plan",
            str(Path(__file__).resolve().parents[1] / "inventories" / "example.toml"),
            "--sandbox",
            "--report",
            str(report),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "$BATCHSYNC_EVENT_LOOP names no event loop: expected one of auto, uvloop, asyncio" in err
    assert "SECRET" not in err  # the value is not repeated
    assert not report.exists()


def test_a_child_process_runs_on_the_loop_its_environment_names() -> None:
    program = (
        "import asyncio; from batchsync import eventloop\n"
        "async def f(): return type(asyncio.get_running_loop()).__module__\n"
        "print(eventloop.run(f))"
    )
    for asked, module in (("asyncio", "asyncio"), ("uvloop", "uvloop")):
        env = {"PATH": "/usr/bin:/bin", eventloop.ENV: asked}
        done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().split(".")[0] == module
