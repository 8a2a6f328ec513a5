#!/usr/bin/env bash
# `make run`: database (private cluster unless DATABASE_URL is set; with JOINTGRID_HA=1 a
# replicated one: a pg_auto_failover monitor, a primary and a synchronous standby, see
# scripts/pgcluster.sh), migrations, boundary data,
# then the server on 127.0.0.1:${PORT:-8000}, kept running: a server that dies (a crash,
# kill -9, out of memory) is started again after a short pause, and the database stays up.
# SIGTERM or Ctrl-C stops the server and, if this script started it, the private cluster.
#
# Restarts: the pause starts at 1 s and doubles (up to 30 s) while the server keeps dying
# within 30 s of its start; more than JOINTGRID_RUN_MAX_RESTARTS (5) restarts within 60 s
# means something is wrong that a restart will not fix, so make run gives up and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[run] %s\n' "$*" >&2; }
max_restarts=${JOINTGRID_RUN_MAX_RESTARTS:-5}
window_s=60
healthy_after_s=30

own_db=0
ha=()
if [ "${JOINTGRID_HA:-0}" = 1 ]; then ha=(ha); fi
if [ -z "${DATABASE_URL:-}" ]; then
    if [ ${#ha[@]} -gt 0 ]; then
        # the replicated cluster records its multi-host URL where `jointgrid` looks
        own_db=1
        scripts/pgcluster.sh ha start
    else
        if ! scripts/pgcluster.sh status >/dev/null 2>&1; then own_db=1; fi
        scripts/pgcluster.sh start
    fi
fi
# Without DATABASE_URL every command below finds the private cluster's recorded URL itself
# (api/settings.py), and the server reads it again whenever it connects.

.venv/bin/jointgrid migrate
.venv/bin/jointgrid seed
.venv/bin/jointgrid first-admin-hint

srv=""
pause=""
cleanup() {
    trap - TERM INT HUP
    if [ -n "$pause" ]; then kill "$pause" 2>/dev/null || true; fi
    if [ -n "$srv" ] && kill -0 "$srv" 2>/dev/null; then
        kill -TERM "$srv" 2>/dev/null || true
        wait "$srv" 2>/dev/null || true
    fi
    if [ "$own_db" = 1 ]; then scripts/pgcluster.sh "${ha[@]}" stop; fi
}
trap 'cleanup; exit 0' TERM INT HUP

describe() {  # an exit status as people say it
    if [ "$1" -gt 128 ]; then echo "signal $(($1 - 128)) ($(kill -l "$(($1 - 128))" 2>/dev/null || echo '?'))"
    else echo "status $1"; fi
}

recent=()  # start times (s) of the restarts within the window
delay=1
while true; do
    started=$SECONDS
    .venv/bin/jointgrid serve --host 127.0.0.1 --port "${PORT:-8000}" &
    srv=$!
    say "server started (pid $srv)"
    status=0
    wait "$srv" || status=$?
    srv=""
    if [ "$status" = 0 ]; then
        say "server exited normally"
        cleanup
        exit 0
    fi
    now=$SECONDS
    if [ $((now - started)) -ge "$healthy_after_s" ]; then delay=1; fi
    kept=()
    for t in "${recent[@]}"; do
        if [ $((now - t)) -lt "$window_s" ]; then kept+=("$t"); fi
    done
    recent=("${kept[@]}")
    if [ "${#recent[@]}" -ge "$max_restarts" ]; then
        say "server exited with $(describe "$status"); it died $((${#recent[@]} + 1)) times within ${window_s} s, giving up"
        cleanup
        exit 1
    fi
    say "server exited with $(describe "$status"); restarting in $delay s (the database keeps running)"
    sleep "$delay" &
    pause=$!
    wait "$pause" || true
    pause=""
    recent+=("$SECONDS")
    delay=$((delay * 2 > 30 ? 30 : delay * 2))
done
