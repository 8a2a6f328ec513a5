#!/usr/bin/env bash
# `make run`: database (private cluster unless DATABASE_URL is set), migrations, boundary data,
# then the server on 127.0.0.1:${PORT:-8000}. SIGTERM or Ctrl-C stops the server and, if this
# script started it, the private cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

own_db=0
if [ -z "${DATABASE_URL:-}" ]; then
    if ! scripts/pgcluster.sh status >/dev/null 2>&1; then own_db=1; fi
    scripts/pgcluster.sh start
    DATABASE_URL=$(scripts/pgcluster.sh url)
    export DATABASE_URL
fi

.venv/bin/jointgrid migrate
.venv/bin/jointgrid seed
.venv/bin/jointgrid first-admin-hint

srv=""
cleanup() {
    trap - TERM INT HUP
    if [ -n "$srv" ] && kill -0 "$srv" 2>/dev/null; then
        kill -TERM "$srv" 2>/dev/null || true
        wait "$srv" 2>/dev/null || true
    fi
    if [ "$own_db" = 1 ]; then scripts/pgcluster.sh stop; fi
}
trap 'cleanup; exit 0' TERM INT HUP

.venv/bin/jointgrid serve --host 127.0.0.1 --port "${PORT:-8000}" &
srv=$!
status=0
wait "$srv" || status=$?
srv=""
cleanup
exit "$status"
