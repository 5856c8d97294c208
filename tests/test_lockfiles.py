"""The lock: every install the project makes holds exactly the versions it names.

`make install` syncs .venv to requirements/dev.txt; the Dockerfile installs
requirements/image.txt (its test, in test_deploy.py, compares the image's virtualenv with
it); `make lock-check` (CI) fails when they no longer match pyproject.toml.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from locked import ROOT, expected_here, installed, pins
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import batchsync

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_venv_holds_exactly_the_lock() -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"runs in the project's .venv only (make test), not in {sys.prefix}")
    want = expected_here("dev.txt") | {"batchsync": batchsync.__version__}
    have = installed()
    assert {n: v for n, v in have.items() if want.get(n) != v} == {}, "installed, not as locked"
    assert {n: v for n, v in want.items() if n not in have} == {}, "locked, not installed"


def test_every_package_is_locked_with_its_hashes() -> None:
    assert len(pins("uv.txt")["uv"][2]) > 1  # the bootstrap's uv: a hash for every platform's wheel
    for name in ("dev.txt", "image.txt", "build.txt", "uv.txt"):
        locked = pins(name)
        assert locked, name
        for package, (version, _marker, hashes) in locked.items():
            assert hashes and all(len(h) == 64 for h in hashes), f"{name}: {package}=={version} has no hash"


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    dev, image = pins("dev.txt"), pins("image.txt")
    assert {n: v for n, (v, _, _) in image.items() if dev.get(n, (None,))[0] != v} == {}
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert runtime <= set(image), "a dependency the lock leaves out: make lock"
    extras_only = {"pytest", "hypothesis", "ruff", "mypy", "pydantic", "setuptools", "pip"}
    assert not extras_only & set(image)


def test_the_build_backend_is_locked_as_build_system_requires_it() -> None:
    assert PYPROJECT["dependency-groups"]["build"] == PYPROJECT["build-system"]["requires"]
    assert set(pins("build.txt")) == {"setuptools"}


def test_every_dependency_has_an_upper_bound() -> None:
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        assert any(s.operator in ("<", "==", "~=") for s in requirement.specifier), f"{text}: no upper bound"
