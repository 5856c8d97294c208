"""What every start pays for, kept out of it: the text rule's patterns compiled at their
first use, the IDNA codec imported only for a name that is not ASCII (part 5 of `make bench`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from cli_helpers import ROOT
from hypothesis import given
from hypothesis import strategies as st

from batchsync.urls import _idna_checked

# Runs in a fresh interpreter: what loading these modules and checking a URL compiled and imported.
PROGRAM = """
import re, sys
compiled = []
real = re._compile
re._compile = lambda pattern, flags: compiled.append(pattern) or real(pattern, flags)
import batchsync.text, batchsync.outputs.streams, batchsync.urls
assert batchsync.urls.url_problem("http://127.0.0.1:8080/api/v2") is None
assert batchsync.urls.url_problem("https://panel.sendcloud.sc/api/v2") is None
print(max((len(p) for p in compiled if isinstance(p, str) and "\\u202e" in p), default=0))
print("encodings.idna" in sys.modules)
"""


def test_loading_the_text_rule_and_checking_an_ascii_url_compile_and_import_nothing_costly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    longest_rule_pattern, idna_imported = done.stdout.split()
    assert longest_rule_pattern == "0"  # no pattern of the rule's ranges beyond Latin-1 compiled yet
    assert idna_imported == "False"


@pytest.mark.parametrize(
    "host", ["a..b", "x" * 64 + ".com", "a." + "x" * 64, ".", ".a", "a.", "", "ok.example", "a" * 63, "bücher.de"]
)
def test_the_idna_check_of_an_ascii_name_is_the_codecs(host: str) -> None:
    assert outcome(_idna_checked, host) == outcome(lambda h: h.encode("idna"), host)


@given(st.text(alphabet="ab.-\u00fc", max_size=140))
def test_the_idna_check_agrees_with_the_codec_on_any_name(host: str) -> None:
    assert outcome(_idna_checked, host) == outcome(lambda h: h.encode("idna"), host)


def outcome(check: Callable[[str], object], host: str) -> str:
    try:
        check(host)
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_the_editable_install_adds_a_path_and_no_import_finder() -> None:
    # setuptools' default editable install is a finder that site imports at every start of the
    # venv's Python, with pathlib and importlib.util; make install asks for a plain path.
    done = subprocess.run(
        ["make", "--dry-run", "--always-make", "install"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("--config-settings-package batchsync:editable_mode=compat") == 1
    latest = subprocess.run(
        ["make", "--dry-run", "--always-make", "test-latest"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert latest.stdout.count("--config-settings-package batchsync:editable_mode=compat") == 1  # .venv-latest's
    if not sys.prefix.startswith(str(ROOT)):
        pytest.skip("not a venv that make made (.venv, .venv-latest)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}  # coverage's .pth imports more
    started = subprocess.run(
        [sys.executable, "-c", "import sys; print(sorted({'pathlib', 'importlib.util'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=env,
    )
    assert started.stdout.strip() == "[]", started.stdout + started.stderr
