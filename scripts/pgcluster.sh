#!/usr/bin/env bash
# A private PostgreSQL + PostGIS cluster for `make run` and `make test` when DATABASE_URL is
# unset. It listens on 127.0.0.1 only, with a generated password, on a port chosen once and
# kept across restarts.
#
# Where the cluster lives: ./var/pg when its owner (you) can reach it. As root the cluster
# belongs to the `postgres` system user (initdb and pg_ctl refuse root), which cannot enter a
# private parent such as root's 0700 home; so as root the data lives in
# /var/lib/jointgrid/<hash of this project's path>/ (owned by postgres, mode 0700) and
# ./var/pg/location records where. No folder above the project changes its permissions.
#
# ./var/pg/url holds the owner's connection URL (mode 0600); `jointgrid` commands read it when
# DATABASE_URL is unset.
# Usage: scripts/pgcluster.sh start|stop|status|url|location|destroy
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
base=$root/var/pg
db=jointgrid
user=jointgrid
# How long `start` waits for its recorded port when something really listens on it.
port_wait_s=${JOINTGRID_PG_PORT_WAIT_S:-30}

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

if [ "$(id -u)" = 0 ]; then
    owner=postgres
    # from /, which postgres can enter (pg_ctl complains about a cwd it cannot)
    as_owner() { (cd / && runuser -u postgres -- "$@"); }
else
    owner=$(id -un)
    as_owner() { "$@"; }
fi

# The cluster's folder: the recorded one; else ./var/pg as before (an existing cluster there is
# kept); else, as root, one under /var/lib/jointgrid that the postgres user can reach.
location() {
    if [ -f "$base/location" ]; then cat "$base/location"; return; fi
    if [ -f "$base/data/PG_VERSION" ] || [ "$owner" != postgres ]; then echo "$base"; return; fi
    echo "/var/lib/jointgrid/$(printf '%s' "$root" | sha256sum | cut -c1-16)"
}
loc=$(location)
data=$loc/data
run=$loc/run
log=$loc/postgres.log

# The port is checked as PostgreSQL itself binds it, with SO_REUSEADDR: after a stop the old
# port keeps connections in TIME_WAIT for up to a minute, which a plain bind() counts as busy
# (the cause of the new random port after every restart) but PostgreSQL does not.
port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

is_running() { [ -f "$data/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

init() {
    if [ "$owner" = postgres ]; then
        id -u postgres >/dev/null 2>&1 \
            || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    mkdir -p "$base"
    chmod 700 "$base"
    if [ "$loc" != "$base" ]; then
        mkdir -p "$(dirname "$loc")"
        chmod 755 "$(dirname "$loc")"
        rm -rf "$loc"  # a folder left by a deleted clone at the same path: nothing points at it
        mkdir -p "$loc"
    fi
    mkdir -p "$run"
    chown "$owner" "$loc" "$run"
    chmod 700 "$loc" "$run"
    if ! as_owner test -w "$loc"; then
        say "the user '$owner' cannot reach $loc"
        exit 1
    fi
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$loc/password"
    chown "$owner" "$loc/password"; chmod 600 "$loc/password"
    say "initialising a private cluster in $data"
    as_owner "$BIN/initdb" -D "$data" -U "$user" --pwfile="$loc/password" \
        --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$loc/initdb.log" 2>&1 \
        || { cat "$loc/initdb.log" >&2; exit 1; }
    echo "$loc" > "$base/location"
}

# The recorded port if it is free, waiting for it (bounded) if something listens there; a new
# free port only the first time or when the wait runs out.
choose_port() {
    local port waited=0
    port=$(cat "$loc/port" 2>/dev/null || true)
    if [ -z "$port" ]; then free_port; return; fi
    while ! port_free "$port"; do
        if [ "$waited" -ge "$port_wait_s" ]; then
            say "port $port is still in use after ${port_wait_s} s; choosing another"
            free_port; return
        fi
        [ "$waited" = 0 ] && say "port $port is in use; waiting up to ${port_wait_s} s for it"
        sleep 1; waited=$((waited + 1))
    done
    echo "$port"
}

write_url() {
    local port=$1 pw
    pw=$(cat "$loc/password")
    mkdir -p "$base"
    (umask 077; echo "postgresql://$user:$pw@127.0.0.1:$port/$db" > "$base/url.tmp")
    mv "$base/url.tmp" "$base/url"
    echo "$loc" > "$base/location"
}

start() {
    BIN=$(pgbin)
    [ -f "$data/PG_VERSION" ] || init
    if is_running; then
        write_url "$(cat "$loc/port")"
        say "already running on 127.0.0.1:$(cat "$loc/port")"
    else
        port=$(choose_port)
        echo "$port" > "$loc/port"
        # PostGIS preloaded: every parallel worker is a new process, and loading postgis-3.so
        # (with GEOS and PROJ) in each one cost ~15 ms per parallel query (docs/performance.md).
        preload=""
        if [ -f "$BIN/../lib/postgis-3.so" ]; then preload="-c shared_preload_libraries=postgis-3"; fi
        as_owner "$BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
            -o "-p $port -k $run -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c shared_buffers=256MB $preload" \
            start >/dev/null || { tail -20 "$log" >&2; exit 1; }
        write_url "$port"
        say "started on 127.0.0.1:$port"
    fi
    port=$(cat "$loc/port")
    PGPASSWORD=$(cat "$loc/password") psql -qAt -h 127.0.0.1 -p "$port" -U "$user" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
        || PGPASSWORD=$(cat "$loc/password") psql -q -h 127.0.0.1 -p "$port" -U "$user" -d postgres \
            -c "CREATE DATABASE $db"
}

stop() {
    [ -f "$data/PG_VERSION" ] || return 0
    BIN=$(pgbin)
    if is_running; then
        as_owner "$BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null && say "stopped"
    fi
}

# `make clean`: stop, then remove the cluster wherever it lives.
destroy() {
    stop
    if [ "$loc" != "$base" ] && [ -d "$loc" ]; then rm -rf "$loc"; say "removed $loc"; fi
    rm -rf "$base"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) BIN=$(pgbin); if is_running; then echo running; else echo stopped; exit 3; fi ;;
    url) cat "$base/url" ;;
    location) echo "$loc" ;;
    destroy) destroy ;;
    *) echo "usage: $0 start|stop|status|url|location|destroy" >&2; exit 2 ;;
esac
