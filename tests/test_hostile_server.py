"""The hostile server misbehaves as it says (else the client tests against it prove nothing)."""

from __future__ import annotations

import base64
import gzip
import struct
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from hostile_server import BEHAVIOURS, BOMB_INFLATED, CONTROL, Hostile, gzip_bomb, hostile_server

# The command line over loopback, on both event loops it can run on.
pytestmark = pytest.mark.both_loops

BASIC = "Basic " + base64.b64encode(b"pub-1:sec-2").decode()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    async with hostile_server() as h:
        yield h


@pytest.fixture
async def raw() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that neither inflates nor follows redirects: sees what the server sends."""
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


def test_small_bomb_inflates_to_exactly_its_size() -> None:
    bomb = gzip_bomb(8 * 1024 * 1024)
    assert gzip.decompress(bomb) == bytes(8 * 1024 * 1024)  # CRC and length checked by gzip
    assert len(bomb) < 16 * 1024


def test_big_bomb_is_2mb_that_claims_2gib() -> None:
    bomb = gzip_bomb()
    assert 1_500_000 < len(bomb) < 3_000_000
    assert struct.unpack("<I", bomb[-4:])[0] == BOMB_INFLATED & 0xFFFFFFFF
    inflate = zlib.decompressobj(31)
    first = inflate.decompress(bomb[:100_000], 64 * 1024 * 1024)
    assert len(first) > 50 * 1024 * 1024 and not first.strip(b"\x00")  # 100 KB of it: > 50 MB of zeros


async def test_gzip_bomb_is_served_compressed(hostile: Hostile, raw: aiohttp.ClientSession) -> None:
    async with raw.get(hostile.base("gzip-bomb") + "/shop-order-statuses") as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.content_length == len(gzip_bomb())
        assert (await resp.content.read(2)) == b"\x1f\x8b"
    async with raw.get(hostile.base("gzip-bomb-chunked") + "/x") as resp:
        assert resp.content_length is None and resp.headers["Transfer-Encoding"] == "chunked"


async def test_endless_body_goes_past_any_cap(hostile: Hostile, raw: aiohttp.ClientSession) -> None:
    async with raw.get(hostile.base("endless") + "/x") as resp:
        got = 0
        while got < 16 * 1024 * 1024:
            got += len(await resp.content.readany())
    assert got >= 16 * 1024 * 1024


async def test_drip_is_slow(hostile: Hostile, raw: aiohttp.ClientSession) -> None:
    async with raw.get(hostile.base("drip") + "/x") as resp:
        started = time.monotonic()
        got = b""
        while time.monotonic() - started < 0.5:
            got += await resp.content.readany()
    assert 0 < len(got) < 10  # a byte every 0.1 s
    assert resp.content_length is not None and resp.content_length > 1000


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_redirects_point_at_the_other_server(hostile: Hostile, raw: aiohttp.ClientSession, code: int) -> None:
    url = hostile.base(f"redirect-{code}") + "/shop-order-statuses"
    async with raw.post(url, data=b"{}", headers={"Authorization": BASIC}, allow_redirects=False) as resp:
        assert resp.status == code
        location = resp.headers["Location"]
    assert location.startswith(hostile.elsewhere + "/landed/shop-order-statuses?leak=")
    assert hostile.elsewhere.rsplit(":", 1)[1] != hostile.url.rsplit(":", 1)[1]
    # Followed (as the client must not), the write lands there and looks successful.
    async with raw.post(location, data=b"{}") as resp:
        assert resp.status == 200 and await resp.read() == b"null"
    assert [(s.method, s.authorization) for s in hostile.landed] == [("POST", False)]


@pytest.mark.parametrize(
    ("behaviour", "status", "retry_after"),
    [("no-content", 204, None), ("throttle-huge", 429, "1000000000"), ("throttle-inf", 429, "inf")],
)
async def test_status_behaviours(
    hostile: Hostile, raw: aiohttp.ClientSession, behaviour: str, status: int, retry_after: str | None
) -> None:
    async with raw.get(hostile.base(behaviour) + "/x") as resp:
        assert resp.status == status
        assert resp.headers.get("Retry-After") == retry_after
        assert await resp.read() == b""


async def test_control_characters_reach_the_client_raw(hostile: Hostile, raw: aiohttp.ClientSession) -> None:
    async with raw.get(hostile.base("control-chars") + "/x") as resp:
        detail = (await resp.json())["errors"][0]["detail"]
    assert CONTROL in detail and "\x1b" in detail and "\r" in detail and "\x00" in detail
    async with raw.get(hostile.base("control-chars-text") + "/x") as resp:
        assert resp.status == 502
        assert b"\x1b" in await resp.read()


@pytest.mark.parametrize("behaviour", ["echo-credentials", "echo-credentials-text", "echo-credentials-200"])
async def test_echo_repeats_every_form_of_the_credentials(
    hostile: Hostile, raw: aiohttp.ClientSession, behaviour: str
) -> None:
    async with raw.get(hostile.base(behaviour) + "/x", headers={"Authorization": BASIC}) as resp:
        text = await resp.text()
    for form in (BASIC, "pub-1:sec-2", "sec-2", "pub-1"):
        assert form in text


async def test_echo_token_endpoint_answers_like_oauth2(hostile: Hostile, raw: aiohttp.ClientSession) -> None:
    async with raw.post(hostile.base("echo-credentials") + "/oauth2/token", headers={"Authorization": BASIC}) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["error"] == "invalid_client" and "sec-2" in body["error_description"]


async def test_tls_endpoint_is_self_signed(hostile: Hostile) -> None:
    async with aiohttp.ClientSession() as default:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await default.get(hostile.base("ok", tls=True) + "/x")
    connector = aiohttp.TCPConnector(ssl=hostile.trusting_context())
    async with (
        aiohttp.ClientSession(connector=connector) as trusting,
        trusting.get(hostile.base("ok", tls=True) + "/x") as resp,
    ):
        assert resp.status == 200


async def test_every_behaviour_answers_and_is_recorded(hostile: Hostile, raw: aiohttp.ClientSession) -> None:
    quick = [b for b in BEHAVIOURS if b not in ("endless", "drip", "hang", "huge-declared", "gzip-bomb-chunked")]
    for behaviour in quick:
        async with raw.get(hostile.base(behaviour) + "/shop-order-statuses", allow_redirects=False) as resp:
            assert resp.status in (200, 204, 301, 302, 307, 308, 400, 401, 403, 429, 502), behaviour
    assert [s.behaviour for s in hostile.seen] == quick
    with pytest.raises(KeyError):
        hostile.base("no-such-behaviour")
