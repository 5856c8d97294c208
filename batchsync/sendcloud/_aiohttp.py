"""aiohttp, imported without the cost of TLS set-up that an ``http://`` run never uses.

aiohttp builds two SSL contexts when it is imported, each loading the system's CA
bundle (80-150 ms on this project's machine, the largest part of the start-up of a run),
and offers no switch to defer it. So it is imported here with the CA bundle variables
pointing at nothing: those two module-level contexts come out cheap and empty, and are
never used, because :class:`batchsync.sendcloud.transport.HttpApi` gives its connector a context
of its own: the system's verified default (loaded then, with the user's environment)
when some URL of the run is ``https://``, and otherwise one that trusts no certificate
at all, so that an unexpected TLS connection fails closed. Import aiohttp through this
module (``from batchsync.sendcloud._aiohttp import aiohttp``) before anything else imports it.
"""

from __future__ import annotations

import os
import sys
import tempfile

if "aiohttp.connector" not in sys.modules:
    _saved = {name: os.environ.get(name) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    os.environ["SSL_CERT_FILE"] = os.devnull
    os.environ["SSL_CERT_DIR"] = tempfile.gettempdir() + "/.batchsync-no-ca-dir"  # need not exist
    try:
        import aiohttp.connector
    finally:
        for _name, _value in _saved.items():
            if _value is None:
                os.environ.pop(_name, None)
            else:
                os.environ[_name] = _value

import aiohttp
from aiohttp import hdrs

__all__ = ["aiohttp", "hdrs"]
