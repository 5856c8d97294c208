"""Notifications after a run: one POST of a JSON summary to each webhook URL.

Shaped as a Slack incoming-webhook message (``text`` plus blocks), which Slack, Mattermost
and Teams-compatible receivers accept; ``json`` posts the run's summary document as is.
Bounded in time and never fatal: a notification that fails is a log line, not an exit code.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from batchsync import __version__
from batchsync.outcome import Outcome, Summary
from batchsync.outputs.health import HealthSeen, shop_line
from batchsync.outputs.progress import format_duration
from batchsync.outputs.sink import End, Start
from batchsync.text import escape_controls

if TYPE_CHECKING:
    from batchsync.outputs.history import Recall

log = logging.getLogger("batchsync.notify")

NotifyOn = Literal["failure", "change", "always", "new"]
NotifyFormat = Literal["slack", "json"]

TIMEOUT: Final = 5.0  # seconds for every notification of a run together
MAX_ATTEMPTS: Final = 3  # per URL, within the timeout
BACKOFF: Final = 0.25  # seconds before the second attempt, doubled before the third
MAX_FAILED: Final = 10  # failed integrations named in a message
DETAIL_CHARS: Final = 200  # of each failure's detail
RESERVE: Final = 0.2  # seconds of the timeout kept for setting up and closing, at most a tenth of it


class WebhookError(ValueError):
    """A ``--notify`` value that cannot be used; the message never holds the URL."""


class Webhook:
    """A webhook URL: a credential (whoever has it can post to the channel). It never
    prints itself; only its host is shown."""

    __slots__ = ("_url", "host", "ref")

    def __init__(self, url: str, ref: str) -> None:
        self._url = url
        self.ref = ref  # as given: env:NAME, file:PATH, or "a URL" for a literal
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port is not None else ""
        self.host = f"{parts.hostname}{port}"

    def reveal(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"Webhook({self.host})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Webhook cannot be pickled")


def resolve_webhook(ref: str, base_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> Webhook:
    """``--notify`` value: an ``env:NAME`` or ``file:PATH`` reference, or a literal URL."""
    from batchsync.secrets import SecretError, resolve

    shown = ref if ref.startswith(("env:", "file:")) else "URL"
    if ref.startswith(("env:", "file:")):
        try:
            url = resolve(ref, base_dir or Path.cwd(), dict(environ) if environ is not None else None).reveal()
        except SecretError as exc:
            raise WebhookError(f"--notify {ref}: {exc}") from None
    else:
        url = ref.strip()
    from batchsync.urls import url_problem

    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise WebhookError(f"--notify {shown}: the URL holds a space or a control character")
    # The checks every URL option gets (aiohttp must be able to send to it); the reason
    # never quotes the URL, which is a credential.
    why = url_problem(url, api=False, userinfo=True)
    if why is not None:
        raise WebhookError(f"--notify {shown}: {why.split(' (')[0]}")
    return Webhook(url, ref if shown != "URL" else "URL")


def wanted(on: NotifyOn, summary: Summary, memory: Mapping[str, Any] | None = None) -> bool:
    """Whether a run with this summary is worth a notification.

    ``failure``: an integration failed, or the run left some undone (skipped, stopped
    early): the runs that exit 1 or 3. ``change``: those, and any change made (in a plan:
    any to make). ``always``: every run. ``new`` (with the run history's ``memory``): only
    when something started failing or recovered, or the run stopped early (as Alertmanager
    resolves: the same broken shop does not alert every night); without a history, as ``failure``.
    """
    failed = bool(summary.total("failed") or summary.total("skipped") or summary.stopped)
    if on == "new":
        if memory is None:
            return failed
        return bool(memory["new"] or memory["recovered"] or summary.stopped)
    if on == "failure":
        return failed
    if on == "change":
        return failed or summary.total("changed") > 0
    return True


# -- the messages ------------------------------------------------------------------------


def _plain(text: str, limit: int) -> str:
    """One line of server- or inventory-written text, made harmless: control and bidi
    characters shown as escapes (batchsync.text), Slack's control characters (& < >)
    escaped so ``<!channel>`` or a link cannot be smuggled in, ``@`` kept from mentioning
    anyone, and clipped."""
    text = escape_controls(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("@", "@\u2060")  # a word joiner: "@channel" is no longer a mention
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(seconds: float) -> str:
    return format_duration(seconds, tenths_below=60)


def _headline(summary: Summary, mode: str, exit_code: int) -> str:
    if summary.total("failed"):
        word = "failed"
    elif summary.total("skipped") or summary.stopped:
        word = "stopped early"
    elif summary.total("changed"):
        word = "changes to make" if mode == "plan" else "changed"
    else:
        word = "ok"
    return f"batchsync {mode}: {word} (exit {exit_code})"


def _counts(summary: Summary, mode: str) -> list[tuple[str, int]]:
    changed = "To change" if mode == "plan" else "Changed"
    return [
        ("Failed", summary.total("failed")),
        (changed, summary.total("changed")),
        ("Unchanged", summary.total("unchanged")),
        ("Skipped", summary.total("skipped")),
    ]


def _failure_line(o: Outcome, redact: Callable[[str], str], streaks: Mapping[int, str] | None = None) -> str:
    e = o.error
    if e is None:
        what = "failed"
    else:
        status = f" {e.http_status}" if e.http_status else ""
        detail = f": {_plain(redact(e.detail), DETAIL_CHARS)}" if e.detail else ""
        what = f"{e.kind}{status}{detail}"
    name = f" {_plain(o.name, 80)}" if o.name else ""
    since = f" ({streaks.get(o.integration_id, 'new')})" if streaks is not None else ""
    return f"• `{o.integration_id}`{name} {_plain(redact(o.account), 80)}: {what}{since}"


def streak_texts(memory: Mapping[str, Any] | None) -> dict[int, str] | None:
    """Each failure that goes on, as "failing since <date> (N runs)"; the others are new."""
    if memory is None:
        return None
    from batchsync.outputs.history import since_text

    return {o.integration_id: since_text(since, runs) for o, since, runs in memory["ongoing"]}


def _throttled(summary: Summary) -> list[str]:
    lines = []
    for name in sorted(summary.accounts):
        a = summary.accounts[name]
        if not a.throttled:
            continue
        settled = []
        if a.read_rate is not None:
            settled.append(f"reads settled at {a.read_rate:g}/min")
        if a.write_rate is not None:
            settled.append(f"writes settled at {a.write_rate:g}/min")
        rest = f"; {', '.join(settled)}" if settled else ""
        lines.append(f"• {_plain(name, 80)}: {a.throttled} × 429{rest}")
    return lines


def _clip_lines(lines: Sequence[str], limit: int) -> str:
    out: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        if size + len(line) + 1 > limit - 40:
            out.append(f"…and {len(lines) - i} more")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)


def slack_message(
    summary: Summary,
    mode: str,
    exit_code: int,
    failures: Sequence[Outcome],
    *,
    inventory: str = "",
    redact: Callable[[str], str] = str,
    max_failed: int = MAX_FAILED,
    shops: Sequence[str] = (),
    memory: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (what receivers without blocks show, and
    Slack's notification text) and blocks: totals, failed integrations (new, or failing
    since when, given the run history's ``memory``), recoveries, throttled accounts, and
    (``--with-health``) ``shops``, a line per failing shop."""
    headline = _headline(summary, mode, exit_code)
    where = f" on {_plain(redact(inventory), 200)}" if inventory else ""
    counts = _counts(summary, mode)
    totals = ", ".join(f"{n} {label.lower()}" for label, n in counts)
    n_failed = summary.total("failed")
    streaks = streak_texts(memory)
    shown = [_failure_line(o, redact, streaks) for o in failures[:max_failed]]
    if n_failed > len(shown):
        shown.append(f"…and {n_failed - len(shown)} more: see the run's report")
    recovered = [
        f"• `{o.integration_id}` {_plain(redact(o.account), 80)}: recovered after {runs} failing run"
        + ("s" if runs != 1 else "")
        for o, _, runs in (memory or {}).get("recovered", [])[:max_failed]
    ]
    throttled = _throttled(summary)
    text_lines = [f"{headline}{where}: {totals} in {_duration(summary.duration_s)}"]
    if summary.stopped:
        text_lines.append(f"Stopped early: {_plain(redact(summary.stopped), 300)}")
    text_lines += shown
    if recovered:
        text_lines.append("Recovered:")
        text_lines += recovered
    if throttled:
        text_lines.append("Throttled: " + "; ".join(t.removeprefix("• ") for t in throttled))
    failing = [_plain(redact(line), 300) for line in shops[:max_failed]]
    if len(shops) > len(failing):
        failing.append(f"…and {len(shops) - len(failing)} more failing shops: see the run's report")
    if failing:
        text_lines.append(f"Failing shops ({len(shops)}): " + "; ".join(failing))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150], "emoji": False}},
        {
            "type": "section",
            "fields": [
                *({"type": "mrkdwn", "text": f"*{label}*\n{n}"} for label, n in counts),
                {"type": "mrkdwn", "text": f"*Duration*\n{_duration(summary.duration_s)}"},
                {"type": "mrkdwn", "text": f"*Requests*\n{summary.requests()}"},
            ],
        },
    ]
    if shown:
        title = f"*Failed integrations* ({n_failed})\n"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": title + _clip_lines(shown, 2900)}})
    if failing:
        title = f"*Failing shops* ({len(shops)}: Sendcloud's requests to them failed)\n"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": title + _clip_lines(failing, 2900)}})
    if recovered:
        title = f"*Recovered* ({len(memory['recovered']) if memory else 0})\n"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": title + _clip_lines(recovered, 2900)}})
    if throttled:
        title = "*Throttled accounts* (answered 429 Too Many Requests)\n"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": title + _clip_lines(throttled, 2900)}})
    context = []
    if inventory:
        context.append(f"inventory {_plain(redact(inventory), 200)}")
    if summary.started_at:
        context.append("started " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(summary.started_at)))
    if summary.stopped:
        context.append(f"stopped early: {_plain(redact(summary.stopped), 300)}")
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)[:2900]}]})
    return {"text": _clip_lines(text_lines, 3900), "blocks": blocks}


