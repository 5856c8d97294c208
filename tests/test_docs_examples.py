"""The code blocks of the pages (README.md and docs/**/*.md), as the tests run them.

How a page shows an example decides how it is checked (docs/about-these-pages.md says the
same for whoever writes a page):

- a ```` ```console ```` block is a session: each ``$ `` line a command (a line ending in
  ``\\`` goes on on the next), the lines under it what it prints (stdout and stderr
  together). The session runs in bash, in a copy of the repository's ``inventories/``,
  ``docs/`` and ``deploy/``, with ``batchsync`` on the PATH and HOME in that copy. Each
  command must exit 0 (show a failing one as ``cmd; echo "exit $?"``) and print what is
  shown. In shown output, ``<NAME>`` (capitals: ``<DURATION>``, ``<TIME>``, ``<PORT>``)
  stands for any text within the line, and a line ``...`` for any number of lines;
- a block marked ``<!-- continues -->`` goes on in the session of the console block
  before it (same folder, same variables, same background processes);
- a block whose only line is ``--8<-- "PATH"`` shows that file (pymdownx.snippets includes
  it when the site is built): an inventory (``.toml``, ``.yaml``, ``.yml``, ``.json``
  under ``inventories/`` or ``docs/examples/``) must pass ``batchsync validate``, each
  ``env:NAME`` it references set to a dummy value (unless a console session of the page
  runs ``batchsync import`` on it: an inventory of accounts only, which import checks); a
  sandbox seed (``*seed*.json``) must start ``batchsync sandbox --seed-file``;
- any other block must be marked ``<!-- not-run: REASON -->`` on the line before it.
"""

from __future__ import annotations

