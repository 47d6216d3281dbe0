# Two entry points (see README): `make demo` and `make test`. Each builds the
# virtualenv it needs from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,examples,otel]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/eventstore demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The example service's tests take their database from the store's pytest
# plugin: SQLite in the whole run, then PostgreSQL once more.
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

# The console's browser tests drive Debian's Chromium through Playwright
# (no browser download): installed once, skipped when already there.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }; }

test: lint chromium
	$(BIN)/pytest
	EVENTSTORE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) $(BIN)/pytest -q examples

bench: $(BIN)/.installed
	$(BIN)/python -m bench.append
