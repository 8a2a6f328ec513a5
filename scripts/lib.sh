# Sourced by the scripts beside it (never run on its own): what more than one of them does.

# The bin folder of the newest PostgreSQL on this machine whose PostGIS is installed; fails
# (status 1, nothing printed) when there is none.
pg_bin_with_postgis() {
    local d v
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        v=$(basename "$(dirname "$d")")
        if [ -x "$d/initdb" ] && [ -f "/usr/share/postgresql/$v/extension/postgis.control" ]; then
            echo "$d"; return 0
        fi
    done
    return 1
}

# Sets DATABASE_URL to the private cluster's unless it already names a server, starting the
# cluster if it is down; own_db=1 when this run started it (and so stops it at the end:
# `stop_own_cluster`).
use_private_cluster() {
    own_db=0
    if [ -z "${DATABASE_URL:-}" ]; then
        if ! scripts/pgcluster.sh status >/dev/null 2>&1; then own_db=1; fi
        scripts/pgcluster.sh start
        DATABASE_URL=$(scripts/pgcluster.sh url)
    fi
}

# Stops the private cluster when `use_private_cluster` started it.
stop_own_cluster() {
    if [ "$own_db" = 1 ]; then scripts/pgcluster.sh stop; fi
}
