# The two commands of the README: `make run` and `make test`. Everything else is a step they use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install web node-deps chromium lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,browser]'

web/node_modules/.package-lock.json: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund

web: web/node_modules/.package-lock.json
	npm run build --prefix web

node-deps:
	npm ci --prefix tests/node --no-audit --no-fund

# Browser tests drive Debian's chromium; install it when we can (root), otherwise they skip locally.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "chromium not installed: browser tests will be skipped (sudo apt-get install chromium)"; fi; fi

## run: install, build the web client, serve on http://127.0.0.1:8000 (SQLite in ./data)
run: install web
	$(BIN)/plait serve

## test: install everything the suite needs, then run it with coverage
test: install web node-deps chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --cov --cov-branch --cov-report=term --cov-fail-under=85 -p no:cacheprovider $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy
