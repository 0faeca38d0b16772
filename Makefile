# mlops-airflow: `make demo` and `make test` set everything up by themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION ?= 0.13.8
VENV := .venv
PYTHON := $(VENV)/bin/python
BOOTSTRAP := .local/bootstrap
# Use the uv on PATH if there is one; otherwise install a pinned uv from PyPI under .local/.
UV := $(or $(shell command -v uv 2>/dev/null),$(BOOTSTRAP)/bin/uv)
PYTEST_ARGS ?=
# Test files run in this many worker processes (0: one process, no xdist).
TEST_WORKERS ?= 4
# Some environments set this; without bytecode caches every Airflow task, test worker and
# model server compiles Airflow, MLflow and scikit-learn from source (imports took 11.9 s
# instead of 5.4 s here). Caches are written once, on first import.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup demo release-demo performance-demo up stop status test lint docs format bench clean requirements

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(BOOTSTRAP)/bin/uv:
	python3 -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

setup: $(if $(shell command -v uv 2>/dev/null),,$(BOOTSTRAP)/bin/uv) ## create .venv from uv.lock
	$(UV) sync --locked

demo: setup ## start the embedded stack, generate data, retrain the demo model, print what happened
	$(PYTHON) -m mlops_airflow.embedded demo

release-demo: setup ## after `make demo`: a release judged on live traffic (STRATEGY=canary, shadow or ab)
	$(PYTHON) -m mlops_airflow.embedded release-demo --strategy $(or $(STRATEGY),canary)

performance-demo: setup ## after `make demo`: late labels show the champion decayed; the retrain it starts
	$(PYTHON) -m mlops_airflow.embedded performance-demo

up: setup ## start the embedded stack only
	$(PYTHON) -m mlops_airflow.embedded up

status: ## show whether the embedded stack is running
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m mlops_airflow.embedded status; else echo "not set up"; fi

stop: ## end every process the embedded stack started
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m mlops_airflow.embedded down; else echo "nothing to stop"; fi

lint: setup ## ruff (Airflow rules, banned heavy imports, formatting); import-linter (layers, no import cycles)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

docs: setup ## build the docs site into .local/site (strict: a broken link or a missing included file fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

test: lint docs ## lint, build the docs, then the whole test suite (TEST_WORKERS=0 for one process)
	$(VENV)/bin/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

bench: setup ## benchmarks, side by side as ratios (installs the comparison libraries first)
	$(UV) sync --locked --group bench
	$(PYTHON) bench/contract_bench.py
	$(PYTHON) bench/drift_bench.py
	@command -v wrk >/dev/null || { echo "installing wrk (the serving benchmark's load generator) from Debian's packages"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi; }
	$(PYTHON) bench/serving_bench.py

# The Astro runtime and the official image bring Airflow itself; everything else is pinned as locked.
REQUIREMENTS_OUT ?= requirements.txt
requirements: $(if $(shell command -v uv 2>/dev/null),,$(BOOTSTRAP)/bin/uv) ## regenerate requirements.txt (for the Astro and Helm images) from uv.lock
	@{ echo "# Generated from uv.lock by \`make requirements\`; do not edit. Airflow itself comes with the base image."; \
	  $(UV) export --frozen --no-dev --no-hashes --no-emit-project --no-header --no-annotate --format requirements.txt \
	    --no-emit-package apache-airflow --no-emit-package apache-airflow-core --no-emit-package apache-airflow-task-sdk; } > $(REQUIREMENTS_OUT).tmp
	@mv $(REQUIREMENTS_OUT).tmp $(REQUIREMENTS_OUT)

format: setup ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: stop ## stop the stack and delete .local/ (data, databases, logs) and .venv/
	rm -rf .local $(VENV)
