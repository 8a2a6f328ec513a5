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
#        scripts/pgcluster.sh ha start|stop|state|switchover|url|location|destroy
#
# `ha`: a replicated cluster on this machine's loopback, run by pg_auto_failover (Debian's
# postgresql-15-auto-failover and pg-auto-failover-cli): a monitor, a primary and a synchronous
# standby, each with PostGIS preloaded. It lives beside the private cluster (as root in
# /var/lib/jointgrid/<hash>-ha, else in ./var/pg-ha; JOINTGRID_HA_DIR names another folder,
# which the tests use), keeps its three ports across restarts, and records the owner's
# multi-host URL (target_session_attrs=read-write) in <folder>/url and, for the project's own
# cluster, in ./var/pg/url, where `jointgrid` finds it. `ha state` prints
# `pg_autoctl show state --json`. See docs/reliability.md, "A replicated cluster".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
base=$root/var/pg
db=jointgrid
user=jointgrid
# How long `start` waits for its recorded port when something really listens on it.
port_wait_s=${JOINTGRID_PG_PORT_WAIT_S:-30}

say() { printf '[pgcluster] %s\n' "$*" >&2; }

pgbin() {
    pg_bin_with_postgis && return 0
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

# -- the replicated cluster (pg_auto_failover) ------------------------------------------------

ha=${JOINTGRID_HA_DIR:-}
if [ -z "$ha" ]; then
    if [ "$owner" = postgres ]; then ha="${loc%/}-ha"; else ha="$root/var/pg-ha"; fi
fi
# The monitor's settings: how soon a silent node counts as failed, and how long a failed
# primary is given to drain before its standby is promoted (pg_auto_failover's defaults: 5 s
# checks, 20 s unhealthy, 30 s demote; about 50 s without writes when a machine dies). These
# defaults bring a whole node's loss to about 20 s; docs/reliability.md gives the costs.
ha_check_ms=${JOINTGRID_HA_HEALTH_CHECK_PERIOD_MS:-2000}
ha_check_timeout_ms=${JOINTGRID_HA_HEALTH_CHECK_TIMEOUT_MS:-2000}
ha_retries=${JOINTGRID_HA_HEALTH_CHECK_MAX_RETRIES:-2}
ha_retry_ms=${JOINTGRID_HA_HEALTH_CHECK_RETRY_DELAY_MS:-1000}
ha_unhealthy_ms=${JOINTGRID_HA_UNHEALTHY_TIMEOUT_MS:-8000}
ha_demote_ms=${JOINTGRID_HA_DEMOTE_TIMEOUT_MS:-10000}
# The keeper's own rule: a primary that reaches neither the monitor nor a standby for this
# long stops its PostgreSQL. Kept below the demote timeout, so that the old primary is down
# before its standby is promoted (no two primaries).
ha_partition_s=${JOINTGRID_HA_NETWORK_PARTITION_TIMEOUT_S:-6}
ha_shared_buffers=${JOINTGRID_HA_SHARED_BUFFERS:-256MB}
ha_nodes=${JOINTGRID_HA_NODES:-2}

ha_env() {
    # pg_autoctl keeps its state and pid files under the XDG folders; a PGHOST (or any other
    # PG* variable) from the caller would change what `create` connects to.
    as_owner env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD -u PGSERVICE \
        -u PGTARGETSESSIONATTRS \
        XDG_CONFIG_HOME="$ha/xdg/config" XDG_DATA_HOME="$ha/xdg/data" \
        XDG_RUNTIME_DIR="$ha/xdg/run" PATH="$BIN:$PATH" "$@"
}
autoctl() { ha_env pg_autoctl "$@"; }

ha_port() { sed -n "$1p" "$ha/ports"; }   # 1: monitor, 2..: the nodes
ha_nodes_have() { ls "$ha"/node*/PG_VERSION 2>/dev/null | wc -l; }

ha_owner_pw() { cat "$ha/password"; }

ha_monitor_uri() {
    echo "postgres://autoctl_node:$(cat "$ha/monitor-password")@127.0.0.1:$(ha_port 1)/pg_auto_failover?sslmode=disable"
}

ha_running() {  # pgdata: is its pg_autoctl service up?
    [ -f "$1/pg_autoctl.cfg" ] || [ -f "$ha/xdg/config/pg_autoctl${1}/pg_autoctl.cfg" ] || return 1
    autoctl status --pgdata "$1" >/dev/null 2>&1
}

ha_run_bg() {  # pgdata name: start `pg_autoctl run` for a node, in the background
    local pgdata=$1 name=$2
    if ha_running "$pgdata"; then return 0; fi
    ha_env setsid nohup pg_autoctl run --pgdata "$pgdata" >>"$ha/$name.log" 2>&1 </dev/null &
}

ha_psql() {  # port db sql...: as the owner over TCP
    local port=$1 dbname=$2; shift 2
    PGPASSWORD=$(ha_owner_pw) psql -qAtX -h 127.0.0.1 -p "$port" -U "$user" -d "$dbname" "$@"
}

ha_wait_sql() {  # port: until PostgreSQL answers the owner there (bounded)
    local i
    for i in $(seq 1 120); do
        ha_psql "$1" postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

ha_wait_states() {  # want...: until the nodes' reported states are exactly these (bounded)
    local want="$*" got i
    for i in $(seq 1 "${JOINTGRID_HA_WAIT_S:-180}"); do
        got=$(ha_states 2>/dev/null || true)
        [ "$got" = "$want" ] && return 0
        sleep 1
    done
    say "the nodes did not reach '$want' (now: '$got'); see $ha/*.log"
    return 1
}

ha_states() {  # the nodes' current states, sorted, space-separated
    autoctl show state --pgdata "$ha/monitor" --json 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
settled = all(n["current_group_state"] == n["assigned_group_state"] for n in nodes)
print(" ".join(sorted(n["current_group_state"] for n in nodes)) + ("" if settled else " (moving)"))'
}

ha_hba() {  # pgdata: no trust over TCP
    # initdb (run by pg_autoctl create) trusts every TCP connection from this machine, which
    # would let any local user in as any role. Those lines go; pg_auto_failover's own rules
    # stay (scram-sha-256, and trust only for its health-check role, which holds nothing), and
    # the application's users log in with their passwords. Local sockets keep trust but are
    # reachable only by the postgres user (unix_socket_permissions = 0700).
    local hba=$1/pg_hba.conf
    as_owner grep -q '^# jointgrid' "$hba" && return 0
    as_owner sed -i -E '/^host[[:space:]]+(all|replication)[[:space:]]+all[[:space:]]+(127[.]0[.]0[.]1[/]32|::1[/]128)[[:space:]]+trust/d' "$hba"
    as_owner tee -a "$hba" >/dev/null <<HBA
# jointgrid: the application's logins, by password
host    all             all             127.0.0.1/32            scram-sha-256
HBA
}

ha_node_conf() {  # pgdata: the settings JointGrid adds to a node (copied to a standby by pg_basebackup)
    local conf=$1/postgresql.conf
    as_owner grep -q '^# jointgrid' "$conf" && return 0
    # Appended after pg_auto_failover's include line, so these win over its tuning
    # (shared_buffers at 25 % of the machine's memory: 6 GB here, for each instance).
    as_owner tee -a "$conf" >/dev/null <<CONF
# jointgrid: small buffers (several instances share this machine), PostGIS preloaded
shared_buffers = '$ha_shared_buffers'
max_connections = 200
shared_preload_libraries = 'postgis-3'
unix_socket_permissions = 0700
fsync = on
CONF
    ha_hba "$1"
}

ha_write_url() {
    local hosts="" i n
    n=$(ha_nodes_have)
    for i in $(seq 2 $((n + 1))); do hosts="${hosts:+$hosts,}127.0.0.1:$(ha_port "$i")"; done
    (umask 077; echo "postgresql://$user:$(ha_owner_pw)@$hosts/$db?target_session_attrs=read-write" > "$ha/url.tmp")
    mv "$ha/url.tmp" "$ha/url"
    if [ -z "${JOINTGRID_HA_DIR:-}" ]; then
        mkdir -p "$base"; chmod 700 "$base"
        cp "$ha/url" "$base/url"; chmod 600 "$base/url"
        echo "$ha" > "$base/ha-location"
    fi
}

ha_init() {
    if [ "$owner" = postgres ]; then
        id -u postgres >/dev/null 2>&1 \
            || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    command -v pg_autoctl >/dev/null \
        || { say "pg_autoctl not found: run JOINTGRID_HA=1 scripts/setup.sh run first"; exit 1; }
    mkdir -p "$(dirname "$ha")"
    [ "$owner" = postgres ] && chmod 755 "$(dirname "$ha")"
    rm -rf "$ha"
    mkdir -p "$ha/xdg/config" "$ha/xdg/data" "$ha/xdg/run"
    chown -R "$owner" "$ha"
    chmod 700 "$ha" "$ha/xdg/run"
    as_owner test -w "$ha" || { say "the user '$owner' cannot reach $ha"; exit 1; }
    local i p ports=()
    for i in $(seq 1 $((ha_nodes + 1))); do
        while :; do p=$(free_port); [[ " ${ports[*]} " == *" $p "* ]] || break; done
        ports+=("$p")
    done
    printf '%s\n' "${ports[@]}" > "$ha/ports"
    for f in password monitor-password replication-password; do
        python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$ha/$f"
        chown "$owner" "$ha/$f"; chmod 600 "$ha/$f"
    done
    say "creating a replicated cluster in $ha (monitor on $(ha_port 1))"
    autoctl create monitor --pgdata "$ha/monitor" --pgport "$(ha_port 1)" --hostname 127.0.0.1 \
        --auth scram-sha-256 --no-ssl --pgctl "$BIN/pg_ctl" >>"$ha/monitor.log" 2>&1 \
        || { tail -20 "$ha/monitor.log" >&2; exit 1; }
    as_owner tee -a "$ha/monitor/postgresql.conf" >/dev/null <<CONF
# jointgrid: the monitor is small
shared_buffers = '64MB'
unix_socket_permissions = 0700
CONF
    ha_hba "$ha/monitor"
    # pg_autoctl starts the monitor with its own listen_addresses ('*' by default)
    autoctl config set --pgdata "$ha/monitor" postgresql.listen_addresses 127.0.0.1 >/dev/null
}

# Local connections go through the sockets in the default folder, mode 0700 (ha_hba), as the
# postgres user, as pg_autoctl's own do.
ha_monitor_sql() { ha_env psql -qAtX -p "$(ha_port 1)" -d pg_auto_failover "$@"; }

ha_create_node() {  # index (2..)
    local i=$1 pgdata="$ha/node$(($1 - 1))" name="node$(($1 - 1))"
    [ -f "$pgdata/PG_VERSION" ] && return 0
    say "creating $name on 127.0.0.1:$(ha_port "$i")"
    ha_env PGPASSWORD="$(cat "$ha/replication-password")" pg_autoctl create postgres \
        --pgdata "$pgdata" --pgport "$(ha_port "$i")" --hostname 127.0.0.1 --listen 127.0.0.1 \
        --name "$name" --dbname "$db" --auth scram-sha-256 --no-ssl --pgctl "$BIN/pg_ctl" \
        --monitor "$(ha_monitor_uri)" >>"$ha/$name.log" 2>&1 \
        || { tail -30 "$ha/$name.log" >&2; exit 1; }
    autoctl config set --pgdata "$pgdata" replication.password "$(cat "$ha/replication-password")" >/dev/null
    autoctl config set --pgdata "$pgdata" timeout.network_partition_timeout "$ha_partition_s" >/dev/null
    ha_node_conf "$pgdata"
}

ha_more_ports() {  # a port for each node asked for beyond those recorded (a node added later)
    local have p
    have=$(wc -l < "$ha/ports")
    while [ "$have" -lt $((ha_nodes + 1)) ]; do
        while :; do p=$(free_port); grep -qx "$p" "$ha/ports" || break; done
        echo "$p" >> "$ha/ports"
        have=$((have + 1))
    done
}

ha_start() {
    BIN=$(pgbin)
    [ -f "$ha/monitor/PG_VERSION" ] || ha_init
    ha_more_ports
    # The monitor first (a keeper that cannot reach it gives up after a few tries). A node
    # whose keeper reports before its PostgreSQL is up counts as failed to the monitor, so a
    # restart may swap the roles once (no acknowledged write is lost: the standby was in
    # sync); `start` returns when the roles have settled.
    local i
    ha_run_bg "$ha/monitor" monitor
    ha_wait_monitor
    local n
    for i in $(seq 2 $((ha_nodes + 1))); do
        if [ ! -f "$ha/node$((i - 1))/PG_VERSION" ]; then
            ha_create_node "$i"
        fi
        ha_run_bg "$ha/node$((i - 1))" "node$((i - 1))"
        if [ "$i" = 2 ] && [ ! -f "$ha/owner-configured" ]; then ha_first_node; fi
    done
    n=$(ha_nodes_have)
    if [ "$n" -ge 2 ]; then
        local want="primary" k
        for k in $(seq 2 "$n"); do want="$want secondary"; done
        ha_wait_states "$(echo "$want" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')"
    fi
    # With two standbys or more, a commit may wait for one of them even while another is down
    # (pg_auto_failover refuses 1 with a single standby).
    if [ -n "${JOINTGRID_HA_SYNC_STANDBYS:-}" ]; then
        autoctl set formation number-sync-standbys "$JOINTGRID_HA_SYNC_STANDBYS" \
            --pgdata "$ha/node1" >/dev/null
    fi
    ha_write_url
    say "replicated cluster up: $(ha_states)"
}

ha_wait_monitor() {
    local i
    for i in $(seq 1 120); do
        if ha_monitor_sql -c 'SELECT 1' >/dev/null 2>&1; then
            if [ ! -f "$ha/monitor-configured" ]; then
                ha_monitor_sql <<SQL >/dev/null
ALTER USER autoctl_node PASSWORD '$(cat "$ha/monitor-password")';
SQL
                touch "$ha/monitor-configured"
            fi
            ha_monitor_settings_apply
            return 0
        fi
        sleep 0.5
    done
    say "the monitor did not start; see $ha/monitor.log"; tail -20 "$ha/monitor.log" >&2; exit 1
}

ha_monitor_settings_apply() {
    ha_monitor_sql >/dev/null <<SQL
ALTER SYSTEM SET pgautofailover.health_check_period = $ha_check_ms;
ALTER SYSTEM SET pgautofailover.health_check_timeout = $ha_check_timeout_ms;
ALTER SYSTEM SET pgautofailover.health_check_max_retries = $ha_retries;
ALTER SYSTEM SET pgautofailover.health_check_retry_delay = $ha_retry_ms;
ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = $ha_unhealthy_ms;
ALTER SYSTEM SET pgautofailover.primary_demote_timeout = $ha_demote_ms;
SELECT pg_reload_conf();
SQL
}

ha_first_node() {  # the first node, once it is the single primary: the owner and PostGIS
    ha_wait_states single
    local i
    for i in $(seq 1 120); do
        ha_env psql -qAtX -p "$(ha_port 2)" -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    ha_env psql -qAtX -p "$(ha_port 2)" -d postgres >/dev/null <<SQL
CREATE ROLE $user LOGIN SUPERUSER PASSWORD '$(ha_owner_pw)';
ALTER DATABASE $db OWNER TO $user;
ALTER USER pgautofailover_replicator PASSWORD '$(cat "$ha/replication-password")';
SQL
    touch "$ha/owner-configured"
}

ha_stop() {
    [ -f "$ha/monitor/PG_VERSION" ] || return 0
    BIN=$(pgbin)
    local d
    # The monitor first: with it gone no failover can start while the nodes shut down.
    if ha_running "$ha/monitor"; then autoctl stop --pgdata "$ha/monitor" >/dev/null 2>&1 || true; fi
    for _ in $(seq 1 60); do ha_running "$ha/monitor" || break; sleep 0.5; done
    for d in "$ha"/node*/; do
        d=${d%/}
        [ -f "$d/PG_VERSION" ] || continue
        if ha_running "$d"; then autoctl stop --pgdata "$d" >/dev/null 2>&1 || true; fi
    done
    for d in "$ha"/node*/; do
        d=${d%/}
        [ -f "$d/PG_VERSION" ] || continue
        for _ in $(seq 1 60); do ha_running "$d" || break; sleep 0.5; done
    done
    # ./var/pg/url goes back to the private cluster, if there is one, as `start` would write it
    if [ -z "${JOINTGRID_HA_DIR:-}" ] && [ -f "$loc/port" ] && [ -f "$loc/password" ] \
        && cmp -s "$ha/url" "$base/url" 2>/dev/null; then
        write_url "$(cat "$loc/port")"
    fi
    say "replicated cluster stopped"
}

ha_destroy() {
    ha_stop
    rm -rf "$ha"
    if [ -z "${JOINTGRID_HA_DIR:-}" ]; then rm -f "$base/ha-location"; fi
    say "removed $ha"
}

ha_cmd() {
    case "${1:-}" in
        start) ha_start ;;
        stop) ha_stop ;;
        state) BIN=$(pgbin); autoctl show state --pgdata "$ha/monitor" --json ;;
        # the primary's role moves to the standby, both staying up (pg_autoctl waits for it)
        switchover) BIN=$(pgbin); autoctl perform switchover --pgdata "$ha/monitor" --wait 120 ;;
        url) cat "$ha/url" ;;
        location) echo "$ha" ;;
        destroy) BIN=$(pgbin); ha_destroy ;;
        *) echo "usage: $0 ha start|stop|state|switchover|url|location|destroy" >&2; exit 2 ;;
    esac
}

# (sourced by a test or by hand with JG_SOURCE_ONLY=1: the functions only)
[ "${JG_SOURCE_ONLY:-}" = 1 ] && return 0
case "${1:-}" in
    ha) shift; ha_cmd "$@" ;;
    start) start ;;
    stop) stop ;;
    status) BIN=$(pgbin); if is_running; then echo running; else echo stopped; exit 3; fi ;;
    url) cat "$base/url" ;;
    location) echo "$loc" ;;
    destroy) destroy ;;
    *) echo "usage: $0 start|stop|status|url|location|destroy" >&2; exit 2 ;;
esac
