# tracker — the executable workflow.  `make run` and `make test` are the two set-up commands.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TRACKER_DATABASE_URL ?= sqlite:///data/tracker.db

.PHONY: run test lint typecheck demo bench system-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=77"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: create .venv, install, initialise ./data/tracker.db and start the daemon + web view
run: $(STAMP)
	$(BIN)/tracker init
	$(BIN)/tracker run

## test: create .venv, install dev deps and system packages the tests need, then ruff, mypy, compose check, pytest
test: $(STAMP) system-deps lint typecheck
	docker-compose config -q
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check tracker tests bench
	$(BIN)/ruff format --check tracker tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## system-deps: Debian packages the tests use for real (headless Chromium, PostgreSQL, docker-compose)
system-deps:
	@bash scripts/system-deps.sh

## demo: serve bundled sample feeds on 127.0.0.1 and run the daemon against them
demo: $(STAMP)
	$(BIN)/tracker demo

## bench: every benchmark script (prints numbers; see docs/benchmarks.md) — about 45 minutes in all
bench: $(STAMP)
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/tag.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/poll.py --feeds 1000
	$(BIN)/python bench/daemon.py --feeds 10000 --interval 120
	$(BIN)/python bench/web.py
	$(BIN)/python bench/peers.py --feeds 500,1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
