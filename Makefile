# The two commands of the README: `make run` and `make test`. Everything else is a step they use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-unit test-fast install install-run web node-deps system-deps lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# What serving needs, and nothing else: the package's own dependencies.
install-run: $(BIN)/python
	$(BIN)/pip install -q -e .

# What the suite needs on top: test tools and Playwright.
install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,browser]'

web/node_modules/.package-lock.json: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund

web: web/node_modules/.package-lock.json
	npm run build --prefix web

node-deps:
	npm ci --prefix tests/node --no-audit --no-fund

# System packages some tests use: Debian's chromium (browser tests), docker-compose (validates compose.yaml
# without an engine), redis-server and redis-cli (private Redis servers, a Redis Cluster), openssl (TLS
# certificates for Redis) and nginx (the load balancer in front of two nodes).
# Installed when we are root; otherwise those tests skip locally (and fail in CI).
# prometheus: its promtool runs the unit tests of deploy/prometheus/alerts.yml.
system-deps:
	@missing=""; [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null); \
	  else echo "not installed:$$missing (sudo apt-get install$$missing); the tests that need them will skip"; fi; fi

## run: install, build the web client, serve on http://127.0.0.1:8000 (SQLite in ./data)
run: install-run web
	$(BIN)/plait serve

## test: install everything the suite needs, then run it with coverage (the Python code's, then the web client's
## TypeScript as the browser tests ran it: PLAIT_WEB_COVERAGE has every page write its V8 coverage)
test: install web node-deps system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	npm test --prefix web
	rm -rf .coverage-web
	PLAIT_WEB_COVERAGE=$(CURDIR)/.coverage-web $(BIN)/python -m pytest --cov --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=92 --durations=25 -p no:cacheprovider $(PYTEST_ARGS)
	node web/scripts/coverage-report.mjs .coverage-web --fail-under-lines 94

## test-unit: the sync centre, the supervisor and the log backends in-process: no server, seconds
test-unit: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

## test-fast: for contributors between full runs: SQLite only, no Redis, no browser, no installed wheel
test-fast: install web node-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not postgres and not redis and not browser and not slow" $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy
