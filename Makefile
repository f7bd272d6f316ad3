# Two commands do everything: `make run` serves the demo clinic, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app scheduler
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint format translations bench audit lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) demo seed --if-empty
	# The dispatcher sends (or writes to instance/mail/) what the app queues; it stops with it.
	$(FLASK) notifications run & dispatcher=$$!; \
	trap 'kill $$dispatcher 2>/dev/null' EXIT INT TERM; \
	$(FLASK) run --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test lint
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@ $(VENV)/.installed

# Benchmarks against a floor taken in the same run (docs/performance.md); BENCH_DATABASE_URL
# runs them on PostgreSQL, BENCH_ARGS passes options (python -m bench --help).
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# New messages from the code and templates go into every language's .po, to translate there
# (the app reads the .po itself: scheduler/i18n.py says why there are no .mo files).
translations: $(VENV)/.installed
	$(BIN)/pybabel --quiet extract -F babel.cfg -k _l --no-location --no-wrap -o $(VENV)/messages.pot .
	$(BIN)/pybabel --quiet update -i $(VENV)/messages.pot -d scheduler/translations \
		--no-fuzzy-matching --ignore-obsolete --no-wrap

# Known vulnerabilities in the pinned dependencies (pip-audit asks PyPI's advisory database, so
# it needs the internet: the project's CI machine has none). `make lock` pins what the suite
# passed with, for a release to install exactly that.
audit: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet "pip-audit>=2.7"
	$(BIN)/pip-audit --strict -r requirements.lock

lock: $(VENV)/.installed-test
	$(BIN)/python -m pip freeze --exclude-editable --all | grep -v '^pip==' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
