"""The run lock: one holder at a time, across processes, and never stuck after a kill."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchsync.engine import lock as lock_module
from batchsync.engine.lock import (
    AccountLockedError,
    LockedError,
    LockError,
    account_lock_name,
    acquire_account_locks,
    acquire_lock,
    describe_holder,
    lock_path,
    runtime_dirs,
)

HOLDER = """
import json, sys, time
from batchsync.engine.lock import acquire_account_locks, acquire_lock
what = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
lock = acquire_lock(sys.argv[1]) if what is None else acquire_account_locks(sys.argv[1], what)
print("held", flush=True)
time.sleep(60)
"""
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """This test's own temp dir and XDG_RUNTIME_DIR (0700, as logind makes it): the
    locks of the machine's real runs are never touched."""
    temp, xdg = tmp_path / "tmp", tmp_path / "xdg"
    temp.mkdir()
    xdg.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    return temp, xdg


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventories" / "x.toml"
    path.parent.mkdir()
    path.write_text("# inventory\n")
    return path


def start_holder(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *args], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def holder(inventory: Path) -> Iterator[subprocess.Popen[str]]:
    proc = start_holder(str(inventory))
    try:
        yield proc
    finally:
        stop(proc)


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


def test_garbage_in_the_lock_file_is_tolerated(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_module, "HOLDER_WAIT_S", 0.05)
    with acquire_lock(str(inventory)) as lock:
        # Not JSON; nested past the recursion limit (a RecursionError, once); a JSON string.
        for garbage in (b"\xff not json", b"[" * 30000 + b"]" * 30000, b'"pid"'):
            lock.path.write_bytes(garbage)
            with pytest.raises(LockedError) as info:
                acquire_lock(str(inventory))
            assert info.value.holder == {}
            assert "holder unknown" in str(info.value)


@pytest.mark.parametrize("before", [b"", b'{"pid": 999999999, "started": "2026-01-01T00:00:00Z"}\n'])
def test_a_refused_run_waits_for_the_holder_to_write_its_record(inventory: Path, before: bytes) -> None:
    # The holder has the flock but has not yet written its record: the file is new (empty)
    # or still names a previous holder, long gone. CI once printed "holder unknown" so.
    path = Path(lock_module.lock_path(str(inventory)))
    path.write_bytes(before)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        record = json.dumps({"pid": os.getpid(), "started": "2026-12-05T03:00:00Z"}).encode() + b"\n"

        def write() -> None:
            os.pwrite(fd, record, 0)
            os.ftruncate(fd, len(record))

        writer = threading.Timer(0.1, write)
        writer.start()
        with pytest.raises(LockedError) as info:
            acquire_lock(str(inventory))
        writer.join()
    finally:
        os.close(fd)
    assert info.value.holder["pid"] == os.getpid()
    assert f"pid {os.getpid()}, started 2026-12-05T03:00:00Z" in str(info.value)


def test_describe_holder_names_a_foreign_host() -> None:
    text = describe_holder({"pid": 7, "started": "2026-11-26T22:00:03Z", "host": "other-host-xyz"})
    assert text == "pid 7, started 2026-11-26T22:00:03Z, on host other-host-xyz"
    assert describe_holder({"pid": "7"}).startswith("holder unknown")


def refuse_opens_in(directory: Path, monkeypatch: pytest.MonkeyPatch, errno_: int = 13) -> None:
    """Make ``directory`` behave read-only (chmod cannot stop root, and tests may run as root)."""
    real_open = os.open

    def refusing_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: object) -> int:
        if Path(path).parent == directory:
            raise OSError(errno_, os.strerror(errno_), str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refusing_open)


