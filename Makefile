# mlctl: two commands do all set-up on a fresh Debian machine with Python 3.11.
#   make demo   create .venv, install mlctl, run the main job on embedded defaults (no server)
#   make test   create .venv, install dev extras and the Debian packages the tests need,
#               start the real engines (from the tests), run the whole suite with coverage >= 80%

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Debian packages of the real engines the integration tests start on loopback.
DEB_PACKAGES := postgresql redis-server prometheus prometheus-alertmanager prometheus-pushgateway docker.io debootstrap
COV_MIN ?= 80
PYTEST_ARGS ?=
# Apache Airflow gets its own environment: its pins clash with the serving stack (fastapi).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_VERSION ?= 3.3.2
# Peers the benchmarks compare with, each in its own environment.
PEERS ?= .venv-peers

.PHONY: help demo test test-fast lint bench system-deps clean

help:
	@echo "make demo   - run the main job on embedded defaults"
	@echo "make test   - install everything the tests need and run them with coverage"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - run benchmarks and refresh docs/benchmarks.md"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mlctl needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.core $(VENV)/.demo

demo: $(VENV)/.demo
	@start=$$(date +%s); \
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scenarios/demo.sh && t1=$$(date +%s) && \
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON="$(CURDIR)/$(BIN)/python" bash scenarios/quickstart.sh && t2=$$(date +%s) && \
	echo && echo "== demo summary (embedded defaults, no server)" && \
	echo "  1. scaffold, status, config origins, doctor ($$((t1 - start)) s)" && \
	echo "  2. train + tune, promote, deploy, predict, retrain, rollback, status ($$((t2 - t1)) s)" && \
	echo "  all steps passed in $$((t2 - start)) s; next: .venv/bin/mlctl --help, README.md, docs/cli.md"

# a regular (not editable) install, as a user gets it: an editable one warns about the package-dir mapping
$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet '.[ml,tracking,serve]'
	@touch $@ $(VENV)/.core

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(AIRFLOW_VENV)/.installed: | $(BIN)/python
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet 'apache-airflow==$(AIRFLOW_VERSION)'
	@touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check mlctl commands tests benchmarks
	$(BIN)/mypy

# Two runs, one coverage: the unit and command tiers and the doctests on every core (they share
# nothing), then the integration and scenario tiers one test at a time (they share the engines).
test: system-deps $(VENV)/.dev $(AIRFLOW_VENV)/.installed lint
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest -p no:cacheprovider -n auto --dist loadfile -m "not integration and not scenario" \
	  --doctest-modules mlctl tests --cov --cov-report= --durations=10 $(PYTEST_ARGS)
	MLCTL_TEST_AIRFLOW_PYTHON="$(CURDIR)/$(AIRFLOW_VENV)/bin/python" $(BIN)/python -m pytest -p no:cacheprovider \
	  -m "integration or scenario" tests --cov --cov-append --cov-report=term --cov-fail-under=$(COV_MIN) \
	  --durations=25 $(PYTEST_ARGS)

test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -p no:cacheprovider -n auto --dist loadfile -m "not integration and not scenario" tests $(PYTEST_ARGS)

bench: $(VENV)/.dev
	@command -v wrk >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python benchmarks/startup.py --write-docs
	$(BIN)/python benchmarks/serve_single.py --rounds 3 --write-docs
	test -x $(PEERS)/drain3/bin/python || { $(PYTHON) -m venv $(PEERS)/drain3 && \
	  $(PEERS)/drain3/bin/python -m pip install --quiet drain3; }
	$(BIN)/python benchmarks/detect_nab.py --all --write-docs
	$(BIN)/python benchmarks/logs_parse.py --drain3-python $(PEERS)/drain3/bin/python --write-docs
	$(BIN)/python benchmarks/logs_parse.py --drain3-python $(PEERS)/drain3/bin/python --whole-process --write-docs
	$(BIN)/python benchmarks/serve_start.py --write-docs
	$(BIN)/python benchmarks/logs_stream.py --write-docs
	$(BIN)/python benchmarks/ab_sequential.py --write-docs
	$(BIN)/python benchmarks/serve_gateway.py --rounds 3 --write-docs
	$(BIN)/python benchmarks/gateway_fuzz.py --write-docs

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(PEERS) build *.egg-info .coverage htmlcov
