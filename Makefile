# make test   - create/refresh .venv, install everything, lint, run every test
# make plan STACK=prod - offline plan of a stack into build/plan/<stack>/ (no credentials needed)
# make bench  - run the benchmarks in bench/

VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
STACK  ?= dev

.PHONY: install test lint plan bench clean

$(STAMP): requirements.txt requirements-dev.txt apps/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e apps
	touch $@

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

plan: install
	$(PY) -m deploy.plan --stack $(STACK) --out build/plan/$(STACK)

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf build .pytest_cache
