"""The rules every URL option and inventory URL obeys: what can be sent to, what is shown of
it, and which hosts are this machine (where plain ``http://`` carries no credential across
a network).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from batchsync.text import escape_controls

BASE_URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"


# A URL made of these characters only means the same to urllib and to yarl (what aiohttp
# sends to): anything else is parsed by yarl too before it is used.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")


_USERINFO = re.compile(r"(//)[^/?#]*@")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def shown_url(url: str) -> str:
    """``url`` fit for a message: a user name or password in it (``user:secret@``) as ``***@``,
    control characters escaped."""
    return escape_controls(_USERINFO.sub(r"\1***@", url, count=1))


def url_problem(url: str, *, api: bool = True, userinfo: bool = False) -> str | None:
    """Why ``url`` cannot be used, or None: an http(s) URL with a host, a port in range,
    no user name or password in it (unless ``userinfo``: a webhook URL, a credential as a
    whole), that aiohttp can send to. ``api``: a base URL that paths are appended to
    (``/shop-order-statuses``), so no query and no fragment either."""
    if not re.match(BASE_URL_PATTERN, url):
        return "expected an http:// or https:// URL"
    if _CONTROL.search(url):
        return "holds a control character"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number, or out of range
    except ValueError as exc:
        return f"not a usable URL ({escape_controls(str(exc))})"
    if not parts.hostname:
        return "not a usable URL (no host)"
    if not userinfo and (parts.username is not None or parts.password is not None):
        return (
            "holds a user name or password (user:password@): credentials are not put in a URL; "
            "they belong in the inventory's accounts, as env: or file: references"
        )
    if port == 0:
        return "not a usable URL (port 0)"
    if api and ("?" in url or "#" in url):
        return "has a query or a fragment: a base URL is one that /shop-order-statuses is appended to"
    host: str | None = parts.hostname
    try:
        # An ASCII label "xn--..." is punycode, which yarl decodes (``URL.host``) where the
        # client compares origins: one that does not decode is refused here, not there.
        if not _PLAIN_URL.fullmatch(url) or "xn--" in (host or "").lower():
            from yarl import URL  # only for an unusual URL: validate does not pay for it otherwise

            parsed = URL(url)
            host = parsed.raw_host
            if not host or not parsed.host:
                return "not a usable URL (no host)"
            str(URL(url.rstrip("/") + "/integrations").with_query({"page_size": "100"}))
        if host and ":" not in host:  # a name (an IPv6 address has colons): as the resolver will encode it
            _idna_checked(host)
    except (ValueError, TypeError) as exc:  # UnicodeError (IDNA: an empty label, one too long) is a ValueError
        return f"not a usable URL ({escape_controls(str(exc))[:200]})"
    return None


def _idna_checked(host: str) -> None:
    """``host.encode("idna")``'s check (UnicodeError, a ValueError): for an ASCII name, the
    codec's own test of its labels' lengths, without importing the codec (with stringprep and
    unicodedata: 1 ms of every run's start-up, for an address like 127.0.0.1)."""
    if not host.isascii():
        host.encode("idna")
        return
    *labels, last = host.split(".")
    why = "label empty or too long" if any(not 0 < len(label) < 64 for label in labels) else None
    why = why or ("label too long" if len(last) >= 64 else None)
    if why is not None:  # worded as the codec's error reads
        raise UnicodeError(f"encoding with 'idna' codec failed (UnicodeError: {why})")


def insecure_http(url: str) -> bool:
    """True for an ``http://`` URL to a host that is not loopback: whatever is sent there
    (credentials first) crosses the network unencrypted. ``localhost`` and loopback
    addresses (127.0.0.0/8, ::1) are fine: that is the sandbox."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return url.lower().startswith("http:")
    if parts.scheme.lower() != "http":
        return False
    if not host:
        return True
    if host.rstrip(".") == "localhost":
        return False
    import ipaddress  # only http:// URLs pay for it

    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in LOOPBACK_HOSTS or host.endswith(".localhost"):
        return True
    import ipaddress  # only a URL that is not plainly this machine pays for it

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def in_clear(account: str, url: str) -> str | None:
    """Why ``account``'s credentials must not be sent to ``url`` (plain ``http://`` to a host
    that is not this machine: they would cross the network in clear), or None."""
    if urlsplit(url).scheme.lower() == "http" and not is_loopback(url):
        return (
            f"account {account}: {url} is plain http:// to a host that is not this machine: its credentials "
            "would cross the network in clear; use https://, or pass --allow-insecure-http"
        )
    return None


# What starts a libpq keyword/value connection string ("host=db user=batch password=..."):
# no file is named like that.
_KEYWORD_DSN = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|service|options)\s*=", re.IGNORECASE
)


def sqlite_path(url: str) -> str | None:
    """The file a usable history URL names when it is SQLite (``sqlite:///PATH``, unquoted,
    or a plain path); None for a PostgreSQL URL. Check it with :func:`history_url_problem` first."""
    text = url.strip()
    low = text.lower()
    if low.startswith("sqlite:"):
        return unquote(text[len("sqlite:///") :])
    if low.startswith(("postgresql://", "postgres://")):
        return None
    return text


def history_url_problem(url: str) -> str | None:
    """Why ``url`` names no run history batchsync can use (never quoting it: a DSN is a
    credential), or None: ``sqlite:///PATH``, a plain path, ``postgresql://`` or
    ``postgres://``. The inventory's ``[history] url`` is checked with it at validate; the
    history package reads the same rule when it connects."""
    text = url.strip()
    if not text:
        return "an empty history URL"
    low = text.lower()
    if low.startswith("sqlite:"):
        if not low.startswith("sqlite:///"):
            return "a SQLite history URL is sqlite:///PATH (three slashes, then the path)"
        if not text[len("sqlite:///") :]:
            return "sqlite:/// needs a path, as sqlite:////var/lib/batchsync/history.sqlite3 (absolute: four slashes)"
        return None
    if low.startswith(("postgresql://", "postgres://")):
        return None
    if _KEYWORD_DSN.search(text):  # taken for a file name (or a scheme), its password would be quoted
        return (
            "a libpq keyword string (host=... dbname=...) is not a history URL: write it as "
            "postgresql://USER@HOST:PORT/DB, the password in PGPASSWORD or ~/.pgpass"
        )
    if "://" not in text:
        return None
    scheme = text.split("://", 1)[0]
    if not scheme.isalnum():  # no scheme at all: quoted, it could be part of a credential
        return "a history URL is sqlite:///PATH, a path, or postgresql://USER@HOST:PORT/DB"
    return f"unknown history URL scheme {scheme[:20]!r}: expected sqlite:///PATH or postgresql://"
