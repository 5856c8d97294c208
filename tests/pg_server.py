"""A throwaway PostgreSQL for the run history's tests, as pytest-postgresql starts one: the
installed ``initdb`` and ``pg_ctl`` in a temp dir, on a Unix socket only (no TCP port to
collide over), one server per xdist worker (session scope) and a database per test.

``initdb`` refuses to run as root, and CI runs as root: there the server runs as the
unprivileged ``nobody`` (``setpriv``), in a temp dir it owns. Where PostgreSQL or psycopg is
missing the tests are skipped with a reason naming what is missing (``.ci/run`` installs
Debian's ``postgresql`` package, so CI always runs them).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binaries() -> tuple[str, str] | str:
    """(initdb, pg_ctl), or why they are not found."""
    for folder in [*sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True), ""]:
        initdb = os.path.join(folder, "initdb") if folder else shutil.which("initdb")
        pg_ctl = os.path.join(folder, "pg_ctl") if folder else shutil.which("pg_ctl")
        if initdb and pg_ctl and os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return "PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install postgresql)"


def _as_server_user() -> list[str]:
    """The prefix that runs a command as the server's user: nobody when we are root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is not installed: initdb refuses to run as root")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class Server:
    def __init__(self, socket_dir: str) -> None:
        self.socket_dir = socket_dir

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&user=postgres"

    def create_database(self) -> str:
        import psycopg

        name = "h_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    found = _binaries()
    if isinstance(found, str):
        pytest.skip(found)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'batchsync[postgresql]')")
    initdb, pg_ctl = found
    prefix = _as_server_user()
    # Under /tmp, not pytest's temp folder: nobody must reach it, and a socket path is short.
    base = tempfile.mkdtemp(prefix="bspg-", dir="/tmp" if os.path.isdir("/tmp") else None)
    os.chmod(base, 0o755)
    if prefix:
        os.chown(base, 65534, 65534)
    data, log = os.path.join(base, "data"), os.path.join(base, "log")
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run([*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"], **run)  # type: ignore[call-overload]
        options = f"-k {base} -c listen_addresses='' -F -c max_connections=60"
        subprocess.run([*prefix, pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as exc:
        text = Path(log).read_text() if os.path.exists(log) else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{text}") from None
    try:
        yield Server(base)
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: Server) -> str:
    """A new, empty database of the session's server."""
    return postgres_server.create_database()
