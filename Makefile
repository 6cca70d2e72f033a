# Two commands do everything on a fresh machine:
#   make run   - create/update .venv, install, run the default comparison into reports/default/
#   make test  - create/update .venv, install, run the tests (make lint: ruff check + format check)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes (the package itself is installed editable).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/estimators run --preset default --out reports/default

# Two processes, one test file each at a time (module fixtures stay in one process): the suite
# is mostly single-threaded compilation, so two cores finish it in about half the time.
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-check: install
	$(BIN)/asv check --python=same

clean:
	rm -rf $(VENV) .asv .pytest_cache
