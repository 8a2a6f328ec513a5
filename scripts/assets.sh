#!/usr/bin/env bash
# Browser assets for the map, the dashboard and the report page: Leaflet, its plugins and the
# libraries folium's page template expects (jQuery, Bootstrap, Font Awesome, awesome-markers),
# and Swagger UI for /docs.
# They come from the npm registry at the exact versions pinned in scripts/assets/package-lock.json
# and land in var/assets/node_modules, which the server serves under /assets/. Nothing is copied
# into the repository, and nothing is loaded from outside the server at run time.
# Re-running is cheap: npm runs only when the lock file changed or a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[assets] %s\n' "$*" >&2; }

src=scripts/assets
dest=var/assets
stamp="$dest/.installed"
want=$(cat "$src/package.json" "$src/package-lock.json" "$src/.npmrc" | sha256sum | cut -d' ' -f1)

complete() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] || return 1
    local f
    for f in leaflet/dist/leaflet.js leaflet.markercluster/dist/leaflet.markercluster.js \
        leaflet-realtime/dist/leaflet-realtime.js leaflet.heat/dist/leaflet-heat.js \
        jquery/dist/jquery.min.js bootstrap/dist/js/bootstrap.bundle.min.js \
        @fortawesome/fontawesome-free/css/all.min.css \
        leaflet.awesome-markers/dist/leaflet.awesome-markers.js \
        glyphicons-only-bootstrap/css/bootstrap.min.css \
        swagger-ui-dist/swagger-ui-bundle.js swagger-ui-dist/swagger-ui.css; do
        [ -f "$dest/node_modules/$f" ] || return 1
    done
}

if complete; then
    exit 0
fi

if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing Debian's nodejs and npm"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    else
        say "npm is missing. Install it as root, then run make again:"
        say "  sudo apt-get install nodejs npm"
        exit 1
    fi
fi

say "installing the pinned browser libraries into $dest"
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$dest/"
# --ignore-scripts: these are plain files to serve; no package needs to run code to install.
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
echo "$want" >"$stamp"
complete || { say "the browser libraries are incomplete after npm ci"; exit 1; }
say "done"
