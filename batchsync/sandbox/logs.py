"""The sandbox's integration exception logs: ``GET /integrations/logs`` and
``GET /integrations/{id}/logs``, as Sendcloud's v3 documentation describes them.

Seeded per integration (``SandboxConfig.exception_logs``: integration id -> how many):
record ``k`` of an integration (0 the newest) was made ``(k + 1) * log_interval`` seconds
before the sandbox started; response codes and exception types cycle through a short list.
Every record carries what a real one does and a client must never show: a shop token in
the request's and response's headers and bodies and in its URL's query string, and the
URL (query included) inside the exception text, as ``requests`` writes it. ``GET
/_sandbox/logs`` lists every record whole, for tests to grep outputs for those tokens.

Listed newest first (then by id), ``{"data": [...]}``, the next page's URL in a ``Link``
header (an opaque ``cursor``), ``page_size`` up to ``logs_page_size``. ``endless_logs``:
every page is full of new records and links to another (a list that never ends).
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.state import Store

_ENCODER = msgspec.json.Encoder()
_JSON = {"Content-Type": "application/json"}

# (response code, exception type, exception text before the URL)
_KINDS: tuple[tuple[int | None, str, str], ...] = (
    (401, "requests.exceptions.HTTPError", "401 Client Error: Unauthorized for url:"),
    (404, "requests.exceptions.HTTPError", "404 Client Error: Not Found for url:"),
    (None, "requests.exceptions.SSLError", "SSL error: certificate verify failed for url:"),
    (500, "requests.exceptions.HTTPError", "500 Server Error: Internal Server Error for url:"),
)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o={offset}".encode()).decode("ascii")


def _offset(raw: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(raw.encode("ascii")).decode("ascii")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    key, _, value = text.partition("=")
    return int(value) if key == "o" and value.isascii() and value.isdigit() else None


def _record(ident: int, iid: int, account: str, kind: int, at: datetime, token: str) -> dict[str, Any]:
    code, exc_type, text = _KINDS[kind % len(_KINDS)]
    url = f"https://shop-{iid}.example.com/api/order_histories?ws_key={token}&output_format=JSON"
    return {
        "id": ident,
        "integration_id": iid,
        "user_id": 1,
        "base_url": f"https://shop-{iid}.example.com",
        "full_url": url,
        "method": "POST",
        "response_code": code,
        "response": {
            "headers": {"Content-Type": "text/html", "Set-Cookie": f"PrestaShop-session={token}"},
            "body": f"<html><body>Invalid key {token}</body></html>",
        },
        "request": {
            "headers": {"Authorization": f"Basic {token}", "X-Shop-Token": token},
            "payload": {"order_history": {"id_order": 17, "ws_key": token}},
        },
        "created_at": at.isoformat(),
        "exception_type": exc_type,
        "exception": f"{text} {url}",
        "protected": False,
    }


class ExceptionLogs:
    """Every seeded record, per account newest first; the two list handlers."""

    def __init__(self, store: Store, config: SandboxConfig, now: float | None = None) -> None:
        self.store = store
        self.config = config
        rng = random.Random(config.seed)
        started = datetime.fromtimestamp(time.time() if now is None else now, UTC).replace(microsecond=0)
        self.started = started
        self.by_account: dict[str, list[dict[str, Any]]] = {name: [] for name in store.accounts}
        self.tokens: dict[int, str] = {}
        ident = 0
        for iid, count in sorted(config.exception_logs):
            state = store.integrations.get(iid)
            if state is None:
                raise ValueError(f"exception logs for integration {iid}, which the sandbox does not have")
            token = self.tokens[iid] = f"shoptok{iid}x{rng.getrandbits(64):016x}"
            for k in range(count):
                ident += 1
                at = started - timedelta(seconds=(k + 1) * config.log_interval)
                self.by_account[state.account].append(_record(ident, iid, state.account, k, at, token))
        self._next_id = ident
        for records in self.by_account.values():
            records.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)

    def _page(self, request: web.Request, records: list[dict[str, Any]]) -> web.Response:
        query = request.query
        largest = self.config.logs_page_size
        raw_size = query.get("page_size", "")
        size = min(int(raw_size), largest) if raw_size.isascii() and raw_size.isdigit() and int(raw_size) else largest
        raw = query.get("cursor")
        start = 0
        if raw is not None:
            found = _offset(raw)
            if found is None:
                body = {
                    "errors": [
                        {"status": "400", "code": "invalid", "title": "Invalid cursor", "detail": "Invalid cursor"}
                    ]
                }
                return web.Response(status=400, body=_ENCODER.encode(body), headers=_JSON)
            start = found
        if self.config.endless_logs:
            page = []
            for _ in range(size):
                self._next_id += 1
                iid = records[0]["integration_id"] if records else 1
                page.append(_record(self._next_id, iid, "", self._next_id, datetime.now(UTC), "endless"))
            following = f'<{request.url.update_query(cursor=_cursor(start + size))}>; rel="next"'
            return web.Response(body=_ENCODER.encode({"data": page}), headers={**_JSON, "Link": following})
        page = records[start : start + size]
        headers = dict(_JSON)
        if start + size < len(records):
            headers["Link"] = f'<{request.url.update_query(cursor=_cursor(start + size))}>; rel="next"'
        return web.Response(body=_ENCODER.encode({"data": page}), headers=headers)

    async def list_all(self, request: web.Request, account: str) -> web.Response:
        """``GET /integrations/logs``: the account's records."""
        return self._page(request, self.by_account.get(account, []))

    async def list_one(self, request: web.Request, account: str) -> web.Response:
        """``GET /integrations/{id}/logs``: one integration's records, 404 when not the account's."""
        raw = request.match_info["id"]
        state = self.store.integrations.get(int(raw)) if raw.isascii() and raw.isdigit() else None
        if state is None or state.account != account:
            body = {
                "error": {
                    "code": 404,
                    "request": request.path.lstrip("/"),
                    "message": "No Integration matches the given query.",
                }
            }
            return web.Response(status=404, body=_ENCODER.encode(body), headers=_JSON)
        records = [r for r in self.by_account.get(account, []) if r["integration_id"] == state.id]
        return self._page(request, records)

    async def everything(self, request: web.Request) -> web.Response:
        """``GET /_sandbox/logs``: every record whole (tests grep outputs for its tokens)."""
        return web.Response(body=_ENCODER.encode(self.by_account), headers=_JSON)
