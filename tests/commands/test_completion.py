"""Shell completion: the scripts parse, and a real shell completes commands, options, choices and files."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchsync.cli import build_parser
from batchsync.commands.completion import INSTALL, SHELLS, mark_files, script


def bash_complete(script_path: Path, line: str, cwd: Path) -> list[str]:
    """What bash offers for the last word of ``line`` (a word list split on spaces)."""
    words = line.split(" ")
    program = (
        f'source "{script_path}"; COMP_WORDS=({" ".join(repr(w) for w in words)}); '
        f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; "
        '_shtab_batchsync; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    return [w for w in done.stdout.splitlines() if w]


@pytest.fixture
def bash_script(tmp_path: Path) -> Path:
    path = tmp_path / "batchsync.bash"
    path.write_text(script(build_parser(), "bash"))
    return path


def test_the_bash_script_parses_and_names_every_command_and_option(bash_script: Path) -> None:
    subprocess.run(["bash", "-n", str(bash_script)], check=True, timeout=30)
    text = bash_script.read_text()
    assert (
        "_shtab_batchsync_subparsers=(validate plan apply health show import report history completion sandbox)" in text
    )
    options = ("--limit", "--detailed-exitcode", "--allow-delete-all", "--shard-index-from-env", "--max-age", "--plan")
    for option in (*options, "--history", "--no-history", "--older-than"):
        assert option in text
    assert text.rstrip().endswith("complete -o bashdefault -F _shtab_batchsync batchsync")


def test_bash_completes_commands_options_choices_and_files(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "prod.toml").write_text("")
    (tmp_path / "shard-0.jsonl").write_text("")
    assert bash_complete(bash_script, "batchsync ap", tmp_path) == ["apply"]
    assert set(bash_complete(bash_script, "batchsync apply --re", tmp_path)) == {
        "--recap-by",
        "--report",
        "--require-all-credentials",
        "--retry-failed",
        "--retry-max-time",
    }
    assert bash_complete(bash_script, "batchsync plan --format ", tmp_path) == ["text", "json"]
    assert bash_complete(bash_script, "batchsync apply --recap-by ", tmp_path) == ["account", "tag"]
    assert bash_complete(bash_script, "batchsync apply pr", tmp_path) == ["prod.toml"]
    assert bash_complete(bash_script, "batchsync report m", tmp_path) == ["merge"]
    assert bash_complete(bash_script, "batchsync report merge sh", tmp_path) == ["shard-0.jsonl"]
    assert bash_complete(bash_script, "batchsync report merge --ju", tmp_path) == ["--junit"]
    assert bash_complete(bash_script, "batchsync completion z", tmp_path) == ["zsh"]
    assert bash_complete(bash_script, "batchsync apply --shard-c", tmp_path) == ["--shard-count"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_the_zsh_script_parses(tmp_path: Path) -> None:
    path = tmp_path / "_batchsync"
    path.write_text(script(build_parser(), "zsh"))
    subprocess.run(["zsh", "-n", str(path)], check=True, timeout=30)
    text = path.read_text()
    assert text.startswith("#compdef batchsync")
    assert '"--detailed-exitcode[exit 4 when there are changes to make' in text
    assert "report:'Work with --report files.'" in text and "merge:'Read the reports of a sharded run" in text


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_commands_and_files(tmp_path: Path) -> None:
    path = tmp_path / "batchsync.fish"
    path.write_text(script(build_parser(), "fish"))
    (tmp_path / "prod.toml").write_text("")
    subprocess.run(["fish", "--no-execute", str(path)], check=True, timeout=30)

    def fish(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert fish("batchsync ap") == ["apply"]
    assert "prod.toml" in fish("batchsync validate pr")
    assert fish("batchsync report merge --ju") == ["--junit"]


def test_file_arguments_are_marked_by_their_metavar() -> None:
    parser = build_parser()
    mark_files(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    apply = {a.dest: a for a in sub.choices["apply"]._actions}
    for dest in ("inventory", "report", "junit", "metrics", "retry_failed"):
        assert hasattr(apply[dest], "complete"), dest
    for dest in ("limit", "format", "concurrency"):
        assert not hasattr(apply[dest], "complete"), dest


def test_every_shell_gets_a_script_and_others_are_refused() -> None:
    for shell in SHELLS:
        assert "batchsync" in script(build_parser(), shell)
    with pytest.raises(ValueError, match="choose one of bash, zsh, fish"):
        script(build_parser(), "powershell")


def test_the_command_prints_the_script_its_shell_loads(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchsync", "completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == script(build_parser(), "bash")
    path = tmp_path / "batchsync.bash"
    path.write_text(done.stdout)
    assert bash_complete(path, "batchsync report mer", tmp_path) == ["merge"]
    refused = subprocess.run(
        [sys.executable, "-m", "batchsync", "completion", "powershell"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "invalid choice: 'powershell'" in refused.stderr and refused.stdout == ""


def test_start_up_does_not_pay_for_completion() -> None:
    # shtab is imported when a script is asked for, not when the module (or the CLI) loads.
    program = (
        "import sys, batchsync.commands.completion, batchsync.cli\n"
        "code = batchsync.cli.main(['--version'])\n"
        "assert 'shtab' not in sys.modules, 'shtab imported at start-up'\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60, capture_output=True)


def test_the_manual_installs_every_shell_as_the_help_does() -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "running.md").read_text()
    assert set(INSTALL) == set(SHELLS)
    for line in INSTALL.values():
        assert line in readme
