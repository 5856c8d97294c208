"""Where the run history is: the default SQLite file, or the store a ``--history URL`` (or
the inventory's ``[history] url``) names, and how such a place is named in messages.

A PostgreSQL URL is a credential (it carries a password, or reaches a server that trusts
its sender): it is never shown. A message names the store by :attr:`Location.name`, which
holds no user and no password, and the redactor learns :attr:`Location.secrets`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from batchsync.text import escape_controls
from batchsync.urls import history_url_problem, sqlite_path

DEFAULT_NAME = "history.sqlite3"


class LocationError(ValueError):
    """A history URL batchsync cannot use; the message never quotes the URL."""


class Location(msgspec.Struct, frozen=True):
    """A store: ``kind`` sqlite (``target`` a path) or postgresql (``target`` the DSN)."""

    kind: str  # "sqlite" or "postgresql"
    target: str
    name: str  # what messages call it: the path, or postgresql://HOST/DB (no user, no password)
    secrets: tuple[str, ...] = ()  # what the redactor must mask: the DSN and its password
    implicit: bool = False  # the default file, which no flag or inventory asked for


def default_path(environ: os._Environ[str] | dict[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/batchsync/history.sqlite3``; ``~/.local/state/...`` when unset
    (or not absolute, as the XDG base directory specification says)."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return str(base / "batchsync" / DEFAULT_NAME)


def default() -> Location:
    try:
        path = default_path()
    except RuntimeError:  # no XDG_STATE_HOME, no HOME, and a user without a passwd entry
        # A file that cannot be made: the run says so and goes on without a history.
        return Location("sqlite", "", "the default history file (no home directory)", implicit=True)
    return Location("sqlite", path, escape_controls(path), implicit=True)


def parse(url: str) -> Location:
    """``sqlite:///PATH`` (``sqlite:////abs`` or ``sqlite:///relative``), a plain path, or
    ``postgresql://...`` / ``postgres://...`` (a libpq URL). LocationError otherwise."""
    why = history_url_problem(url)
    if why is not None:
        raise LocationError(why)
    path = sqlite_path(url)
    # Its name as messages show it: a control character in a path acts on no terminal.
    return _postgresql(url.strip()) if path is None else Location("sqlite", path, escape_controls(path))


def _postgresql(dsn: str) -> Location:
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        port = parts.port
        password = unquote(parts.password) if parts.password else ""
        in_query = parse_qs(parts.query).get("password", [])
    except ValueError:
        raise LocationError("a PostgreSQL history URL that cannot be read (postgresql://USER@HOST:PORT/DB)") from None
    database = unquote(parts.path.lstrip("/"))
    where = host or "local socket"
    name = f"postgresql://{where}{f':{port}' if port else ''}/{database}"
    secrets = tuple(s for s in (dsn, password, *in_query) if s)
    return Location("postgresql", dsn, name, secrets)
