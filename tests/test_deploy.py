"""Deployment as operators do it: the Dockerfile's own install steps, run on the host.

No container engine runs here, so the Dockerfile is parsed and its steps are carried out
with its container paths moved under a temporary root: the build stage's RUN lines run
as written (build the wheel, install it without extras into a clean virtualenv), then the
final stage's entrypoint runs from that virtualenv as the image's non-root user.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import locked
import pytest
import yaml

import batchsync
from batchsync.commands._arguments import parse_duration

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


# -- reading a Dockerfile ----------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for kind, args in self.steps if kind == instruction]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buffer):
            continue  # comments, also those inside a continued instruction, as Docker does
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for kind, rest in instructions(text):
        if kind == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(substitute(words[0], args), name))
        elif not result:
            assert kind == "ARG", f"{kind} before the first FROM"
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            result[-1].steps.append((kind, rest))
    return args, result


def substitute(text: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def env_pairs(rest: str) -> list[tuple[str, str]]:
    pairs = []
    for word in shlex.split(rest):
        key, sep, value = word.partition("=")
        assert sep, f"ENV {rest!r}: use the KEY=value form"
        pairs.append((key, value))
    return pairs


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
        table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return re.compile("".join(table.get(p, re.escape(p)) for p in parts))

    candidates = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        compiled = regex(pattern.lstrip("!"))
        if any(compiled.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def ignore_patterns() -> list[str]:
    text = (ROOT / ".dockerignore").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


# -- what the Dockerfile must say ----------------------------------------------------------


def test_the_dockerfile_is_multi_stage_one_shot_and_non_root() -> None:
    args, (build, final, *more) = stages(DOCKERFILE.read_text())
    assert not more, "two stages: build, then the image"
    assert build.name == "build" and final.base == build.base == args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", args["PYTHON_IMAGE"])
    assert all(kind != "HEALTHCHECK" for s in (build, final) for kind, _ in s.steps)  # one-shot
    assert [json.loads(e) for e in final.all("ENTRYPOINT")] == [["batchsync"]]  # exec form: signals reach it
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0
    # The image gets the virtualenv, made in the build stage, and nothing else that installs.
    assert [c.split() for c in final.all("COPY")] == [["--from=build", "${VENV}", "${VENV}"]]
    for run in final.all("RUN"):
        assert re.fullmatch(r"groupadd .* && useradd .*", run), f"the image stage only creates its user: {run}"
        assert f"--uid {uid}" in run and f"--gid {gid}" in run
    for run in build.all("RUN") + final.all("RUN"):
        assert not re.search(r"apt-get|apk |gcc|build-essential|\bmake\b", run), run
    for run in build.all("RUN"):
        # Every absolute path in a RUN line the test carries out is a variable it can point elsewhere.
        assert not re.search(r"(^|[\s=])[\"']?/", run), f"a literal absolute path in: {run}"
    installs = [r for r in build.all("RUN") if " install " in r]
    assert installs and all("--only-binary=:all:" in r for r in installs)
    # What it installs is the lock's: the dependencies and the build backend by hash, the
    # wheel alone (with no dependency of its own choosing), built without fetching a backend.
    pip_commands = [c.strip() for r in build.all("RUN") for c in r.split("&&") if " pip " in c]
    for command in pip_commands:
        words = command.split()
        if "install" in words:
            assert ("--require-hashes" in words and words[-2] == "-r") or "--no-deps" in words, command
        if "wheel" in words:
            assert "--no-build-isolation" in words and "--no-deps" in words, command
    locks = [c.split()[-1] for c in pip_commands if "--require-hashes" in c.split()]
    assert locks == ["requirements/build.txt", "requirements/image.txt"]
    assert dict(env_pairs(" ".join(build.all("ENV"))))["PIP_NO_CACHE_DIR"] == "1"


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    _, (build, _final) = stages(DOCKERFILE.read_text())
    sources = [s for c in build.all("COPY") for s in c.split()[:-1] if not s.startswith("--")]
    patterns = ignore_patterns()
    sent = []
    reincluded = [p[1:] for p in patterns if p.startswith("!")]
    for folder, dirs, files in os.walk(ROOT):
        # Skip what is excluded whole (.venv, .git): nothing below it can be sent.
        rel_dir = os.path.relpath(folder, ROOT)
        dirs[:] = [
            d
            for d in dirs
            if not dockerignore_excludes(patterns, os.path.normpath(os.path.join(rel_dir, d)))
            or any(r.startswith(os.path.normpath(os.path.join(rel_dir, d)) + "/") for r in reincluded)
        ]
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), ROOT)
            if not dockerignore_excludes(patterns, rel):
                sent.append(rel)
    assert sent, "the context cannot be empty"
    for rel in sent:
        assert any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in sources), f"{rel} is sent but not copied"
        assert "__pycache__" not in rel
    for s in sources:
        assert not dockerignore_excludes(patterns, s), f"the Dockerfile copies {s}, .dockerignore drops it"
    for secret in ("inventories/secrets/acme-eu.secret", ".venv/bin/python", "tests/test_deploy.py"):
        assert dockerignore_excludes(patterns, secret)


# -- running the install steps ---------------------------------------------------------------


@dataclass
class Image:
    root: Path  # "/" of the image, on the host
    env: dict[str, str]  # the final stage's environment
    entrypoint: list[str]
    uid: int
    gid: int
    wheel: Path

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        as_user = os.geteuid() == 0  # the image's user, as the image would; otherwise whoever we are

        def drop() -> None:
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)

        return subprocess.run(
            [*self.entrypoint, *args],
            env=self.env,
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=drop if as_user else None,
        )


def host_env() -> dict[str, str]:
    """The host's environment less anything that would let the project's own .venv leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    args, (build, final) = stages(DOCKERFILE.read_text())
    root = Path(tempfile.mkdtemp(prefix="batchsync-image-"))
    root.chmod(0o755)  # the image's user must be able to reach the virtualenv
    try:
        yield _build(root, args, build, final)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _apply_env(env: dict[str, str], rest: str, root: Path) -> None:
    for key, value in env_pairs(rest):
        value = substitute(value, env)
        # Container paths move under the root; PATH's own host entries stay as they are.
        if value.startswith("/") and key != "PATH":
            value = str(root / value.lstrip("/"))
        env[key] = value


