"""Sendcloud's endpoints for one account: statuses, mapping, the paged list of integrations.

Every answer becomes a decoded value or one exception of :mod:`batchsync.sendcloud.errors`
(the exchange itself, bounded, is :mod:`batchsync.sendcloud.exchange`'s). A next-page link
is followed only on the base URL's origin: credentials never go to another host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from yarl import URL

from batchsync import wire
from batchsync.redact import Redactor
from batchsync.sendcloud._aiohttp import aiohttp
from batchsync.sendcloud.errors import ClientError, InvalidResponseError
from batchsync.sendcloud.exchange import (
    _NO_SECRETS,
    MAX_BODY,
    Exchange,
    _snippet,
    classify,
    client_timeout,
    exchange,
    printable,
    safe_location,
)
from batchsync.sendcloud.headers import next_link

if TYPE_CHECKING:
    from batchsync.sendcloud.auth import Authenticator


log = logging.getLogger("batchsync.http")
_get_decoder = msgspec.json.Decoder(wire.GetShopOrderStatuses)
_mapping_decoder = msgspec.json.Decoder(wire.GetMapping)


class _NotNull(Exception):
    """A write's answer that is not the ``null`` the API documents."""


def _statuses_of(body: bytes) -> tuple[wire.CurrentStatus, ...]:
    return _get_decoder.decode(body).data


def _mapping_of(body: bytes) -> wire.CurrentMapping:
    return _mapping_decoder.decode(body).data


def _null(body: bytes) -> None:
    if body.strip() != b"null":
        raise _NotNull


# -- what a server wrote, made safe to print ------------------------------------------


def _why(exc: Exception) -> str:
    """Why a body did not decode. msgspec nests as deep as Python's recursion limit lets it
    (the body is bounded in size, not in depth): a body nested deeper is no answer either."""
    return "nested too deep" if isinstance(exc, RecursionError) else str(exc)


# -- one bounded exchange -------------------------------------------------------------


# -- the API ----------------------------------------------------------------------------


class _IntegrationsPage(msgspec.Struct, frozen=True):
    """``GET /integrations``: ``data``, and a ``next`` URL where a server puts one in the
    body (Sendcloud v3 puts it in the ``Link`` header)."""

    data: tuple[wire.Integration, ...]
    next: Any = None


class _LoosePage(msgspec.Struct, frozen=True):
    """The same page when an item is not an integration: each item is checked alone."""

    data: tuple[Any, ...]
    next: Any = None


_page_decoder = msgspec.json.Decoder(_IntegrationsPage)
_loose_page_decoder = msgspec.json.Decoder(_LoosePage)


def _decode_page(body: bytes) -> tuple[tuple[wire.Integration, ...], Any, tuple[str, ...]]:
    """(integrations, next, rejected): an item that is not an integration batchsync can use
    (an id of 0 or past 2**63 - 1, a string id, not an object) costs only itself, described
    in ``rejected``. DecodeError or ValidationError when the page itself is not a page."""
    try:
        page = _page_decoder.decode(body)
        return page.data, page.next, ()
    except msgspec.ValidationError:
        loose = _loose_page_decoder.decode(body)  # raises in turn when the page is wrong
    items: list[wire.Integration] = []
    rejected: list[str] = []
    for position, raw in enumerate(loose.data, 1):
        try:
            items.append(msgspec.convert(raw, wire.Integration))
        except msgspec.ValidationError as exc:
            ident = raw.get("id") if isinstance(raw, dict) else None
            shown = f" (id {printable(str(ident), limit=40)})" if isinstance(ident, int | str) else ""
            rejected.append(f"item {position} of the page{shown}: {printable(str(exc), limit=120)}")
    return tuple(items), loose.next, tuple(rejected)


PAGE_SIZE = 100  # Sendcloud clamps it to the endpoint's own maximum
# A page of exception logs carries each record's request and response (a shop's HTML error
# page, say), never decoded but read: 100 records of 20 KB each are 2 MB. Read at most
# --concurrency accounts at once, each one page at a time.
LOGS_MAX_BODY = 4 * 1024 * 1024


class _LogsPage(msgspec.Struct, frozen=True):
    """``GET /integrations/logs``: v3's ``data`` (next page in the ``Link`` header) or the
    description's v2 body ``{next, previous, results}``."""

    data: tuple[wire.LogRecord, ...] | None = None
    results: tuple[wire.LogRecord, ...] | None = None
    next: Any = None


class _LooseLogsPage(msgspec.Struct, frozen=True):
    data: tuple[Any, ...] | None = None
    results: tuple[Any, ...] | None = None
    next: Any = None


_logs_decoder = msgspec.json.Decoder(_LogsPage)
_loose_logs_decoder = msgspec.json.Decoder(_LooseLogsPage)


