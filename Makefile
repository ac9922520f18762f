# make demo   - the whole system from source on this machine, no Docker (Ctrl-C stops it; DEMO_ARGS="--help")
# make test   - create/refresh .venv, install everything, lint, run every test
# make plan STACK=prod - offline plan of a stack into build/plan/<stack>/ (no credentials needed)
# make bench  - run the benchmarks in bench/
# make lock   - recompile the hash-locked requirement files after editing a *.in file or apps/pyproject.toml

VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
STACK  ?= dev

.PHONY: install demo test lint plan bench lock clean

# Every package comes from a hash-locked file (--require-hashes); the apps are then built in place with
# the locked setuptools and no dependency resolution of their own.
$(STAMP): requirements-dev.txt apps/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# --no-deps: the lock already holds every dependency, so nothing is resolved. Resolving with the venv's
	# first pip (23.x) fails in hash mode once an extra (pip-audit's CacheControl[filecache]) has a release
	# newer than its pin on the index; pip check then proves the locked set consistent.
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-dev.txt
	$(PY) -m pip check
	$(PY) -m pip install -q --no-deps --no-build-isolation -e apps
	touch $@

install: $(STAMP)

demo: install
	$(VENV)/bin/iot demo $(DEMO_ARGS)

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

plan: install
	$(PY) -m deploy.plan --stack $(STACK) --out build/plan/$(STACK)

bench: install
	$(PY) bench/run_all.py

# pip-compile keeps every existing pin unless asked (UPGRADE="--upgrade-package NAME" or "--upgrade").
# The development lock is the superset; the others are constrained to it so every file agrees.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links $(UPGRADE)
lock: install
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in apps/pyproject.toml
	$(PIP_COMPILE) -c requirements-dev.txt -o requirements.txt requirements.in
	$(PIP_COMPILE) -c requirements-dev.txt -o policy/requirements.txt policy/requirements.in
	$(PIP_COMPILE) -c requirements-dev.txt --all-build-deps -o apps/requirements.txt apps/pyproject.toml

clean:
	rm -rf build .pytest_cache
