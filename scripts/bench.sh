#!/usr/bin/env bash
# `make bench`: the benchmarks on their own throwaway databases (never the test databases),
# on the private cluster unless DATABASE_URL names a server. Each bench/*.py writes its
# results into docs/performance.md beside an anchor measured in the same run.
# JOINTGRID_BENCH_ONLY="ingest locate" runs only those (the province is loaded if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

use_private_cluster
export JOINTGRID_BENCH_SERVER_URL=$DATABASE_URL
unset DATABASE_URL

cleanup() {
    .venv/bin/python -c 'from bench._common import drop_db, PROVINCE_DB; drop_db(PROVINCE_DB)' || true
    stop_own_cluster
}
trap cleanup EXIT

run() {
    echo "== bench/$1.py" >&2
    .venv/bin/python -m "bench.$1"
}

only=${JOINTGRID_BENCH_ONLY:-}
# The province first (the other benchmarks use it), the re-route last (it changes the data).
order=(province ingest locate)
for f in bench/*.py; do
    name=$(basename "$f" .py)
    case "$name" in _*|province|ingest|locate|reroute) continue ;; esac
    order+=("$name")
done
order+=(reroute)
for name in "${order[@]}"; do
    if [ -n "$only" ] && [ "$name" != province ] && [[ " $only " != *" $name "* ]]; then continue; fi
    run "$name"
done
