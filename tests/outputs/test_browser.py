"""The HTML report in a real browser: headless Chromium renders the page of an apply of the
example inventory against a sandbox with faults and one throttled account, takes a
screenshot, and the DOM it built shows the recap, the failures and the timeline.

Marked ``browser``; skipped where no Chromium is installed (``make test-browser`` installs
it and saves the screenshot as docs/report.png for the README).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.server
import json
import os
import select
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import html5lib
import pytest
from cli_helpers import ROOT, SandboxProcess, batchsync, env_with, example_inventory

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HTML = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"
WIDTH, HEIGHT = 1100, 1500


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("BATCHSYNC_BROWSER_REQUIRED"):
        pytest.fail("no Chromium found; make test-browser installs it (apt-get install chromium)")
    pytest.skip(f"no Chromium on PATH (looked for {', '.join(BROWSERS)}): make test-browser installs Debian's")


def server_inventory(tmp_path: Path) -> Path:
    """The example inventory as the sandbox should serve it: nordwind's real budget is
    smaller than the one the inventory declares (20 writes a minute, burst 2, not 60 and
    5), so the run meets 429s there. Paths made absolute: the copy lives elsewhere."""
    src = ROOT / "inventories" / "example.toml"
    text = src.read_text()
    declared = "limits = { writes_per_minute = 60, write_burst = 5 }"
    assert text.count(declared) == 1, "the example inventory changed: adjust this test"
    text = text.replace(declared, "limits = { writes_per_minute = 20, write_burst = 2 }")
    text = text.replace('"file:secrets/', f'"file:{src.parent}/secrets/')
    text = text.replace('statuses_file = "statuses/', f'statuses_file = "{src.parent}/statuses/')
    # The secrets now live outside the copy's folder: say that is meant.
    text = "allow_secret_files_outside = true\n" + text
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


class Refuser(http.server.BaseHTTPRequestHandler):
    """The browser's proxy: refuses everything at once, so that whatever Chromium asks of
    its own services (updates, sign-in, time: some whatever the flags) never leaves the
    machine and never waits on a network, and a run does not depend on one."""

    def do_GET(self) -> None:
        self.send_error(403)

    do_POST = do_HEAD = do_CONNECT = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuser)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def flags(profile: Path, proxy: str) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
        # A profile of its own, new for each run: nothing from an earlier run or the user's.
        f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
        # No background network: none of Chromium's services, no QUIC around the proxy.
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", "--disable-client-side-phishing-detection",
        "--disable-domain-reliability", "--disable-breakpad", "--metrics-recording-only", "--no-pings",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter",
        "--disable-quic", f"--proxy-server=http://{proxy}", "--proxy-bypass-list=<-loopback>",
    ]  # fmt: skip


class Page:
    """One page in headless Chromium, driven over the DevTools protocol on a pipe (no
    port, no websocket): the requests *this page* makes are the page target's own network
    events, whatever the browser itself asks for beside it."""

    def __init__(self, chromium: str, profile: Path, proxy: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # Chromium reads commands on fd 3 and writes its answers on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)  # inheritable, as dup2 makes them; the pipes' own ends are not
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [chromium, *flags(profile, proxy), "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            close_fds=False,  # it would close 3 and 4 after fds() made them
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0
        self.requests: list[str] = []  # every URL the page asked for, its own document included
        self.session = ""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Network", "Page"):
            self.call(f"{domain}.enable", session=True)

    def _event(self, message: dict[str, Any]) -> None:
        if message.get("sessionId") == self.session and message.get("method") == "Network.requestWillBeSent":
            self.requests.append(message["params"]["request"]["url"])

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer")
            ready, _, _ = select.select([self._from_chrome], [], [], 1.0)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium ended (exit {self.proc.wait()})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)  # type: ignore[no-any-return]

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._next += 1
        command: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            command["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == self._next:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]  # type: ignore[no-any-return]
            self._event(message)

    def open(self, url: str, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + 60
        while True:  # loaded: every subresource the page asked for has been asked for
            message = self._read(deadline)
            if message.get("sessionId") == self.session and message.get("method") == "Page.loadEventFired":
                break
            self._event(message)

    def dom(self) -> str:
        found = self.call("Runtime.evaluate", session=True, expression="document.documentElement.outerHTML")
        return str(found["result"]["value"])

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@contextlib.contextmanager
def page(chromium: str, profile: Path, proxy: str) -> Iterator[Page]:
    opened = Page(chromium, profile, proxy)
    try:
        yield opened
    finally:
        opened.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_in_headless_chromium(tmp_path: Path, sandbox_proc: list[SandboxProcess], proxy: str) -> None:
    chromium = browser()
    env = env_with({})
    box = SandboxProcess(
        server_inventory(tmp_path),
        env,
        *("--seed", "3", "--fault-500", "0.15", "--absent", "120105", "--system-for", "340304=woocommerce"),
    )
    sandbox_proc.append(box)
    report = tmp_path / "report.html"
    done = batchsync(
        "apply", str(example_inventory(tmp_path)), "--base-url", box.url, "--max-attempts", "2", "-q",
        "--html", str(report), env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # some failed: not_found, not_supported, 500s, 429s

    with page(chromium, tmp_path / "profile", proxy) as browser_page:
        browser_page.open(report.as_uri(), WIDTH, HEIGHT)
        dom = browser_page.dom()
        data = browser_page.screenshot()
        asked = browser_page.requests

    # The DOM as Chromium built it: the recap, a failure with its kind and status, the timeline.
    tree = html5lib.parse(dom)
    sections = {s.get("id"): s for s in tree.iter(f"{HTML}section")}
    recap = "".join(sections["recap"].itertext())
    for account in ("acme-eu", "nordwind", "blauwe-vogel"):
        assert account in recap
    failures = sections["failures"]
    rows = {tr.get("id"): "".join(tr.itertext()) for tr in failures.iter(f"{HTML}tr") if tr.get("id")}
    assert "not_found" in rows["i120105"] and "not one of account acme-eu's integrations" in rows["i120105"]
    assert "not_supported" in rows["i340304"]
    svg = next(sections["timeline"].iter(f"{SVG}svg"))
    lanes = [g for g in svg.iter(f"{SVG}g") if "lane" in (g.get("class") or "")]
    assert len(lanes) == 3
    throttled = [g for g in lanes if "throttled" in g.get("class", "")]
    assert throttled, "nordwind met 429s and should be drawn as throttled"
    label = " ".join("".join(t.itertext()) for t in throttled[0].iter(f"{SVG}text"))
    assert label.startswith("nordwind") and "429 ×" in label
    # The page asked for itself and nothing else: no font, script or image from anywhere.
    assert asked == [report.as_uri()], f"the page made requests: {asked}"
    # A page that does load something from a network is seen doing so.
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><title>x</title><img src="http://fonts.example.net/x.png" alt="">')
    with page(chromium, tmp_path / "profile-control", proxy) as control_page:
        control_page.open(control.as_uri(), 200, 200)
        assert "http://fonts.example.net/x.png" in control_page.requests

    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 20_000  # a rendered page: a blank one is a few kB
    shot = tmp_path / "report.png"
    shot.write_bytes(data)
    target = os.environ.get("BATCHSYNC_SCREENSHOT")
    if target:
        shutil.copyfile(shot, ROOT / target)
