"""Notifications: the message (Slack-shaped or the JSON summary), when one is sent, and the
sending itself against a receiver of the tests' own on loopback: delivered once, retried
briefly, bounded in time whatever the receiver does, and never a URL or secret in a log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from cli_helpers import ROOT, SandboxProcess, env_with
from sandbox_fixture import SANDBOX_ENV

from batchsync.outcome import AccountStats, ErrorInfo, Outcome, Summary
from batchsync.outputs.notify import (
    MAX_ATTEMPTS,
    Webhook,
    WebhookError,
    json_message,
    notify,
    post_all,
    resolve_webhook,
    slack_message,
    wanted,
)
from batchsync.redact import Redactor

TOKEN_PATH = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"  # what makes a webhook URL a credential


def summary(failed: int = 0, changed: int = 0, skipped: int = 0, stopped: str | None = None, **kw: Any) -> Summary:
    accounts = {
        "acme": AccountStats(unchanged=5, changed=changed, failed=failed, skipped=skipped, requests=20),
        "slow": AccountStats(unchanged=2, throttled=kw.get("throttled", 0), write_rate=kw.get("write_rate")),
    }
    return Summary(accounts=accounts, duration_s=12.5, stopped=stopped, started_at=1_800_000_000.0)


def failure(iid: int, detail: str = "bad request", **kw: Any) -> Outcome:
    error = ErrorInfo(kw.get("kind", "client"), kw.get("status", 400), None, detail, kw.get("pointer"))
    return Outcome(integration_id=iid, account=kw.get("account", "acme"), result="failed", error=error)


# -- when ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "run", "expected"),
    [
        ("failure", summary(), False),
        ("failure", summary(changed=3), False),
        ("failure", summary(failed=1), True),
        ("failure", summary(skipped=2), True),  # a run that left work undone
        ("failure", summary(stopped="interrupted by SIGTERM"), True),
        ("change", summary(), False),
        ("change", summary(changed=1), True),
        ("change", summary(failed=1), True),
        ("always", summary(), True),
    ],
)
def test_wanted(on: Any, run: Summary, expected: bool) -> None:
    assert wanted(on, run) is expected


# -- what ---------------------------------------------------------------------------------


def test_the_slack_message_has_text_totals_failures_and_throttled_accounts() -> None:
    run = summary(failed=2, changed=4, throttled=7, write_rate=38.4)
    msg = slack_message(
        run, "apply", 1, [failure(11, "one"), failure(12, "two", kind="server", status=500)], inventory="inv.toml"
    )
    assert msg["text"].startswith(
        "batchsync apply: failed (exit 1) on inv.toml: 2 failed, 4 changed, 7 unchanged, 0 skipped"
    )
    types = [b["type"] for b in msg["blocks"]]
    assert types == ["header", "section", "section", "section", "context"]
    fields = [f["text"] for f in msg["blocks"][1]["fields"]]
    assert "*Failed*\n2" in fields and "*Changed*\n4" in fields and "*Requests*\n20" in fields
    failed_text = msg["blocks"][2]["text"]["text"]
    assert "`11` acme: client 400: one" in failed_text and "`12` acme: server 500: two" in failed_text
    throttled_text = msg["blocks"][3]["text"]["text"]
    assert "slow: 7 × 429; writes settled at 38.4/min" in throttled_text
    assert "Throttled: slow" in msg["text"]  # receivers that ignore blocks see it too
    json.dumps(msg)  # plain JSON


def test_failed_integrations_are_listed_up_to_a_limit() -> None:
    fails = [failure(i) for i in range(40)]
    msg = slack_message(summary(failed=40), "apply", 1, fails, max_failed=10)
    listed = msg["blocks"][2]["text"]["text"]
    assert listed.count("• `") == 10 and "…and 30 more" in listed
    assert len(listed) <= 3000 and len(msg["text"]) <= 4000


def test_a_plan_speaks_of_changes_to_make() -> None:
    msg = slack_message(summary(changed=3), "plan", 4, [])
    assert msg["blocks"][0]["text"]["text"] == "batchsync plan: changes to make (exit 4)"
    assert "3 to change" in msg["text"]


@pytest.mark.parametrize(
    ("detail", "shown"),
    [
        ("<!channel> look", "&lt;!channel&gt; look"),
        ("<http://evil.example|click here>", "&lt;http://evil.example|click here&gt;"),
        ("@here @channel", "@\u2060here @\u2060channel"),
        ("a\x00b\x1b[31m\r\nc", "a\\x00b\\x1b[31m\\x0d\\x0ac"),
        ("&lt;", "&amp;lt;"),
    ],
)
def test_server_text_cannot_ping_link_or_break_the_message(detail: str, shown: str) -> None:
    msg = slack_message(summary(failed=1), "apply", 1, [failure(1, detail)])
    assert msg["blocks"][2]["text"]["text"].endswith(f"`1` acme: client 400: {shown}")
    assert f"client 400: {shown}" in msg["text"]
    blob = json.dumps(msg, ensure_ascii=False)
    assert "<!channel>" not in blob and "<http" not in blob and "@here" not in blob and "@channel" not in blob


def test_secrets_never_reach_the_message() -> None:
    redact = Redactor(["pk-live-123", "sk-live-456"])
    fails = [failure(1, "echo: pk-live-123 / Basic cGstbGl2ZS0xMjM6c2stbGl2ZS00NTY=", pointer="/sk-live-456")]
    run = summary(failed=1, stopped="sk-live-456")
    for build in (slack_message, json_message):
        blob = json.dumps(build(run, "apply", 1, fails, inventory="x.toml", redact=redact))
        assert "pk-live-123" not in blob and "sk-live-456" not in blob and "cGstbGl2ZS0xMjM6" not in blob
        assert "***" in blob


def test_the_json_format_is_the_summary_document() -> None:
    doc = json_message(summary(failed=1, changed=2), "apply", 1, [failure(9, "x", pointer="/a")], inventory="inv.toml")
    assert doc["summary"] is True and doc["mode"] == "apply" and doc["exit_code"] == 1
    assert doc["totals"] == {"unchanged": 7, "changed": 2, "failed": 1, "skipped": 0}
    assert doc["accounts"]["acme"]["requests"] == 20
    assert doc["failed"] == [
        {
            "integration_id": 9,
            "name": None,
            "account": "acme",
            "kind": "client",
            "http_status": 400,
            "detail": "x",
            "pointer": "/a",
        }
    ]


# -- where: URLs are credentials ------------------------------------------------------------


def test_env_and_file_references_resolve_and_nothing_prints_the_url(tmp_path: Path) -> None:
    url = "https://hooks.slack.com" + TOKEN_PATH
    hook = resolve_webhook("env:HOOK", environ={"HOOK": url})
    assert hook.reveal() == url and hook.host == "hooks.slack.com"
    assert TOKEN_PATH not in repr(hook) and TOKEN_PATH not in str(hook) and TOKEN_PATH not in f"{hook}"
    (tmp_path / "hook").write_text(url + "\n")
    assert resolve_webhook("file:hook", base_dir=tmp_path).reveal() == url
    assert resolve_webhook("http://127.0.0.1:9/x").host == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("ref", "env", "message"),
    [
        ("env:MISSING", {}, "--notify env:MISSING: environment variable MISSING is not set"),
        ("env:HOOK", {"HOOK": "ftp://h/" + TOKEN_PATH}, "--notify env:HOOK: expected an http:// or https:// URL"),
        ("ftp://h" + TOKEN_PATH, {}, "--notify URL: expected an http:// or https:// URL"),
        ("https://h:99999" + TOKEN_PATH, {}, "--notify URL: not a usable URL"),
        ("https://[::1" + TOKEN_PATH, {}, "--notify URL: not a usable URL"),
        ("https://h:0" + TOKEN_PATH, {}, "--notify URL: not a usable URL"),
        ("env:HOOK", {"HOOK": "https://\u00ad/" + TOKEN_PATH}, "--notify env:HOOK: not a usable URL"),
        ("https://h/a b" + TOKEN_PATH, {}, "--notify URL: the URL holds a space"),
        ("https:///nohost" + TOKEN_PATH, {}, "--notify URL: expected an http:// or https:// URL"),
    ],
)
def test_unusable_urls_are_refused_without_quoting_them(ref: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookError) as info:
        resolve_webhook(ref, environ=env)
    assert str(info.value).startswith(message)
    assert TOKEN_PATH not in str(info.value)


# -- how: against a receiver on loopback ----------------------------------------------------


class Receiver:
    """A webhook receiver: records each POST and answers as ``script`` says, in order
    (the last answer repeats): an HTTP status, "hang", or "close" (drop the connection)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int | str] = [200]
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.posts.append((dict(request.headers), body))
        step = self.script[min(len(self.posts), len(self.script)) - 1]
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "close":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        assert isinstance(step, int)
        headers = {"Retry-After": "0"} if step == 429 else {}
        if 300 <= step < 400:
            headers["Location"] = "http://127.0.0.1:9/elsewhere"
        return web.Response(status=step, text="ok" if step == 200 else "no", headers=headers)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post(TOKEN_PATH, rx.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rx.url = f"http://127.0.0.1:{port}{TOKEN_PATH}"
    yield rx
    await runner.cleanup()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{TOKEN_PATH}"  # nothing listens: connection refused


async def test_one_post_with_the_body_as_json(receiver: Receiver) -> None:
    hook = resolve_webhook(receiver.url)
    [d] = await post_all([hook], b'{"text": "hello"}', timeout=3)
    assert d.ok and d.status == 200 and d.attempts == 1
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    assert json.loads(body) == {"text": "hello"}
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"].startswith("batchsync/")


@pytest.mark.parametrize(
    ("script", "ok", "attempts", "reason"),
    [
        ([500, 200], True, 2, ""),
        ([429, 200], True, 2, ""),
        (["close", 200], True, 2, ""),
        ([503], False, MAX_ATTEMPTS, "HTTP 503"),
        ([404], False, 1, "HTTP 404"),  # a revoked webhook: asking again will not help
        ([400], False, 1, "HTTP 400"),
        ([302], False, 1, "HTTP 302 (redirects are not followed)"),
    ],
)
async def test_retried_briefly_when_it_may_help_only(
    receiver: Receiver, script: list[int | str], ok: bool, attempts: int, reason: str
) -> None:
    receiver.script = script
    [d] = await post_all([resolve_webhook(receiver.url)], b"{}", timeout=3)
    assert (d.ok, d.attempts, d.reason) == (ok, attempts, reason)
    assert len(receiver.posts) == attempts


async def test_a_refused_connection_is_retried_and_bounded() -> None:
    started = time.monotonic()
    [d] = await post_all([resolve_webhook(closed_port_url())], b"{}", timeout=2)
    elapsed = time.monotonic() - started
    assert not d.ok and d.attempts == MAX_ATTEMPTS and d.reason.startswith("cannot connect")
    assert elapsed < 2.0


async def test_a_receiver_that_hangs_costs_at_most_the_timeout(receiver: Receiver) -> None:
    receiver.script = ["hang"]
    other = resolve_webhook(receiver.url)
    started = time.monotonic()
    deliveries = await post_all([other, resolve_webhook(closed_port_url())], b"{}", timeout=1.0)
    elapsed = time.monotonic() - started
    assert [d.ok for d in deliveries] == [False, False]
    assert deliveries[0].reason == "timed out"
    assert 0.9 < elapsed < 1.5  # the two side by side, in one timeout


async def test_one_receiver_hanging_does_not_hold_up_another(receiver: Receiver) -> None:
    hang = Receiver()
    hang.script = ["hang"]
    app = web.Application()
    app.router.add_post(TOKEN_PATH, hang.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hang_url = f"http://127.0.0.1:{runner.addresses[0][1]}{TOKEN_PATH}"
    try:
        started = time.monotonic()
        deliveries = await post_all([resolve_webhook(hang_url), resolve_webhook(receiver.url)], b"{}", timeout=1.0)
        assert [d.ok for d in deliveries] == [False, True]
        assert time.monotonic() - started < 1.5
        assert len(receiver.posts) == 1
    finally:
        await runner.cleanup()


async def test_notify_posts_once_when_wanted_and_logs_only_the_host(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook = resolve_webhook(receiver.url)
    caplog.set_level(logging.INFO, logger="batchsync.notify")
    clean = await asyncio.to_thread(notify, [hook], summary(changed=2), "apply", 0, [], on="failure")
    assert clean == [] and receiver.posts == []
    failures = [failure(1, "boom")]
    [d] = await asyncio.to_thread(notify, [hook], summary(failed=1), "apply", 1, failures, on="failure")
    assert d.ok and len(receiver.posts) == 1
    body = json.loads(receiver.posts[0][1])
    assert body["text"].startswith("batchsync apply: failed (exit 1)") and "blocks" in body
    receiver.script = [404]
    await asyncio.to_thread(notify, [hook], summary(failed=1), "apply", 1, failures, fmt="json")
    assert json.loads(receiver.posts[1][1])["summary"] is True
    logged = caplog.text
    assert f"notification sent to {hook.host} (HTTP 200)" in logged
    assert f"notification to {hook.host} failed after 1 attempt: HTTP 404; the run's exit code is unchanged" in logged
    assert TOKEN_PATH not in logged and "XXXXXXXX" not in logged


async def test_notify_never_raises(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Summary):
        def total(self, result: str) -> int:
            if result == "unchanged":
                raise RuntimeError("a bug of ours")
            return 1

    hook = resolve_webhook(receiver.url)
    run = Broken(accounts={}, duration_s=1.0)
    [d] = await asyncio.to_thread(notify, [hook], run, "apply", 1, [], on="always")
    assert not d.ok and d.reason == "internal error" and receiver.posts == []
    assert "internal error (RuntimeError)" in caplog.text


def test_a_dns_lookup_that_hangs_costs_at_most_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup runs in a thread; asyncio's usual pool would make the loop's end wait for it."""
    import aiohttp  # imported already in a real run: its import time is not the notification's

    real = socket.getaddrinfo

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.hang.test":
            time.sleep(5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    assert aiohttp.ClientSession is not None
    started = time.monotonic()
    [d] = notify(
        [resolve_webhook("https://hooks.hang.test" + TOKEN_PATH)], summary(failed=1), "apply", 1, [], timeout=1.0
    )
    assert not d.ok and d.reason == "timed out"
    assert time.monotonic() - started < 1.5


def test_a_webhook_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Webhook("https://h" + TOKEN_PATH, "URL"))


# -- the command line: a real run against a sandbox process, a receiver on loopback ---------


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, float]:
    """``batchsync ARGS`` as a child process, awaited (the receiver lives in this loop):
    (exit code, stderr, seconds)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batchsync", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode(), time.monotonic() - started


@pytest.fixture
def cli_env(sandbox_inventory_path: Path) -> dict[str, str]:
    return env_with(SANDBOX_ENV)


async def test_one_notification_per_failing_run_none_for_a_clean_one(
    receiver: Receiver, sandbox_inventory_path: Path, sandbox_proc: list[SandboxProcess], cli_env: dict[str, str]
) -> None:
    inv = str(sandbox_inventory_path)
    env = {**cli_env, "HOOK": receiver.url}
    # Integration 105 is not the account's: one failure. The rest drift and get written.
    failing = SandboxProcess(sandbox_inventory_path, cli_env, "--absent", "105")
    sandbox_proc.append(failing)
    code, err, _ = await run_cli("apply", inv, "--base-url", failing.url, "-q", "--notify", "env:HOOK", env=env)
    assert code == 1, err
    assert len(receiver.posts) == 1
    body = json.loads(receiver.posts[0][1])
    assert body["text"].startswith("batchsync apply: failed (exit 1)")
    assert "`105` acme: not_found" in body["blocks"][2]["text"]["text"]
    assert TOKEN_PATH not in err
    # The same inventory again: all in sync now but 105, which still fails: notified again.
    code, _, _ = await run_cli("apply", inv, "--base-url", failing.url, "-q", "--notify", "env:HOOK", env=env)
    assert code == 1 and len(receiver.posts) == 2
    # Without 105 nothing fails: no notification (--notify-on failure is the default).
    code, err, _ = await run_cli(
        "apply", inv, "--base-url", failing.url, "--limit", "!105", "-q", "--notify", "env:HOOK", env=env
    )
    assert code == 0, err
    assert len(receiver.posts) == 2
    # A plan of the clean selection with --notify-on always: one, in the json format.
    code, err, _ = await run_cli(
        "plan", inv, "--base-url", failing.url, "--limit", "!105", "-q", "--notify", "env:HOOK",
        "--notify-on", "always", "--notify-format", "json", env=env,
    )  # fmt: skip
    assert code == 0, err
    assert len(receiver.posts) == 3
    doc = json.loads(receiver.posts[2][1])
    assert doc["mode"] == "plan" and doc["exit_code"] == 0 and doc["failed"] == []
    assert "warning" not in err  # a reference: nothing to say
    # The URL itself on the command line works, and is said to be readable by anyone, once.
    code, err, _ = await run_cli(
        "plan", inv, "--base-url", failing.url, "--limit", "!105", "-q", "--notify", receiver.url,
        "--notify-on", "always", env=env,
    )  # fmt: skip
    assert code == 0 and len(receiver.posts) == 4
    assert err.count("warning: --notify given a webhook URL on the command line") == 1
    assert TOKEN_PATH not in err and receiver.url not in err


@pytest.mark.parametrize("down", ["refused", "hangs"])
async def test_with_the_receiver_down_the_exit_code_stays_and_the_run_grows_by_the_timeout_at_most(
    receiver: Receiver,
    sandbox_inventory_path: Path,
    sandbox_proc: list[SandboxProcess],
    cli_env: dict[str, str],
    down: str,
) -> None:
    inv = str(sandbox_inventory_path)
    box = SandboxProcess(sandbox_inventory_path, cli_env, "--absent", "105", "--in-sync", "1")
    sandbox_proc.append(box)
    common = ("plan", inv, "--base-url", box.url, "-q")
    code, _, plain = await run_cli(*common, env=cli_env)
    assert code == 1
    receiver.script = ["hang"]
    url = receiver.url if down == "hangs" else closed_port_url()
    timeout = 2.0
    env = {**cli_env, "HOOK": url}
    code2, err, notified = await run_cli(*common, "--notify", "env:HOOK", "--notify-timeout", str(timeout), env=env)
    assert code2 == code
    assert "notification to 127.0.0.1:" in err and "the run's exit code is unchanged" in err
    assert TOKEN_PATH not in err
    if down == "hangs":
        assert len(receiver.posts) >= 1 and "timed out" in err
        assert notified >= timeout * 0.9  # it did wait for the receiver (all but its reserve)...
    else:
        assert "cannot connect (Connection refused)" in err
    assert notified - plain <= timeout + 1.0  # ...and no longer than the timeout (plus process noise)


async def test_an_unusable_notify_reference_stops_the_run_before_anything_is_sent(
    sandbox_inventory_path: Path, cli_env: dict[str, str]
) -> None:
    code, err, _ = await run_cli("apply", str(sandbox_inventory_path), "--sandbox", "--notify", "env:NOPE", env=cli_env)
    assert code == 2
    assert "--notify env:NOPE: environment variable NOPE is not set" in err
    env = {**cli_env, "HOOK": "ftp://hooks.example" + TOKEN_PATH}
    code, err, _ = await run_cli("apply", str(sandbox_inventory_path), "--sandbox", "--notify", "env:HOOK", env=env)
    assert code == 2 and "expected an http:// or https:// URL" in err and TOKEN_PATH not in err


async def test_a_shop_that_started_failing_is_news(receiver: Receiver) -> None:
    """--with-health: a clean run whose shops have exception logs still notifies, naming them."""
    from batchsync.health import Health, LastLog
    from batchsync.outputs.notify import Notify
    from batchsync.outputs.sink import End, Start

    hook = resolve_webhook(receiver.url)
    ok = Health(since="2026-12-03T00:00:00+00:00")
    failing = Health(
        since="2026-12-03T00:00:00+00:00",
        count=14,
        last_at="2026-12-04T02:00:00+00:00",
        response_codes={"401": 14},
        last=LastLog(at="2026-12-04T02:00:00+00:00", method="POST", url="https://shop.example/x", response_code=401),
    )
    clean = summary(changed=2)
    for health, posts in ((ok, 0), (failing, 1)):
        sink = Notify([hook], Start(mode="apply", started_at=0.0), on="failure", fmt="slack", timeout=5.0)
        sink.add(Outcome(1, "acme", "changed", health=ok))
        sink.add(Outcome(2, "acme", "changed", health=health))
        end = End(summary=clean, code=lambda: 0, started_at=0.0, ended_at=1.0)
        await asyncio.to_thread(sink.close, end)
        assert len(receiver.posts) == posts
    body = json.loads(receiver.posts[0][1])
    assert "Failing shops (1)" in body["text"]
    assert "integration 2 (acme): 14 exception logs since 2026-12-03T00:00:00+00:00, last 401" in body["text"]
    assert any("*Failing shops*" in b.get("text", {}).get("text", "") for b in body["blocks"])
    doc = json_message(clean, "apply", 0, [], shops=["integration 2 (acme): 14 exception logs"])
    assert doc["failing_shops"] == ["integration 2 (acme): 14 exception logs"]
