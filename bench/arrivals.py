"""A sandbox that notes when requests arrive, for the start-up benchmark (test-only, not batchsync's).

``python -m bench.arrivals --port 0 --inventory FILE [--in-sync F]`` serves the ordinary
sandbox, plus ``POST /_bench/reset`` (forget what arrived) and ``GET /_bench/arrivals``
(``{"first": <time.monotonic() of the first request since the reset, or null>, "count": n}``).
``time.monotonic`` is CLOCK_MONOTONIC, one clock for every process on the machine, so the
benchmark compares it with the moment it spawned the client.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from batchsync.inventory.loader import load
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import Sandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(inventory: str, port: int, in_sync: float) -> None:
    arrivals: list[float] = []

    @web.middleware
    async def note(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Stamped before anything else runs for the request: the moment it reached the server.
        stamp = time.monotonic()
        if not request.path.startswith(("/_bench/", "/_sandbox/")):
            arrivals.append(stamp)
        return await handler(request)

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.json_response({"count": 0})

    async def report(request: web.Request) -> web.Response:
        return web.json_response({"first": min(arrivals, default=None), "count": len(arrivals)})

    source = load(inventory)
    if source.problems:
        raise SystemExit(f"{inventory}: {len(source.problems)} problem(s)")
    box = Sandbox(source, SandboxConfig(in_sync=in_sync))
    # The app is not frozen until its runner is set up: the note goes first, before the sandbox's own.
    box.app.middlewares.append(note)
    box.app.router.add_post("/_bench/reset", reset)
    box.app.router.add_get("/_bench/arrivals", report)
    runner = web.AppRunner(box.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        print(f"bench.arrivals: listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await stop.wait()
    finally:
        box.close()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.arrivals")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--in-sync", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(serve(args.inventory, args.port, args.in_sync))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
