"""The client turns every response into a value or one classified exception.

Mocked HTTP (aioresponses) for the plain classification table; the sandbox for the real
endpoints; the hostile server for every way a server can misbehave (size, time,
redirects, TLS, control characters, echoed credentials); a small in-test server for
pagination.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aioresponses import aioresponses
from hostile_server import Hostile, hostile_server, serving
from sandbox_fixture import SANDBOX_CREDENTIALS

from batchsync import wire
from batchsync.redact import Redactor
from batchsync.sandbox.server import Sandbox
from batchsync.secrets import Secret, basic_auth
from batchsync.sendcloud import client as c
from batchsync.sendcloud.auth import BasicAuthenticator, OAuth2Authenticator
from batchsync.sendcloud.errors import (
    ApiError,
    AuthError,
    ClientError,
    InvalidResponseError,
    NotFoundError,
    RedirectError,
    RequestTimeout,
    TLSError,
    TransportError,
)
from batchsync.sendcloud.exchange import printable
from batchsync.sendcloud.headers import RETRY_AFTER_MAX, next_link

BASE = "https://api.example.test/api/v3"
URL = re.compile(r"^https://api\.example\.test/api/v3/shop-order-statuses.*$")
PUBLIC, SECRET = "pub-key-0123", "very-secret-value-987"
TIMEOUT = 1.0  # the client's timeout against the hostile server
SLACK = 0.5  # what a loaded 2-core machine may add to it
ROOT = Path(__file__).resolve().parents[2]


def basic() -> BasicAuthenticator:
    return BasicAuthenticator(Secret(PUBLIC), Secret(SECRET))


@pytest.fixture
async def client() -> AsyncIterator[c.Client]:
    async with aiohttp.ClientSession() as session:
        yield c.Client(session, BASE, basic(), timeout=5)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    async with hostile_server() as h:
        yield h


def leaked(exc: BaseException, *credentials: str) -> list[str]:
    """Which of ``credentials`` (or the Basic forms of the test keys) appear in the exception."""
    import base64

    forms = [PUBLIC, SECRET, f"{PUBLIC}:{SECRET}", base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()]
    text = f"{exc} {exc!r} " + " ".join(str(v) for v in vars(exc).values())
    return [f for f in (*forms, *credentials) if f.lower() in text.lower()]


# -- classification (mocked) --------------------------------------------------------


async def test_get_decodes_statuses(client: c.Client) -> None:
    with aioresponses() as m:
        m.get(
            URL,
            payload={
                "data": [
                    {
                        "external_id": "1",
                        "status": "Paid",
                        "deleted_at": None,
                        "translations": [{"status": "Paid", "language": "en-gb"}],
                    }
                ]
            },
        )
        got = await client.get_statuses(7)
    assert [s.external_id for s in got] == ["1"]
    assert got[0].translations[0].status == "Paid"


async def test_post_sends_body_and_basic_auth(client: c.Client) -> None:
    with aioresponses() as m:
        m.post(URL, body=b"null", status=200)
        await client.post_statuses(b'{"integration_id":7,"statuses":[]}')
        (key, calls), *_ = m.requests.items()
        call = calls[0]
    assert key[0] == "POST"
    assert call.kwargs["data"] == b'{"integration_id":7,"statuses":[]}'
    assert call.kwargs["headers"]["Authorization"] == basic_auth(Secret(PUBLIC), Secret(SECRET)).reveal()
    assert call.kwargs["headers"]["Content-Type"] == "application/json"
    assert call.kwargs["allow_redirects"] is False


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retryable"),
    [
        (429, b"", {"Retry-After": "7"}, "throttled", True),
        (429, b'{"errors":[{"status":"429","code":"invalid","detail":"slow down"}]}', {}, "throttled", True),
        (500, b"", {}, "server", True),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}, "server", True),
        (503, b"Service Unavailable", {}, "server", True),
        (
            401,
            b'{"errors":[{"status":"401","code":"authentication_failed","detail":"Invalid key"}]}',
            {},
            "auth",
            False,
        ),
        (403, b"<html>forbidden</html>", {}, "client", False),
        (
            404,
            b'{"errors":[{"status":"404","code":"not_found","detail":"No such integration"}]}',
            {},
            "not_found",
            False,
        ),
        (
            400,
            b'{"errors":[{"status":"400","code":"invalid",'
            b'"detail":"Only the Prestashop V2 integration is supported"}]}',
            {},
            "not_supported",
            False,
        ),
        (
            400,
            b'{"errors":[{"status":"400","code":"invalid_choice","detail":"bad","source":{"pointer":"/statuses/0/translations/0/language"}}]}',
            {},
            "client",
            False,
        ),
    ],
)
async def test_errors_are_classified(
    client: c.Client, status: int, body: bytes, headers: dict[str, str], kind: str, retryable: bool
) -> None:
    with aioresponses() as m:
        m.post(URL, status=status, body=body, headers=headers)
        with pytest.raises(ApiError) as info:
            await client.post_statuses(b"{}")
    exc = info.value
    assert exc.kind == kind
    assert exc.retryable is retryable
    assert exc.http_status == status
    if status == 429 and headers:
        assert exc.retry_after == 7.0
    if b"pointer" in body:
        assert exc.pointer == "/statuses/0/translations/0/language"
        assert exc.code == "invalid_choice"
    assert exc.detail  # an empty body still says what happened
    assert not leaked(exc)


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"data": 5}', b"[1,2"])
async def test_undocumented_200_on_get_is_invalid_response(client: c.Client, body: bytes) -> None:
    with aioresponses() as m:
        m.get(URL, status=200, body=body)
        with pytest.raises(InvalidResponseError) as info:
            await client.get_statuses(1)
    assert info.value.retryable
    assert info.value.http_status == 200


async def test_undocumented_200_on_post_is_invalid_response(client: c.Client) -> None:
    with aioresponses() as m:
        m.post(URL, status=200, body=b"<html>ok</html>")
        with pytest.raises(InvalidResponseError):
            await client.post_statuses(b"{}")


async def test_connection_error_is_transport_and_hides_request(client: c.Client) -> None:
    with aioresponses() as m:
        m.get(URL, exception=aiohttp.ClientConnectionError(f"boom with {SECRET}"))
        with pytest.raises(TransportError) as info:
            await client.get_statuses(1)
    assert info.value.retryable
    assert not leaked(info.value)


async def test_timeout_is_classified(client: c.Client) -> None:
    with aioresponses() as m:
        m.get(URL, exception=TimeoutError())
        with pytest.raises(RequestTimeout):
            await client.get_statuses(1)


def test_secret_never_prints() -> None:
    header = basic_auth(Secret(PUBLIC), Secret(SECRET))
    assert SECRET not in repr(header) and SECRET not in str(header)
    assert f"{header}" == str(header)
    auth = basic()
    assert SECRET not in repr(auth) and SECRET not in str(vars(auth).keys())


def test_printable_strips_controls_and_redacts_before_cutting() -> None:
    redact = Redactor(("s3cr3t-value",))
    text = "a\x1b[31mb\r\nc\x00d\x07e\x9bf\u202eg " + "x" * 400 + " s3cr3t-value"
    out = printable(text, redact, 60)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e]", out)
    assert len(out) <= 60
    # A secret at the cut: redacted whole before the cut, so no prefix of it survives.
    cut = printable("y" * 55 + "s3cr3t-value", redact, 60)
    assert "s3cr" not in cut
    assert printable("S3CR3T-VALUE and s3cr3t%2Dvalue", Redactor(("s3cr3t-value",))) == "*** and s3cr3t%2Dvalue"
    assert printable("key%3Dx", Redactor(("key=x",))) == "***"


# -- the real endpoints, against the sandbox -----------------------------------------


async def test_sandbox_round_trip(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    public, secret = SANDBOX_CREDENTIALS["acme"]
    api = c.Client(session, sandbox.url, BasicAuthenticator(Secret(public), Secret(secret)), timeout=5)
    body = wire.PostShopOrderStatuses(
        101, (wire.Status("X1", (wire.Translation("Paid", "en-gb"), wire.Translation("Betaald", "nl-nl"))),)
    )
    await api.post_statuses(msgspec.json.encode(body))
    got = await api.get_statuses(101)
    assert [(s.external_id, s.status) for s in got] == [("X1", "Paid")]

    mapping = wire.PostMapping(
        101, tuple(wire.MappingItem(cat, "X1" if cat == "DELIVERED" else None) for cat in wire.STATUS_CATEGORIES)
    )
    await api.post_mapping(msgspec.json.encode(mapping))
    current = await api.get_mapping(101)
    assert {m.status_category: (m.external_id, m.is_valid) for m in current.mapping}["DELIVERED"] == ("X1", True)

    items, following, _, _ = await api.list_integrations_page()
    assert {i.id for i in items} == {101, 102, 103, 104, 105}
    assert following is None

    with pytest.raises(NotFoundError):
        await api.get_statuses(201)  # globex's, not acme's


async def test_sandbox_refuses_wrong_keys_after_one_request(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    public, _ = SANDBOX_CREDENTIALS["acme"]
    api = c.Client(session, sandbox.url, BasicAuthenticator(Secret(public), Secret("wrong-secret")), timeout=5)
    before = sum(sum(v.values()) for v in sandbox.stats()["requests"].values())
    with pytest.raises(AuthError) as info:
        await api.get_statuses(101)
    after = sum(sum(v.values()) for v in sandbox.stats()["requests"].values())
    assert after - before <= 1  # Basic cannot renew: no second attempt
    assert not leaked(info.value, "wrong-secret")


# -- the hostile server ----------------------------------------------------------------

Call = Callable[[c.Client], Awaitable[object]]
GET: Call = lambda api: api.get_statuses(1)  # noqa: E731
POST: Call = lambda api: api.post_statuses(b'{"integration_id": 1, "statuses": []}')  # noqa: E731
MAPPING: Call = lambda api: api.get_mapping(1)  # noqa: E731
PAGE: Call = lambda api: api.list_integrations_page()  # noqa: E731


async def _call(hostile: Hostile, session: aiohttp.ClientSession, behaviour: str, call: Call) -> tuple[ApiError, float]:
    api = c.Client(session, hostile.base(behaviour), basic(), timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await call(api)
    return info.value, time.monotonic() - started


@pytest.mark.parametrize(
    ("behaviour", "kind", "status", "retryable"),
    [
        ("gzip-bomb", "invalid_response", 200, True),
        ("gzip-bomb-chunked", "invalid_response", 200, True),
        ("huge-declared", "invalid_response", 200, True),
        ("endless", "invalid_response", 200, True),
        ("drip", "timeout", None, True),
        ("hang", "timeout", None, True),
        ("no-content", "invalid_response", 204, True),
        ("throttle-huge", "throttled", 429, True),
        ("throttle-inf", "throttled", 429, True),
        ("throttle-nan", "throttled", 429, True),
        ("throttle-date", "throttled", 429, True),
        ("control-chars", "client", 400, False),
        ("control-chars-text", "server", 502, True),
        ("control-chars-200", "invalid_response", 200, True),
        ("echo-credentials", "auth", 401, False),
        ("echo-credentials-text", "client", 403, False),
        ("echo-credentials-200", "invalid_response", 200, True),
    ],
)
@pytest.mark.parametrize("call", [GET, POST, MAPPING, PAGE], ids=["get", "post", "get-mapping", "integrations"])
async def test_hostile_behaviour_is_classified_in_time(
    hostile: Hostile,
    session: aiohttp.ClientSession,
    behaviour: str,
    kind: str,
    status: int | None,
    retryable: bool,
    call: Call,
) -> None:
    exc, elapsed = await _call(hostile, session, behaviour, call)
    assert (exc.kind, exc.http_status, exc.retryable) == (kind, status, retryable), str(exc)
    assert elapsed <= TIMEOUT + SLACK
    assert str(exc.http_status) in str(exc) if status else True
    assert not leaked(exc)
    for text in (str(exc), exc.detail, exc.code or "", exc.pointer or ""):
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e]", text), repr(text)
    if kind == "throttled":
        assert exc.retry_after is None or 0 <= exc.retry_after <= RETRY_AFTER_MAX
        assert exc.retry_after == (None if behaviour == "throttle-nan" else RETRY_AFTER_MAX)


@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.parametrize("call", [GET, POST], ids=["get", "post"])
async def test_redirect_is_not_followed(
    hostile: Hostile, session: aiohttp.ClientSession, code: int, call: Call
) -> None:
    exc, _ = await _call(hostile, session, f"redirect-{code}", call)
    assert isinstance(exc, RedirectError)
    assert (exc.kind, exc.http_status, exc.retryable) == ("client", code, False)
    assert hostile.elsewhere + "/landed/" in exc.detail  # names where it points
    assert "leak=" not in str(exc) and "leak" not in exc.location  # but not its query
    assert hostile.landed == []  # nothing went there, with or without credentials
    assert not leaked(exc)


async def test_self_signed_tls_is_a_tls_error_not_retried(hostile: Hostile, session: aiohttp.ClientSession) -> None:
    api = c.Client(session, hostile.base("ok", tls=True), basic(), timeout=TIMEOUT)
    with pytest.raises(TLSError) as info:
        await api.get_statuses(1)
    assert (info.value.kind, info.value.retryable) == ("tls", False)
    assert isinstance(info.value, TransportError)
    assert "certificate" in info.value.detail
    assert not [s for s in hostile.seen if s.behaviour == "ok"]  # no request got through
    # The same endpoint with its CA trusted answers: the failure was the certificate.
    connector = aiohttp.TCPConnector(ssl=hostile.trusting_context())
    async with aiohttp.ClientSession(connector=connector) as trusting:
        assert await c.Client(trusting, hostile.base("ok", tls=True), basic()).get_statuses(1) == ()


async def test_plain_http_to_a_tls_port_is_a_tls_error(hostile: Hostile, session: aiohttp.ClientSession) -> None:
    """https:// to a port that speaks plain HTTP: a handshake failure, not retried either."""
    plain = hostile.url.replace("http://", "https://")
    api = c.Client(session, f"{plain}/ok", basic(), timeout=TIMEOUT)
    with pytest.raises(TLSError) as info:
        await api.get_statuses(1)
    assert not info.value.retryable


