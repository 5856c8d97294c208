"""The shape of the package, as the manual's architecture page describes it: every
subpackage named there with its job, rooms of a size a reader can take in, packages whose
``__init__`` holds nothing, no comment naming a file the repository lacks. (The layers
themselves are import-linter's contracts, in pyproject.toml; ``make lint`` runs both.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "batchsync"
MAX_LINES = 800


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_is_longer_than_800_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these (at most {MAX_LINES} lines each): {long}"


def architecture() -> str:
    """The manual's architecture page, up to its recipes."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    return text[: text.index("\n## Adding a sink\n")]


def test_the_architecture_section_names_every_subpackage_and_its_job() -> None:
    section = architecture()
    rows = dict(re.findall(r"^\| `([a-z_]+)/` \| (.+) \|$", section, re.MULTILINE))
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages and sorted(rows) == packages, (sorted(rows), packages)
    for name, job in rows.items():
        assert len(job.split()) >= 5, f"{name}/: say what it is for"
    core = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__") and p.stem != "cli")
    unnamed = [m for m in core if f"`{m}.py`" not in section]
    assert not unnamed, f"core modules the section does not name: {unnamed}"


def test_every_command_module_is_a_verb_of_the_command_line() -> None:
    """A verb is a module of batchsync/commands and its line in cli.VERBS: neither without
    the other, and each module of the one shape."""
    from batchsync.cli import VERBS, commands

    modules = sorted(p.stem for p in (PACKAGE / "commands").glob("*.py") if not p.stem.startswith("_"))
    assert sorted(VERBS.values()) == modules
    for word, command in zip(VERBS, commands(), strict=True):
        assert command.NAME.split()[0] == word and len(command.EXAMPLES) == 2
        assert all(callable(getattr(command, f)) for f in ("add_arguments", "settings", "run")), word


def test_every_package_init_holds_nothing_but_its_docstring() -> None:
    """Importing a package costs nothing more than its module: ``--version`` and
    ``validate`` import several of them at start-up."""
    for init in PACKAGE.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        if init.parent == PACKAGE:  # batchsync/__init__.py: the version, and nothing else
            (version,) = body
            assert isinstance(version, ast.Assign) and ast.unparse(version.targets[0]) == "__version__", init
        else:
            assert body == [], f"{init.relative_to(ROOT)} holds code"


_NAMED = re.compile(r"[A-Za-z0-9_./-]+\.md\b")


def test_no_source_names_a_document_the_repository_lacks() -> None:
    """A comment that cites a notes file the repository does not ship sends a reader nowhere."""
    present = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    names = {Path(p).name for p in present}
    sources = [*modules(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        if path != Path(__file__)  # this file names what the tests below allow
        for name in _NAMED.findall(path.read_text())
        if name not in present and Path(name).name not in names
    }
    assert not missing, missing


_PATH = re.compile(
    r"(?<![A-Za-z0-9_./-])((?:batchsync|tests|bench|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_]\.(?:py|md|toml|json|yml|yaml))\b"
)
# Named on purpose though absent: a placeholder, and a file a page's own example makes.
_NOT_SHIPPED = {"docs/NAME.md", "docs/examples/complete/without-unmap.toml"}


def test_no_source_or_page_names_a_repository_file_it_lacks() -> None:
    """A comment, a docstring or a page that cites batchsync/..., tests/..., bench/... or
    docs/... sends a reader to a file that is there (a module moved leaves its old path
    behind in prose: two did, an aiohttp module and a notifications test)."""
    texts = [
        *modules(),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "bench").glob("*.py"),
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "docs" / "hooks").glob("*.py"),
        *ROOT.glob("*.md"),
    ]
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in texts
        if path != Path(__file__)
        for name in _PATH.findall(path.read_text())
        if name not in _NOT_SHIPPED and not (ROOT / name).exists()
    }
    assert not missing, missing
