"""Credential references (``env:NAME``, ``file:PATH``) and a Secret that never prints itself.

The inventory never holds a secret, only where to find one; :func:`resolve` fetches it.
Error messages name the reference, never the value.
"""

from __future__ import annotations

import base64
import errno
import os
from pathlib import Path

from batchsync.files import SECRET_FILE_LIMIT, FileProblem, read_regular, user_path


class SecretError(Exception):
    """A reference that is malformed or cannot be resolved; the message is safe to print."""


class Secret:
    """A credential value. ``str()``/``repr()`` show ``'***'``; ``reveal()`` is explicit."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source or '***'!s})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:  # pickling would write the value somewhere
        raise TypeError("a Secret cannot be pickled")


def check_reference(ref: str) -> str | None:
    """Why ``ref`` is not a valid reference, or None. Never quotes the value."""
    if ref.startswith("env:"):
        name = ref[4:]
        if not name:
            return "env: needs a variable name, as env:SENDCLOUD_SECRET"
        if name != name.strip() or any(c.isspace() or c in "=\0" for c in name):
            return "env: needs a variable name without spaces or '=', as env:SENDCLOUD_SECRET"
        return None
    if ref.startswith("file:"):
        return None if ref[5:] else "file: needs a path, as file:secrets/acme.key"
    message = (
        "a literal secret is not allowed in an inventory; put it in an environment "
        "variable or a file and reference it as env:NAME or file:PATH"
    )
    if ref[:4].lower() == "env:" or ref[:5].lower() == "file:":
        message += " (in lower case)"
    return message


def resolve(ref: str, base_dir: Path, environ: dict[str, str] | None = None, confine: Path | None = None) -> Secret:
    """Fetch the value ``ref`` points at. Raises SecretError with a printable reason.

    With ``confine``, a ``file:`` reference must stay inside that folder once ``..`` and
    symlinks are resolved: an inventory from elsewhere must not be able to send any
    readable file (``file:../../etc/hostname``) as a credential. The file is not opened
    otherwise.
    """
    why = check_reference(ref)
    if why is not None:
        raise SecretError(why)
    env = os.environ if environ is None else environ
    if ref.startswith("env:"):
        name = ref[4:]
        value = env.get(name)
        if value is None:
            raise SecretError(f"environment variable {name} is not set")
        if not value.strip():
            raise SecretError(f"environment variable {name} is empty")
        return Secret(value.strip(), ref)
    path = user_path(ref[5:], base_dir)
    if confine is not None:
        try:
            inside = path.resolve().is_relative_to(confine.resolve())
        except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
            if isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
                raise SecretError(f"secret file {path} is a loop of symbolic links: it leads to no file") from None
            inside = False
        except ValueError:  # a NUL byte
            inside = False
        if not inside:
            raise SecretError(
                f"secret file {path} is outside the inventory's folder: set allow_secret_files_outside = true "
                "at the top of the inventory if it is meant to be read"
            )
    try:
        data = read_regular(path, SECRET_FILE_LIMIT)
    except FileProblem as exc:
        raise SecretError(f"secret file {path} {exc.message.replace('file does not', 'does not')}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # No line, column or byte: nothing of a secret is ever shown.
        raise SecretError(f"secret file {path} is not UTF-8 text: save it as UTF-8") from None
    value = text.strip()
    if not value:
        raise SecretError(f"secret file {path} is empty")
    if "\n" in value:
        raise SecretError(f"secret file {path} has more than one line: it should hold the key alone")
    return Secret(value, ref)


def basic_auth(user: Secret, password: Secret) -> Secret:
    """The ``Authorization`` header value for HTTP Basic, itself a Secret."""
    raw = f"{user.reveal()}:{password.reveal()}".encode()
    return Secret("Basic " + base64.b64encode(raw).decode("ascii"), "basic-auth")