async def test_echoed_bearer_token_and_oauth2_secret_are_redacted(
    hostile: Hostile, session: aiohttp.ClientSession
) -> None:
    """An API 401 echoing the Bearer token; the resend after renewal is echoed too."""
    auth = OAuth2Authenticator(
        session, hostile.base("ok") + "/oauth2/token", Secret("cid-42"), Secret("csecret-42"), timeout=TIMEOUT
    )
    api = c.Client(session, hostile.base("echo-credentials"), auth, timeout=TIMEOUT)
    with pytest.raises(AuthError) as info:
        await api.get_statuses(1)
    assert "***" in info.value.detail
    assert not leaked(info.value, "ok-token", "cid-42", "csecret-42")
    assert [s.behaviour for s in hostile.seen].count("echo-credentials") == 2  # renewed once, resent once


async def test_timeout_is_not_rounded_up(hostile: Hostile, session: aiohttp.ClientSession) -> None:
    """aiohttp rounds a timeout of 5 s or more up to the loop clock's next whole second
    (up to +1 s); the client turns that off, so --timeout is the bound it says."""
    api = c.Client(session, hostile.base("hang"), basic(), timeout=5.0)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await api.get_statuses(1)
    assert 5.0 <= time.monotonic() - started < 5.25


async def test_too_large_body_stops_reading(hostile: Hostile, session: aiohttp.ClientSession) -> None:
    """A small cap refuses a body the default cap takes, and the connection is dropped."""
    api = c.Client(session, hostile.base("drip"), basic(), timeout=TIMEOUT, max_body=100)
    started = time.monotonic()
    with pytest.raises(InvalidResponseError) as info:
        await api.get_statuses(1)  # declares ~1 KB: refused from the header, no byte awaited
    assert time.monotonic() - started < 0.5
    assert "100 byte limit" in info.value.detail


