"""The site `make docs` builds: strict, offline, and a command reference that misses no option.

The reference (docs/hooks/cli_reference.py) is written from the parser at build time; here
every long option is taken from each command's own ``--help``, as a user sees it, and looked
for in that command's section of the built page.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batchsync.cli import build_parser
from batchsync.exitcodes import describe

ROOT = Path(__file__).resolve().parents[1]
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def build(site: Path, config: Path = ROOT / "properdocs.yml") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "properdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def command_names(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser: (), ("validate",), ..., ("report", "merge")."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += command_names(sub, (*prefix, name))
    return found


COMMANDS = command_names(build_parser())


def help_options(command: tuple[str, ...]) -> dict[str, str]:
    """Each long option ``batchsync COMMAND --help`` lists, with its help text (whitespace collapsed)."""
    result = subprocess.run(
        [sys.executable, "-m", "batchsync", *command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    body = text[: text.index("\nexit codes:")] if "\nexit codes:" in text else text
    options: dict[str, str] = {}
    current: list[str] = []
    for line in body.splitlines():
        if re.match(r"^ {2}-", line):  # an option's own line: "  -q, --quiet   help", "  --limit SELECTOR  help"
            flags, _, help_text = line.strip().partition("  ")
            current = [help_text.strip()]
            for option in LONG_OPTION.findall(flags):
                options[option] = current  # type: ignore[assignment]
        elif current and re.match(r"^ {4,}\S", line):  # its help, wrapped
            current.append(line.strip())
        else:
            current = []
    return {option: " ".join(" ".join(parts).split()) for option, parts in options.items()}


def reference_rows(page: str, anchor: str) -> dict[str, str]:
    """The options table of a command's section of the built page: long option -> its meaning."""
    start = page.index(f'id="{anchor}"')
    nxt = re.compile(r'id="batchsync-[a-z-]+"').search(page, start + len(anchor) + 5)
    body = page[start : nxt.start() if nxt else len(page)]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
        if len(cells) >= 2:
            for option in LONG_OPTION.findall(cells[0]):
                rows[option] = " ".join(cells[1].split())
    return rows


def section(page: str, anchor: str) -> str:
    """The text of a command's section of the built page: from its heading to the next command's."""
    start = page.index(f'id="{anchor}"')
    nxt = re.compile(r'id="batchsync-[a-z-]+"').search(page, start + len(anchor) + 5)
    body = page[start : nxt.start() if nxt else len(page)]
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def anchor(command: tuple[str, ...]) -> str:
    return "-".join(("batchsync", *command))


def test_the_site_builds_strictly_and_a_broken_anchor_fails_it(site: Path, tmp_path: Path) -> None:
    assert (site / "commands.html").is_file()
    # The same build with one link to an anchor no page has: strict and the validation settings fail it.
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in (ROOT / "docs").glob("*.md"):
        (docs / page.name).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    (docs / "hooks").symlink_to(ROOT / "docs" / "hooks")
    (docs / "examples").symlink_to(ROOT / "docs" / "examples")
    (docs / "report.png").symlink_to(ROOT / "docs" / "report.png")
    with (docs / "index.md").open("a", encoding="utf-8") as f:
        f.write("\n[locks](running.md#no-such-heading)\n")
    config = (ROOT / "properdocs.yml").read_text(encoding="utf-8")
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}").replace(
        "docs/hooks/cli_reference.py", str(ROOT / "docs" / "hooks" / "cli_reference.py")
    )
    (tmp_path / "properdocs.yml").write_text(config, encoding="utf-8")
    result = build(tmp_path / "site", tmp_path / "properdocs.yml")
    assert result.returncode != 0
    assert "does not contain an anchor '#no-such-heading'" in result.stdout + result.stderr


def test_there_are_commands_to_check() -> None:
    assert ("report", "merge") in COMMANDS and ("apply",) in COMMANDS and len(COMMANDS) >= 9


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "batchsync")
def test_every_long_option_of_the_help_is_in_the_reference(command: tuple[str, ...], site: Path) -> None:
    options = help_options(command)
    if command in (("apply",), ("plan",), ("sandbox",), ("import",)):
        assert len(options) > 10, options  # the help was read, not an empty section
    rows = reference_rows((site / "commands.html").read_text(encoding="utf-8"), anchor(command))
    missing = sorted(o for o in options if o not in rows)
    assert not missing, f"batchsync {' '.join(command)}: --help lists {missing}, the reference's table does not"
    for option, text in options.items():
        assert rows[option] == text, (command, option)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c and c != ("report",)], ids=" ".join)
def test_each_command_s_exit_codes_come_from_the_table_the_code_uses(command: tuple[str, ...], site: Path) -> None:
    text = " ".join(section((site / "commands.html").read_text(encoding="utf-8"), anchor(command)).split())
    for code, meaning in describe(" ".join(command)):
        assert f"{code} {' '.join(meaning.split())}" in text, (command, code, meaning)


def test_the_exit_code_table_is_the_code_s(site: Path) -> None:
    page = (site / "commands.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page[page.index('id="exit-codes"') :])).split())
    for code, meaning in describe(None):
        assert f"{code} {' '.join(meaning.split())}" in text, (code, meaning)


def test_the_site_loads_nothing_from_elsewhere(site: Path) -> None:
    """Opened from disk or a server without internet, the pages need nothing from outside."""
    pages = list(site.glob("*.html"))
    assert len(pages) >= 10
    outside = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.IGNORECASE)
    for page in pages:
        found = outside.findall(page.read_text(encoding="utf-8"))
        assert not found, (page.name, found)


def _long_options(parser: argparse.ArgumentParser, found: set[str]) -> set[str]:
    for action in parser._actions:
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _long_options(sub, found)
    return found


# Options of other tools the pages name in passing: pip's and uv's, systemctl's, the site
# builder's.
OTHER_TOOLS = {"--compile", "--compile-bytecode", "--upgrade", "--now", "--strict"}


def test_every_option_a_page_names_in_its_prose_is_an_option_of_the_code() -> None:
    """The reference is generated from --help, and console blocks are run; the prose and the
    hand-written tables are not: an option renamed in the code (or misspelt in a page)
    must not live on there. Every ``--option`` in a page's inline code is one of a command's,
    or of the fleet generator's."""
    from batchsync.sandbox.fleet import parser as fleet_parser

    known = _long_options(build_parser(), set()) | _long_options(fleet_parser(), set()) | OTHER_TOOLS
    stale: set[str] = set()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for code in re.findall(r"`([^`\n]+)`", prose):
            stale.update(
                f"{page.relative_to(ROOT)}: {o}"
                for o in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", code)
                if o not in known
            )
    assert not stale, sorted(stale)
