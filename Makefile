# One entry point for humans and CI. `make run` and `make test` work on a fresh machine: they
# create .venv and install what they need first - `make run` the runtime and Envoy only,
# `make test` everything the tests drive (see `prereqs` and tests/versions.toml).
PYTHON    ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
PROVISION := $(PYTHON) tests/provision.py
# One stamp per set of extras: the same .venv grows from `run` to `test` without reinstalling.
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# The security scanners pin their own dependency trees: a venv of their own inside .venv.
SCAN       := $(VENV)/scan
SCAN_STAMP := $(SCAN)/.installed

# Some environments (container images, CI machines) set PYTHONDONTWRITEBYTECODE, and then every
# Python process compiles the modules it imports from source again (the project's own, and what
# `make run` installs without bytecode). The tests start hundreds of processes that import the
# same modules, so here the bytecode cache stays on: git-ignored __pycache__/ folders, which the
# image's build context leaves out.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: audit compile help install prereqs system-programs run test test-fast lint fmt typecheck unit protos clean bench

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo serves files, so it goes without the Kubernetes client (most of the runtime, imported
# only to watch a cluster): the project's other dependencies (tests/provision.py run-requirements),
# then the project itself without them. The test stamp adds the client to the same .venv. No
# bytecode either: Python compiles what `make run` does import on first use.
$(RUN_STAMP): pyproject.toml setup.py tests/versions.toml tests/provision.py | $(BIN)/python
	$(PROVISION) constraints > $(VENV)/constraints.txt
	$(PROVISION) run-requirements > $(VENV)/run-requirements.txt
	$(BIN)/pip install --quiet --no-compile -c $(VENV)/constraints.txt -r $(VENV)/run-requirements.txt
	$(BIN)/pip install --quiet --no-compile --no-deps -e .
	touch $@

$(TEST_STAMP): pyproject.toml setup.py tests/versions.toml | $(BIN)/python
	$(PROVISION) constraints > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[test,bench]'
	touch $@

$(SCAN_STAMP): tests/versions.toml | $(BIN)/python
	$(PYTHON) -m venv $(SCAN)
	$(PROVISION) scanners > $(SCAN)/requirements.txt
	$(SCAN)/bin/pip install --quiet -r $(SCAN)/requirements.txt
	touch $@

system-programs:
	@$(PROVISION) system

prereqs: system-programs $(TEST_STAMP)  ## what the tests need: system programs (apt-get as root), .venv, npm folders
	@$(PROVISION) npm

install: prereqs  ## the same as prereqs

# The check path is compiled when the package is installed (setup.py); an edit to one of its
# modules makes the package load from source (authz/compiled.py) until this builds it again.
compile: | $(BIN)/python  ## compile the check path again if its source changed since (setup.py, mypyc)
	@$(BIN)/python -c 'import sys; from authz.compiled import stale; sys.exit(bool(stale()))' \
		|| $(BIN)/pip install --quiet --no-deps -e .

run: $(RUN_STAMP) compile  ## start Envoy on 127.0.0.1:8080 + the sidecar + a demo upstream, with examples/policies
	$(BIN)/python -m authz.devtools.localrun

test: prereqs lint unit  ## lint, type check and every test (what CI runs)

test-fast: prereqs  ## unit and in-process tests only: no Envoy, Redis, wrk, Helm, Kubernetes API server or authorization server
	$(BIN)/pytest -q --fast -n auto

lint: $(TEST_STAMP) $(SCAN_STAMP)  ## ruff, mypy --strict, import-linter, hadolint, security scans
	$(BIN)/ruff format --check authz tests protos bench setup.py
	$(BIN)/ruff check authz tests protos bench setup.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/python -m tests.security.scan --scanners $(SCAN)/bin

audit: $(TEST_STAMP) $(SCAN_STAMP)  ## known vulnerabilities in the installed packages (asks PyPI's advisory data)
	$(SCAN)/bin/pip-audit --path $(VENV)/lib/python3*/site-packages --skip-editable

unit: prereqs compile  ## all tests (unit, end-to-end through the real Envoy, property-based)
	$(BIN)/pytest -q -n auto --dist loadgroup

fmt: $(TEST_STAMP)  ## apply ruff formatting and autofixes
	$(BIN)/ruff format authz tests protos bench setup.py
	$(BIN)/ruff check --fix authz tests protos bench setup.py

bench: prereqs compile  ## Envoy vs jwt_authn vs sidecar side by side -> docs/performance.md (BENCH_DURATION=10s, BENCH_QUICK=1)
	$(BIN)/python -m bench

protos: $(TEST_STAMP)  ## regenerate authz/_gen from protos/
	rm -rf authz/_gen
	$(BIN)/python protos/genprotos.py

clean:  ## remove the virtualenv, the npm folders' node_modules and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
	find tests -name node_modules -type d -prune -exec rm -rf {} +