_MEMORY_PROBE = r"""
import asyncio, json, sys, time
import aiohttp
from batchsync.sendcloud.auth import BasicAuthenticator
from batchsync.sendcloud.client import Client
from batchsync.sendcloud.errors import ApiError
from batchsync.secrets import Secret

def peak_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

async def main(urls):
    auth = BasicAuthenticator(Secret("p"), Secret("s"))
    async with aiohttp.ClientSession() as session:
        await Client(session, urls[0], auth).get_statuses(1)  # imports, a connection: the baseline
        before = peak_kb()
        out = []
        for url in urls[1:]:
            started = time.monotonic()
            try:
                await Client(session, url, auth, timeout=%(timeout)s).get_statuses(1)
                out.append(["ok", time.monotonic() - started])
            except ApiError as exc:
                out.append([exc.kind, time.monotonic() - started])
        print(json.dumps({"before_kb": before, "peak_kb": peak_kb(), "calls": out}))

asyncio.run(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc")
async def test_bombs_and_endless_bodies_keep_memory_bounded(hostile: Hostile) -> None:
    """A client process meets the 2 GiB gzip bomb (sized and chunked) and an endless body.

    Measured on the client process alone (the server runs here): its peak RSS grows by a
    few MB (about 10 MB measured) over its baseline, where reading the bomb whole needs 2 GiB.
    """
    hostile_urls = [hostile.base(b) for b in ("ok", "gzip-bomb", "gzip-bomb-chunked", "endless", "gzip-bomb")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MEMORY_PROBE % {"timeout": 30},
        *hostile_urls,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert [kind for kind, _ in result["calls"]] == ["invalid_response"] * 4
    grown_mb = (result["peak_kb"] - result["before_kb"]) / 1024
    assert grown_mb < 32, result
    assert result["peak_kb"] / 1024 < 150, result


# -- pagination --------------------------------------------------------------------------


@pytest.fixture
async def pages() -> AsyncIterator[tuple[str, dict[str, object]]]:
    """A server of ``GET /api/v3/integrations`` whose answer each test sets in ``control``."""
    control: dict[str, object] = {"link": None, "body": None, "seen": []}

    async def integrations(request: web.Request) -> web.StreamResponse:
        seen = control["seen"]
        assert isinstance(seen, list)
        seen.append((str(request.rel_url), request.headers.get("Authorization")))
        headers = {"Link": str(control["link"])} if control["link"] else {}
        body = control["body"] or {"data": [{"id": 1, "shop_name": "A", "unknown_field": {"x": 1}}, {"id": 2}]}
        if isinstance(body, bytes):  # as it is: json.dumps cannot write everything a server can
            return web.Response(body=body, content_type="application/json", headers=headers)
        return web.json_response(body, headers=headers)

    app = web.Application()
    app.router.add_get("/api/v3/integrations", integrations)
    async with serving(app) as url:
        yield url, control


async def test_pages_follow_link_header(pages: tuple[str, dict[str, object]], session: aiohttp.ClientSession) -> None:
    url, control = pages
    api = c.Client(session, f"{url}/api/v3", basic())
    control["link"] = f'<{url}/v3/integrations?cursor=cD0xMjM%3D>; rel="next", <{url}/v3/x?cursor=cj0x>; rel="prev"'
    items, following, _, _ = await api.list_integrations_page()
    assert [(i.id, i.shop_name) for i in items] == [(1, "A"), (2, None)]  # unknown fields tolerated
    assert following == f"{url}/v3/integrations?cursor=cD0xMjM%3D"
    control["link"] = None
    seen = control["seen"]
    assert isinstance(seen, list)
    assert seen[0][0] == f"/api/v3/integrations?page_size={c.PAGE_SIZE}"
    # The next URL is passed back as is (the cursor is opaque); here it is on the same origin.
    control["link"] = '</api/v3/integrations?cursor=abc>; rel="next last"'  # relative, two relations
    items, following, _, _ = await api.list_integrations_page(f"{url}/api/v3/integrations?cursor=cD0xMjM%3D")
    assert seen[-1][0] == "/api/v3/integrations?cursor=cD0xMjM%3D"
    assert following == f"{url}/api/v3/integrations?cursor=abc"


async def test_pages_follow_a_next_field_and_end(
    pages: tuple[str, dict[str, object]], session: aiohttp.ClientSession
) -> None:
    url, control = pages
    api = c.Client(session, f"{url}/api/v3", basic())
    control["body"] = {"data": [{"id": 3}], "next": f"{url}/api/v3/integrations?cursor=2", "previous": None}
    assert (await api.list_integrations_page())[:2] == ((wire.Integration(3),), f"{url}/api/v3/integrations?cursor=2")
    control["body"] = {"data": [{"id": 4}], "next": None}
    second = f"{url}/api/v3/integrations?cursor=2"
    assert (await api.list_integrations_page(second))[:2] == ((wire.Integration(4),), None)
    # A next link to the page just read would loop forever: it ends the listing.
    control["body"] = {"data": [], "next": f"{url}/api/v3/integrations?cursor=2"}
    assert (await api.list_integrations_page(f"{url}/api/v3/integrations?cursor=2"))[:2] == ((), None)


async def test_an_item_that_is_not_an_integration_costs_only_itself(
    pages: tuple[str, dict[str, object]], session: aiohttp.ClientSession
) -> None:
    url, control = pages
    api = c.Client(session, f"{url}/api/v3", basic())
    bad: list[object] = [{"id": 0}, {"id": 2**63}, {"id": 10**30}, {"id": "5"}, [1], {"id": -3, "x": "\x1b[2J"}]
    control["body"] = {"data": [{"id": 4}, *bad, {"id": 2**63 - 1}]}
    page = await api.list_integrations_page()
    assert [i.id for i in page.items] == [4, 2**63 - 1]
    assert page.next_url is None and page.size > 0
    assert len(page.rejected) == len(bad)
    assert page.rejected[0].startswith("item 2 of the page (id 0): Expected `int` >= 1")
    assert page.rejected[2].startswith(f"item 4 of the page (id {10**30}): ")
    assert page.rejected[4].startswith("item 6 of the page: Expected `object`, got `array`")
    assert not any("\x1b" in r for r in page.rejected)


async def test_a_page_nested_too_deep_is_an_invalid_response(
    pages: tuple[str, dict[str, object]], session: aiohttp.ClientSession
) -> None:
    url, control = pages
    api = c.Client(session, f"{url}/api/v3", basic())
    control["body"] = b'{"data": [], "next": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(InvalidResponseError, match="nested too deep"):
        await api.list_integrations_page()


@pytest.mark.parametrize(
    "link",
    [
        "<http://evil.example:{port}/api/v3/integrations?cursor=1>; rel=next",  # another host
        "<https://127.0.0.1:{port}/api/v3/integrations?cursor=1>; rel=next",  # another scheme
        "<http://127.0.0.1:1/api/v3/integrations?cursor=1>; rel=next",  # another port
        "<//evil.example/integrations>; rel=next",  # scheme-relative
        "<ftp://127.0.0.1:{port}/x>; rel=next",
    ],
)
async def test_next_page_on_another_origin_is_refused(
    pages: tuple[str, dict[str, object]], session: aiohttp.ClientSession, link: str
) -> None:
    url, control = pages
    port = url.rsplit(":", 1)[1]
    control["link"] = link.format(port=port)
    api = c.Client(session, f"{url}/api/v3", basic())
    with pytest.raises(ClientError) as info:
        await api.list_integrations_page()
    assert not info.value.retryable
    assert "refused" in info.value.detail
    # And a caller that passes such a URL itself is refused before anything is sent.
    seen = control["seen"]
    assert isinstance(seen, list)
    count = len(seen)
    with pytest.raises(ClientError):
        await api.list_integrations_page(f"http://evil.example:{port}/api/v3/integrations")
    assert len(seen) == count


def test_next_link_parsing() -> None:
    assert next_link('<https://a/x?c=1>; rel="next"') == "https://a/x?c=1"
    assert next_link('<https://a/p>; rel="prev", <https://a/n>; rel=next') == "https://a/n"
    assert next_link('<https://a/n>; title="a;b"; REL="Next"') == "https://a/n"
    assert next_link('<https://a/p>; rel="prev"') is None
    assert next_link("garbage") is None
    assert next_link(None) is None


@pytest.mark.parametrize(
    "body",
    [
        rb'{"errors":[{"detail":"invalid secret Xk3\/9fQ+ab\/ZZ7Lm2Qp0"}]}',  # PHP's json_encode escapes "/"
        rb'{"message":"invalid \u0058k3/9fQ+ab/ZZ7Lm2Qp0"}',  # one letter escaped
        rb'{"errors":[{"status":"422","code":"invalid","detail":"Xk3\/9fQ+ab\/ZZ7Lm2Qp0"}]}',
    ],
)
def test_a_credential_echoed_json_escaped_is_redacted(body: bytes) -> None:
    """The redactor knows a credential's forms (as is, base64, URL-encoded...); a body is
    read as its JSON values first, so an escape on the server's side hides nothing."""
    from batchsync.redact import Redactor
    from batchsync.sendcloud.exchange import classify

    secret = "Xk3/9fQ+ab/ZZ7Lm2Qp0"
    error = classify("GET", "http://127.0.0.1:9/x", 422, body, {}, Redactor([secret]))
    assert "***" in str(error)
    for form in (secret, secret.replace("/", "\\/"), "9fQ+ab", "ZZ7Lm2Qp0"):
        assert form not in str(error), (form, str(error))
