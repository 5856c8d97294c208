"""The command line's definition: help on every argument, exit codes and examples under
every ``--help``, the shard options, the selection order, ``validate --shards``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from inventory_factory import inventory_env, make_inventory

from batchsync.cli import VERBS, build_parser, main
from batchsync.cli import examples as examples_of
from batchsync.commands._arguments import shard_from_args
from batchsync.commands._run import Selected, load_selected, settings_from, take_shard
from batchsync.exitcodes import BY_COMMAND, MEANING, describe
from batchsync.inventory.shard import ShardSpec, partition
from batchsync.usage import UsageError

ROOT = Path(__file__).resolve().parents[1]


def parsers(parser: argparse.ArgumentParser, key: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser with its command ("", "apply", "report merge", ...)."""
    yield key, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{key} {name}".strip())


def test_every_argument_of_every_command_has_help() -> None:
    seen = set()
    for key, parser in parsers(build_parser()):
        seen.add(key)
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"batchsync {key}: {action.dest} has no help"
    assert {"", "validate", "plan", "apply", "report", "report merge", "completion", "sandbox"} <= seen


def test_every_help_lists_its_exit_codes_and_two_examples_that_parse() -> None:
    for key, parser in parsers(build_parser()):
        command = {"": None, "report": "report merge"}.get(key, key)
        text = parser.format_help()
        codes, _, examples = text.partition("\nexit codes:\n")[2].partition("\nexamples:\n")
        listed = [(int(line.split()[0]), line.split(None, 1)[1]) for line in codes.strip().splitlines()]
        assert listed == describe(command), key
        lines = examples.strip().splitlines()
        assert len(lines) == 2 and [line.strip() for line in lines] == list(examples_of(command)), key
        for line in lines:
            words = shlex.split(line)
            assert words[0] == "batchsync"
            words = words[1 : words.index(">")] if ">" in words else words[1:]
            try:
                build_parser().parse_args(words)
            except SystemExit:
                pytest.fail(f"batchsync {key} --help: the example {line.strip()!r} does not parse")


def test_a_verbs_branch_alone_parses_and_helps_as_the_whole_parser_does() -> None:
    """The dispatch builds only the branch of the verb a command line starts with (start-up:
    no other command is imported); what it parses, and each --help, must not differ."""
    whole = dict(parsers(build_parser()))
    for verb in VERBS:
        alone = dict(parsers(build_parser(verb)))
        mine = {key for key in whole if key.split()[:1] == [verb]}
        assert mine and set(alone) - {""} == mine, verb
        for key in mine:
            assert alone[key].format_help() == whole[key].format_help(), key
            assert alone[key].format_usage() == whole[key].format_usage(), key
            for example in examples_of({"report": "report merge"}.get(key, key)):
                words = shlex.split(example)[1:]
                words = words[: words.index(">")] if ">" in words else words
                got, want = vars(build_parser(verb).parse_args(words)), vars(build_parser().parse_args(words))
                assert {k: v for k, v in got.items() if k != "parser"} == {
                    k: v for k, v in want.items() if k != "parser"
                }, example


def test_a_command_line_imports_its_own_command_alone() -> None:
    program = (
        "import sys, contextlib, io\n"
        "from batchsync.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['validate', 'inventories/example.toml'])\n"
        "others = sorted(m for m in sys.modules if m.startswith('batchsync.commands.') and m not in "
        "('batchsync.commands.validate', 'batchsync.commands._arguments'))\n"
        "assert not others, others\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60, capture_output=True, cwd=ROOT)


def test_each_command_lists_the_codes_it_can_end_with() -> None:
    def codes(command: str) -> set[int]:
        return {code for code, _ in describe(command)}

    assert codes("validate") == {0, 2, 5}
    assert codes("plan") == {0, 1, 2, 3, 4, 5, 75}  # 75: another run writes its --report
    assert codes("apply") == {0, 1, 2, 3, 5, 75}
    assert codes("report merge") == {0, 1, 2, 3, 4, 5}
    assert {code for code, _ in describe()} == set(MEANING) == {c for cs in BY_COMMAND.values() for c in cs}


def test_help_in_a_real_process_exits_0_with_the_epilog() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchsync", "report", "merge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert done.returncode == 0 and done.stderr == ""
    assert "  3   a shard stopped early, or its report is missing or cut short\n" in done.stdout
    assert "  batchsync report merge shard-0.jsonl shard-1.jsonl --format json\n" in done.stdout


# -- the shard options ---------------------------------------------------------------------


def run_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["apply", "inv.toml", *argv])


