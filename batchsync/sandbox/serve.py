"""Serving the sandbox from the command line until SIGINT or SIGTERM (``batchsync sandbox``):
its state seeded from an inventory, from a seed file, or the built-in demo."""

from __future__ import annotations

import asyncio
import signal
import sys

from batchsync.exitcodes import EXIT_NOT_STARTED, EXIT_OK, EXIT_OUTPUT_LOST
from batchsync.gcpolicy import paused
from batchsync.inventory.loader import load
from batchsync.model import Inventory
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import run_sandbox
from batchsync.sandbox.state import Seed, Store, load_seed


def serve(
    config: SandboxConfig, host: str, port: int, *, inventory: str | None = None, seed_file: str | None = None
) -> int:
    """Serve until SIGINT or SIGTERM; 0 then, 2 when it cannot start."""
    return asyncio.run(serve_async(config, host, port, inventory=inventory, seed_file=seed_file))


async def serve_async(
    config: SandboxConfig, host: str, port: int, *, inventory: str | None = None, seed_file: str | None = None
) -> int:
    source: Inventory | Seed | None = None
    if inventory:
        with paused():
            source = load(inventory)
        if source.problems:
            for p in source.problems:
                print(p.line(), file=sys.stderr)
            return EXIT_NOT_STARTED
    try:
        if seed_file:
            source = load_seed(seed_file)
            Store(source)  # a seed that contradicts itself fails here, before listening
    except ValueError as exc:
        print(f"batchsync sandbox: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    stop = asyncio.Event()
    lost: OSError | None = None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_sandbox(source, config, host, port) as box:
            n = len(box.store.integrations)
            try:
                print(f"batchsync sandbox: listening on {box.url} ({n} integrations)", flush=True)
            except OSError as exc:  # stdout lost (a full disk): said, and it serves on; exit 5
                lost = exc
                print(f"batchsync sandbox: stdout was not written: {exc.strerror or exc}", file=sys.stderr)
            if source is None:
                print("batchsync sandbox: demo state: account 'demo', demo-public-key:demo-secret-key", file=sys.stderr)
            await stop.wait()
    except OSError as exc:  # the port is taken, the host does not resolve
        print(f"batchsync sandbox: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    except ValueError as exc:  # an option that names what the seed does not have
        print(f"batchsync sandbox: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK if lost is None else EXIT_OUTPUT_LOST
