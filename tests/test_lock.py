"""The run lock: one holder at a time, across processes, and never stuck after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchsync.lock import LockedError, LockError, acquire_lock, describe_holder, lock_path

HOLDER = """
import sys, time
from batchsync.lock import acquire_lock
lock = acquire_lock(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventories" / "x.toml"
    path.parent.mkdir()
    path.write_text("# inventory\n")
    return path


@pytest.fixture
def holder(inventory: Path) -> Iterator[subprocess.Popen[str]]:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(inventory)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_second_process_is_refused_naming_the_holder(inventory: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockedError) as info:
        acquire_lock(str(inventory))
    message = str(info.value)
    assert message.startswith(f"another batchsync run holds the lock on {inventory}: pid {holder.pid}, started ")
    assert info.value.holder["pid"] == holder.pid
    assert info.value.lock_file == lock_path(str(inventory))


def test_lock_is_free_at_once_after_the_holder_is_killed(inventory: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockedError):
        acquire_lock(str(inventory))
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with acquire_lock(str(inventory)) as lock:
        assert lock.held
        # The stale record was replaced by ours.
        record = json.loads(Path(lock.path).read_text())
        assert record["pid"] == os.getpid()


def test_lock_file_sits_next_to_the_inventory_and_survives_release(inventory: Path) -> None:
    lock = acquire_lock(str(inventory))
    assert lock.path == inventory.parent / ".x.toml.lock"
    record = json.loads(lock.path.read_text())
    assert record["pid"] == os.getpid()
    assert record["started"].endswith("Z")
    lock.release()
    assert not lock.held
    lock.release()  # idempotent
    assert lock.path.exists()
    # Released: the next acquire succeeds, in this process too.
    with acquire_lock(str(inventory)):
        pass


def test_same_inventory_by_another_spelling_is_the_same_lock(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(inventory.parent)
    with acquire_lock(str(inventory)), pytest.raises(LockedError):
        # flock conflicts between two open file descriptions even in one process.
        acquire_lock("./x.toml")


def test_garbage_in_the_lock_file_is_tolerated(inventory: Path) -> None:
    with acquire_lock(str(inventory)) as lock:
        lock.path.write_bytes(b"\xff not json")
        with pytest.raises(LockedError) as info:
            acquire_lock(str(inventory))
        assert info.value.holder == {}
        assert "holder unknown" in str(info.value)


def test_describe_holder_names_a_foreign_host() -> None:
    text = describe_holder({"pid": 7, "started": "2026-11-26T22:00:03Z", "host": "other-host-xyz"})
    assert text == "pid 7, started 2026-11-26T22:00:03Z, on host other-host-xyz"
    assert describe_holder({"pid": "7"}).startswith("holder unknown")


def test_unwritable_directory_falls_back_to_the_runtime_dir(
    inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    real_open = os.open

    # chmod cannot stop root (tests may run as root in containers), so refuse the way a
    # read-only directory would.
    def refusing_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if Path(path).parent == inventory.parent:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refusing_open)
    with acquire_lock(str(inventory)) as lock:
        assert lock.path.parent == runtime
        assert lock.path.name.startswith("batchsync-")
        with pytest.raises(LockedError):
            acquire_lock(str(inventory))
    assert not (inventory.parent / ".x.toml.lock").exists()


def test_no_writable_place_is_a_lock_error(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import batchsync.lock as mod

    monkeypatch.setattr(mod, "_candidates", lambda inv: [inventory.parent / "missing" / "a.lock"])
    with pytest.raises(LockError) as info:
        acquire_lock(str(inventory))
    assert not isinstance(info.value, LockedError)
    assert "no writable place" in str(info.value)
