#!/usr/bin/env bash
# `make test`: lint, then the whole suite against a real PostGIS. The tests make their own
# throwaway database on the server (the private cluster unless DATABASE_URL is set) and drop it
# afterwards. A PostGIS test that is skipped fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

use_private_cluster
cleanup() { stop_own_cluster; }
trap cleanup EXIT

make --no-print-directory lint

mkdir -p var/test-artifacts
export JOINTGRID_TEST_SERVER_URL=$DATABASE_URL
export JOINTGRID_REQUIRE_POSTGIS=1
unset DATABASE_URL
.venv/bin/python -m pytest "$@"
