# Two commands matter: `make run` (the demo) and `make test` (everything CI runs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak e2e clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/accel demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run_all

soak: $(STAMP)
	$(BIN)/python -m tests.bench.soak --seconds 600

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -m e2e -v

clean:
	rm -rf $(VENV) accel-demo .mypy_cache .ruff_cache
