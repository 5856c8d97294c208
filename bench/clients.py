"""Reference clients for the cost-per-integration benchmark, each run as its own process.

``python -m bench.clients KIND INVENTORY URL --concurrency N [--limit M] [--read-mapping] [--list]``
GETs then POSTs every integration (pre-encoded bodies, the same Authorization header
batchsync sends) and prints ``{"n": ..., "loop_s": ...}``: the time of the loop alone, after
loading and encoding.

KIND: ``aiohttp`` (bare loop, the floor), ``httpx`` (AsyncClient), ``requests`` (sequential).
The bare aiohttp loop decodes every answer it reads (``msgspec.json.decode``, untyped: the
least a client that looks at the answer does), and with ``--read-mapping`` reads each
integration's mapping between the GET and the POST, as batchsync does when its write
deletes a status; with ``--list`` it first reads each account's integration list to its end
(``GET /integrations``, 100 a page, following the ``Link`` header's next page), as
batchsync's pre-flight does: then it makes the same requests as ``batchsync apply``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from batchsync.inventory.loader import load
from batchsync.secrets import basic_auth

Work = list[tuple[str, bytes, dict[str, str]]]  # (integration id, POST body, headers)
PAGE_SIZE = "100"  # integrations per page of the list, as batchsync's pre-flight asks


def prepare(inventory: str, limit: int | None) -> Work:
    inv = load(inventory)
    if inv.problems:
        raise SystemExit(f"{inventory}: {len(inv.problems)} problems")
    headers: dict[str, dict[str, str]] = {}
    for name, acc in inv.accounts.items():
        auth = basic_auth(*acc.secrets()).reveal()
        headers[name] = {"Authorization": auth, "Accept": "application/json", "Content-Type": "application/json"}
    jobs = inv.jobs[:limit] if limit else inv.jobs
    return [(str(j.integration_id), j.desired.body(j.integration_id), headers[j.account]) for j in jobs]


async def run_aiohttp(
    url: str, work: Work, concurrency: int, read_mapping: bool = False, listing: bool = False
) -> None:
    import aiohttp
    import msgspec

    endpoint = f"{url}/shop-order-statuses"
    mapping = f"{endpoint}/mapping"
    decode = msgspec.json.decode
    pending: Iterator[tuple[str, bytes, dict[str, str]]] = iter(work)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def list_account(headers: dict[str, str]) -> None:
            page: Any = f"{url}/integrations"
            params: dict[str, str] | None = {"page_size": PAGE_SIZE}
            while page is not None:
                async with session.get(page, params=params, headers=headers) as resp:
                    decode(await resp.read())
                    resp.raise_for_status()
                    following = resp.links.get("next")
                page, params = (following["url"] if following else None), None

        if listing:  # each account once (its jobs share one headers dict), all at once
            accounts = {id(h): h for _, _, h in work}
            await asyncio.gather(*(list_account(h) for h in accounts.values()))

        async def worker() -> None:
            for iid, body, headers in pending:
                async with session.get(endpoint, params={"integration_id": iid}, headers=headers) as resp:
                    decode(await resp.read())
                    resp.raise_for_status()
                if read_mapping:
                    async with session.get(mapping, params={"integration_id": iid}, headers=headers) as resp:
                        decode(await resp.read())
                        resp.raise_for_status()
                async with session.post(endpoint, data=body, headers=headers) as resp:
                    decode(await resp.read())
                    resp.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_httpx(url: str, work: Work, concurrency: int) -> None:
    import httpx

    endpoint = f"{url}/shop-order-statuses"
    pending = iter(work)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def worker() -> None:
            for iid, body, headers in pending:
                r = await client.get(endpoint, params={"integration_id": iid}, headers=headers)
                r.raise_for_status()
                r = await client.post(endpoint, content=body, headers=headers)
                r.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def run_requests(url: str, work: Work) -> None:
    import requests

    endpoint = f"{url}/shop-order-statuses"
    with requests.Session() as session:
        for iid, body, headers in work:
            r = session.get(endpoint, params={"integration_id": iid}, headers=headers, timeout=60)
            r.raise_for_status()
            r = session.post(endpoint, data=body, headers=headers, timeout=60)
            r.raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients")
    parser.add_argument("kind", choices=("aiohttp", "httpx", "requests"))
    parser.add_argument("inventory")
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--limit", type=int, help="only the first M integrations")
    parser.add_argument("--read-mapping", action="store_true", help="GET each mapping before the POST (aiohttp)")
    parser.add_argument("--list", action="store_true", help="read each account's integration list first (aiohttp)")
    args = parser.parse_args()
    work = prepare(args.inventory, args.limit)
    start = time.perf_counter()
    if args.kind == "aiohttp":
        asyncio.run(run_aiohttp(args.url, work, args.concurrency, args.read_mapping, args.list))
    elif args.kind == "httpx":
        asyncio.run(run_httpx(args.url, work, args.concurrency))
    else:
        run_requests(args.url, work)
    loop_s = time.perf_counter() - start
    sys.stdout.write(json.dumps({"n": len(work), "loop_s": loop_s}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
