# ArbionTrader: `make run` starts the whole platform on the embedded default; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
LOCAL_ENV := instance/local.env
FLASK := $(BIN)/flask --app app

.PHONY: run test soak bench bench-quick lint format install clean-local sandbox-schwab sandbox-coinbase screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install runtime and dev requirements

$(LOCAL_ENV): | $(STAMP)
	$(BIN)/python -m utils.localenv $(LOCAL_ENV)

run: $(STAMP) $(LOCAL_ENV) ## Migrate, seed and start web + worker + beat at http://127.0.0.1:5000
	set -a && . ./$(LOCAL_ENV) && set +a && \
	$(FLASK) db upgrade && \
	$(FLASK) seed demo && \
	echo "ArbionTrader: http://127.0.0.1:$${PORT:-5000}  (Ctrl-C stops everything)" && \
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho -f Procfile.dev start

sandbox-schwab: $(STAMP) $(LOCAL_ENV) ## Fake Schwab API on 127.0.0.1:8700 (SCHWAB_CLIENT_ID/SECRET/REDIRECT_URI set)
	set -a && . ./$(LOCAL_ENV) && set +a && $(FLASK) fake-broker schwab --port 8700

sandbox-coinbase: $(STAMP) $(LOCAL_ENV) ## Fake Coinbase API on 127.0.0.1:8701; prints a key to paste
	set -a && . ./$(LOCAL_ENV) && set +a && $(FLASK) fake-broker coinbase --port 8701

test: $(STAMP) ## Run the whole suite (PostgreSQL/Redis when TEST_DATABASE_URL/TEST_REDIS_URL are set)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

soak: $(STAMP) ## The reliability and security batteries at full size (bounded, under 30 minutes)
	ARBION_SOAK=1 $(BIN)/python -m pytest tests/reliability tests/security -p no:cacheprovider $(PYTEST_ARGS)

$(BENCH_STAMP): requirements-bench.txt | $(STAMP)
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP) ## The performance benchmarks at full size (PostgreSQL + Redis; about 30 minutes); rewrites BENCHMARKS.md
	$(BIN)/python -m bench.run --full $(BENCH_ARGS)

bench-quick: $(STAMP) $(BENCH_STAMP) ## The benchmarks at small sizes (under 5 minutes); results in bench/results/quick/
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

screenshots: $(STAMP) ## Save PNGs of the main pages into docs/screenshots/ (Debian chromium: apt-get install -y chromium)
	$(BIN)/python -m pytest tests/browser/screenshots.py -p no:cacheprovider -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check), mypy and bandit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/bandit -q -r utils app.py worker.py models.py

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