def _decode_logs(body: bytes) -> tuple[tuple[wire.LogRecord, ...], Any, int]:
    """(records, next, rejected): a record batchsync cannot read costs only itself.
    DecodeError or ValidationError when the body is no page of logs."""
    try:
        page = _logs_decoder.decode(body)
        found = page.data if page.data is not None else page.results
        if found is None:
            raise msgspec.ValidationError("a page of logs has `data` or `results`")
        return found, page.next, 0
    except msgspec.ValidationError:
        loose = _loose_logs_decoder.decode(body)
    raw = loose.data if loose.data is not None else loose.results
    if raw is None:
        raise msgspec.ValidationError("a page of logs has `data` or `results`")
    records: list[wire.LogRecord] = []
    for item in raw:
        try:
            records.append(msgspec.convert(item, wire.LogRecord))
        except msgspec.ValidationError:
            continue
    return tuple(records), loose.next, len(raw) - len(records)


class Client:
    """Requests for one account: its base URL and its :class:`Authenticator`.

    Many clients share one :class:`aiohttp.ClientSession` (and so one pool of
    connections); the header is passed per request, never stored on the session.
    A 401 makes the authenticator renew once (OAuth2) and the request go again; a
    second 401, or one the authenticator cannot help with (Basic), is an AuthError.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: Authenticator,
        *,
        timeout: float = 30.0,
        max_body: int = MAX_BODY,
        name: str = "",
    ) -> None:
        self.session = session
        self.name = name  # the account's, for log lines
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._auth = auth
        # An authenticator whose header never changes (Basic) has it as ``constant``: no
        # coroutine per request to ask for it.
        self._constant: str | None = getattr(auth, "constant", None)
        self._timeout = client_timeout(timeout)
        self._max_body = max_body
        self._statuses_url = f"{self.base_url}/shop-order-statuses"
        self._mapping_url = f"{self._statuses_url}/mapping"
        self._integrations_url = f"{self.base_url}/integrations"
        self._redactor = _NO_SECRETS
        self._redacting: tuple[str, ...] = ()  # the secrets _redactor was made for
        # Header dicts are built once per Authorization value, not per request.
        self._auth_value = ""
        self._get_headers: dict[str, str] = {}
        self._post_headers: dict[str, str] = {}

    def _headers(self, auth_value: str, post: bool) -> dict[str, str]:
        if auth_value is not self._auth_value:
            self._auth_value = auth_value
            self._get_headers = {"Authorization": auth_value, "Accept": "application/json"}
            self._post_headers = {**self._get_headers, "Content-Type": "application/json"}
        return self._post_headers if post else self._get_headers

    async def authenticate(self) -> None:
        """Get the account's Authorization value now (OAuth2: its token from the token
        endpoint); AuthError when the endpoint refuses the client."""
        await self._auth.header()

    def redact(self, text: str) -> str:
        """``text`` with every credential of this client's account replaced."""
        secrets = self._auth.secrets()
        if secrets is not self._redacting and secrets != self._redacting:
            self._redacting = secrets
            self._redactor = Redactor(secrets)
        return self._redactor(text)

    async def _request(
        self, method: str, url: str, params: dict[str, str] | None = None, data: bytes | None = None, max_body: int = 0
    ) -> Exchange:
        """One exchange, 2xx or an ApiError: (status, body, the answer's headers); a 2xx body
        up to ``max_body`` bytes (0: the client's bound)."""
        exchanged: Exchange = await self._fetch(method, url, params, data, None, max_body)
        return exchanged

    async def _fetch(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        data: bytes | None,
        decode: Callable[[bytes], Any] | None,
        max_body: int = 0,
    ) -> Any:
        """:meth:`_request`, and the body made a value by ``decode`` (None: the exchange as
        it is). The endpoints' one coroutine: each layer of coroutines is crossed again
        every time the request waits for the network."""
        started = time.monotonic() if log.isEnabledFor(logging.DEBUG) else 0.0
        auth_value = self._constant or await self._auth.header()
        headers = self._headers(auth_value, data is not None)
        renewed = False
        while True:  # once, or twice after a 401 the authenticator can help with (OAuth2)
            status, body, answer_headers = await exchange(
                self.session,
                method,
                url,
                headers,
                self._timeout,
                max_body or self._max_body,
                params=params,
                data=data,
            )
            if status != 401 or renewed:
                break
            fresh = await self._auth.renew(auth_value)
            if fresh is None:
                break
            renewed = True
            headers = self._headers(fresh, data is not None)
        if started:
            iid = params.get("integration_id") if params else None
            ms = (time.monotonic() - started) * 1000
            fields: dict[str, object] = {"account": self.name, "method": method, "status": status, "ms": round(ms, 1)}
            if iid is not None:
                fields["integration_id"] = int(iid)
            log.debug(
                "%s %s%s -> %d (%d bytes, %.1f ms)",
                method,
                url,
                f"?integration_id={iid}" if iid is not None else "",
                status,
                len(body),
                ms,
                extra={"fields": fields},
            )
        if not 200 <= status < 300:
            raise classify(method, url, status, body, answer_headers, self.redact)
        if decode is None:
            return status, body, answer_headers
        try:
            return decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._invalid(method, url, status, body, _why(exc)) from None
        except _NotNull:
            raise self._invalid(method, url, status, body) from None

    def _invalid(self, method: str, url: str, status: int, body: bytes, why: str = "") -> InvalidResponseError:
        detail = _snippet(body, self.redact)
        if why and body.strip():
            detail += f" ({printable(why, self.redact, 160)})"
        return InvalidResponseError(detail, method=method, url=url, http_status=status)

    # The endpoints of every integration are plain functions returning the coroutine of
    # _fetch: awaited, the same as an ``async def``, with one layer less per request.

    def get_statuses(self, integration_id: int) -> Coroutine[object, None, tuple[wire.CurrentStatus, ...]]:
        """The integration's current (not deleted) statuses."""
        params = {"integration_id": str(integration_id)}
        return self._fetch("GET", self._statuses_url, params, None, _statuses_of)

    def post_statuses(self, body: bytes) -> Coroutine[object, None, None]:
        """Overwrite all statuses of one integration with a pre-encoded POST body."""
        return self._fetch("POST", self._statuses_url, None, body, _null)

    def get_mapping(self, integration_id: int) -> Coroutine[object, None, wire.CurrentMapping]:
        """How the integration's statuses map onto Sendcloud's four categories."""
        params = {"integration_id": str(integration_id)}
        return self._fetch("GET", self._mapping_url, params, None, _mapping_of)

    def post_mapping(self, body: bytes) -> Coroutine[object, None, None]:
        """Create or update one integration's mapping with a pre-encoded POST body."""
        return self._fetch("POST", self._mapping_url, None, body, _null)

    async def list_integrations_page(self, next_url: str | None = None) -> wire.ListedPage:
        """One page of the account's integrations and the URL of the next (None: last).

        The next page comes from ``Link: <url>; rel="next"`` (Sendcloud v3's cursor
        pagination) or a ``next`` field of the body. One on another origin than the
        base URL is refused: the Authorization header never goes to another host."""
        if next_url is None:
            url, params = self._integrations_url, {"page_size": str(PAGE_SIZE)}
        else:
            url, params = self._same_origin(next_url, self._integrations_url), None
        status, body, headers = await self._request("GET", url, params=params)
        try:
            items, following, rejected = _decode_page(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._invalid("GET", url, status, body, _why(exc)) from None
        return wire.ListedPage(items, self._next_page(url, params, headers, following), len(body), rejected)

    async def list_logs_page(self, next_url: str | None = None, integration_id: int | None = None) -> wire.LogsPage:
        """One page of the account's integration exception logs (``GET /integrations/logs``,
        or ``/integrations/{id}/logs`` for one integration) and the next page's URL (None:
        the last), from the ``Link`` header or the body's ``next``, on the base URL's origin
        only. Headers and bodies of the logs are never decoded (:class:`wire.LogRecord`)."""
        first = self._integrations_url + (f"/{integration_id}/logs" if integration_id is not None else "/logs")
        if next_url is None:
            url, params = first, {"page_size": str(PAGE_SIZE)}
        else:
            url, params = self._same_origin(next_url, first), None
        status, body, headers = await self._request("GET", url, params=params, max_body=LOGS_MAX_BODY)
        try:
            records, following, rejected = _decode_logs(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._invalid("GET", url, status, body, _why(exc)) from None
        return wire.LogsPage(records, self._next_page(url, params, headers, following), len(body), rejected)

    def _next_page(
        self, url: str, params: dict[str, str] | None, headers: Mapping[str, str], following: Any
    ) -> str | None:
        """The next page's URL: ``Link: <url>; rel="next"`` (v3), else the body's ``next``
        (v2); None on the last page, or when it names the page just read. On the base URL's
        origin only (:meth:`_same_origin`)."""
        link = next_link(headers.get("Link"))
        if link is None and isinstance(following, str) and following.strip():
            link = following.strip()
        if link is None:
            return None
        current = str(URL(url).with_query(params)) if params else url
        target = self._same_origin(link, current)
        return None if target == current else target

    def _same_origin(self, link: str, current: str) -> str:
        """``link`` resolved against ``current``, if it stays on the base URL's origin."""
        try:
            target = URL(current).join(URL(link))
            origin = _origin(str(target))
        except (ValueError, TypeError):
            origin = None
        if origin is None or origin != self._origin:
            raise ClientError(
                f"next page link {safe_location(link, self.redact)} leaves {self._origin}: refused "
                "(credentials are only sent to the base URL's host)",
                method="GET",
                url=self._integrations_url,
            )
        return str(target)


def _origin(url: str) -> str | None:
    """``scheme://host:port`` of an absolute http(s) URL, else None."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"