def json_message(
    summary: Summary,
    mode: str,
    exit_code: int,
    failures: Sequence[Outcome],
    *,
    inventory: str = "",
    redact: Callable[[str], str] = str,
    max_failed: int = MAX_FAILED,
    shops: Sequence[str] = (),
    memory: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report's summary document as is, with the exit code, the inventory, the first
    failed integrations, (``--with-health``) the failing shops and, with the run history,
    ``history``: new, still failing, recovered; every string passed through ``redact``."""
    from batchsync.outputs.terminal import summary_document

    doc = summary_document(summary, mode)
    doc.setdefault("exit_code", exit_code)
    doc["inventory"] = inventory
    doc["started_at"] = round(summary.started_at, 3)
    doc["failed"] = [
        {
            "integration_id": o.integration_id,
            "name": o.name,
            "account": o.account,
            "kind": o.error.kind if o.error else "failed",
            "http_status": o.error.http_status if o.error else None,
            "detail": o.error.detail[:DETAIL_CHARS] if o.error else "",
            "pointer": o.error.pointer if o.error else None,
        }
        for o in failures[:max_failed]
    ]
    if shops:
        doc["failing_shops"] = list(shops[:max_failed])
    if memory is not None:
        from batchsync.outputs.terminal import memory_document

        doc["history"] = memory_document(memory)
    result: dict[str, Any] = _redacted(doc, redact)
    return result


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string redacted and, as everywhere, its control and bidi characters spelled
    out (keys too: they are account names)."""
    if isinstance(value, str):
        return redact(escape_controls(value))
    if isinstance(value, dict):
        return {_redacted(k, redact): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    return value


# -- sending -----------------------------------------------------------------------------


class Delivery(msgspec.Struct, frozen=True):
    """What became of one URL's notification."""

    host: str
    ok: bool
    attempts: int
    status: int | None = None  # the last HTTP status, None if no response came
    reason: str = ""  # why it failed, in words that never hold the URL


def _why(exc: BaseException) -> str:
    """Words for a failed attempt, never ``str(exc)``: aiohttp puts the URL in some."""
    import aiohttp

    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not accepted"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        return f"cannot connect ({os.strerror(err.errno) if err.errno else type(err).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection"
    return type(exc).__name__


async def _post(session: Any, hook: Webhook, body: bytes, deadline: float) -> Delivery:
    import aiohttp
    import anyio

    from batchsync.sendcloud.exchange import client_timeout
    from batchsync.sendcloud.headers import parse_retry_after

    attempts = 0
    status: int | None = None
    reason = "timed out"
    headers = {"Content-Type": "application/json", "User-Agent": f"batchsync/{__version__}"}
    while attempts < MAX_ATTEMPTS:
        left = deadline - anyio.current_time()
        if left <= 0:
            break
        attempts += 1
        wait: float | None = None
        try:
            with anyio.fail_after(left):
                async with session.post(
                    hook.reveal(), data=body, headers=headers, allow_redirects=False, timeout=client_timeout(left)
                ) as resp:
                    status = resp.status
                    await resp.content.read(4096)  # the answer is not used; some receivers want it read
                    if 200 <= status < 300:
                        return Delivery(hook.host, True, attempts, status)
                    reason = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
                    if status != 429 and status < 500:
                        break  # the receiver refuses this message: sending it again will not help
                    wait = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            status = None
            reason = _why(exc)
        delay = wait if wait is not None else BACKOFF * 2 ** (attempts - 1)
        if attempts >= MAX_ATTEMPTS or anyio.current_time() + delay >= deadline:
            break
        await anyio.sleep(delay)
    return Delivery(hook.host, False, attempts, status, reason)


async def post_all(hooks: Sequence[Webhook], body: bytes, timeout: float = TIMEOUT) -> list[Delivery]:
    """POST ``body`` to every hook side by side; all done (or given up) within ``timeout``."""
    import aiohttp
    import anyio

    deadline = anyio.current_time() + timeout
    results: dict[int, Delivery] = {}
    connector = aiohttp.TCPConnector(limit=max(1, len(hooks)), force_close=True)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

        async def one(i: int, hook: Webhook) -> None:
            results[i] = await _post(session, hook, body, deadline)

        # The hard bound: whatever a receiver does, nothing outlives the deadline.
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                for i, hook in enumerate(hooks):
                    tg.start_soon(one, i, hook)
    return [results.get(i, Delivery(h.host, False, 0, None, "timed out")) for i, h in enumerate(hooks)]


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """The notification loop's default executor: each call (aiohttp's getaddrinfo) in a
    daemon thread of its own, and nothing to wait for at shutdown. With the usual thread
    pool, the loop's end waits for a DNS lookup that hangs, past any timeout. (A subclass of
    ThreadPoolExecutor only because asyncio accepts no other; its pool is never used.)"""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, name="batchsync-notify", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # a lookup still running is abandoned: its thread is a daemon


async def _send(hooks: Sequence[Webhook], body: bytes, timeout: float) -> list[Delivery]:
    import asyncio

    asyncio.get_running_loop().set_default_executor(_DaemonExecutor())
    return await post_all(hooks, body, timeout)


def notify(
    hooks: Sequence[Webhook],
    summary: Summary,
    mode: str,
    exit_code: int,
    failures: Iterable[Outcome],
    *,
    on: NotifyOn = "failure",
    fmt: NotifyFormat = "slack",
    timeout: float = TIMEOUT,
    inventory: str = "",
    redact: Callable[[str], str] = str,
    shops: Sequence[str] = (),
    memory: Mapping[str, Any] | None = None,
) -> list[Delivery]:
    """After a run: decide, build the message, post it to every hook, log what became of it.
    ``shops`` (``--with-health``): a line per failing shop; a shop that started failing is
    news whatever ``on`` says.

    Never raises and never changes the run's outcome; returns each hook's :class:`Delivery`
    (empty when the run was not worth a notification).
    """
    if not hooks or not (wanted(on, summary, memory) or shops):
        return []
    try:
        build = slack_message if fmt == "slack" else json_message
        listed = list(itertools.islice(failures, MAX_FAILED))
        doc = build(summary, mode, exit_code, listed, inventory=inventory, redact=redact, shops=shops, memory=memory)
        body = msgspec.json.encode(doc)
        import anyio

        total = timeout if math.isfinite(timeout) and timeout > 0 else TIMEOUT
        # Starting a loop and a session, and closing them, take a few hundredths of a second:
        # kept out of the posts' time, so that the whole costs the run no more than ``timeout``.
        # On asyncio's own loop whatever BATCHSYNC_EVENT_LOOP says: its name lookups run in
        # the daemon executor below, so one that hangs cannot hold the loop's end past the
        # timeout (uvloop resolves in libuv's pool, which a closing loop may wait for).
        deliveries = anyio.run(_send, hooks, body, total - min(RESERVE, total * 0.1))
    except Exception as exc:  # a bug of ours must not cost the run its exit code
        log.error("notification not sent: internal error (%s); the run's exit code is unchanged", type(exc).__name__)
        return [Delivery(h.host, False, 0, None, "internal error") for h in hooks]
    log_deliveries(deliveries)
    return deliveries


def log_deliveries(deliveries: Iterable[Delivery]) -> None:
    """What became of each notification, one log line each."""
    for d in deliveries:
        if d.ok:
            log.info("notification sent to %s (HTTP %s)", d.host, d.status)
        else:
            # An error, so that -q (errors only) still says it: nobody else will.
            log.error(
                "notification to %s failed after %d attempt%s: %s; the run's exit code is unchanged",
                d.host,
                d.attempts,
                "" if d.attempts == 1 else "s",
                d.reason,
            )


class Notify:
    """The sink of ``--notify``: the first few failures kept as they come, the message
    posted after every file is written and every lost output named (the final exit code)."""

    def __init__(
        self,
        hooks: Sequence[Webhook],
        start: Start,
        *,
        on: NotifyOn,
        fmt: NotifyFormat,
        timeout: float,
        redact: Callable[[str], str] = str,
        recall: Recall | None = None,
    ) -> None:
        self.hooks, self.start, self.on, self.fmt, self.timeout, self.redact = hooks, start, on, fmt, timeout, redact
        self.failures: list[Outcome] = []
        self.health = HealthSeen()
        self.recall = recall if recall is not None and recall.on else None
        self.remembered: list[Outcome] = []  # with a history: failures and recoveries

    def add(self, outcome: Outcome) -> None:
        self.health.add(outcome)
        if outcome.result == "failed" and len(self.failures) < MAX_FAILED:
            self.failures.append(outcome)
        if self.recall is not None and self.recall.concerns(outcome):
            self.remembered.append(outcome)

    def flush(self) -> None:
        pass

    def close(self, end: End | None) -> None:
        if end is None:
            return
        notify(
            self.hooks,
            end.summary,
            self.start.mode,
            end.code(),
            self.failures,
            on=self.on,
            fmt=self.fmt,
            timeout=self.timeout,
            inventory=self.start.inventory,
            redact=self.redact,
            shops=[shop_line(iid, account, h, self.health.names.get(iid)) for iid, account, h in self.health.ranked()],
            memory=self.recall.summarize(self.remembered) if self.recall is not None else None,
        )