def test_shard_options() -> None:
    assert shard_from_args(run_args()) is None
    assert shard_from_args(run_args("--shard", "1/4")) == ShardSpec(1, 4)
    env = {"JOB_COMPLETION_INDEX": "3"}
    args = run_args("--shard-index-from-env", "JOB_COMPLETION_INDEX", "--shard-count", "4")
    assert shard_from_args(args, env) == ShardSpec(3, 4)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--shard", "4/4"], {}, "--shard 4/4: shards are numbered from 0: the index must be 0 to 3, not 4"),
        (["--shard", "a/b"], {}, "--shard a/b: expected I/N"),
        (["--shard-count", "4"], {}, "--shard-count goes with --shard-index-from-env VAR"),
        (["--shard", "0/4", "--shard-count", "4"], {}, "--shard-count goes with --shard-index-from-env VAR"),
        (["--shard-index-from-env", "I"], {"I": "0"}, "--shard-index-from-env I: give the number of shards"),
        (["--shard-index-from-env", "I", "--shard-count", "0"], {"I": "0"}, "--shard-count 0: the number of shards"),
        (["--shard-index-from-env", "I", "--shard-count", "4"], {}, "--shard-index-from-env I: $I is not set"),
        (["--shard-index-from-env", "I", "--shard-count", "4"], {"I": "x\n"}, "$I is not a shard index, a whole"),
        (["--shard-index-from-env", "I", "--shard-count", "2"], {"I": "2"}, "$I is not a shard index from 0 to 1"),
    ],
)
def test_shard_options_refused(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        shard_from_args(run_args(*argv), env)
    assert message in str(caught.value)


def test_shard_and_its_env_form_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["apply", "inv.toml", "--shard", "0/2", "--shard-index-from-env", "I", "--shard-count", "2"])
    assert code == 2
    assert "--shard-index-from-env: not allowed with argument --shard" in capsys.readouterr().err


def test_a_bad_shard_is_a_usage_error_before_anything_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", str(tmp_path / "absent.toml"), "--shard", "2/2"])
    assert code == 2
    assert (
        capsys.readouterr().err
        == "batchsync: --shard 2/2: shards are numbered from 0: the index must be 0 to 1, not 2\n"
    )


# -- the selection: --limit, then the shard, then --retry-failed -------------------------------

FLEET = {"big": 6, "mid": 4, "small": 3, "tiny": 1}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in inventory_env(FLEET).items():
        monkeypatch.setenv(name, value)
    return Path(make_inventory(tmp_path, FLEET).path)


def select(inventory: Path, *argv: str) -> Selected:
    loaded = load_selected(settings_from(build_parser().parse_args(["apply", str(inventory), *argv]), "apply"))
    assert isinstance(loaded, Selected)
    return loaded


def accounts(selected: Selected) -> set[str]:
    return {j.account for j in selected.jobs}


def test_the_shards_split_what_limit_selected(fleet: Path) -> None:
    # Without --limit: big alone, then mid + tiny, small (4 + 1 = 5 > 3)...
    whole = [select(fleet, "--shard", f"{i}/3") for i in range(3)]
    assert [accounts(s) for s in whole] == [{"big"}, {"mid"}, {"small", "tiny"}]
    assert whole[0].shard == {"index": 0, "count": 3, "integrations": [6, 4, 4], "accounts": [1, 1, 2]}
    # ...with --limit, the split is of the selection: big is left out, so mid leads.
    limited = [select(fleet, "--limit", "!big", "--shard", f"{i}/2") for i in range(2)]
    assert [accounts(s) for s in limited] == [{"mid"}, {"small", "tiny"}]
    assert limited[1].shard == {"index": 1, "count": 2, "integrations": [4, 4], "accounts": [1, 2]}