def test_a_read_only_inventory_directory_locks_in_the_runtime_dirs(
    inventory: Path, runtime: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, xdg = runtime
    refuse_opens_in(inventory.parent, monkeypatch)
    with acquire_lock(str(inventory)) as lock:
        uid = os.geteuid()
        assert [p.parent for p in lock.paths] == [temp / f"batchsync-{uid}", xdg / "batchsync"]
        assert lock.paths[0].name == lock.paths[1].name and lock.paths[0].name.startswith("inventory-")
        for directory in (temp / f"batchsync-{uid}", xdg / "batchsync"):
            assert directory.stat().st_mode & 0o777 == 0o700
        with pytest.raises(LockedError) as info:
            acquire_lock(str(inventory))
        assert f"pid {os.getpid()}" in str(info.value)
    assert not (inventory.parent / ".x.toml.lock").exists()
    with acquire_lock(str(inventory)):  # released, both files
        pass


def test_a_read_only_filesystem_locks_in_the_runtime_dirs(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_opens_in(inventory.parent, monkeypatch, errno_=30)  # EROFS
    with acquire_lock(str(inventory)) as lock:
        assert lock.path.name.startswith("inventory-")


def test_a_lock_file_of_another_user_is_an_error_not_a_fallback(
    inventory: Path, runtime: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = inventory.parent / ".x.toml.lock"
    beside.write_text("")
    me = os.geteuid()
    # The file is ours; to this process it now looks like another user's.
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(LockError) as info:
        acquire_lock(str(inventory))
    assert not isinstance(info.value, LockedError)
    assert f"cannot take the lock, held by uid {me}" in str(info.value)
    assert str(beside) in str(info.value)
    temp, xdg = runtime
    assert not any(temp.iterdir()) and not any(xdg.iterdir())  # nothing was taken elsewhere


def test_an_unopenable_lock_file_of_another_user_is_an_error(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside = inventory.parent / ".x.toml.lock"
    beside.write_text("")
    me = os.geteuid()
    refuse_opens_in(inventory.parent, monkeypatch)  # as a non-root user meets a 0644 file of another
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(LockError, match=f"held by uid {me}"):
        acquire_lock(str(inventory))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_a_real_lock_file_of_another_uid_is_refused_even_to_root(inventory: Path) -> None:
    beside = inventory.parent / ".x.toml.lock"
    beside.write_text("")
    os.chown(beside, 4242, 4242)
    with pytest.raises(LockError, match="cannot take the lock, held by uid 4242"):
        acquire_lock(str(inventory))


def test_an_unopenable_lock_file_of_ours_is_an_error(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (inventory.parent / ".x.toml.lock").write_text("")
    refuse_opens_in(inventory.parent, monkeypatch)
    with pytest.raises(LockError, match="cannot open the lock file"):
        acquire_lock(str(inventory))


def test_a_symlink_as_lock_file_is_refused(inventory: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (inventory.parent / ".x.toml.lock").symlink_to(target)
    with pytest.raises(LockError, match="symbolic link"):
        acquire_lock(str(inventory))
    assert target.read_text() == "keep me\n"


def test_runtime_dir_of_another_user_is_refused(runtime: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    me = os.geteuid()
    planted = runtime[0] / f"batchsync-{me + 1}"
    planted.mkdir()  # ours, so for "uid me + 1" it was planted by someone else
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(LockError, match=f"belongs to uid {me}, not to this user"):
        runtime_dirs()


def test_runtime_dir_that_is_a_symlink_is_refused(runtime: tuple[Path, Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (runtime[0] / f"batchsync-{os.geteuid()}").symlink_to(elsewhere)
    with pytest.raises(LockError, match="not a directory"):
        runtime_dirs()


def test_runtime_dir_of_ours_is_tightened_to_0700(runtime: tuple[Path, Path]) -> None:
    loose = runtime[0] / f"batchsync-{os.geteuid()}"
    loose.mkdir(mode=0o755)
    loose.chmod(0o777)
    assert runtime_dirs()[0] == loose
    assert loose.stat().st_mode & 0o777 == 0o700


def test_a_tmpdir_that_cannot_be_used_is_an_error_not_a_lock_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tempfile.gettempdir() passes over a TMPDIR it cannot write (full, read-only) for /tmp:
    # a run there did not see the locks of the runs in $TMPDIR, and two shared an account.
    gone = tmp_path / "full-or-gone"
    monkeypatch.setenv("TMPDIR", str(gone))
    with pytest.raises(LockError, match="full-or-gone"):
        runtime_dirs()


def test_xdg_runtime_dir_not_ours_or_missing_is_left_out(
    runtime: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = runtime[0] / f"batchsync-{os.geteuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    assert runtime_dirs() == [temp]
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    assert runtime_dirs() == [temp]
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dirs() == [temp]
    # Left over by su: a directory of another user (root's /run/user/0, say).
    me = os.geteuid()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime[1]))
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    (runtime[0] / f"batchsync-{me + 1}").mkdir()
    monkeypatch.setattr(os, "stat", _owned_by(me + 1, os.stat, runtime[0]))
    monkeypatch.setattr(os, "lstat", _owned_by(me + 1, os.lstat, runtime[0]))
    assert runtime_dirs() == [runtime[0] / f"batchsync-{me + 1}"]


def _owned_by(uid: int, real: Any, under: Path) -> Any:
    """``os.stat``/``os.lstat`` that report ``uid`` as the owner of everything under ``under``."""

    def fake(path: Any, *args: Any, **kw: Any) -> Any:
        st = real(path, *args, **kw)
        if Path(path).is_relative_to(under):
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, uid, *tuple(st)[5:10]))
        return st

    return fake


# -- account locks ------------------------------------------------------------------------


def test_account_lock_name_hides_the_key_and_normalises_the_url() -> None:
    key = "pk_live_9f2c61e0a5"
    name = account_lock_name(key, "https://panel.sendcloud.sc/api/v3")
    assert name == "account-0dba8b00a150139a03360d9edf268f38.lock"  # as before: budget files keep their names
    assert key not in name and "sendcloud" not in name
    assert name.startswith("account-") and name.endswith(".lock")
    assert name == account_lock_name(key, "HTTPS://Panel.Sendcloud.SC/api/v3/")
    assert name != account_lock_name(key + "x", "https://panel.sendcloud.sc/api/v3")
    # A sandbox on another port is another account: two test runs never block each other.
    assert account_lock_name(key, "http://127.0.0.1:8001") != account_lock_name(key, "http://127.0.0.1:8002")
    # Spellings of one API are one account: a default port written out, localhost for 127.0.0.1.
    assert name == account_lock_name(key, "https://panel.sendcloud.sc:443/api/v3")
    assert account_lock_name(key, "http://localhost:8001/") == account_lock_name(key, "http://127.0.0.1:8001")
    assert account_lock_name(key, "http://[::1]:8001") == account_lock_name(key, "http://LOCALHOST:8001")
    assert account_lock_name(key, "http://127.0.0.1:80") == account_lock_name(key, "http://127.0.0.1")
    assert name != account_lock_name(key, "https://panel.sendcloud.sc/api/v2")


def test_an_account_held_by_another_process_names_it_and_the_pid(
    inventory: Path, runtime: tuple[Path, Path], tmp_path: Path
) -> None:
    key_name = account_lock_name("acme-public", "http://127.0.0.1:9")
    other = tmp_path / "other.toml"
    proc = start_holder(str(other), json.dumps({"acme-eu": key_name}))
    try:
        with pytest.raises(AccountLockedError) as info:
            acquire_account_locks(str(inventory), {"acme": key_name, "globex": account_lock_name("g", "http://h")})
        message = str(info.value)
        assert message.startswith(f"account acme is in use by another batchsync run (pid {proc.pid}, started ")
        assert f"inventory {other}" in message and "(as account acme-eu)" in message
        assert "acme-public" not in message
        assert info.value.account == "acme" and info.value.holder["pid"] == proc.pid
        # The file records the holder, and no key.
        held = runtime[0] / f"batchsync-{os.geteuid()}" / key_name
        record = json.loads(held.read_text())
        assert record["pid"] == proc.pid and record["account"] == "acme-eu"
        assert "acme-public" not in held.read_text()
    finally:
        stop(proc)
    with acquire_account_locks(str(inventory), {"acme": key_name}) as lock:
        assert len(lock.paths) == 2  # the temp dir's and the runtime dir's


def test_account_locks_are_all_or_nothing(inventory: Path, tmp_path: Path) -> None:
    names = {f"a{i}": account_lock_name(f"key-{i}", "http://h") for i in range(4)}
    order = sorted(names.values())
    last = next(n for n, f in names.items() if f == order[-1])
    proc = start_holder(str(tmp_path / "other.toml"), json.dumps({"x": order[-1]}))
    try:
        with pytest.raises(AccountLockedError) as info:
            acquire_account_locks(str(inventory), names)
        assert info.value.account == last
        # Every lock taken before the refused one was let go: in this same process a
        # second open file of a still-held lock would be refused too.
        others = {n: f for n, f in names.items() if n != last}
        with acquire_account_locks(str(inventory), others):
            pass
    finally:
        stop(proc)


def test_account_locks_are_taken_in_one_order_whatever_the_order_given(inventory: Path) -> None:
    names = {f"a{i}": account_lock_name(f"key-{i}", "http://h") for i in range(5)}
    with acquire_account_locks(str(inventory), names) as lock:
        files = [p.name for p in lock.paths]
    with acquire_account_locks(str(inventory), list(reversed(list(names.items())))) as lock:
        assert [p.name for p in lock.paths] == files
    assert files[::2] == sorted(names.values())  # per account: the temp dir's, then the runtime dir's


def test_two_names_for_one_account_take_one_lock(inventory: Path) -> None:
    same = account_lock_name("shared-key", "http://h")
    with acquire_account_locks(str(inventory), {"acme": same, "acme-copy": same}) as lock:
        assert [p.name for p in lock.paths] == [same, same]  # once per directory, not twice
