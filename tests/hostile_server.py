"""A misbehaving HTTP server for tests: the ways a server, or what stands in front of it, hurts a client.

``async with hostile_server() as h:`` serves on loopback over plain HTTP (``h.url``) and over
HTTPS with a self-signed certificate nobody trusts (``h.https_url``). Each behaviour is a path
prefix: every path under ``h.base("gzip-bomb")`` (``/shop-order-statuses``, ``/integrations``,
``/oauth2/token``, ...) answers that way, so a whole ``batchsync apply`` can be pointed at it
with one account per behaviour. Redirects point at a second server, ``h.elsewhere``, which
records what reaches it. Run as a script, it serves until killed (at most ``--seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import functools
import json
import ssl
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import trustme
from aiohttp import web

__all__ = [
    "BAD_ITEMS",
    "BEHAVIOURS",
    "BOMB_INFLATED",
    "LIST_PAGE",
    "Hostile",
    "Seen",
    "gzip_bomb",
    "hostile_server",
]

BOMB_INFLATED = 2 * 1024**3  # what the gzip bomb inflates to: 2 GiB of zeros
STREAM_SECONDS = 60.0  # an endless body or a drip stops by itself after this long
DRIP_INTERVAL = 0.1  # one byte every this many seconds
# Control characters a terminal or an XML file chokes on: an ANSI colour and a
# clear-screen, a CR-LF header injection, NUL, BEL, a C1 CSI, a right-to-left override.
CONTROL = "\x1b[31mred\x1b[0m\r\nX-Injected: yes\x00\x07 \x9b2J \u202egnp.exe"


@functools.cache
def gzip_bomb(inflated: int = BOMB_INFLATED) -> bytes:
    """A valid gzip member of ``inflated`` zero bytes (a multiple of 1 MiB), about 1/1000 the size.

    Built in well under a second: a 1 MiB block of zeros deflated with a full flush is
    independent of what came before, so the same compressed block is repeated; only the
    CRC needs the whole length.
    """
    block = bytes(1 << 20)
    blocks = inflated >> 20
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    final = b"\x03\x00"  # an empty final block
    return header + segment * blocks + final + struct.pack("<II", crc, (blocks << 20) & 0xFFFFFFFF)


@dataclass(frozen=True)
class Seen:
    """One request a server received: which behaviour, and whether it carried credentials."""

    behaviour: str
    method: str
    path: str
    authorization: bool


Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _credentials(request: web.Request) -> list[str]:
    """Everything the request's Authorization header gives away, in each form."""
    header = request.headers.get("Authorization", "")
    echoed = [header]
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):
            decoded = base64.b64decode(value).decode("utf-8", "replace")
            echoed += [decoded, *decoded.split(":", 1)]
    elif value:
        echoed.append(value)  # the bearer token alone
    return echoed


