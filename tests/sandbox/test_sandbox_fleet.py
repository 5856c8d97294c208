"""The sandbox's fleet: GET /integrations paginated as Sendcloud's v3 lists are, and how fleets are seeded.

Seeding from a JSON seed file (``--seed-file``), and from an inventory with integrations
that fail or that the account does not have (``--failing``, ``--absent``). All over loopback HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from sandbox_fixture import SandboxFactory, auth_header
from test_sandbox import Answer, call

from batchsync.commands.sandbox import add_arguments, settings
from batchsync.model import PRESTASHOP_V2, Inventory, Limits
from batchsync.sandbox.config import SandboxConfig
from batchsync.sandbox.server import Sandbox, decode_cursor, encode_cursor
from batchsync.sandbox.state import OTHER_SYSTEM, AccountSeed, IntegrationSeed, Seed, load_seed
from batchsync.usage import UsageError
from batchsync.wire import Status, Translation

REPO = Path(__file__).resolve().parents[2]
ITEM_KEYS = {"id", "shop_name", "shop_url", "system", "failing_since", "last_fetch"}
PAID = Status("paid", (Translation("Paid", "en-gb"),))
# Not in id order on purpose: the listing sorts.
BIG_IDS = [5000 + (i * 37) % 101 for i in range(23)]


def fleet_seed() -> Seed:
    big = tuple(
        IntegrationSeed(
            i,
            "big",
            statuses=(PAID,),
            shop_name=f"Shop {i}",
            shop_url=f"https://{i}.shop.example",
            system=OTHER_SYSTEM if i % 5 == 0 else PRESTASHOP_V2,
            failing_since="2024-05-01T10:00:00Z" if i % 7 == 0 else None,
        )
        for i in BIG_IDS
    )
    small = tuple(IntegrationSeed(i, "small") for i in (3, 1, 2))
    return Seed(
        accounts=(AccountSeed("big", "big-pk", "big-sk"), AccountSeed("small", "small-pk", "small-sk")),
        integrations=(*big, *small),
    )


BIG = auth_header("big-pk", "big-sk")
SMALL = auth_header("small-pk", "small-sk")


def next_link(answer: Answer) -> str | None:
    return links(answer).get("next")


def links(answer: Answer) -> dict[str, str]:
    """rel -> URL of a ``Link`` header (RFC 8288, as Sendcloud sends it)."""
    out = {}
    for part in answer.headers.get("Link", "").split(","):
        if part.strip():
            url, _, rel = part.partition(";")
            out[rel.strip().removeprefix("rel=").strip('"')] = url.strip().strip("<>")
    return out


async def get_url(session: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> Answer:
    """GET a URL exactly as a Link header gives it."""
    async with session.get(url, headers=auth) as resp:
        return Answer("GET", resp.url.path, dict(resp.url.query), resp.status, await resp.read(), resp.headers)


async def walk(box: Sandbox, auth: dict[str, str], query: dict[str, str] | None = None) -> list[list[dict[str, Any]]]:
    """Every page of GET /integrations, following rel="next" as given."""
    pages = []
    async with aiohttp.ClientSession() as session:
        answer = await call(box, "GET", "/integrations", auth, query=query, session=session)
        while True:
            assert answer.status == 200, answer.body
            assert set(answer.json) == {"data"}
            pages.append(answer.json["data"])
            url = next_link(answer)
            if url is None:
                return pages
            assert url.startswith(box.url + "/integrations?")
            answer = await get_url(session, url, auth)


# -- pagination ------------------------------------------------------------------------------------


async def test_pages_cover_the_account_once_in_id_order(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(SandboxConfig(page_size=5), source=fleet_seed())
    pages = await walk(box, BIG)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    ids = [item["id"] for page in pages for item in page]
    assert ids == sorted(BIG_IDS)
    # Each request was one read of the account's budget.
    assert box.stats()["requests"]["big"] == {"GET": 5, "POST": 0}
    # Another account sees its own only, on one page without a Link.
    (only,) = await walk(box, SMALL)
    assert [i["id"] for i in only] == [1, 2, 3]
    first = await call(box, "GET", "/integrations", SMALL)
    assert "Link" not in first.headers


async def test_items_carry_what_was_seeded(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(SandboxConfig(page_size=4), source=fleet_seed())
    items = {i["id"]: i for page in await walk(box, BIG) for i in page}
    for iid in BIG_IDS:
        item = items[iid]
        assert set(item) == ITEM_KEYS
        assert (item["shop_name"], item["shop_url"]) == (f"Shop {iid}", f"https://{iid}.shop.example")
        assert item["system"] == (OTHER_SYSTEM if iid % 5 == 0 else PRESTASHOP_V2)
        assert item["failing_since"] == ("2024-05-01T10:00:00Z" if iid % 7 == 0 else None)
        assert item["last_fetch"].endswith("Z")
    assert {i["system"] for i in items.values()} == {OTHER_SYSTEM, PRESTASHOP_V2}
    # The single-integration endpoint shows the same object.
    one = await call(box, "GET", f"/integrations/{BIG_IDS[0]}", BIG)
    assert one.json == items[BIG_IDS[0]]


async def test_page_size_is_asked_and_clamped(sandbox_factory: SandboxFactory) -> None:
    # Reads refill fast: this test walks the list seven times.
    box = await sandbox_factory(
        SandboxConfig(page_size=5, write_burst=100, reads_per_minute=60000), source=fleet_seed()
    )
    assert [len(p) for p in await walk(box, BIG, {"page_size": "2"})] == [2] * 11 + [1]
    # More than the largest page: clamped. Zero or not a number: ignored (the default).
    for asked in ("500", "0", "-1", "abc", "", "٣"):
        assert [len(p) for p in await walk(box, BIG, {"page_size": asked})] == [5, 5, 5, 5, 3], asked
    # The next URL keeps the asked size.
    answer = await call(box, "GET", "/integrations", BIG, query={"page_size": "3"})
    assert "page_size=3" in links(answer)["next"]


async def test_prev_link_goes_back_a_page(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(SandboxConfig(page_size=4), source=fleet_seed())
    async with aiohttp.ClientSession() as session:
        first = await call(box, "GET", "/integrations", BIG, session=session)
        assert set(links(first)) == {"next"}  # no prev on the first page
        second = await get_url(session, links(first)["next"], BIG)
        third = await get_url(session, links(second)["next"], BIG)
        assert set(links(third)) == {"next", "prev"}
        back = await get_url(session, links(third)["prev"], BIG)
        assert back.json == second.json
        assert links(back)["next"] == links(second)["next"]
        again = await get_url(session, links(back)["prev"], BIG)
        assert again.json == first.json
        assert "prev" not in links(again)


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "%%%",
        base64.b64encode(b"p=abc").decode(),
        base64.b64encode(b"q=12").decode(),
        base64.b64encode(b"p=1&r=2").decode(),
        base64.b64encode(b"\xff\xfe").decode(),
        "",
    ],
)
async def test_a_cursor_not_made_here_is_refused(sandbox_factory: SandboxFactory, cursor: str) -> None:
    box = await sandbox_factory(SandboxConfig(page_size=4), source=fleet_seed())
    answer = await call(box, "GET", "/integrations", BIG, query={"cursor": cursor})
    assert answer.status == 400
    (error,) = answer.json["errors"]
    assert (error["code"], error["source"]) == ("invalid", {"parameter": "cursor"})


def test_cursors_are_opaque_base64_and_round_trip() -> None:
    for position in range(0, 20000, 7):
        for reverse in (False, True):
            cursor = encode_cursor(position, reverse)
            base64.b64decode(cursor, validate=True)
            assert decode_cursor(cursor) == (position, reverse)


async def test_a_cursor_past_the_end_gives_an_empty_last_page(sandbox_factory: SandboxFactory) -> None:
    box = await sandbox_factory(SandboxConfig(page_size=4), source=fleet_seed())
    answer = await call(box, "GET", "/integrations", BIG, query={"cursor": encode_cursor(10**9, False)})
    assert (answer.status, answer.json, "Link" in answer.headers) == (200, {"data": []}, False)


async def test_an_account_without_integrations_lists_nothing(sandbox_factory: SandboxFactory) -> None:
    seed = Seed(accounts=(AccountSeed("empty", "e-pk", "e-sk"),))
    box = await sandbox_factory(source=seed)
    answer = await call(box, "GET", "/integrations", auth_header("e-pk", "e-sk"))
    assert (answer.status, answer.json, "Link" in answer.headers) == (200, {"data": []}, False)


# -- seeding from an inventory ---------------------------------------------------------------------


async def test_inventory_seeding_with_failing_and_absent(sandbox_factory: SandboxFactory, sandbox_auth: Any) -> None:
    config = SandboxConfig(failing_ids=frozenset({102}), absent_ids=frozenset({103, 104}), page_size=2)
    box = await sandbox_factory(config)
    acme = sandbox_auth["acme"]
    items = {i["id"]: i for page in await walk(box, acme) for i in page}
    assert sorted(items) == [101, 102, 105]
    assert items[102]["failing_since"] is not None and items[102]["failing_since"].endswith("Z")
    assert items[101]["failing_since"] is None
    for iid in ("103", "104"):
        answer = await call(box, "GET", "/shop-order-statuses", acme, query={"integration_id": iid})
        assert answer.status == 404
    # Leaving integrations out does not change how the others drift.
    full = await sandbox_factory()
    assert {k: v for k, v in full.state.items() if k not in ("103", "104")} == box.state


def _parse(*argv: str) -> SandboxConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings(parser.parse_args(list(argv))).config


def test_cli_options_reach_the_config() -> None:
    config = _parse("--failing", "7,8", "--failing", "9", "--absent", "10", "--page-size", "3", "--token-lifetime", "2")
    assert config.failing_ids == frozenset({7, 8, 9})
    assert config.absent_ids == frozenset({10})
    assert (config.page_size, config.token_lifetime) == (3, 2)
    assert (_parse().page_size, _parse().token_lifetime) == (100, 3600)
    with pytest.raises(UsageError, match="seed file"):
        _parse("--seed-file", "x.json", "--in-sync", "0.5")


@pytest.mark.parametrize(
    "argv",
    [["--page-size", "0"], ["--page-size", "x"], ["--token-lifetime", "0"], ["--failing", "7,x"], ["--absent", ""]],
)
def test_cli_refuses_bad_values(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_config_checks_page_size_and_token_lifetime() -> None:
    with pytest.raises(ValueError, match="page_size"):
        SandboxConfig(page_size=0)
    with pytest.raises(ValueError, match="token_lifetime"):
        SandboxConfig(token_lifetime=0)


# -- seed files ------------------------------------------------------------------------------------

FLEET_JSON: dict[str, Any] = {
    "accounts": [
        {"name": "acme", "public_key": "acme-pk", "secret_key": "acme-sk", "limits": {"reads_per_minute": 6000}},
        {"name": "oauth", "auth": "oauth2", "client_id": "oauth-id", "client_secret": "oauth-secret"},
    ],
    "integrations": [
        {
            "id": 11,
            "account": "acme",
            "shop_name": "Fietsen Jansen",
            "shop_url": "https://fietsen.example",
            "statuses": [{"external_id": "6", "translations": [{"status": "Cancelled", "language": "en-gb"}]}],
            "mapping": {"CANCEL": "6", "DELIVERED": "9"},
        },
        {"id": 12, "account": "acme", "system": "shopify", "failing_since": "2024-01-02T03:04:05Z"},
        {"id": 13, "account": "acme"},
        {"id": 21, "account": "oauth"},
    ],
}


def test_load_seed_reads_the_struct_as_json(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(FLEET_JSON))
    seed = load_seed(path)
    assert seed.accounts[0] == AccountSeed("acme", "acme-pk", "acme-sk", Limits(reads_per_minute=6000))
    assert seed.accounts[1].auth == "oauth2"
    assert seed.integrations[0].mapping == {"CANCEL": "6", "DELIVERED": "9"}
    assert seed.integrations[1].system == "shopify"
    # The struct encodes back to a file that loads the same.
    path.write_bytes(msgspec.json.encode(seed))
    assert load_seed(path) == seed


def _sandbox_cli(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchsync", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=REPO,
    )


async def test_cli_serves_a_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(FLEET_JSON))
    proc = _sandbox_cli(["--seed-file", str(path), "--page-size", "2"])
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert "(4 integrations)" in line
        url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
        acme = auth_header("acme-pk", "acme-sk")
        async with aiohttp.ClientSession() as session:
            first = await get_url(session, url + "/integrations", acme)
            second = await get_url(session, links(first)["next"], acme)
            assert "next" not in links(second)
            items = first.json["data"] + second.json["data"]
            assert [(i["id"], i["system"], i["failing_since"]) for i in items] == [
                (11, PRESTASHOP_V2, None),
                (12, "shopify", "2024-01-02T03:04:05Z"),
                (13, PRESTASHOP_V2, None),
            ]
            assert (items[0]["shop_name"], items[0]["shop_url"]) == ("Fietsen Jansen", "https://fietsen.example")
            mapping = await get_url(session, url + "/shop-order-statuses/mapping?integration_id=11", acme)
            assert [
                (m["status_category"], m["external_id"], m["is_valid"]) for m in mapping.json["data"]["mapping"]
            ] == [
                ("READY_TO_SEND", None, True),
                ("IN_TRANSIT", None, True),
                ("DELIVERED", "9", False),
                ("CANCEL", "6", True),
            ]
            # The OAuth2 account of the file refuses Basic with its client credentials.
            refused = await get_url(session, url + "/integrations", auth_header("oauth-id", "oauth-secret"))
            assert refused.status == 401
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        assert proc.stderr is not None
        assert "oauth-secret" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


BAD_LANGUAGE = {"external_id": "1", "translations": [{"status": "x", "language": "xx"}]}


def _broken(fleet: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**fleet, **changes}


BROKEN_SEEDS: list[tuple[str, bytes | str | dict[str, Any] | None, str]] = [
    ("missing file", None, "No such file"),
    ("not json", "{accounts: [", "invalid JSON at line 1, column 2: "),
    ("not utf-8", b'{"accounts": ["\xe9"]}', "is not UTF-8 text (line 1, column 16: byte 0xE9)"),
    ("a list", "[]", "Expected `object`"),
    ("wrong type", _broken(FLEET_JSON, integrations=[{"id": "11", "account": "acme"}]), "$.integrations[0].id"),
    ("unknown field", _broken(FLEET_JSON, integrations=[{"id": 1, "account": "acme", "colour": "red"}]), "colour"),
    (
        "unknown category",
        _broken(FLEET_JSON, integrations=[{"id": 1, "account": "acme", "mapping": {"LOST": "1"}}]),
        "$.integrations[0].mapping",
    ),
    ("unknown account", _broken(FLEET_JSON, integrations=[{"id": 1, "account": "nobody"}]), "unknown account"),
    (
        "id twice",
        _broken(FLEET_JSON, integrations=[{"id": 1, "account": "acme"}, {"id": 1, "account": "acme"}]),
        "seeded twice",
    ),
    (
        "oauth2 without a secret",
        _broken(FLEET_JSON, accounts=[{"name": "o", "auth": "oauth2", "client_id": "SECRET-LOOKING-ID"}]),
        "needs client_id and client_secret",
    ),
    ("basic without keys", _broken(FLEET_JSON, accounts=[{"name": "b", "public_key": "PK-VALUE"}]), "needs public_key"),
    (
        "a language the API does not know",
        _broken(FLEET_JSON, integrations=[{"id": 1, "account": "acme", "statuses": [BAD_LANGUAGE]}]),
        "$.integrations[0].statuses[0].translations[0].language",
    ),
]


@pytest.mark.parametrize(("content", "reason"), [c[1:] for c in BROKEN_SEEDS], ids=[c[0] for c in BROKEN_SEEDS])
def test_cli_refuses_a_broken_seed_file(
    tmp_path: Path, content: bytes | str | dict[str, Any] | None, reason: str
) -> None:
    path = tmp_path / "fleet.json"
    if content is not None:
        path.write_bytes(
            content
            if isinstance(content, bytes)
            else (content if isinstance(content, str) else json.dumps(content)).encode()
        )
    proc = _sandbox_cli(["--seed-file", str(path)])
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert out == ""
    assert reason in err
    assert "Traceback" not in err
    for value in ("SECRET-LOOKING-ID", "PK-VALUE", "acme-sk", "oauth-secret"):
        assert value not in err


def test_cli_seed_file_excludes_inventory(tmp_path: Path) -> None:
    proc = _sandbox_cli(["--seed-file", "a.json", "--inventory", "b.toml"])
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "not allowed with argument" in err


def test_seed_of_an_inventory_is_a_seed_file(sandbox_inventory: Inventory, tmp_path: Path) -> None:
    """What seed_from_inventory builds can be saved and served again (a fleet to edit by hand)."""
    from batchsync.sandbox.state import seed_from_inventory

    seed = seed_from_inventory(sandbox_inventory, seed=4)
    path = tmp_path / "fleet.json"
    path.write_bytes(msgspec.json.encode(seed))
    assert load_seed(path) == seed


def test_the_manual_s_seed_file_example_is_served(tmp_path: Path) -> None:
    page = (REPO / "docs" / "sandbox.md").read_text()
    assert '--8<-- "docs/examples/sandbox-seed.json"' in page  # the page shows this very file
    path = REPO / "docs" / "examples" / "sandbox-seed.json"
    seed = load_seed(path)
    Sandbox(seed)  # consistent: accounts exist, ids unique
    assert {a.auth for a in seed.accounts} == {"basic", "oauth2"}
    assert any(i.mapping for i in seed.integrations)
