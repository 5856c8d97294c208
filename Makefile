# Every target sets itself up on a fresh machine: a .venv with the project and its extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test fuzz lint bench clean

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

lint: $(STAMP)
	$(BIN)/ruff check batchsync tests bench
	$(BIN)/ruff format --check batchsync tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-report.jsonl
