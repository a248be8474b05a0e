# The two commands a newcomer needs: `make dev` (the whole stack) and `make test` (every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: dev test lint bench install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

dev: install
	$(BIN)/accounts dev

# two pytest processes (pytest-xdist): each has its own Temporal servers, databases and ports
TEST_PROCESSES ?= 2

test: install
	$(BIN)/pytest -n $(TEST_PROCESSES)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: install
	$(BIN)/python bench/registration.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
