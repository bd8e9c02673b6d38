# Two commands matter: `make run` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
# google/api and google/rpc protos from the googleapis-common-protos wheel, for buf (offline).
GOOGLEAPIS := .tools/googleapis/google/api/field_behavior.proto
# The TypeScript client's npm dependencies (protoc-gen-es, tsc, tsx included), from its lock file.
TS := clients/typescript
TS_INSTALLED := $(TS)/node_modules/.installed
# The frozen v1 contract: `make lint` fails on any change that would break a compiled client
# (docs/API.md, "Changing the contract"). Written only by `make freeze`.
BASELINE := protos/baseline/socialhub-v1.binpb

.PHONY: install run test lint generate freeze seed bench clean image image-services image-test

$(INSTALLED): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e clients/python -e '.[dev,embedded,bench]'
	touch $@

$(BUF):
	npm install --prefix .tools --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION)

$(GOOGLEAPIS): $(INSTALLED) clients/python/googleapis.py
	$(BIN)/python clients/python/googleapis.py .tools/googleapis

$(TS_INSTALLED): $(TS)/package.json $(TS)/package-lock.json
	npm ci --prefix $(TS) --no-audit --no-fund --silent
	touch $@

install: $(INSTALLED) $(BUF) $(GOOGLEAPIS) $(TS_INSTALLED)

## Serve on 127.0.0.1:50051 with embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are set.
run: $(INSTALLED)
	$(BIN)/socialhub serve

## Lint, type-check, architecture rules (import-linter), buf lint, generated-code freshness and the whole pytest suite.
# Each worker starts its own embedded PostgreSQL and Redis; most tests wait on servers,
# timeouts and other processes, so two workers take about 60% of one's time even on 2 cores.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BUF) lint
	$(BUF) breaking protos --against $(BASELINE)
	npm --prefix $(TS) run --silent typecheck

## The container image (Dockerfile) with podman, or docker where a Docker engine runs; README
## "Container image". BASE_IMAGE=python:3.11-slim picks the base; unset, a local Debian base is
## built where no registry serves that one. Podman's settings for this machine kind:
## deploy/image/containers.conf.
export CONTAINERS_CONF ?= $(CURDIR)/deploy/image/containers.conf
IMAGE ?= localhost/socialhub:latest
image:
	deploy/image/build.sh

## PostgreSQL, Redis and HAProxy from Debian's packages for image-test (not published).
image-services:
	deploy/image/build.sh services

## Runs the image against PostgreSQL and Redis containers, then deploy/compose.yaml's three
## replicas behind a balancer with podman-compose, and drills a replica's stop (tests/image).
image-test: $(INSTALLED) image image-services
	SOCIALHUB_IMAGE_TESTS=1 IMAGE=$(IMAGE) $(BIN)/pytest tests/image -p no:cacheprovider -rP

## Regenerate clients/python/socialhub and clients/typescript/src/gen from protos/.
generate: $(INSTALLED) $(BUF) $(GOOGLEAPIS) $(TS_INSTALLED)
	$(BIN)/python clients/python/generate.py
	$(BUF) generate

## Rebuild the v1 baseline that `make lint` checks for breaking changes. Only for a reviewed,
## deliberate change that breaks no client (docs/API.md); a break is a new package, socialhub.v2.
freeze: $(BUF) $(GOOGLEAPIS)
	mkdir -p $(dir $(BASELINE))
	$(BUF) build protos --exclude-source-info -o $(BASELINE)

## Benchmarks against the floors and the FastAPI baseline; rewrites docs/BENCHMARKS.md.
## The first run seeds .state/bench (200k profiles, 2M posts; about 12 min), every run then
## measures for about 15 min.
bench: $(INSTALLED)
	$(BIN)/python -m bench.suite --write-docs

seed: $(INSTALLED)
	$(BIN)/socialhub seed --profiles 100000

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis $(TS)/node_modules $(TS)/dist
