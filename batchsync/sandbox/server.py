"""The sandbox HTTP server: Sendcloud's shop-order-status and integration endpoints, limits, faults, token endpoint.

Every API request goes through the same gauntlet, in this order: authentication (401),
the account's rate limit (429), fault injection, then the endpoint itself. The handlers
stay lean (msgspec in and out, cached GET answers, no access log) so a benchmark can
push thousands of requests per second through it. ``POST /oauth2/token`` stands beside
the API, outside its rate limits, as Sendcloud's token endpoint lives on another host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import time
import urllib.parse
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from batchsync.model import PRESTASHOP_V2, Inventory
from batchsync.sandbox.config import FAULT_KINDS, FaultKind, SandboxConfig
from batchsync.sandbox.limits import AccountGates, Clock, Gate
from batchsync.sandbox.logs import ExceptionLogs
from batchsync.sandbox.oauth2 import Tokens, check_form, oauth_error, token_answer
from batchsync.sandbox.state import IntegrationState, Seed, Store, demo_seed, fleet_of
from batchsync.wire import (
    LANGUAGES,
    ErrorBody,
    ErrorObject,
    ErrorSource,
    PostMapping,
    PostShopOrderStatuses,
    Problem,
    check_mapping,
    check_statuses,
    error_code,
    split_validation_error,
    to_pointer,
)

THROTTLED_CODE = "forbidden"
"""The JSON:API ``code`` of a 429.

The spec's enum has no ``throttled``; ``forbidden`` (the server refuses to serve this
request now) is the closest, and unlike ``invalid`` it does not blame the request body.
Clients must branch on the HTTP status, never on this code.
"""


Body = TypeVar("Body", PostShopOrderStatuses, PostMapping)
_JSON = {"Content-Type": "application/json"}
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_NULL = b"null"
_ENCODER = msgspec.json.Encoder()
_POST_STATUSES = msgspec.json.Decoder(PostShopOrderStatuses)
_POST_MAPPING = msgspec.json.Decoder(PostMapping)
_TITLES = {
    "required": "Missing field",
    "unknown_field": "Unknown field",
    "invalid_choice": "Invalid choice",
    "not_a_list": "Not a list",
    "null": "Null value",
    "min_value": "Value too small",
    "invalid": "Invalid value",
}
_ERROR_500 = (
    b"<!doctype html>\n<html><head><title>Server Error (500)</title></head>"
    b"<body><h1>Server Error (500)</h1></body></html>\n"
)
_ERROR_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_GARBAGE = b'{"data": [{"external_id": "1", "stat'
_FORM = "application/x-www-form-urlencoded"

Handler = Callable[[web.Request, str], Awaitable[web.Response]]


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers=_JSON)


def _errors(status: int, errors: list[ErrorObject], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_ENCODER.encode(ErrorBody(tuple(errors))),
        status=status,
        headers={**_JSON, **headers} if headers else _JSON,
    )


def _error(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    pointer: str | None = None,
    parameter: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    source = ErrorSource(pointer=pointer, parameter=parameter) if pointer or parameter else None
    return _errors(status, [ErrorObject(str(status), code, detail, title, source)], headers)


def _basic_pairs(header: str) -> list[tuple[str, str]]:
    """The (user, password) an HTTP Basic header may mean: UTF-8, else latin-1 (RFC 7617 allows both)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return []
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return []
    out = []
    for encoding in ("utf-8", "latin-1"):
        try:
            user, sep, password = raw.decode(encoding).partition(":")
        except UnicodeDecodeError:
            continue
        if sep:
            out.append((user, password))
    return out


def encode_cursor(position: int, reverse: bool) -> str:
    """An opaque cursor as Sendcloud's (Django REST framework's) look: base64 of ``[r=1&]p=<id>``."""
    return base64.b64encode((f"r=1&p={position}" if reverse else f"p={position}").encode()).decode("ascii")


