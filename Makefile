# Every target sets itself up on a fresh machine: a .venv with the project and its extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test fuzz test-browser lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/batchsync apply inventories/example.toml --sandbox --report demo-report.jsonl

test: $(STAMP)
	$(BIN)/python -m pytest -q --cov

# Thousands of generated and mutated inventories through validate (a few hundred run in make test).
fuzz: $(STAMP)
	BATCHSYNC_FUZZ_EXAMPLES=$${BATCHSYNC_FUZZ_EXAMPLES:-10000} $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_fuzz_inventory.py

# The HTML report in headless Chromium (Debian's package, installed if missing); the
# screenshot it takes becomes docs/report.png, the README's picture.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
test-browser: $(STAMP)
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	BATCHSYNC_BROWSER_REQUIRED=1 BATCHSYNC_SCREENSHOT=docs/report.png $(BIN)/python -m pytest -q -m browser tests/test_browser.py

lint: $(STAMP)
	$(BIN)/ruff check batchsync tests bench
	$(BIN)/ruff format --check batchsync tests bench
	$(BIN)/mypy

# Byte-compiled first, as pip compiles an installed wheel: where PYTHONDONTWRITEBYTECODE is set,
# an editable install would otherwise recompile every module on every start it measures.
bench: $(STAMP)
	$(BIN)/python -m compileall -q batchsync bench
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-report.jsonl
