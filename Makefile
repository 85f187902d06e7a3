# Pilothouse — developer entry points. `make setup` is implied by every target that needs it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
BOOT_PYTHON ?= python3
PKGS        := pilothouse.runtime pilothouse.operator
SRC         := runtime operator tests e2e bench charts pilothouse_pytest.py
PYTEST_ARGS ?=

include e2e/cluster/cluster.mk
include tests/llm_server/llm_server.mk
include charts/chart.mk
include e2e/demo.mk

.PHONY: help setup lint fmt typecheck test test-unit test-integration test-e2e demo bench crds clean

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	@# Never `python -m` from here before the project is installed: the folder `operator/` would
	@# shadow the standard library's operator module (PYTHONSAFEPATH keeps the cwd off sys.path).
	test -x $(PYTHON) || PYTHONSAFEPATH=1 $(BOOT_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create the virtualenv with everything pinned (idempotent)

lint: setup ## ruff (lint + format check) and the import layering contracts
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)
	$(VENV)/bin/lint-imports

fmt: setup ## format and auto-fix
	$(VENV)/bin/ruff format $(SRC)
	$(VENV)/bin/ruff check --fix $(SRC)

typecheck: setup ## mypy --strict on the packages
	$(VENV)/bin/mypy $(addprefix -p ,$(PKGS)) -m pilothouse_pytest

test-unit: setup
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup promtool llm-server
	$(PYTHON) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: setup cluster-binaries promtool
	$(PYTHON) -m pytest e2e $(PYTEST_ARGS)

test: lint typecheck test-unit test-integration test-e2e ## everything CI runs

demo: setup ## the main job: control plane, operator, an agent, requests, queue-driven scaling
	PYTHONPATH=e2e $(PYTHON) -m demo $(DEMO_ARGS)

bench: setup ## benchmarks; results land in bench/results/
	$(PYTHON) -m bench

crds: setup ## regenerate crds/ and the chart's CRDs from the operator's models
	$(PYTHON) -m pilothouse.operator.crdgen crds

clean: ## remove the virtualenv and caches (keeps the Kubernetes binaries in .cache/)
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
