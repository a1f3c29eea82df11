# One entry point for humans and CI. `make run` and `make test` work on a fresh machine:
# they create .venv and install the project with its test extras first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install run test lint fmt typecheck unit protos clean bench

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

install: $(STAMP)  ## create .venv and install the project with test tools

run: $(STAMP)  ## start Envoy on 127.0.0.1:8080 + the sidecar + a demo upstream, with examples/policies
	$(BIN)/python -m authz.devtools.localrun

test: lint unit  ## lint, type check and every test (what CI runs)

lint: $(STAMP)  ## ruff (format + check), mypy --strict, import-linter, hadolint
	$(BIN)/ruff format --check authz tests tools bench
	$(BIN)/ruff check authz tests tools bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

unit: $(STAMP)  ## all tests (unit, end-to-end through the real Envoy, property-based)
	$(BIN)/pytest -q

fmt: $(STAMP)  ## apply ruff formatting and autofixes
	$(BIN)/ruff format authz tests tools bench
	$(BIN)/ruff check --fix authz tests tools bench

bench: $(STAMP)  ## Envoy vs jwt_authn vs sidecar side by side -> docs/performance.md (BENCH_DURATION=10s, BENCH_QUICK=1)
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(BIN)/python -m bench

protos: $(STAMP)  ## regenerate authz/_gen from protos/
	rm -rf authz/_gen
	$(BIN)/python tools/genprotos.py

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