def decode_cursor(raw: str) -> tuple[int, bool] | None:
    """(position, reverse) of a cursor, or None when it is not one this server made."""
    try:
        text = base64.b64decode(raw, validate=True).decode("ascii")
        fields = urllib.parse.parse_qs(text, strict_parsing=True)
    except (binascii.Error, ValueError):
        return None
    position = fields.get("p", [""])[0]
    reverse = fields.get("r", ["0"])[0]
    if not (position.isascii() and position.isdigit()) or reverse not in ("0", "1") or set(fields) - {"p", "r"}:
        return None
    return int(position), reverse == "1"


def _wrong_format() -> web.Response:
    return _error(400, "non_field_errors", "Wrong format", "Wrong request format, expected object")


def _decode_error(exc: msgspec.ValidationError) -> web.Response:
    message, loc = split_validation_error(exc)
    if not loc and message.startswith("Expected `object`"):
        return _wrong_format()
    code = error_code(message)
    return _error(400, code, _TITLES.get(code, "Invalid value"), message, pointer=to_pointer(loc))


def _problems(problems: list[Problem]) -> web.Response:
    return _errors(
        400,
        [
            ErrorObject(
                "400",
                p.code,
                p.message,
                _TITLES.get(p.code, "Invalid value"),
                ErrorSource(pointer=to_pointer(p.loc)),
            )
            for p in problems
        ],
    )