def test_retry_failed_narrows_the_shard_and_keeps_its_split(fleet: Path, tmp_path: Path) -> None:
    inv_jobs = select(fleet).jobs
    failed = [j.integration_id for j in inv_jobs if j.account == "big"][:2]
    report = tmp_path / "last.jsonl"
    rows = [{"integration_id": i, "account": "big", "result": "failed"} for i in failed]
    report.write_text("\n".join(json.dumps(r) for r in [*rows, {"summary": True}]) + "\n")
    first = select(fleet, "--shard", "0/3", "--retry-failed", str(report))
    assert [j.integration_id for j in first.jobs] == failed
    # The header's split is the whole selection's, as in the shards' first run: merge can
    # then read the retry's reports as one run; retrying before splitting would not.
    assert first.shard == select(fleet, "--shard", "0/3").shard
    other = select(fleet, "--shard", "1/3", "--retry-failed", str(report))
    assert other.jobs == [] and other.shard == select(fleet, "--shard", "1/3").shard


def test_retry_failed_refuses_a_fifo_or_a_device_at_once(fleet: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "last.jsonl"
    os.mkfifo(fifo)  # no writer: reading it blocked the run for ever
    for path, kind in ((fifo, "a FIFO (named pipe)"), (Path("/dev/zero"), "a character device")):
        done = subprocess.run(
            [sys.executable, "-m", "batchsync", "plan", str(fleet), "--retry-failed", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"batchsync: --retry-failed {path}: is {kind}, not a regular file\n"


def test_without_a_shard_nothing_to_retry_exits_0_at_once(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "last.jsonl"
    report.write_text('{"summary": true}\n')
    args = build_parser().parse_args(["apply", str(fleet), "--retry-failed", str(report)])
    assert load_selected(settings_from(args, "apply")) == 0
    assert "nothing to retry" in capsys.readouterr().err


def test_an_empty_limit_is_still_an_error_and_an_empty_shard_is_not(fleet: Path) -> None:
    with pytest.raises(UsageError, match="no integration matches --limit nobody"):
        select(fleet, "--limit", "nobody")
    empty = select(fleet, "--shard", "4/5")
    assert empty.jobs == [] and empty.shard is not None and empty.shard["integrations"] == [6, 4, 3, 1, 0]


def test_take_shard_without_a_shard_keeps_every_job(fleet: Path) -> None:
    jobs = select(fleet).jobs
    assert take_shard(jobs, None) == (jobs, None)
    mine, block = take_shard(jobs, ShardSpec(1, 2))
    split = partition({a: n for a, n in FLEET.items()}, 2)
    assert block == split.header(1) and {j.account for j in mine} == set(split.shards[1])


# -- validate --shards ---------------------------------------------------------------------------


def test_validate_prints_the_split(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(fleet), "--shards", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "shard 0/3: 6 integrations, 1 account: big (6)",
        "shard 1/3: 4 integrations, 1 account: mid (4)",
        "shard 2/3: 4 integrations, 2 accounts: small (3), tiny (1)",
        "largest shard: 6 integrations = 1.000 x max(largest account 6, total/3 4.7)",
    ]
    assert main(["validate", str(fleet), "--shards", "2", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["integrations"] == 14
    assert doc["shards"] == {
        "count": 2,
        "total": 14,
        "largest_account": 6,
        "shards": [
            {"index": 0, "integrations": 7, "accounts": ["big", "tiny"]},
            {"index": 1, "integrations": 7, "accounts": ["mid", "small"]},
        ],
    }
    assert main(["validate", str(fleet), "--format", "json"]) == 0
    assert "shards" not in json.loads(capsys.readouterr().out)  # only when asked


def test_validate_shards_of_an_invalid_inventory_and_bad_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"accounts": {}, "integrations": [{"id": 1}]}')
    assert main(["validate", str(broken), "--shards", "2", "--format", "json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False and doc["shards"] is None
    assert main(["validate", str(broken), "--shards", "2"]) == 2
    assert "largest shard" not in capsys.readouterr().out
    for bad in ("0", "-1", "x", "10001"):
        assert main(["validate", str(broken), "--shards", bad]) == 2
        assert "argument --shards: " in capsys.readouterr().err


def test_ctrl_c_while_the_parser_is_built_is_said_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first tens of milliseconds of a command build its parser, before the command's
    own handling of Ctrl-C: an interrupt there is the same 'interrupted', exit 3."""
    import batchsync.cli as cli

    def interrupted(verb: str | None) -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["validate", "x.toml"]) == 3
    assert capsys.readouterr().err == "batchsync: interrupted\n"
