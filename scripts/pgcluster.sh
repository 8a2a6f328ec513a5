#!/usr/bin/env bash
# A private PostgreSQL + PostGIS cluster under ./var/pg, for `make run` and `make test` when
# DATABASE_URL is unset. It listens on 127.0.0.1 only, on a free port, with a generated
# password; var/pg/url holds the connection URL.
# Usage: scripts/pgcluster.sh start|stop|status|url
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base=$root/var/pg
data=$base/data
run=$base/run
log=$base/postgres.log
db=jointgrid
user=jointgrid

say() { printf '[pgcluster] %s\n' "$*" >&2; }

pgbin() {
    local d v
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        v=$(basename "$(dirname "$d")")
        if [ -x "$d/initdb" ] && [ -f "/usr/share/postgresql/$v/extension/postgis.control" ]; then
            echo "$d"; return 0
        fi
    done
    say "no PostgreSQL with PostGIS found; run scripts/setup.sh first"; exit 1
}
BIN=$(pgbin)

# initdb refuses to run as root, so as root the cluster belongs to the `postgres` system user
# that Debian's package creates.
if [ "$(id -u)" = 0 ]; then
    owner=postgres
    id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    owner=$(id -un)
    as_owner() { "$@"; }
fi

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

is_running() { [ -d "$data" ] && as_owner "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

init() {
    mkdir -p "$base" "$run"
    chown "$owner" "$base" "$run"
    chmod 700 "$base" "$run"
    if ! as_owner test -x "$root/var"; then
        chmod o+x "$root/var" 2>/dev/null || true
    fi
    if ! as_owner test -w "$base"; then
        say "the user '$owner' cannot reach $base: every folder above it must be searchable (chmod o+x)"
        exit 1
    fi
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$base/password"
    chown "$owner" "$base/password"; chmod 600 "$base/password"
    say "initialising a private cluster in $data"
    as_owner "$BIN/initdb" -D "$data" -U "$user" --pwfile="$base/password" \
        --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$base/initdb.log" 2>&1 \
        || { cat "$base/initdb.log" >&2; exit 1; }
}

start() {
    [ -f "$data/PG_VERSION" ] || init
    if is_running; then
        say "already running ($(cat "$base/url" | sed 's/:[^:@]*@/:***@/'))"
    else
        port=$(cat "$base/port" 2>/dev/null || true)
        if [ -z "$port" ] || ! port_free "$port"; then port=$(free_port); fi
        echo "$port" > "$base/port"
        # PostGIS preloaded: every parallel worker is a new process, and loading postgis-3.so
        # (with GEOS and PROJ) in each one cost ~15 ms per parallel query (docs/performance.md).
        preload=""
        if [ -f "$BIN/../lib/postgis-3.so" ]; then preload="-c shared_preload_libraries=postgis-3"; fi
        as_owner "$BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
            -o "-p $port -k $run -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c shared_buffers=256MB $preload" \
            start >/dev/null || { tail -20 "$log" >&2; exit 1; }
        pw=$(cat "$base/password")
        echo "postgresql://$user:$pw@127.0.0.1:$port/$db" > "$base/url"
        chmod 600 "$base/url"
        say "started on 127.0.0.1:$port"
    fi
    port=$(cat "$base/port")
    PGPASSWORD=$(cat "$base/password") psql -qAt -h 127.0.0.1 -p "$port" -U "$user" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
        || PGPASSWORD=$(cat "$base/password") psql -q -h 127.0.0.1 -p "$port" -U "$user" -d postgres \
            -c "CREATE DATABASE $db"
}

stop() {
    if is_running; then
        as_owner "$BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null && say "stopped"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if is_running; then echo running; else echo stopped; exit 3; fi ;;
    url) cat "$base/url" ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
