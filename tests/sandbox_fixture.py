"""Pytest fixtures for the sandbox: a small test inventory and sandboxes served over loopback.

``sandbox`` is one with default options; ``sandbox_factory(config)`` starts more, each
stopped at teardown. Credentials come from env: (acme) and file: (globex) references.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from batchsync.inventory.loader import load
from batchsync.model import Inventory
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import Sandbox, run_sandbox
from batchsync.sandbox.state import Seed

__all__ = [
    "SANDBOX_CREDENTIALS",
    "SANDBOX_ENV",
    "SandboxFactory",
    "auth_header",
    "sandbox",
    "sandbox_auth",
    "sandbox_factory",
    "sandbox_inventory",
    "sandbox_inventory_path",
    "write_sandbox_inventory",
]

# account -> (public key, secret key)
SANDBOX_CREDENTIALS: dict[str, tuple[str, str]] = {
    "acme": ("acme-public", "acme-secret"),
    "globex": ("globex-public", "globex-secret"),
}
# What the inventory's env: references need (a subprocess gets them in its env).
SANDBOX_ENV = {"SANDBOX_ACME_PUBLIC": "acme-public", "SANDBOX_ACME_SECRET": "acme-secret"}

_INVENTORY = """
[defaults]
base_url = "http://127.0.0.1:1"

[accounts.acme]
public_key = "env:SANDBOX_ACME_PUBLIC"
secret_key = "env:SANDBOX_ACME_SECRET"

[accounts.globex]
public_key = "file:globex.public"
secret_key = "file:globex.secret"
limits = { writes_per_minute = 60, write_burst = 5 }

[[status_sets.standard.statuses]]
external_id = "1"
translations = [
    { status = "Awaiting payment", language = "en-gb" },
    { status = "Wacht op betaling", language = "nl-nl" },
]

[[status_sets.standard.statuses]]
external_id = "2"
translations = [{ status = "Shipped", language = "en-gb" }, { status = "Verzonden", language = "nl-nl" }]

[[status_sets.standard.statuses]]
external_id = "3"
translations = [{ status = "Delivered", language = "en-gb" }, { status = "Geliefert", language = "de-de" }]

[[integrations]]
id = 101
account = "acme"
status_set = "standard"

[[integrations]]
id = 102
account = "acme"
status_set = "standard"

[[integrations]]
id = 103
account = "acme"
status_set = "standard"
tags = ["eu"]

[[integrations]]
id = 104
account = "acme"
statuses = [{ external_id = "A", translations = [{ status = "Annulé", language = "fr-fr" }] }]

[[integrations]]
id = 105
account = "acme"
status_set = "standard"

[[integrations]]
id = 201
account = "globex"
status_set = "standard"

[[integrations]]
id = 202
account = "globex"
status_set = "standard"
"""


def write_sandbox_inventory(directory: Path) -> Path:
    """Write the test inventory and globex's key files into ``directory``; its path.

    The acme keys are env: references: set :data:`SANDBOX_ENV` before loading it.
    """
    (directory / "globex.public").write_text("globex-public\n")
    (directory / "globex.secret").write_text("globex-secret\n")
    path = directory / "inventory.toml"
    path.write_text(_INVENTORY)
    return path


@pytest.fixture
def sandbox_inventory_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in SANDBOX_ENV.items():
        monkeypatch.setenv(name, value)
    return write_sandbox_inventory(tmp_path)


@pytest.fixture
def sandbox_inventory(sandbox_inventory_path: Path) -> Inventory:
    inv = load(sandbox_inventory_path)
    assert inv.valid, inv.problems
    return inv


def auth_header(public_key: str, secret_key: str) -> dict[str, str]:
    """HTTP Basic headers (aiohttp 3.14 deprecates ``auth=BasicAuth(...)``)."""
    return {"Authorization": aiohttp.encode_basic_auth(public_key, secret_key)}


@pytest.fixture
def sandbox_auth() -> dict[str, dict[str, str]]:
    """account name -> the headers that authenticate as it."""
    return {name: auth_header(*keys) for name, keys in SANDBOX_CREDENTIALS.items()}


SandboxFactory = Callable[..., Awaitable[Sandbox]]


@pytest_asyncio.fixture
async def sandbox_factory(sandbox_inventory: Inventory) -> AsyncIterator[SandboxFactory]:
    """``await sandbox_factory(config=None, source=<the test inventory>)``: a started sandbox."""
    async with AsyncExitStack() as stack:

        async def start(
            config: SandboxConfig | None = None, source: Inventory | Seed | None = sandbox_inventory
        ) -> Sandbox:
            return await stack.enter_async_context(run_sandbox(source, config or SandboxConfig()))

        yield start


@pytest_asyncio.fixture
async def sandbox(sandbox_factory: SandboxFactory) -> Sandbox:
    """A sandbox of the test inventory, default options (all drifted, no faults)."""
    return await sandbox_factory()
