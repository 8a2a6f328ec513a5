#!/usr/bin/env bash
# Installs what JointGrid needs on a Debian machine: PostgreSQL with PostGIS (from Debian's
# packages), a virtualenv with the project, and for tests Chromium and the browser assets.
# Usage: scripts/setup.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
mode=${1:-run}

say() { printf '[setup] %s\n' "$*" >&2; }

need_pkgs=()
if [ -z "${DATABASE_URL:-}" ] && ! pg_bin_with_postgis >/dev/null; then
    need_pkgs+=(postgresql postgresql-contrib postgis)
    # The versioned PostGIS package must match the server's major version.
    if command -v apt-cache >/dev/null; then
        v=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)
        [ -n "$v" ] || v=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9]\+\)$/\1/p' | head -1)
        [ -n "$v" ] && need_pkgs+=("postgresql-$v-postgis-3")
    fi
fi
command -v psql >/dev/null || need_pkgs+=(postgresql-client)
# pg_auto_failover, for the replicated cluster (`JOINTGRID_HA=1 make run`, and the tests of
# failover, which run in every `make test`).
if [ "$mode" = test ] || [ "${JOINTGRID_HA:-0}" = 1 ]; then
    command -v pg_autoctl >/dev/null || need_pkgs+=(pg-auto-failover-cli)
    v=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)
    if [ -n "$v" ] && [ ! -f "/usr/share/postgresql/$v/extension/pgautofailover.control" ]; then
        need_pkgs+=("postgresql-$v-auto-failover")
    fi
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then need_pkgs+=(python3-venv); fi
if [ "$mode" = test ] && ! command -v chromium >/dev/null; then need_pkgs+=(chromium); fi
# A CJK font, so the browser tests' screenshots show the Chinese names.
if [ "$mode" = test ] && [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then need_pkgs+=(fonts-wqy-microhei); fi
if [ "$mode" = test ] && ! command -v node >/dev/null; then need_pkgs+=(nodejs npm); fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing Debian packages: ${need_pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # The generic names may fail on a second pass once the versioned ones exist; try each.
        apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null \
            || for p in "${need_pkgs[@]}"; do apt-get install -y -qq --no-install-recommends "$p" >/dev/null || true; done
        if [ -z "${DATABASE_URL:-}" ] && ! pg_bin_with_postgis >/dev/null; then
            v=$(ls /usr/lib/postgresql | sort -V | tail -1)
            apt-get install -y -qq --no-install-recommends "postgresql-$v-postgis-3" >/dev/null
        fi
        # On a fresh machine the server's version is known only now.
        if [ "$mode" = test ] || [ "${JOINTGRID_HA:-0}" = 1 ]; then
            v=$(ls /usr/lib/postgresql | sort -V | tail -1)
            [ -f "/usr/share/postgresql/$v/extension/pgautofailover.control" ] \
                || apt-get install -y -qq --no-install-recommends "postgresql-$v-auto-failover" >/dev/null
        fi
    else
        say "missing system packages. Install them as root, then run make again:"
        say "  sudo apt-get install ${need_pkgs[*]}"
        exit 1
    fi
fi

# The virtualenv is rebuilt only when pyproject.toml changes.
extra=""
[ "$mode" = test ] && extra="[dev]"
stamp=".venv/.installed-$mode"
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing the project into .venv ($mode)"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".$extra"
    touch "$stamp"
fi

# Browser assets (Leaflet and plugins) come from the npm registry into var/assets and are
# served by the application; nothing is loaded from outside the server at run time.
if [ -f scripts/assets.sh ]; then scripts/assets.sh; fi
