# JointGrid. Two commands on a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint setup setup-test db-start db-stop seed bench clean

run:
	@scripts/setup.sh run
	@exec scripts/serve.sh

test:
	@scripts/setup.sh test
	@exec scripts/test.sh

# Static checks: style, types and the three-room import rule (gis <- layers <- api).
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup:
	@scripts/setup.sh run

setup-test:
	@scripts/setup.sh test

db-start:
	@scripts/pgcluster.sh start

db-stop:
	@scripts/pgcluster.sh stop

bench:
	@scripts/setup.sh test
	@exec scripts/bench.sh

clean:
	-@scripts/pgcluster.sh ha destroy
	-@scripts/pgcluster.sh destroy
	rm -rf var $(VENV)
