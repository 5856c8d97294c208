"""Make aioresponses 0.7.9 work with aiohttp >= 3.14. Applied on import (tests/conftest.py).

aiohttp 3.14 added a required keyword-only ``stream_writer`` argument to
``ClientResponse.__init__``; aioresponses 0.7.9 builds its fake responses without it and
every mocked request fails with ``TypeError: ... missing 1 required keyword-only
argument: 'stream_writer'`` (pnuckowski/aioresponses#289; the fix, PR #288, is not
released yet).

The shim wraps ``RequestMatch._build_response`` so that the response class it builds
(``ClientResponse`` or a user's ``response_class``) is a cached subclass that supplies a
finished, empty stream writer when none is given. aioresponses passes ``writer=None``
("request already sent"), for which aiohttp only reads ``stream_writer.output_size``.

Drop this module (and its import in conftest.py) once an aioresponses release includes
the fix: the shim does nothing when ``ClientResponse`` no longer requires the argument,
or when aioresponses already passes it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import aiohttp
from aioresponses.core import RequestMatch

__all__ = ["APPLIED"]


class _SentStreamWriter:
    """Stands for the writer of a request that was already sent: nothing more to write."""

    output_size = 0
    buffer_size = 0


def _needs_shim() -> bool:
    params = inspect.signature(aiohttp.ClientResponse.__init__).parameters
    param = params.get("stream_writer")
    if param is None or param.default is not inspect.Parameter.empty:
        return False
    # A fixed aioresponses release mentions the argument in its builder.
    source = inspect.getsource(RequestMatch._build_response)
    return "stream_writer" not in source


@functools.cache
def _compatible(response_class: type[aiohttp.ClientResponse]) -> type[aiohttp.ClientResponse]:
    def __init__(self: aiohttp.ClientResponse, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentStreamWriter())
        response_class.__init__(self, *args, **kwargs)

    # Same name and module, so reprs and error messages read as usual.
    return type(
        response_class.__name__,
        (response_class,),
        {
            "__init__": __init__,
            "__module__": response_class.__module__,
            "__qualname__": response_class.__qualname__,
        },
    )


def _apply() -> bool:
    if getattr(RequestMatch._build_response, "_stream_writer_shim", False):
        return True  # imported twice (e.g. under two names)
    if not _needs_shim():
        return False
    original = RequestMatch._build_response

    @functools.wraps(original)
    def _build_response(self: RequestMatch, *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        cls = kwargs.get("response_class") or aiohttp.ClientResponse
        kwargs["response_class"] = _compatible(cls)
        return original(self, *args, **kwargs)

    _build_response._stream_writer_shim = True  # type: ignore[attr-defined]
    RequestMatch._build_response = _build_response  # type: ignore[method-assign]
    return True


APPLIED: bool = _apply()
"""True when the patch is in place (aiohttp needs ``stream_writer``, aioresponses lacks it)."""