def _json_error(status: int, detail: str, code: str = "invalid", pointer: str | None = None) -> web.Response:
    error: dict[str, object] = {"status": str(status), "code": code, "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return web.json_response({"errors": [error]}, status=status)


async def _ok(request: web.Request, tail: str) -> web.StreamResponse:
    """A well-behaved API: the control case (and a token endpoint that issues tokens)."""
    if tail.endswith("oauth2/token"):
        return web.json_response({"access_token": "ok-token", "token_type": "Bearer", "expires_in": 3600})
    if request.method == "POST":
        return web.json_response(None)
    if tail.endswith("mapping"):
        iid = int(request.query.get("integration_id", "1"))
        mapping = [{"status_category": c, "external_id": None, "is_valid": True} for c in _CATEGORIES]
        return web.json_response({"data": {"integration_id": iid, "mapping": mapping}})
    return web.json_response({"data": []})


_CATEGORIES = ("READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL")


async def _gzip_bomb(request: web.Request, tail: str) -> web.StreamResponse:
    body = gzip_bomb()
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    return web.Response(body=body, headers=headers)


async def _gzip_bomb_chunked(request: web.Request, tail: str) -> web.StreamResponse:
    """The same bomb without a Content-Length: only the inflated size can stop a client."""
    resp = web.StreamResponse(headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    body = gzip_bomb()
    with contextlib.suppress(ConnectionError):
        for i in range(0, len(body), 16384):
            await resp.write(body[i : i + 16384])
        await resp.write_eof()
    return resp


async def _huge_declared(request: web.Request, tail: str) -> web.StreamResponse:
    """Declares 1 GiB, sends a few bytes, then nothing: the header alone must refuse it."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(1024**3)})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        await resp.write(b'{"data": [')
        await asyncio.sleep(STREAM_SECONDS)
    return resp


async def _endless(request: web.Request, tail: str) -> web.StreamResponse:
    """A 200 whose chunked body never ends (until STREAM_SECONDS or the client leaves)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    chunk = b'{"external_id": "1", "translations": []}, ' * 1600  # ~64 KiB
    deadline = time.monotonic() + STREAM_SECONDS
    with contextlib.suppress(ConnectionError):
        await resp.write(b'{"data": [')
        while time.monotonic() < deadline:
            await resp.write(chunk)
    return resp


async def _drip(request: web.Request, tail: str) -> web.StreamResponse:
    """A 200 that declares a small body and sends it one byte at a time, slowly."""
    body = b'{"data": []}' + b" " * 1000
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
    await resp.prepare(request)
    deadline = time.monotonic() + STREAM_SECONDS
    with contextlib.suppress(ConnectionError):
        for i in range(len(body)):
            if time.monotonic() > deadline:
                break
            await resp.write(body[i : i + 1])
            await asyncio.sleep(DRIP_INTERVAL)
    return resp


async def _hang(request: web.Request, tail: str) -> web.StreamResponse:
    """Reads the request and never answers."""
    await asyncio.sleep(STREAM_SECONDS)
    return web.Response(status=504)


def _redirect(status: int) -> Handler:
    async def handler(request: web.Request, tail: str) -> web.StreamResponse:
        elsewhere: str = request.app[_ELSEWHERE]
        # A query that carries the credentials: the client must not print it.
        token = base64.urlsafe_b64encode(request.headers.get("Authorization", "").encode()).decode()
        location = f"{elsewhere}/landed/{tail}?leak={token}"
        return web.Response(status=status, headers={"Location": location})

    return handler


async def _no_content(request: web.Request, tail: str) -> web.StreamResponse:
    return web.Response(status=204)


def _throttle(retry_after: str) -> Handler:
    async def handler(request: web.Request, tail: str) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": retry_after})

    return handler


async def _control_chars(request: web.Request, tail: str) -> web.StreamResponse:
    return _json_error(400, f"bad value {CONTROL}", code="invalid\x1b[2J", pointer=f"/statuses/0\r\n{CONTROL}")


async def _control_chars_text(request: web.Request, tail: str) -> web.StreamResponse:
    """A proxy's plain-text 502 with raw control bytes (and invalid UTF-8) in it."""
    return web.Response(status=502, body=f"upstream failed {CONTROL}".encode() + b"\xff\xfe\x00\x1b]0;title\x07")


async def _control_chars_200(request: web.Request, tail: str) -> web.StreamResponse:
    """A 2xx that is not the API's: its snippet ends up in an invalid_response detail."""
    return web.Response(status=200, body=f"<html>{CONTROL}</html>".encode(), content_type="text/html")


async def _echo_credentials(request: web.Request, tail: str) -> web.StreamResponse:
    """A 401 whose detail repeats the credentials it was sent, in every form."""
    echoed = " | ".join(_credentials(request))
    if tail.endswith("oauth2/token"):
        body = {"error": "invalid_client", "error_description": f"unknown client {echoed}"}
        return web.json_response(body, status=401)
    return _json_error(401, f"Invalid credentials: {echoed}", code="authentication_failed")


async def _echo_credentials_text(request: web.Request, tail: str) -> web.StreamResponse:
    echoed = " | ".join(_credentials(request))
    return web.Response(status=403, text=f"Forbidden. You sent: {echoed}")


async def _echo_credentials_200(request: web.Request, tail: str) -> web.StreamResponse:
    echoed = " | ".join(_credentials(request))
    return web.Response(status=200, text=f"<html>Welcome {echoed}</html>", content_type="text/html")


def _quiet_echoes(request: web.Request) -> list[str]:
    """The credentials in the forms no ``Basic`` before them gives away: the base64 of the
    ``user:secret`` pair alone, its padding percent-encoded (a query string) and cut, and
    the pair itself (or the bearer token alone)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return [value] * 4  # a bearer token, or nothing
    pair = base64.b64decode(value).decode("utf-8", "replace")
    return [value, value.replace("=", "%3D"), value.rstrip("="), pair]


ECHO_DECLARED, ECHO_UNDECLARED = 101, 150  # the ids the echo-quietly account lists


async def _echo_quietly(request: web.Request, tail: str) -> web.StreamResponse:
    """A server that echoes the credentials in what it answers with 200, where no error
    and no outcome carries them: an undeclared shop's name and URL in the list of
    integrations, a status's name (``?integration_id=``), the exception logs' URL and text.
    POSTs are taken."""
    echoed = _quiet_echoes(request)
    said = " ".join(echoed)
    if request.method == "POST" or tail.endswith("mapping") or tail.endswith("oauth2/token"):
        return await _ok(request, tail)
    if tail.endswith("logs"):  # the account's, or one integration's
        record = {"integration_id": ECHO_DECLARED, "id": 1, "full_url": f"https://shop.example/api?k={echoed[1]}",
                  "method": "POST", "response_code": 401, "exception_type": "Auth", "exception": f"refused {said}",
                  "created_at": datetime.datetime.now(datetime.UTC).isoformat()}  # fmt: skip
        return web.json_response({"data": [record]})
    if tail.endswith("integrations"):
        shops = [
            {"id": ECHO_DECLARED, "system": "prestashop_v2", "shop_name": "Declared"},
            {"id": ECHO_UNDECLARED, "system": "prestashop_v2", "shop_name": f"Undeclared {said}",
             "shop_url": f"https://u.example/{echoed[3]}?k={echoed[1]}"},
        ]  # fmt: skip
        return web.json_response({"data": shops})
    status = {"external_id": "1", "translations": [{"language": "en-gb", "status": f"Paid {echoed[2]}"}]}
    if request.query.get("integration_id") != str(ECHO_DECLARED):
        return web.json_response({"data": [status]})
    # A language is the server's words too: the declared shop's quotes the secret alone.
    other = {"external_id": "2", "translations": [{"language": echoed[2], "status": "Shipped"}]}
    return web.json_response({"data": [status, other]})


async def _list_twice_at_the_end(request: web.Request, tail: str) -> web.StreamResponse:
    """``GET /integrations`` in two pages whose last lists an id of the first again."""
    if not tail.endswith("integrations"):
        return await _ok(request, tail)
    shop = {"id": ECHO_UNDECLARED, "system": "prestashop_v2", "shop_name": "Listed twice"}
    if "cursor" not in request.query:
        link = f'<{request.url.with_query({"cursor": "1"})}>; rel="next"'
        return web.json_response({"data": [shop]}, headers={"Link": link})
    return web.json_response({"data": [{"id": ECHO_DECLARED, "system": "prestashop_v2"}, shop]})


LIST_PAGE = 30_000  # integrations a page of the endless lists holds (under 1 MiB of JSON)
REPEATED = 100  # ids the repeating list lists on every page


def _listing(page: Callable[[int], bytes]) -> Handler:
    """``GET /integrations`` answers ``page(n)`` for ``?cursor=n`` with a link to n + 1,
    for ever; every other path answers as the well-behaved API."""

    async def handler(request: web.Request, tail: str) -> web.StreamResponse:
        if not tail.endswith("integrations"):
            return await _ok(request, tail)
        n = int(request.query.get("cursor", "0"))
        link = f'<{request.url.with_query({"cursor": str(n + 1)})}>; rel="next"'
        return web.Response(body=page(n), content_type="application/json", headers={"Link": link})

    return handler


def _page_of(ids: range) -> bytes:
    return b'{"data":[' + b",".join(b'{"id":%d}' % i for i in ids) + b"]}"


# Items that are not integrations batchsync can use, around two that are (7 and 8).
BAD_ITEMS = [
    {"id": 0},
    {"id": -1},
    {"id": 2**63},
    {"id": 10**30},
    {"id": "12"},
    {"id": 1.5},
    "not an object",
    {"shop_name": "no id"},
    {"id": 7, "shop_name": "Good shop", "system": "prestashop_v2"},
    {"id": 8, "system": "prestashop_v2"},
]


async def _list_bad_items(request: web.Request, tail: str) -> web.StreamResponse:
    if not tail.endswith("integrations"):
        return await _ok(request, tail)
    return web.json_response({"data": BAD_ITEMS})


BEHAVIOURS: dict[str, Handler] = {
    "ok": _ok,
    "gzip-bomb": _gzip_bomb,
    "gzip-bomb-chunked": _gzip_bomb_chunked,
    "huge-declared": _huge_declared,
    "endless": _endless,
    "drip": _drip,
    "hang": _hang,
    "redirect-301": _redirect(301),
    "redirect-302": _redirect(302),
    "redirect-307": _redirect(307),
    "redirect-308": _redirect(308),
    "no-content": _no_content,
    "throttle-huge": _throttle("1000000000"),
    "throttle-inf": _throttle("inf"),
    "throttle-nan": _throttle("nan"),
    "throttle-date": _throttle("Fri, 31 Dec 9999 23:59:59 GMT"),
    "control-chars": _control_chars,
    "control-chars-text": _control_chars_text,
    "control-chars-200": _control_chars_200,
    "echo-credentials": _echo_credentials,
    "echo-credentials-text": _echo_credentials_text,
    "echo-credentials-200": _echo_credentials_200,
    "echo-quietly": _echo_quietly,
    "list-twice-at-the-end": _list_twice_at_the_end,
    # GET /integrations for ever: fresh ids on every page, or the same ids again and again.
    "list-endless": _listing(lambda n: _page_of(range(n * LIST_PAGE + 1, (n + 1) * LIST_PAGE + 1))),
    "list-repeat": _listing(lambda n: _page_of(range(1, REPEATED + 1))),
    "list-bad-items": _list_bad_items,
    # One page past what an answer may be (150,000 ids, some 2 MB).
    "list-big-page": _listing(lambda n: _page_of(range(1, 150_001))),
}

_ELSEWHERE = web.AppKey("elsewhere", str)
_SEEN = web.AppKey("seen", list[Seen])


async def _dispatch(request: web.Request) -> web.StreamResponse:
    behaviour = request.match_info["behaviour"]
    tail = request.match_info.get("tail", "")
    request.app[_SEEN].append(Seen(behaviour, request.method, request.path, "Authorization" in request.headers))
    handler = BEHAVIOURS.get(behaviour)
    if handler is None:
        return _json_error(404, f"no behaviour {behaviour!r}", code="not_found")
    await request.read()
    return await handler(request, tail)


async def _landing(request: web.Request) -> web.StreamResponse:
    """Where redirects point: records the request and answers like a successful write."""
    request.app[_SEEN].append(Seen("elsewhere", request.method, request.path, "Authorization" in request.headers))
    return web.json_response(None if request.method == "POST" else {"data": []})


@dataclass
class Hostile:
    """A running hostile server: its URLs, and the requests each side received."""

    url: str
    https_url: str
    elsewhere: str
    ca: trustme.CA
    seen: list[Seen] = field(default_factory=list)
    landed: list[Seen] = field(default_factory=list)

    def base(self, behaviour: str, tls: bool = False) -> str:
        """The base URL under which every path misbehaves as ``behaviour``."""
        if behaviour not in BEHAVIOURS:
            raise KeyError(behaviour)
        return f"{self.https_url if tls else self.url}/{behaviour}"

    def trusting_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts the server's CA (to show the TLS endpoint works)."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


async def _serve(app: web.Application, host: str, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, list[str]]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    urls = []
    for ssl_context in (None, tls) if tls is not None else (None,):
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[-1][1]  # the site just started is the last one
        urls.append(f"{'https' if ssl_context else 'http'}://{host}:{port}")
    return runner, urls


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``app`` served on ``host`` (loopback, a free port) for the ``async with`` block: its URL."""
    runner, urls = await _serve(app, host)
    try:
        yield urls[0]
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hostile_server(host: str = "127.0.0.1") -> AsyncIterator[Hostile]:
    """Serve the hostile behaviours on ``host`` (loopback) for the ``async with`` block."""
    gzip_bomb()  # built now (once a process, under a second), not inside a client's timeout
    landing = web.Application()
    landed: list[Seen] = []
    landing[_SEEN] = landed
    landing.router.add_route("*", "/{tail:.*}", _landing)
    landing_runner, (elsewhere,) = await _serve(landing, host)

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host, "localhost").configure_cert(server_ctx)
    app = web.Application()
    seen: list[Seen] = []
    app[_SEEN] = seen
    app[_ELSEWHERE] = elsewhere
    app.router.add_route("*", "/{behaviour}", _dispatch)
    app.router.add_route("*", "/{behaviour}/{tail:.*}", _dispatch)
    try:
        runner, (url, https_url) = await _serve(app, host, server_ctx)
    except BaseException:
        await landing_runner.cleanup()
        raise
    try:
        yield Hostile(url, https_url, elsewhere, ca, seen, landed)
    finally:
        await runner.cleanup()
        await landing_runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--ca-file", help="write the CA certificate (PEM) that signed the HTTPS endpoint here")
    args = parser.parse_args()

    async def serve() -> None:
        async with hostile_server() as h:
            if args.ca_file:
                h.ca.cert_pem.write_to_path(args.ca_file)
            urls = {name: h.base(name) for name in BEHAVIOURS}
            urls["https"] = h.https_url
            print(json.dumps(urls, indent=2), flush=True)
            await asyncio.sleep(args.seconds)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