class Sandbox:
    """One running sandbox: its state, counters and HTTP app.

    ``stats()`` and ``state`` are what ``GET /_sandbox/stats`` and ``GET /_sandbox/state``
    answer, for tests that run the server in-process.
    """

    def __init__(
        self,
        source: Inventory | Seed | None = None,
        config: SandboxConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        if isinstance(source, Inventory):  # one integration at a time: the fleet is not held twice
            config = self.config
            accounts, fleet = fleet_of(
                source, config.in_sync, config.seed, config.system_map(), config.failing_ids, config.absent_ids
            )
            self.store = Store(Seed(accounts), fleet)
        else:
            self.store = Store(demo_seed() if source is None else source)
        self.url = ""
        self._clock: Clock = clock or time.monotonic
        self._rng = random.Random(self.config.seed)
        self._closing = asyncio.Event()
        self._queued: list[FaultKind] = []
        self._token_queued: list[FaultKind] = []
        # Credentials: the exact header value aiohttp/requests/httpx send is a dict hit;
        # anything else (other casing, latin-1) takes the slow path in _authenticate.
        # An OAuth2 account's keys are not registered: the API refuses Basic for it.
        self._creds: dict[tuple[str, str], str] = {}
        self._headers: dict[str, str] = {}
        self._clients: dict[tuple[str, str], str] = {}  # (client id, secret) -> account
        self._client_ids: dict[str, str] = {}
        self._oauth2_basic: set[tuple[str, str]] = set()  # only to explain a 401
        for acc in self.store.accounts.values():
            if acc.auth == "oauth2":
                self._clients[(acc.client_id, acc.client_secret)] = acc.name
                self._client_ids[acc.client_id] = acc.name
                self._oauth2_basic.add((acc.client_id, acc.client_secret))
                if acc.public_key:
                    self._oauth2_basic.add((acc.public_key, acc.secret_key))
                continue
            self._creds.setdefault((acc.public_key, acc.secret_key), acc.name)
            token = base64.b64encode(f"{acc.public_key}:{acc.secret_key}".encode()).decode("ascii")
            self._headers.setdefault("Basic " + token, acc.name)
        self._tokens = Tokens(self._clock)
        self._bearer = self._tokens.by_header
        # Counters.
        self.requests: dict[str, dict[str, int]] = {a: {"GET": 0, "POST": 0} for a in self.store.accounts}
        self.throttled: dict[str, int] = dict.fromkeys(self.store.accounts, 0)
        self.faults: dict[str, int] = dict.fromkeys(self.store.accounts, 0)
        self.applied_posts: dict[int, int] = {}
        self.changed_posts: dict[int, int] = {}
        self.applied_mappings: dict[int, int] = {}
        self.changed_mappings: dict[int, int] = {}
        self.unauthenticated = 0
        self.expired_tokens: dict[str, int] = dict.fromkeys(self.store.accounts, 0)
        self.token_requests: dict[str, int] = dict.fromkeys(self.store.accounts, 0)
        self.tokens_issued: dict[str, int] = dict.fromkeys(self.store.accounts, 0)
        self.token_refused = 0
        self.token_faults = 0
        self._peak_base: dict[str, dict[str, int]] = {a: {"read": 0, "write": 0} for a in self.store.accounts}
        self._gates: dict[str, AccountGates] = {}
        self._apply_config(self.config)
        self.logs = ExceptionLogs(self.store, self.config)
        self.app = self._build_app()

    # -- configuration -------------------------------------------------------------

    def _apply_config(self, config: SandboxConfig) -> None:
        unknown = sorted(config.down_accounts - set(self.store.accounts))
        if unknown:
            raise ValueError(f"down accounts the sandbox does not have: {', '.join(unknown)}")
        for name, gates in self._gates.items():
            base = self._peak_base[name]
            base["read"] = max(base["read"], gates.read.peak)
            base["write"] = max(base["write"], gates.write.peak)
        self._gates = {}
        for name, acc in self.store.accounts.items():
            lim = config.limits_for(acc.limits)
            self._gates[name] = AccountGates(
                lim.writes_per_minute, lim.write_burst, lim.reads_per_minute, config.time_scale, self._clock
            )
        weights = config.fault_weights()
        self._fault_edges: list[tuple[float, FaultKind]] = []
        total = 0.0
        for kind, weight in zip(FAULT_KINDS, weights, strict=True):
            if weight > 0:
                total += weight
                self._fault_edges.append((total, kind))
        self.config = config

    def reconfigure(self, config: SandboxConfig) -> None:
        """Swap limits, faults and latency at runtime; the state and counters stay.

        Rate-limit buckets start full again. Seeding options are ignored.
        """
        self._apply_config(config)

    def queue_faults(self, *kinds: FaultKind) -> None:
        """Force the next admitted requests, in order, to fail this way (deterministic tests)."""
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}: expected one of {', '.join(FAULT_KINDS)}")
        self._queued.extend(kinds)

    def queue_token_faults(self, *kinds: FaultKind) -> None:
        """Force the next token requests, in order, to fail this way."""
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}: expected one of {', '.join(FAULT_KINDS)}")
        self._token_queued.extend(kinds)

    def close(self) -> None:
        """Wake hanging requests so that shutdown does not wait for them."""
        self._closing.set()

    # -- observation ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        peaks = {
            name: {
                "read": max(self._peak_base[name]["read"], g.read.peak),
                "write": max(self._peak_base[name]["write"], g.write.peak),
            }
            for name, g in self._gates.items()
        }
        return {
            "requests": {a: dict(c) for a, c in self.requests.items()},
            "throttled": dict(self.throttled),
            "faults": dict(self.faults),
            "peak_in_flight": peaks,
            "applied_posts": {str(i): n for i, n in self.applied_posts.items()},
            "changed_posts": {str(i): n for i, n in self.changed_posts.items()},
            "applied_mappings": {str(i): n for i, n in self.applied_mappings.items()},
            "changed_mappings": {str(i): n for i, n in self.changed_mappings.items()},
            "unauthenticated": self.unauthenticated,
            "expired_tokens": dict(self.expired_tokens),
            "token_requests": dict(self.token_requests),
            "tokens_issued": dict(self.tokens_issued),
            "token_refused": self.token_refused,
            "token_faults": self.token_faults,
        }

    @property
    def state(self) -> dict[str, list[dict[str, object]]]:
        """``{"<integration_id>": [status as GET ?show_deleted=true gives it]}``, as plain JSON data."""
        # Through JSON, so that it equals what the endpoint answers (lists, not tuples).
        return msgspec.json.decode(_ENCODER.encode(self.store.snapshot()))  # type: ignore[no-any-return]

    def statuses(self, integration_id: int, show_deleted: bool = True) -> list[dict[str, object]]:
        """One integration's statuses as plain JSON data."""
        view = self.store.integrations[integration_id].view(None, show_deleted)
        return msgspec.json.decode(_ENCODER.encode(view))  # type: ignore[no-any-return]

    def mapping(self, integration_id: int) -> dict[str, str | None]:
        """One integration's stored mapping, category -> external_id."""
        return dict(self.store.integrations[integration_id].mapping)

    # -- the gauntlet --------------------------------------------------------------

    def _authenticate(self, header: str | None) -> str | None:
        if header is None:
            return None
        name = self._headers.get(header)
        if name is not None:
            return name
        token = self._bearer.get(header)
        if token is not None:
            return token.account if self._clock() < token.expires_at else None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            token = self._bearer.get("Bearer " + value.strip())
            return token.account if token is not None and self._clock() < token.expires_at else None
        for pair in _basic_pairs(header):
            found = self._creds.get(pair)
            if found is not None:
                return found
        return None

    def _unauthenticated(self, header: str | None) -> web.Response:
        """The 401 for a request :meth:`_authenticate` refused, saying why."""
        self.unauthenticated += 1
        challenge = 'Basic realm="api"'
        if header is None:
            detail = "Authentication credentials were not provided."
        elif header.strip().partition(" ")[0].lower() == "bearer":
            token = self._bearer.get("Bearer " + header.strip().partition(" ")[2].strip())
            if token is not None:  # known and refused: expired
                self.expired_tokens[token.account] += 1
                detail = "The access token has expired."
                challenge = 'Bearer realm="api", error="invalid_token", error_description="The access token expired"'
            else:
                detail = "Invalid access token."
                challenge = 'Bearer realm="api", error="invalid_token"'
        elif any(pair in self._oauth2_basic for pair in _basic_pairs(header)):
            detail = "This account authenticates with OAuth2: Basic is refused, send a Bearer token."
        else:
            detail = "Invalid username/password."
        return _error(
            401, "authentication_failed", "Authentication failed", detail, headers={"WWW-Authenticate": challenge}
        )

    def _throttled(self, wait: int) -> web.Response:
        headers = {"Retry-After": str(wait)} if self.config.retry_after else {}
        if self.config.empty_429:
            return web.Response(status=429, headers=headers)
        return _error(
            429,
            THROTTLED_CODE,
            "Too many requests",
            f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}.",
            headers=headers,
        )

    def _draw_fault(self) -> FaultKind | None:
        if self._queued:
            return self._queued.pop(0)
        if not self._fault_edges:
            return None
        r = self._rng.random()
        for edge, kind in self._fault_edges:
            if r < edge:
                return kind
        return None

    def _guard(self, write: bool, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        method = "POST" if write else "GET"

        async def guarded(request: web.Request) -> web.Response:
            account = self._authenticate(request.headers.get("Authorization"))
            if account is None:
                return self._unauthenticated(request.headers.get("Authorization"))
            self.requests[account][method] += 1
            if account in self.config.down_accounts:
                self.faults[account] += 1
                return self._fault_response(request, "500")
            gates = self._gates[account]
            gate: Gate = gates.write if write else gates.read
            wait = gate.try_enter()
            if wait:
                self.throttled[account] += 1
                return self._throttled(wait)
            try:
                latency = self.config.latency
                if latency is not None:
                    await asyncio.sleep(self._rng.uniform(*latency))
                fault = self._draw_fault()
                if fault is not None:
                    self.faults[account] += 1
                    if fault != "hang":
                        return self._fault_response(request, fault)
                    if await self._hang():
                        return self._fault_response(request, "reset")
                    # After the hang the request is served: a client that gave up
                    # cannot know whether its POST was applied, as in real life.
                return await handler(request, account)
            finally:
                gate.leave()

        return guarded

    async def _hang(self) -> bool:
        """Wait out a hang fault; True if the sandbox is closing meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.config.hang_seconds)
        return self._closing.is_set()

    @staticmethod
    def _fault_response(request: web.Request, fault: FaultKind) -> web.Response:
        if fault == "500":
            return web.Response(body=_ERROR_500, status=500, headers=_HTML)
        if fault == "502":
            return web.Response(body=_ERROR_502, status=502, headers=_HTML)
        if fault == "503":
            return web.Response(status=503)
        if fault == "garbage_200":
            return web.Response(body=_GARBAGE, status=200, headers=_JSON)
        # reset: drop the connection without an answer; aiohttp then writes nothing.
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)

    # -- helpers of the endpoints ----------------------------------------------------

    def _owned(self, integration_id: int, account: str) -> IntegrationState | web.Response:
        """The account's integration, or the 404 to answer (another account's is not shown)."""
        state = self.store.integrations.get(integration_id)
        if state is None or state.account != account:
            return _error(404, "not_found", "Not found", f"Integration {integration_id} was not found.")
        return state

    def _prestashop(self, integration_id: int, account: str, in_query: bool = False) -> IntegrationState | web.Response:
        found = self._owned(integration_id, account)
        if isinstance(found, IntegrationState) and found.system != PRESTASHOP_V2:
            return _error(
                400,
                "invalid",
                "Unsupported integration",
                "Only the Prestashop V2 integration is supported",
                pointer=None if in_query else "/integration_id",
                parameter="integration_id" if in_query else None,
            )
        return found

    def _query_integration(self, request: web.Request, account: str) -> IntegrationState | web.Response:
        raw = request.query.get("integration_id")
        if raw is None or not raw.strip():
            return _error(
                400,
                "non_field_errors",
                "integration ID",
                "Integration ID is a required GET parameter",
                parameter="integration_id",
            )
        try:
            integration_id = int(raw)
        except ValueError:
            integration_id = 0
        if integration_id < 1:
            return _error(
                400,
                "invalid",
                "integration ID",
                "Integration ID must be a positive integer",
                parameter="integration_id",
            )
        return self._prestashop(integration_id, account, in_query=True)

    # -- endpoints -------------------------------------------------------------------

    async def get_statuses(self, request: web.Request, account: str) -> web.Response:
        found = self._query_integration(request, account)
        if not isinstance(found, IntegrationState):
            return found
        query = request.query
        language = query.get("language") or None
        if language is not None and language not in LANGUAGES:
            return _error(
                400,
                "invalid_choice",
                "Invalid choice",
                f"{language!r} is not a valid choice: expected one of {', '.join(LANGUAGES)}",
                parameter="language",
            )
        raw_deleted = query.get("show_deleted", "false").lower()
        if raw_deleted in ("true", "1"):
            show_deleted = True
        elif raw_deleted in ("false", "0", ""):
            show_deleted = False
        else:
            return _error(
                400, "invalid", "Invalid value", "show_deleted must be true or false", parameter="show_deleted"
            )
        return _json(found.encoded_view(language, show_deleted))

    async def _posted(
        self,
        request: web.Request,
        account: str,
        decoder: msgspec.json.Decoder[Body],
        check: Callable[[Body], list[Problem]],
    ) -> tuple[Body, IntegrationState] | web.Response:
        """A POST body decoded and checked, with its integration; or the error to answer."""
        try:
            body = decoder.decode(await request.read())
        except msgspec.ValidationError as exc:
            return _decode_error(exc)
        except msgspec.DecodeError:
            return _wrong_format()
        found = self._prestashop(body.integration_id, account)
        if not isinstance(found, IntegrationState):
            return found
        problems = check(body)
        if problems:
            return _problems(problems)
        return body, found

    async def post_statuses(self, request: web.Request, account: str) -> web.Response:
        posted = await self._posted(request, account, _POST_STATUSES, lambda b: check_statuses(b.statuses))
        if isinstance(posted, web.Response):
            return posted
        body, found = posted
        iid = body.integration_id
        if found.overwrite(body.statuses):
            self.changed_posts[iid] = self.changed_posts.get(iid, 0) + 1
        self.applied_posts[iid] = self.applied_posts.get(iid, 0) + 1
        return _json(_NULL)

    async def get_mapping(self, request: web.Request, account: str) -> web.Response:
        found = self._query_integration(request, account)
        if not isinstance(found, IntegrationState):
            return found
        return _json(_ENCODER.encode({"data": found.mapping_view()}))

    async def post_mapping(self, request: web.Request, account: str) -> web.Response:
        """Accepts external ids that do not exist (shown ``is_valid: false``): not documented either way."""
        posted = await self._posted(request, account, _POST_MAPPING, check_mapping)
        if isinstance(posted, web.Response):
            return posted
        body, found = posted
        iid = body.integration_id
        if found.set_mapping((m.status_category, m.external_id) for m in body.mapping):
            self.changed_mappings[iid] = self.changed_mappings.get(iid, 0) + 1
        self.applied_mappings[iid] = self.applied_mappings.get(iid, 0) + 1
        return _json(_NULL)

    def _page_size(self, raw: str | None) -> int:
        """What a client asked, clamped to ``config.page_size``; that size when it asked nothing usable."""
        largest = self.config.page_size
        if raw is None:
            return largest
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            return largest  # as Django REST framework does: an unusable size is ignored
        return min(int(raw), largest)

    async def list_integrations(self, request: web.Request, account: str) -> web.Response:
        """One page of the account's integrations in id order, as Sendcloud's v3 lists page.

        Query ``cursor`` (opaque, from a Link header) and ``page_size``; body ``{"data": [...]}``;
        the other pages' URLs in ``Link: <url>; rel="next", <url>; rel="prev"``, absent on
        the last (first) page. A cursor holds a position (an id), not an offset, so a page
        stays right when integrations come and go between requests.
        """
        query = request.query
        size = self._page_size(query.get("page_size"))
        ids = self.store.listing_ids[account]
        raw = query.get("cursor")
        if raw is None:
            start, end = 0, min(len(ids), size)
        else:
            cursor = decode_cursor(raw)
            if cursor is None:
                return _error(
                    400,
                    "invalid",
                    "Invalid cursor",
                    "Invalid cursor: pass back the URL of a Link header as it is.",
                    parameter="cursor",
                )
            position, reverse = cursor
            if reverse:
                end = bisect_left(ids, position)
                start = max(0, end - size)
            else:
                start = bisect_right(ids, position)
                end = min(len(ids), start + size)
        states = self.store.listing[account]
        body = _ENCODER.encode({"data": [s.info for s in states[start:end]]})
        links = []
        if start < end < len(ids):
            links.append(f'<{request.url.update_query(cursor=encode_cursor(ids[end - 1], False))}>; rel="next"')
        if 0 < start < end:
            links.append(f'<{request.url.update_query(cursor=encode_cursor(ids[start], True))}>; rel="prev"')
        if not links:
            return _json(body)
        return web.Response(body=body, headers={**_JSON, "Link": ", ".join(links)})

    async def get_integration(self, request: web.Request, account: str) -> web.Response:
        """The integration object itself (no envelope), or 404."""
        try:
            integration_id = int(request.match_info["id"])
        except ValueError:
            integration_id = 0
        found = self._owned(integration_id, account)
        if not isinstance(found, IntegrationState):
            return found
        return _json(_ENCODER.encode(found.info))

    # -- the token endpoint ----------------------------------------------------------

    def _draw_token_fault(self) -> FaultKind | None:
        if self._token_queued:
            return self._token_queued.pop(0)
        if not self._fault_edges:
            return None
        r = self._rng.random()
        for edge, kind in self._fault_edges:
            if r < edge:
                return kind
        return None

    async def post_token(self, request: web.Request) -> web.Response:
        """``POST /oauth2/token``, client credentials grant. Spends no API budget; suffers the same
        latency and random faults as the API (plus :meth:`queue_token_faults`)."""
        header = request.headers.get("Authorization")
        pairs = _basic_pairs(header) if header is not None else []
        account = next((a for a in map(self._clients.get, pairs) if a is not None), None)
        named = account or next((a for a in (self._client_ids.get(user) for user, _ in pairs) if a), None)
        if named is not None:
            self.token_requests[named] += 1
        latency = self.config.latency
        if latency is not None:
            await asyncio.sleep(self._rng.uniform(*latency))
        fault = self._draw_token_fault()
        if fault is not None:
            self.token_faults += 1
            if fault != "hang":
                return self._fault_response(request, fault)
            if await self._hang():
                return self._fault_response(request, "reset")
        if account is None:
            self.token_refused += 1
            return oauth_error(
                401,
                "invalid_client",
                "Client authentication failed: unknown client, wrong secret, or no HTTP Basic client authentication.",
            )
        form: dict[str, list[str]] = {}
        if request.content_type == _FORM:
            try:
                posted = await request.post()
            except ValueError:  # bytes that are not text
                posted = None
            if posted is None:
                self.token_refused += 1
                return oauth_error(400, "invalid_request", "The request body cannot be read as a form.")
            for key in posted:
                form[key] = [v if isinstance(v, str) else "" for v in posted.getall(key)]
        scope, refused = check_form(request.content_type, form)
        if refused is not None:
            self.token_refused += 1
            return refused
        self.tokens_issued[account] += 1
        lifetime = self.config.token_lifetime
        return token_answer(self._tokens.issue(account, lifetime), lifetime, scope)

    async def sandbox_mappings(self, request: web.Request) -> web.Response:
        return _json(_ENCODER.encode(self.store.mappings()))

    async def sandbox_stats(self, request: web.Request) -> web.Response:
        return _json(_ENCODER.encode(self.stats()))

    async def sandbox_state(self, request: web.Request) -> web.Response:
        return _json(_ENCODER.encode(self.store.snapshot()))

    def _build_app(self) -> web.Application:
        app = web.Application()
        add = app.router.add_route
        add("GET", "/shop-order-statuses", self._guard(False, self.get_statuses))
        add("POST", "/shop-order-statuses", self._guard(True, self.post_statuses))
        add("GET", "/shop-order-statuses/mapping", self._guard(False, self.get_mapping))
        add("POST", "/shop-order-statuses/mapping", self._guard(True, self.post_mapping))
        add("GET", "/integrations", self._guard(False, self.list_integrations))
        add("GET", "/integrations/logs", self._guard(False, self.logs.list_all))
        add("GET", "/integrations/{id}/logs", self._guard(False, self.logs.list_one))
        add("GET", "/_sandbox/logs", self.logs.everything)
        add("GET", "/integrations/{id}", self._guard(False, self.get_integration))
        add("POST", "/oauth2/token", self.post_token)
        add("POST", "/oauth2/token/", self.post_token)  # the spec's securitySchemes spell it so
        add("GET", "/_sandbox/stats", self.sandbox_stats)
        add("GET", "/_sandbox/state", self.sandbox_state)
        add("GET", "/_sandbox/mappings", self.sandbox_mappings)
        return app


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def run_sandbox(
    source: Inventory | Seed | None = None,
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock | None = None,
) -> AsyncIterator[Sandbox]:
    """Serve a sandbox on ``host:port`` (0: any free port) for the ``async with`` block.

    ``source`` is an inventory (its accounts and integrations), a plain :class:`Seed`,
    or None for the built-in demo state (see ``state.demo_seed``). Yields the
    :class:`Sandbox`, whose ``url`` is set. Raises ValueError on an invalid inventory.
    """
    sandbox = Sandbox(source, config, clock=clock)
    # shutdown_timeout: a benchmark's half-open keep-alive connections must not hold up the exit.
    runner = web.AppRunner(sandbox.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = runner.addresses[0]
        sandbox.url = _url(host, int(bound[1]))
        yield sandbox
    finally:
        sandbox.close()
        await runner.cleanup()