def _reachable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def interpreter() -> str | None:
    """A Python like the image's: 3.11 or later, with pip and venv, that the image's user can
    run (a virtualenv links to it). The one running the tests may live under root's home."""
    candidates = [str(getattr(sys, "_base_executable", sys.executable)), sys.executable]
    for folder in ("/usr/local/bin", "/usr/bin"):
        candidates += [f"{folder}/python3.{minor}" for minor in range(11, 20)] + [f"{folder}/python3"]
    for candidate in dict.fromkeys(candidates):
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys, pip, venv; assert sys.version_info >= (3, 11); print(sys.base_prefix)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if probe.returncode != 0:
            continue
        real = Path(os.path.realpath(candidate))
        if os.geteuid() != 0 or (_reachable_by_others(real) and _reachable_by_others(Path(probe.stdout.strip()))):
            return candidate
    return None


def _build(root: Path, args: dict[str, str], build: Stage, final: Stage) -> Image:
    python = interpreter()
    if python is None:
        pytest.skip("no Python 3.11+ with pip and venv that a non-root user can run")
    shim = root / ".host-bin"
    shim.mkdir()
    # The build stage's `python` stands for the image's /usr/local/bin/python.
    (shim / "python").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
    (shim / "python").chmod(0o755)
    env = host_env() | args
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    workdir = root
    patterns = ignore_patterns()
    for kind, rest in build.steps:
        if kind == "ENV":
            _apply_env(env, rest, root)
        elif kind == "WORKDIR":
            workdir = root / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif kind == "COPY":
            *sources, dest = rest.split()
            target = workdir / dest if not dest.startswith("/") else root / dest.lstrip("/")
            for source in sources:
                src = ROOT / source
                assert not dockerignore_excludes(patterns, source)
                if src.is_dir():
                    shutil.copytree(
                        src,
                        target,
                        dirs_exist_ok=True,
                        ignore=lambda folder, names: [
                            n
                            for n in names
                            if dockerignore_excludes(patterns, os.path.relpath(os.path.join(folder, n), ROOT))
                        ],
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / src.name)
        elif kind == "RUN":
            done = subprocess.run(
                ["/bin/sh", "-c", rest], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout}\n{done.stderr}"
        else:
            assert kind in ("ARG", "LABEL"), f"the test does not know how to carry out {kind}"
    (wheel,) = Path(env["WHEELS"]).glob("batchsync-*.whl")

    # The image: its base environment, then its own ENV lines; what it copies must already
    # be at the same path (it is: the root is shared), so COPY checks rather than copies.
    final_env = {"PATH": host_env()["PATH"], "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    user = entrypoint = None
    for kind, rest in final.steps:
        if kind == "ENV":
            _apply_env(final_env, rest, root)
        elif kind == "COPY":
            _flag, copied, dest = rest.split()
            assert substitute(copied, final_env) == substitute(dest, final_env)
            assert Path(substitute(dest, final_env)).is_dir()
        elif kind == "USER":
            user = rest
        elif kind == "ENTRYPOINT":
            entrypoint = json.loads(rest)
    assert user is not None and entrypoint is not None
    uid, gid = (int(x) for x in user.split(":"))
    for folder in (root, *root.rglob("*")):
        if folder.is_dir():  # what a root umask of 077 would have hidden from the image's user
            assert folder.stat().st_mode & 0o005 == 0o005, folder
    return Image(root, final_env, entrypoint, uid, gid, wheel)


@pytest.mark.slow
def test_the_image_runs_its_entrypoint_as_its_user(image: Image) -> None:
    done = image.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"batchsync {batchsync.__version__}"
    which = shutil.which("batchsync", path=image.env["PATH"])
    assert which is not None and Path(which).is_relative_to(image.root)


@pytest.mark.slow
def test_the_image_applies_the_example_against_the_sandbox(image: Image) -> None:
    # The inventory as a read-only mount (a ConfigMap), reports to a volume the user owns.
    config = image.path("/config")
    shutil.copytree(ROOT / "inventories", config, ignore=shutil.ignore_patterns(".*.lock"))
    reports = image.path("/reports")
    reports.mkdir()
    if os.geteuid() == 0:
        os.chown(reports, image.uid, image.gid)
    done = image.run("apply", "--sandbox", str(config / "example.toml"), "--report", str(reports / "r.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "RECAP" in done.stdout and "TOTAL" in done.stdout
    report = reports / "r.jsonl"
    lines = report.read_text().splitlines()
    assert len(lines) >= 24 and json.loads(lines[-1])["summary"] is True
    if os.geteuid() == 0:
        assert report.stat().st_uid == image.uid  # written by the image's user, not root


@pytest.mark.slow
def test_the_virtualenv_holds_the_package_and_its_dependencies_only(image: Image) -> None:
    site = next(Path(image.env["VENV"]).glob("lib/python3.*/site-packages"))
    installed = locked.installed([str(site)])
    assert {"batchsync", "aiohttp", "anyio", "msgspec", "pyyaml", "shtab"} <= set(installed)
    assert not set(installed) & {"pytest", "hypothesis", "ruff", "mypy", "kubernetes-validate", "pip", "setuptools"}
    # Exactly the lock's versions (the ones make test ran), whatever is newer that day.
    assert installed == locked.expected_here("image.txt") | {"batchsync": batchsync.__version__}


@pytest.mark.slow
def test_every_module_of_the_image_is_byte_compiled(image: Image) -> None:
    # The image sets PYTHONDONTWRITEBYTECODE: a module without its .pyc is compiled on every start.
    site = next(Path(image.env["VENV"]).glob("lib/python3.*/site-packages"))
    for package in ("batchsync", "aiohttp", "uvloop", "msgspec"):
        sources = list((site / package).rglob("*.py"))
        assert sources, package
        missing = [p for p in sources if not Path(importlib.util.cache_from_source(str(p))).exists()]
        assert not missing, missing[:5]


def test_make_install_byte_compiles_the_package_itself() -> None:
    # An editable install's sources are the checkout's, which no installer compiles: make does.
    done = subprocess.run(
        ["make", "--dry-run", "--always-make", "install"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--compile-bytecode" in done.stdout and "-m compileall -q batchsync" in done.stdout


@pytest.mark.slow
def test_the_wheel_carries_the_license(image: Image) -> None:
    with zipfile.ZipFile(image.wheel) as wheel:
        names = wheel.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(license_name) == (ROOT / "LICENSE").read_bytes()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


# -- cron ------------------------------------------------------------------------------------

CRONTAB = ROOT / "deploy" / "cron" / "crontab"
NIGHTLY = ROOT / "deploy" / "cron" / "batchsync-nightly"
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute, hour, day of month, month, day of week


def cron_entries(text: str) -> list[str]:
    """The job lines of a crontab: not blank, not a comment, not a NAME=value setting."""
    return [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not re.match(r"\s*[A-Za-z_]\w*\s*=", line)
    ]


def parse_cron_entry(line: str) -> tuple[list[str], str]:
    """Five time fields and a command, as cron reads one line; raises AssertionError otherwise."""
    assert not line.rstrip().endswith("\\"), "cron does not join lines: a trailing backslash ends the command there"
    parts = line.split(None, 5)
    assert len(parts) == 6, f"five time fields and a command: {line!r}"
    *fields, command = parts
    for text, (low, high) in zip(fields, CRON_RANGES, strict=True):
        for item in text.split(","):
            m = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", item)
            assert m is not None, f"time field {text!r}"
            for number in (m.group(2), m.group(3)):
                assert number is None or low <= int(number) <= high, f"time field {text!r} out of {low}-{high}"
            assert m.group(4) is None or int(m.group(4)) >= 1
    # cron turns an unescaped % into a newline and feeds the rest to the command's stdin.
    assert not re.search(r"(?<!\\)%", command), "an unescaped % in the command"
    return fields, command


def readme_block(title: str) -> str:
    """The first fenced block under the ``## title`` heading of docs/running.md, where the
    manual shows it: the file it includes, when it includes one (``--8<-- "PATH"``)."""
    text = (ROOT / "docs" / "running.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n.*?\n```[a-z]*\n(.*?)\n```", text, re.DOTALL | re.MULTILINE)
    assert m is not None, f"no block under ## {title} in docs/running.md"
    include = re.fullmatch(r'--8<-- "([^"]+)"', m.group(1).strip())
    return (ROOT / include.group(1)).read_text() if include else m.group(1)


def test_the_cron_line_is_one_entry_that_pastes_as_is() -> None:
    (entry,) = cron_entries(CRONTAB.read_text())
    fields, command = parse_cron_entry(entry)
    assert fields == ["15", "2", "*", "*", "*"]
    program = shlex.split(command)[0]
    assert program.endswith("/deploy/cron/batchsync-nightly")
    assert cron_entries(readme_block("cron")) == [entry]  # the manual shows exactly this line


@pytest.mark.parametrize(
    "bad",
    [
        "15 2 * * *  batchsync apply x.toml \\",
        "15 2 * * batchsync",
        "61 2 * * * batchsync",
        "15 2 * * * date +%F",
        "15 2 */0 * * batchsync",
    ],
)
def test_the_cron_parser_refuses_what_cron_would_misread(bad: str) -> None:
    with pytest.raises(AssertionError):
        parse_cron_entry(bad)


def test_the_wrapper_is_an_executable_posix_script() -> None:
    assert os.access(NIGHTLY, os.X_OK)
    subprocess.run(["sh", "-n", str(NIGHTLY)], check=True, timeout=30)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(NIGHTLY)], check=True, timeout=60)


def nightly(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REPORT_DIR": str(tmp_path / "reports"),
        "BATCHSYNC_ENV_FILE": str(tmp_path / "none.env"),
        "BATCHSYNC": str(Path(sys.executable).parent / "batchsync"),
        "XDG_STATE_HOME": str(tmp_path / "state"),  # no HOME: else the user's own history (from getpwuid)
    } | env
    return subprocess.run([str(NIGHTLY), *args], env=environ, capture_output=True, text=True, timeout=120)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "inventories", tmp_path / "inv", ignore=shutil.ignore_patterns(".*.lock"))
    return tmp_path / "inv" / "example.toml"


def test_a_good_night_prints_nothing_and_keeps_its_report(tmp_path: Path, inventory: Path) -> None:
    done = nightly(tmp_path, str(inventory), "--sandbox")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    last = tmp_path / "reports" / "last.jsonl"
    assert last.is_symlink() and re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}-example\.jsonl", os.readlink(last))
    assert json.loads(last.read_text().splitlines()[-1])["summary"] is True


def test_two_inventories_started_in_one_second_each_keep_their_report(tmp_path: Path, inventory: Path) -> None:
    # Two crontab lines at 02:00, two inventories of one name in two folders: one report
    # each (one shared file was two runs' lines mixed, or, locked, one night skipped).
    other = tmp_path / "other" / "example.toml"
    shutil.copytree(inventory.parent, other.parent)
    for key in (other.parent / "secrets").iterdir():  # other accounts: no account lock shared
        key.write_text(key.read_text().strip() + "-other\n")
    env = {
        **os.environ,
        "REPORT_DIR": str(tmp_path / "reports"),
        "BATCHSYNC_ENV_FILE": str(tmp_path / "none.env"),
        "BATCHSYNC": str(Path(sys.executable).parent / "batchsync"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    for _ in range(2):
        runs = [
            subprocess.Popen([str(NIGHTLY), str(inv), "--sandbox"], env=env, stderr=subprocess.PIPE, text=True)
            for inv in (inventory, other)
        ]
        assert [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in runs] == [(0, ""), (0, "")]
    reports = sorted((tmp_path / "reports").glob("[0-9]*.jsonl"))
    assert len(reports) == 4
    for report in reports:
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        assert lines[0]["header"] is True and lines[-1]["summary"] is True and len(lines) == 25


def test_a_run_still_holding_the_lock_is_not_an_error(tmp_path: Path, inventory: Path) -> None:
    from batchsync.engine.lock import acquire_lock

    with acquire_lock(str(inventory)):
        done = nightly(tmp_path, str(inventory), "--sandbox")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not list((tmp_path / "reports").glob("*.jsonl"))


def test_an_invalid_inventory_mails_why_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("accounts = 3\n")
    done = nightly(tmp_path, str(bad))
    assert done.returncode == 2
    assert "nothing was sent" in done.stderr and str(bad) in done.stderr
    # The report made for the run is not left empty, nor last.jsonl pointed at it.
    assert not list((tmp_path / "reports").iterdir())


@pytest.mark.parametrize("code", [1, 3])
def test_failures_mail_the_retry_command(tmp_path: Path, code: int) -> None:
    # A stand-in for batchsync: what is tested here is the wrapper's handling of each code.
    fake = tmp_path / "fake-batchsync"
    fake.write_text(
        '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --report ] && echo "{}" > "$2"; shift; done\n'
        f'echo "! integration 7 (acme): failed" >&2\nexit {code}\n'
    )
    fake.chmod(0o755)
    done = nightly(tmp_path, "inv.toml", BATCHSYNC=str(fake))
    assert done.returncode == code
    report = os.readlink(tmp_path / "reports" / "last.jsonl")
    assert done.stderr.startswith("! integration 7 (acme): failed\n")
    assert f"{fake} apply inv.toml --retry-failed {tmp_path / 'reports' / report}" in done.stderr
    # With options and a credentials file, the retry line carries both, quoted for a shell.
    env_file = tmp_path / "creds.env"
    env_file.write_text("ACME_KEY=x\n")
    odd = tmp_path / "it's here.prom"
    done = nightly(tmp_path, "inv.toml", "--metrics", str(odd), BATCHSYNC=str(fake), BATCHSYNC_ENV_FILE=str(env_file))
    report = os.readlink(tmp_path / "reports" / "last.jsonl")
    [line] = [x.strip() for x in done.stderr.splitlines() if "--retry-failed" in x]
    assert line == (
        f"(set -a; . {env_file}; set +a; exec {fake} apply inv.toml --metrics "
        f"'{tmp_path}/it'\\''s here.prom' --retry-failed {tmp_path / 'reports' / report})"
    )
    # The line runs as it reads: the fake sees the same arguments, in one shell.
    probe = tmp_path / "probe"
    probe.write_text('#!/bin/sh\nprintf "%s|" "$ACME_KEY" "$@"\n')
    probe.chmod(0o755)
    ran = subprocess.run(["sh", "-c", line.replace(str(fake), str(probe))], capture_output=True, text=True)
    assert ran.stdout == f"x|apply|inv.toml|--metrics|{odd}|--retry-failed|{tmp_path / 'reports' / report}|"


# -- Kubernetes ------------------------------------------------------------------------------

K8S = ROOT / "deploy" / "kubernetes"
OLDEST_KUBERNETES = "1.33.0"  # backoffLimitPerIndex and podFailurePolicy are GA from here on


def manifests() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def split_args(args: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """Positionals and --flag[=value] options (the manifests write every value with '=')."""
    positional = [a for a in args if not a.startswith("-")]
    options: dict[str, str | None] = {}
    for a in args:
        if a.startswith("-"):
            key, sep, value = a.partition("=")
            options[key] = value if sep else None
    return positional, options


def pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def minute_of_day(schedule: str) -> int:
    minute, hour, *rest = schedule.split()
    assert rest == ["*", "*", "*"] and minute.isdigit() and hour.isdigit(), "a daily schedule"
    return int(hour) * 60 + int(minute)


def test_the_manifests_pass_kubernetes_validate() -> None:
    from kubernetes_validate import utils

    latest = utils.latest_version()
    assert tuple(int(x) for x in latest.split(".")[:2]) >= (1, 35), "a current Kubernetes schema ships with it"
    assert OLDEST_KUBERNETES in utils.all_versions()  # its own schema, not the nearest older one
    docs = manifests()
    assert set(docs) == {
        "CronJob/batchsync-shards",
        "CronJob/batchsync-merge",
        "ConfigMap/batchsync-inventory",
        "Secret/sendcloud-credentials",
        "PersistentVolumeClaim/batchsync-reports",
    }
    for version in (OLDEST_KUBERNETES, latest):
        for name, doc in docs.items():
            try:
                utils.validate(doc, version, strict=True)  # strict: an unknown field is an error
            except utils.ValidationError as exc:
                pytest.fail(f"{name} against Kubernetes {version}: {exc.message} at {list(exc.path)}")
    # And the schema check can fail: a misspelt field is refused.
    broken = docs["CronJob/batchsync-shards"]
    broken = {**broken, "spec": {**broken["spec"], "schedul": "15 2 * * *"}}
    with pytest.raises(utils.ValidationError):
        utils.validate(broken, latest, strict=True)


def test_the_shards_job_is_indexed_and_each_pod_runs_its_own_shard() -> None:
    docs = manifests()
    shards = docs["CronJob/batchsync-shards"]
    job = shards["spec"]["jobTemplate"]["spec"]
    spec = pod(shards)
    (container,) = spec["containers"]
    positional, options = split_args(container["args"])
    n = job["completions"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == n and n >= 2
    assert job["backoffLimitPerIndex"] >= 0 and spec["restartPolicy"] == "Never"
    assert shards["spec"]["concurrencyPolicy"] == "Forbid"
    for rule in job["podFailurePolicy"]["rules"]:
        assert rule.get("onExitCodes", {}).get("containerName", container["name"]) == container["name"]
    assert positional[0] == "apply"
    assert options["--shard-index-from-env"] == "JOB_COMPLETION_INDEX"
    assert options["--shard-count"] == str(n)
    report = options["--report"]
    assert report is not None and "$(JOB_COMPLETION_INDEX)" in report  # one report per shard

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    inventory = positional[1]
    assert Path(inventory).parent == Path(mounts["config"])
    cm = docs["ConfigMap/batchsync-inventory"]
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert Path(inventory).name in cm["data"]
    assert Path(report).parent == Path(mounts["reports"])
    pvc = volumes["reports"]["persistentVolumeClaim"]["claimName"]
    assert pvc == docs["PersistentVolumeClaim/batchsync-reports"]["metadata"]["name"]
    (source,) = container["envFrom"]
    assert source["secretRef"]["name"] == docs["Secret/sendcloud-credentials"]["metadata"]["name"]
    # The lock falls back to the temp dir when the inventory's folder is read-only.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and mounts["tmp"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]
    grace = float(options.get("--grace-period") or 10)
    assert spec["terminationGracePeriodSeconds"] > grace


def test_the_merge_runs_after_every_shard_is_over_and_reads_their_reports() -> None:
    docs = manifests()
    shards, merge = docs["CronJob/batchsync-shards"], docs["CronJob/batchsync-merge"]
    n = shards["spec"]["jobTemplate"]["spec"]["completions"]
    (shard_container,) = pod(shards)["containers"]
    (merge_container,) = pod(merge)["containers"]
    report = split_args(shard_container["args"])[1]["--report"]
    assert report is not None
    positional, options = split_args(merge_container["args"])
    assert positional[:2] == ["report", "merge"]
    patterns = positional[2:]
    for index in range(n):
        path = report.replace("$(JOB_COMPLETION_INDEX)", str(index))
        assert any(fnmatch.fnmatch(path, p) for p in patterns), f"the merge does not read shard {index}'s {path}"
    for output in (options["--junit"], options["--metrics"]):
        assert output is not None and not any(fnmatch.fnmatch(output, p) for p in patterns)
    assert merge_container["image"] == shard_container["image"]
    assert pod(merge)["volumes"] == [v for v in pod(shards)["volumes"] if v["name"] == "reports"]

    # Ordered by time: the shards start by their start deadline and are stopped at their
    # active deadline plus the grace period; the merge starts after that, the same night.
    assert merge["spec"]["timeZone"] == shards["spec"]["timeZone"]
    start = minute_of_day(shards["spec"]["schedule"]) * 60
    over = (
        start
        + shards["spec"]["startingDeadlineSeconds"]
        + shards["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        + pod(shards)["terminationGracePeriodSeconds"]
    )
    merged_at = minute_of_day(merge["spec"]["schedule"]) * 60
    assert over < merged_at < 24 * 3600
    # --max-age keeps tonight's reports (started since the shards' schedule) and drops last night's.
    assert options["--max-age"] is not None
    max_age = parse_duration(options["--max-age"])
    assert merged_at + merge["spec"]["startingDeadlineSeconds"] - start < max_age < 24 * 3600 - 600


def test_pods_run_as_the_images_user() -> None:
    _, (_build, final) = stages(DOCKERFILE.read_text())
    (user,) = final.all("USER")
    uid, gid = (int(x) for x in user.split(":"))
    for name in ("CronJob/batchsync-shards", "CronJob/batchsync-merge"):
        spec = pod(manifests()[name])
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_configmaps_inventory_is_valid_with_the_secrets_variables(tmp_path: Path) -> None:
    from batchsync.inventory.loader import load

    docs = manifests()
    data = docs["ConfigMap/batchsync-inventory"]["data"]
    environ = dict(docs["Secret/sendcloud-credentials"]["stringData"])
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    inv = load(tmp_path / "inventory.toml", environ=environ)
    assert inv.valid, inv.problems
    referenced = set(re.findall(r'"env:(\w+)"', data["inventory.toml"]))
    assert referenced == set(environ)  # every variable the inventory needs, and nothing else


def test_the_manifests_args_parse_with_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchsync.cli import build_parser
    from batchsync.commands import report
    from batchsync.commands._run import settings_from
    from batchsync.inventory.shard import ShardSpec

    docs = manifests()
    parsed = {}
    for name in ("CronJob/batchsync-shards", "CronJob/batchsync-merge"):
        (container,) = pod(docs[name])["containers"]
        try:
            parsed[name] = build_parser().parse_args(container["args"])
        except SystemExit:
            pytest.fail(f"{name}: batchsync {' '.join(container['args'])} is not a valid command line")
    job = docs["CronJob/batchsync-shards"]["spec"]["jobTemplate"]["spec"]
    for index in range(job["completions"]):  # what each pod of the Indexed Job runs
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        settings = settings_from(parsed["CronJob/batchsync-shards"], "apply")
        assert settings.command == "apply" and settings.shard == ShardSpec(index, job["completions"])
    assert parsed["CronJob/batchsync-merge"].command_module is report


def test_the_readme_shows_the_shards_cronjob_as_shipped() -> None:
    block = readme_block("Kubernetes")
    assert yaml.safe_load(block) == manifests()["CronJob/batchsync-shards"]