import difflib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|continues)\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")
SNIPPET = re.compile(r'^--8<--\s+"(?P<path>[^"]+)"\s*$')
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*>")
INVENTORY_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str
    body: list[str]
    marker: str | None = None  # "not-run" or "continues"
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def include(self) -> str | None:
        if len(self.body) == 1 and (m := SNIPPET.match(self.body[0].strip())):
            return m.group("path")
        return None


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        start, body = i, []
        i += 1
        while i < len(lines) and not (
            lines[i].startswith(indent)
            and lines[i].strip().startswith(fence)
            and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        block = Block(page, start + 1, m.group("lang").lower(), body)
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        if before >= 0 and (mark := MARKER.match(lines[before])):
            block.marker, block.reason = mark.group("kind"), (mark.group("reason") or "").strip()
        found.append(block)
    return found


@dataclass
class Command:
    text: str  # as given to bash, continuation lines included
    expected: list[str]  # the lines shown under it
    line: int


@dataclass
class Example:
    """A console session: one block, and the blocks marked ``continues`` after it."""

    blocks: list[Block]
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.blocks[0].where


def parse_session(block: Block) -> list[Command]:
    commands: list[Command] = []
    lines = block.body
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if not commands:
                raise ValueError(f"{block.where}: a console block starts with a `$ ` command, not {line!r}")
            commands[-1].expected.append(line.rstrip())
            i += 1
            continue
        text = [line[2:]]
        first = i
        while text[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            text.append(lines[i])
        commands.append(Command("\n".join(text), [], block.line + 1 + first))
        i += 1
    return commands


def examples(page: Path) -> list[Example]:
    found: list[Example] = []
    for block in blocks(page):
        if block.marker == "continues":
            if not found or found[-1].blocks[0].page != page:
                raise ValueError(f"{block.where}: <!-- continues --> with no console block before it")
            found[-1].blocks.append(block)
            found[-1].commands += parse_session(block)
        elif block.lang == "console" and block.marker is None:
            found.append(Example([block], parse_session(block)))
    return found


def included_files(page: Path) -> list[tuple[Block, str]]:
    return [(b, b.include) for b in blocks(page) if b.include is not None and b.marker is None]


def kind_of(path: str) -> str | None:
    """What an included file is checked as: "inventory", "seed", or None (not checked)."""
    p = Path(path)
    if p.suffix == ".json" and "seed" in p.name:
        return "seed"
    if p.suffix in INVENTORY_SUFFIXES and p.parts[0] in ("inventories", "docs") and "statuses" not in p.parts:
        return "inventory"
    return None


def imported_by_a_session(page: Path, path: str) -> bool:
    """Whether a console session of ``page`` runs ``batchsync import`` on ``path``: an inventory of
    accounts only, which ``import`` loads and checks (``validate`` wants integrations too)."""
    return any(
        re.match(rf"batchsync import {re.escape(path)}(\s|$)", c.text) for e in examples(page) for c in e.commands
    )


def unchecked(page: Path) -> list[Block]:
    """The blocks of ``page`` that nothing runs and that no marker explains."""
    out = []
    for block in blocks(page):
        if block.marker == "not-run" or block.marker == "continues":
            continue
        if block.lang == "console":
            continue
        if block.include is not None and kind_of(block.include) is not None:
            continue
        out.append(block)
    return out


def pattern(expected: list[str]) -> re.Pattern[str]:
    """The regular expression shown output stands for (placeholders and ``...`` lines)."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = PLACEHOLDER.split(line)
        parts.append(r"[^\n]+?".join(re.escape(p) for p in pieces) + r"[ \t]*\n")
    return re.compile("".join(parts))


def matches(expected: list[str], actual: str) -> bool:
    lines = [line.rstrip() for line in actual.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0] and (not expected or expected[0]):
        lines.pop(0)
    text = "".join(line + "\n" for line in lines)
    return pattern(expected).fullmatch(text) is not None


# -- the tests --------------------------------------------------------------------------------

COPIED = ("inventories", "docs", "deploy")  # what a session's folder holds, copied from the repository
SESSION_TIMEOUT = 180


def _all_examples() -> list[Example]:
    return [e for page in pages() for e in examples(page)]


def _all_includes() -> list[tuple[Block, str]]:
    return [pair for page in pages() for pair in included_files(page)]


def test_every_block_is_run_checked_or_marked_with_a_reason() -> None:
    loose = [f"{b.where} ({b.lang or 'no language'})" for page in pages() for b in unchecked(page)]
    assert not loose, (
        "blocks that no test runs: make them ```console sessions or included inventories, "
        "or mark them <!-- not-run: REASON --> on the line before:\n  " + "\n  ".join(loose)
    )
    vague = [b.where for page in pages() for b in blocks(page) if b.marker == "not-run" and len(b.reason) < 10]
    assert not vague, f"<!-- not-run --> without a reason (say why it cannot run): {vague}"


def test_the_pages_have_examples_to_run() -> None:
    """The collection below is not empty by accident (a fence the parser misses)."""
    assert len(_all_examples()) >= 10
    assert any(kind_of(path) == "inventory" for _, path in _all_includes())


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "session"
    folder.mkdir()
    for name in COPIED:
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("hooks", "*.png", ".*.lock"))
    (folder / "home").mkdir()
    return folder


# Taken at import, before each test gets a temp dir of its own (conftest's _own_temp_dir).
SANDBOX_PORT_LOCK = Path(tempfile.gettempdir()) / f"batchsync-docs-examples-sandbox-{os.getuid()}.lock"


@pytest.fixture
def sandbox_port_lock() -> Iterator[None]:
    """Examples that start a sandbox on its default port take turns: xdist runs them side by
    side, and so may two test sessions on one machine (two checkouts, CI beside `make
    test`). One lock per user in the machine's temp dir, not in a session's own folder."""
    with SANDBOX_PORT_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _script(example: Example) -> str:
    out = ["exec 2>&1", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    for n, command in enumerate(example.commands):
        out.append(f"printf '\\n@@docs-example-command {n}@@\\n'")
        out.append(command.text)
        out.append(f"printf '\\n@@docs-example-exit {n} %d@@\\n' $?")
    return "\n".join(out) + "\n"


def run_session(example: Example, folder: Path) -> tuple[list[str], list[int | None], str]:
    env = {
        **os.environ,
        "HOME": str(folder / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LC_ALL": "C.UTF-8",
        "COLUMNS": "80",
    }
    for name in list(env):  # the caller's credentials and settings are not the example's
        if name.endswith(("_PUBLIC", "_SECRET", "_PUBLIC_KEY", "_SECRET_KEY", "_CLIENT_ID")):
            del env[name]
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-c", _script(example)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=SESSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    outputs: list[str] = []
    codes: list[int | None] = []
    for n in range(len(example.commands)):
        start = out.find(f"\n@@docs-example-command {n}@@\n")
        end = re.search(rf"\n@@docs-example-exit {n} (\d+)@@\n", out)
        if start < 0 or end is None:
            outputs.append(out[start + 1 :] if start >= 0 else "")
            codes.append(None)
            break
        outputs.append(out[start + len(f"\n@@docs-example-command {n}@@\n") : end.start()])
        codes.append(int(end.group(1)))
    return outputs, codes, out


@pytest.mark.parametrize("example", _all_examples(), ids=lambda e: e.where)
def test_console_example(example: Example, session_dir: Path, request: pytest.FixtureRequest) -> None:
    if any("batchsync sandbox" in c.text and "--port 0" not in c.text for c in example.commands):
        request.getfixturevalue("sandbox_port_lock")
    outputs, codes, everything = run_session(example, session_dir)
    for command, output, code in zip(example.commands, outputs, codes, strict=False):
        where = f"{example.blocks[0].page.relative_to(ROOT)}:{command.line}: $ {command.text}"
        if code is None:
            pytest.fail(f"{where}\ndid not finish within {SESSION_TIMEOUT}s:\n{output}")
        if code != 0:
            pytest.fail(f'{where}\nexited {code} (a page shows a failing command as `cmd; echo "exit $?"`):\n{output}')
        if not matches(command.expected, output):
            shown = "\n".join(command.expected)
            got = output.strip("\n")
            diff = "\n".join(
                difflib.unified_diff(
                    shown.splitlines(), got.splitlines(), "the page shows", "the command printed", lineterm=""
                )
            )
            pytest.fail(f"{where}\nprinted something else than the page shows:\n{diff}")
    assert len(outputs) == len(example.commands), everything


@pytest.mark.parametrize(("block", "path"), _all_includes(), ids=lambda v: v.where if isinstance(v, Block) else v)
def test_included_file(block: Block, path: str, tmp_path: Path) -> None:
    target = ROOT / path
    assert target.is_file(), f"{block.where}: includes {path}, which does not exist"
    kind = kind_of(path)
    if kind == "inventory" and imported_by_a_session(block.page, path):
        kind = "accounts"  # its session imports it: test_console_example runs that
    if kind == "inventory":
        text = target.read_text(encoding="utf-8")
        names = set(re.findall(r"\benv:([A-Za-z_][A-Za-z0-9_]*)", text))
        env = {**os.environ, **{name: f"docs-example-{name.lower()}" for name in names}}
        result = subprocess.run(
            [sys.executable, "-m", "batchsync", "validate", path], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, (
            f"{block.where}: {path} is not a valid inventory:\n{result.stdout}{result.stderr}"
        )
        assert f"{path}: valid: " in result.stdout
    elif kind == "seed":
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchsync", "sandbox", "--port", "0", "--seed-file", path],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on http://127.0.0.1:" in line, (
                f"{block.where}: {path}: {line}{proc.stderr and proc.stderr.read()}"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
