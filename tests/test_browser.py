"""The HTML report in a real browser: headless Chromium renders the page of an apply of the
example inventory against a sandbox with faults and one throttled account, takes a
screenshot, and the DOM it built shows the recap, the failures and the timeline.

Marked ``browser``; skipped where no Chromium is installed (``make test-browser`` installs
it and saves the screenshot as docs/report.png for the README).
"""

from __future__ import annotations

import http.server
import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import html5lib
import pytest
from cli_helpers import ROOT, SandboxProcess, batchsync, env_with

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
    pytest.skip("no Chromium installed (make test-browser installs it)")


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


class Counter(http.server.BaseHTTPRequestHandler):
    """Counts every request the browser makes through it (it is the browser's proxy)."""

    seen: ClassVar[list[str]] = []  # each fixture gives its subclass a list of its own

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_error(404)

    do_POST = do_HEAD = do_CONNECT = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    seen: ClassVar[list[str]] = []  # each fixture gives its subclass a list of its own
    handler = type("Handler", (Counter,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


BROWSER_OWN = frozenset({"accounts.google.com", "clients2.google.com", "update.googleapis.com"})


def host(request: str) -> str:
    """The host a proxied request is for: ``http://h/p`` (plain) or ``h:443`` (CONNECT)."""
    return urlsplit(request).hostname if "://" in request else request.rsplit(":", 1)[0]  # type: ignore[return-value]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_in_headless_chromium(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], proxy: tuple[str, list[str]]
) -> None:
    chromium = browser()
    env = env_with({})
    box = SandboxProcess(
        server_inventory(tmp_path),
        env,
        *("--seed", "3", "--fault-500", "0.15", "--absent", "120105", "--system-for", "340304=woocommerce"),
    )
    sandbox_proc.append(box)
    page = tmp_path / "report.html"
    done = batchsync(
        "apply", "inventories/example.toml", "--base-url", box.url, "--max-attempts", "2", "-q",
        "--html", str(page), env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # some failed: not_found, not_supported, 500s, 429s

    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
        # Anything the page tried to load from a network would reach this proxy.
        f"--proxy-server=http://{proxy[0]}", "--proxy-bypass-list=<-loopback>",
    ]  # fmt: skip
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout

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
    # Chromium asks its own services (updates, sign-in, time) whatever the flags; any other
    # host would be one the page asked for. The control page shows such a request is seen.
    assert not [r for r in proxy[1] if host(r) not in BROWSER_OWN], f"the page made requests: {proxy[1]}"
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><title>x</title><img src="http://fonts.example.net/x.png" alt="">')
    subprocess.run([chromium, *flags, "--dump-dom", control.as_uri()], capture_output=True, timeout=120, check=True)
    assert "fonts.example.net" in [host(r) for r in proxy[1]]

    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 20_000  # a rendered page: a blank one is a few kB
    target = os.environ.get("BATCHSYNC_SCREENSHOT")
    if target:
        shutil.copyfile(shot, ROOT / target)
