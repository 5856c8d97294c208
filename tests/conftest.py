"""Shared fixtures: the aioresponses shim and the in-process sandbox server."""

from __future__ import annotations

import _aioresponses_shim  # noqa: F401  (patches aioresponses for aiohttp 3.14; see the module)
from cli_helpers import sandbox_proc  # noqa: F401 - a fixture
from sandbox_fixture import *  # noqa: F403
