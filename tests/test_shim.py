"""The aioresponses shim (tests/_aioresponses_shim.py) makes mocked aiohttp requests work."""

from __future__ import annotations

import _aioresponses_shim
import aiohttp
import msgspec
import pytest
from aioresponses import aioresponses

from batchsync import wire

URL = "https://panel.sendcloud.sc/api/v3/shop-order-statuses?integration_id=7"


def test_shim_is_applied_while_needed() -> None:
    # When this fails, an aioresponses release supports aiohttp 3.14: delete the shim.
    assert _aioresponses_shim.APPLIED


async def test_get_returns_the_mocked_json() -> None:
    payload = {"data": [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]}
    with aioresponses() as mocked:
        mocked.get(URL, payload=payload, headers={"X-Test": "yes"})
        async with aiohttp.ClientSession() as session, session.get(URL) as resp:
            assert resp.status == 200
            assert resp.headers["X-Test"] == "yes"
            assert await resp.json() == payload
            body = await resp.read()
    decoded = msgspec.json.decode(body, type=wire.GetShopOrderStatuses)
    assert decoded.data[0].translations[0].status == "Paid"


async def test_error_status_and_raw_body() -> None:
    with aioresponses() as mocked:
        mocked.post(
            URL.split("?")[0],
            status=429,
            body=b"<html>slow down</html>",
            content_type="text/html",
            repeat=True,
        )
        async with aiohttp.ClientSession() as session:
            async with session.post(URL.split("?")[0], json={}) as resp:
                assert resp.status == 429
                assert await resp.text() == "<html>slow down</html>"
            with pytest.raises(aiohttp.ClientResponseError):
                async with session.post(URL.split("?")[0], json={}) as resp:
                    resp.raise_for_status()


async def test_custom_response_class_is_kept() -> None:
    class Mine(aiohttp.ClientResponse):
        pass

    with aioresponses() as mocked:
        mocked.get(URL, payload=None, response_class=Mine)
        async with aiohttp.ClientSession() as session, session.get(URL) as resp:
            assert isinstance(resp, Mine)
            assert await resp.json() is None
