# Every target sets itself up on a fresh machine with python3 and make only: uv, pinned by
# version and hash (requirements/uv.txt), in a virtualenv of its own, then .venv made to
# hold exactly what requirements/dev.txt locks (every package, direct and transitive, at
# one version with its hashes; nothing else).
#
# A new dependency: edit pyproject.toml (a range, in `dependencies` or an extra), run
# `make lock`, commit pyproject.toml and requirements/ together.
# Newer versions: `make lock UPGRADE=--upgrade` (all), `make lock UPGRADE='-P msgspec'` (one).
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
UV_VENV  := .uv
UV       := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.installed
LOCKED   := requirements
# The python3 that runs make, never a Python that uv would download.
export UV_PYTHON_DOWNLOADS := never
TEST_WORKERS ?= 4
FAST_WORKERS ?= 3

.PHONY: install demo test test-fast test-latest fuzz test-browser lint docs bench lock lock-check clean

$(UV_STAMP): requirements/uv.txt
	rm -rf $(UV_VENV)
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: -r requirements/uv.txt
	touch $@

# Run by every target: about a second when .venv already matches. `pip sync` installs the
# locked versions, checking every file's hash, and removes whatever the lock does not name;
# the project itself goes in editable, built by the locked setuptools (hash-checked too).
# Everything byte-compiled, the dependencies and the package's own sources alike, as pip
# compiles an installed wheel: where PYTHONDONTWRITEBYTECODE is set (many containers and
# CI), an install that is not would compile every module again on every start.
# The editable install is a plain path in a .pth file (setuptools' compat mode): its default,
# an import finder that site loads at every start of the venv's Python, imports pathlib and
# importlib.util with it (5-8 ms of every `batchsync`, `--version` included).
install: $(UV_STAMP)
	# A .venv that uv did not make (an older checkout's, with pip in it) is made anew.
	test -f $(VENV)/.made-by-uv || { rm -rf $(VENV) && $(UV) venv --quiet --python $(PYTHON) $(VENV) && touch $(VENV)/.made-by-uv; }
	$(UV) pip sync --quiet --strict --compile-bytecode --python $(BIN)/python --require-build-hashes \
		--build-constraints requirements/build.txt --config-settings-package batchsync:editable_mode=compat \
		requirements/dev.txt requirements/editable.txt
	$(BIN)/python -m compileall -q batchsync

demo: install
	$(BIN)/batchsync apply inventories/example.toml --sandbox --report demo-report.jsonl

# Several workers per core: the suite mostly waits (child processes, sockets, timers), it
# does not compute. Coverage is measured in every worker and in the CLI's child processes.
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --cov

# The inner loop: the in-process layers only (conftest.py marks `cli` every test that starts
# a process; here, a test that still starts one fails), no browser, no wheel build.
test-fast: install
	BATCHSYNC_TEST_FAST=1 $(BIN)/python -m pytest -q -n $(FAST_WORKERS) -m 'not (cli or slow or browser)'

# The newest versions the ranges in pyproject.toml allow, as `pip install batchsync` gets
# them today, ignoring the lock: a virtualenv of its own, made anew each time.
test-latest: $(UV_STAMP)
	$(UV) venv --quiet --clear --python $(PYTHON) .venv-latest
	$(UV) pip install --quiet --python .venv-latest/bin/python --refresh --resolution highest \
		--config-settings-package batchsync:editable_mode=compat -e '.[test,docs,postgresql]'
	$(UV) pip list --python .venv-latest/bin/python | grep -i -E '^(aiohttp|anyio|msgspec|pyyaml|shtab|pyahocorasick|uvloop|tomlkit|ruamel-yaml|psycopg|properdocs) '
	.venv-latest/bin/python -m pytest -q -n $(TEST_WORKERS) -p no:cacheprovider

# Thousands of generated and mutated inventories through validate (a few hundred run in make test).
fuzz: install
	BATCHSYNC_FUZZ_EXAMPLES=$${BATCHSYNC_FUZZ_EXAMPLES:-10000} $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/inventory/test_fuzz_inventory.py

# The HTML report in headless Chromium (Debian's package, installed if missing); the
# screenshot it takes becomes docs/report.png, the picture in docs/reports.md.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
test-browser: install
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	BATCHSYNC_BROWSER_REQUIRED=1 BATCHSYNC_SCREENSHOT=docs/report.png $(BIN)/python -m pytest -q -m browser tests/outputs/test_browser.py

# The layers and no import cycle (import-linter's contracts in pyproject.toml), then the
# house's own rules: no module over 800 lines, __init__ files empty, the README's
# architecture section naming every subpackage (tests/test_house.py).
lint: install
	$(BIN)/ruff check batchsync tests bench docs/hooks
	$(BIN)/ruff format --check batchsync tests bench docs/hooks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_house.py

# The manual's site, from docs/ (properdocs.yml), into site/: every warning an error (not
# --quiet: it hides the warnings from the count that --strict fails on),
# links, anchors and pages missing from the nav included; no network needed. The command
# reference is written from the parser during the build (docs/hooks/cli_reference.py).
docs: install
	$(BIN)/properdocs build --strict --clean -f properdocs.yml

# The bench's own modules byte-compiled too (make install compiles the package).
bench: install
	$(BIN)/python -m compileall -q bench
	$(BIN)/python -m bench.run

# The lock, re-resolved from pyproject.toml: every version already locked that still fits
# its range is kept (uv reads the files it rewrites); UPGRADE as above. Three files, for
# every platform and Python >= 3.11: dev.txt, what .venv holds (the package's dependencies
# and all its extras); image.txt, what the Dockerfile installs (the dependencies alone, at
# dev.txt's versions: the image runs what the tests ran); build.txt, the build backend.
COMPILE := $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command 'make lock'
lock: $(UV_STAMP)
	$(COMPILE) $(UPGRADE) pyproject.toml --all-extras -o $(LOCKED)/dev.txt
	$(COMPILE) $(UPGRADE) pyproject.toml -c $(LOCKED)/dev.txt -o $(LOCKED)/image.txt
	$(COMPILE) $(UPGRADE) --group pyproject.toml:build -o $(LOCKED)/build.txt

# CI: the lock still matches pyproject.toml. `make lock` on a copy must change no pinned
# version (the hashes may differ: a project may upload another wheel of a release later).
lock-check: $(UV_STAMP)
	rm -rf .lock-check && mkdir .lock-check
	cp requirements/dev.txt requirements/image.txt requirements/build.txt .lock-check/
	$(MAKE) --no-print-directory lock LOCKED=.lock-check UPGRADE=
	for f in dev image build; do \
		grep -E '^[A-Za-z0-9]' requirements/$$f.txt > .lock-check/$$f.locked; \
		grep -E '^[A-Za-z0-9]' .lock-check/$$f.txt | diff -u .lock-check/$$f.locked - \
		|| { echo "requirements/$$f.txt no longer matches pyproject.toml: run make lock" >&2; exit 1; }; \
	done
	rm -rf .lock-check

clean:
	rm -rf $(VENV) .venv-latest $(UV_VENV) .lock-check build site *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-report.jsonl
