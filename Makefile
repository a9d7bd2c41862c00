# Task runner of kedro-observability-stack. `make test` is the one command CI runs
# (.ci/run): it installs everything it needs on a fresh Debian machine, then tests.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Kedro's and MLflow's usage telemetry stay off in every test run and target.
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: help setup system-deps venv test run bench dashboards clean

help:
	@echo "make setup       install system packages, the virtualenv and the project"
	@echo "make test        setup, then the whole test suite (what CI runs)"
	@echo "make run         run the sample pipeline once, with no service needed"
	@echo "make bench       measure what each hook adds per node and per dataset load"
	@echo "make dashboards  regenerate grafana/dashboards/*.json from generate.py"

setup: system-deps venv

# Into .tools/, from Debian packages unpacked without installing them (tests/tools/):
# Prometheus 3.x, promtool, Alertmanager and amtool from sid (the tests run the real servers,
# on the major docker-compose.yml pins; Debian 12's Prometheus is 2.42), and Compose v2 from
# trixie to validate docker-compose.yml without a Docker engine. A Java runtime for pyspark.
system-deps:
	@bash tests/tools/install-prometheus.sh
	@bash tests/tools/install-compose.sh
	@bash tests/tools/install-postgresql.sh
	@command -v java >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends default-jre-headless; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -r project/requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e project/kedro-observability -e project

test: setup
	$(BIN)/python -m pytest

run: venv
	cd project && ../$(BIN)/kedro run

bench: venv
	$(BIN)/python benchmarks/bench_run.py
	$(BIN)/python benchmarks/bench_hooks.py

dashboards: venv
	$(BIN)/python grafana/dashboards/generate.py

clean:
	rm -rf $(VENV) .tools project/data/0* project/mlflow.db project/mlflow.db.lock project/mlruns
