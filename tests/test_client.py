"""The client turns every response into a value or one classified exception (mocked HTTP)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioresponses import aioresponses

from batchsync import client as c
from batchsync.secrets import Secret, basic_auth

BASE = "https://api.example.test/api/v3"
URL = re.compile(r"^https://api\.example\.test/api/v3/shop-order-statuses.*$")
PUBLIC, SECRET = "pub-key-0123", "very-secret-value-987"


@pytest.fixture
async def client() -> AsyncIterator[c.Client]:
    async with aiohttp.ClientSession() as session:
        yield c.Client(session, BASE, basic_auth(Secret(PUBLIC), Secret(SECRET)), timeout=5)


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
    assert call.kwargs["headers"]["Authorization"].startswith("Basic ")
    assert call.kwargs["headers"]["Content-Type"] == "application/json"


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
        with pytest.raises(c.ApiError) as info:
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
    text = f"{exc} {exc!r} {exc.detail}"
    assert SECRET not in text and PUBLIC not in text


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"data": 5}', b"[1,2"])
async def test_undocumented_200_on_get_is_invalid_response(client: c.Client, body: bytes) -> None:
    with aioresponses() as m:
        m.get(URL, status=200, body=body)
        with pytest.raises(c.InvalidResponseError) as info:
            await client.get_statuses(1)
    assert info.value.retryable


async def test_undocumented_200_on_post_is_invalid_response(client: c.Client) -> None:
    with aioresponses() as m:
        m.post(URL, status=200, body=b"<html>ok</html>")
        with pytest.raises(c.InvalidResponseError):
            await client.post_statuses(b"{}")


async def test_connection_error_is_transport_and_hides_request(client: c.Client) -> None:
    with aioresponses() as m:
        m.get(URL, exception=aiohttp.ClientConnectionError(f"boom with {SECRET}"))
        with pytest.raises(c.TransportError) as info:
            await client.get_statuses(1)
    assert info.value.retryable
    assert SECRET not in str(info.value)


async def test_timeout_is_classified(client: c.Client) -> None:
    with aioresponses() as m:
        m.get(URL, exception=TimeoutError())
        with pytest.raises(c.RequestTimeout):
            await client.get_statuses(1)


def test_secret_never_prints() -> None:
    header = basic_auth(Secret(PUBLIC), Secret(SECRET))
    assert SECRET not in repr(header) and SECRET not in str(header)
    assert f"{header}" == str(header)
