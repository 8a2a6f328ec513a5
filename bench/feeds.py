"""Feeds: page through 200,000 incidents at ``/ogc/collections/incidents/items?limit=10000``
with a real HTTP client against a real uvicorn, beside tipg serving the same table and the
ceiling, ``COPY (SELECT ST_AsGeoJSON(...) FROM incidents) TO STDOUT`` from psql, in one run.

Run by hand (``.venv/bin/python -m bench.feeds``) or by ``make bench``. It makes its own
database on the private cluster (or the server in JOINTGRID_BENCH_SERVER_URL / DATABASE_URL),
loads the demo and the incidents with COPY, measures, writes docs/performance.md (the Feeds
section) and drops the database. JOINTGRID_BENCH_FEED_ROWS changes the row count,
JOINTGRID_BENCH_FEED_REPEAT the number of rounds. Each round measures the three back to back;
the headline ratios are the medians of the rounds' paired ratios (the machine is shared, and
ratios taken within a round are what compare from run to run); the best of each is shown too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bench import _common as common
from gis.workflow import STATUSES

DB = "jointgrid_bench_feeds"
ROWS = int(os.environ.get("JOINTGRID_BENCH_FEED_ROWS", "200000"))
REPEAT = int(os.environ.get("JOINTGRID_BENCH_FEED_REPEAT", "5"))
LIMIT = 10_000
PUBLIC = (
    "id, code, status, category, severity, side, sides, cross_boundary, reasons, mechanism, "
    "lead_side, distance_to_border_m, grid_code, police_grid_code, occurred_at, reported_at, "
    "updated_at, due_at, escalation_level"
)
CEILING_SQL = (
    f"COPY (SELECT ST_AsGeoJSON(i.*) FROM (SELECT {PUBLIC}, geom FROM incidents) i) TO STDOUT"
)


def load_incidents(url: str, n: int) -> None:
    """``n`` synthetic incidents written in time order with COPY, placed in their grids."""
    import psycopg

    from api import settings
    from api.catalogue import load_catalogue

    cat = load_catalogue(settings.data().catalogue)
    categories = sorted(cat.categories)
    mechanisms = {c: cat.mechanism_for(c) for c in categories}
    statuses = [s for s in STATUSES if s not in ("rejected", "duplicate")]
    severities = sorted(cat.severities)
    rng = np.random.default_rng(20261127)
    lon = rng.uniform(105.10, 105.98, n)
    lat = rng.uniform(29.82, 30.56, n)
    cats = rng.integers(0, len(categories), n)
    stat = rng.integers(0, len(statuses), n)
    sev = rng.integers(0, len(severities), n)
    cross = rng.random(n) < 0.2
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(days=330) / n
    cols = (
        "id, code, side, sides, status, category, severity, description, occurred_at, reported_at,"
        " updated_at, cross_boundary, reasons, mechanism, lead_side, distance_to_border_m, geom,"
        " reporter, contacts"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY incidents ({cols}) FROM STDIN") as cp:
            for i in range(n):
                side = "510904" if lon[i] < 105.62 else "500152"
                reported = start + step * i
                category = categories[cats[i]]
                cp.write_row(
                    (
                        str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                        f"BENCH-{i:07d}",
                        side,
                        ["510904", "500152"] if cross[i] else [side],
                        statuses[stat[i]],
                        category,
                        severities[sev[i]],
                        "synthetic",
                        reported - timedelta(minutes=int(i % 360)),
                        reported,
                        reported + timedelta(minutes=int(i % 90)),
                        bool(cross[i]),
                        ["border_zone"] if cross[i] else [],
                        mechanisms[category] if cross[i] else None,
                        side,
                        float(i % 5000),
                        f"SRID=4326;POINT({lon[i]:.7f} {lat[i]:.7f})",
                        '{"name": "synthetic reporter", "phone": "000-0000-0000"}',
                        "[]",
                    )
                )
        conn.execute(
            "UPDATE incidents i SET grid_code = g.code FROM grids g"
            " WHERE i.code LIKE 'BENCH-%' AND ST_Intersects(g.geom, i.geom)"
        )
        conn.execute("VACUUM ANALYZE incidents")


class Client:
    """A keep-alive HTTP/1.1 client on the standard library's http.client: it moves a 6 MB
    body two to three times faster than httpx, whose own cost would otherwise be counted as
    the servers' (same client for both servers)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.conns: dict[str, http.client.HTTPConnection] = {}

    def get(self, url: str) -> bytes:
        u = urlsplit(url)
        target = u.path + ("?" + u.query if u.query else "")
        conn = self.conns.get(u.netloc)
        try:
            if conn is None:
                raise ConnectionError
            conn.request("GET", target, headers=self.headers)
            r = conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            # first use, or the server closed an idle keep-alive connection: reconnect once
            if conn is not None:
                conn.close()
            conn = self.conns[u.netloc] = http.client.HTTPConnection(u.netloc, timeout=600)
            conn.request("GET", target, headers=self.headers)
            r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{url} answered {r.status}: {body[:300]!r}")
        return body

    def close(self) -> None:
        for c in self.conns.values():
            c.close()


def page_through(client: Client, url: str | None) -> tuple[int, int, float]:
    """(features, bytes, seconds) following ``next`` links.

    The timed loop receives every byte of every page and finds the next link in the raw body,
    so it measures the servers and the transport, like the COPY ceiling it is compared with;
    every page is then parsed in full, untimed, to count the features.
    """
    import orjson

    bodies: list[bytes] = []
    t = time.perf_counter()
    while url:
        bodies.append(client.get(url))
        url = next_link(bodies[-1])
    seconds = time.perf_counter() - t
    n = 0
    for body in bodies:
        doc = orjson.loads(body)
        n += len(doc["features"])
        assert doc.get("numberReturned", len(doc["features"])) == len(doc["features"])
    return n, sum(len(b) for b in bodies), seconds


def next_link(body: bytes) -> str | None:
    """The href of the link with rel "next" in a FeatureCollection's raw bytes, or None."""
    import orjson

    for marker in (b'"rel":"next"', b'"rel": "next"'):
        at = body.find(marker)
        if at >= 0:
            start, end = body.rfind(b"{", 0, at), body.find(b"}", at)
            return str(orjson.loads(body[start : end + 1])["href"])
    return None


def postgres_url(conninfo: str) -> str:
    """A postgresql:// URL for a libpq conninfo (tipg takes only URLs)."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(conninfo)
    auth = quote(str(d.get("user", "")), safe="")
    if d.get("password"):
        auth += ":" + quote(str(d["password"]), safe="")
    return f"postgresql://{auth}@{d.get('host', '127.0.0.1')}:{d.get('port', 5432)}/{d['dbname']}"


def ceiling(url: str) -> tuple[int, int, float]:
    """The COPY ceiling, run by psql as the feeds issue defines it: the rows go to psql's
    standard output, a pipe that this process drains, counting lines and bytes."""
    import subprocess

    from psycopg.conninfo import conninfo_to_dict

    # the connection goes through the environment, so the password is not on a command line
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD"}
    params = conninfo_to_dict(url)
    env = {**os.environ, **{names[k]: str(v) for k, v in params.items() if k in names}}
    env["PGDATABASE"] = str(params["dbname"])
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "SET jit = off", "-c", CEILING_SQL]
    n = size = 0
    t = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        while block := proc.stdout.read(1 << 20):
            n += block.count(b"\n")
            size += len(block)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"psql exited with {proc.returncode} for the COPY ceiling")
    return n, size, seconds


def preload(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
    return str(row[0]) if row else ""


def versions(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        postgis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]  # type: ignore[index]
    out = {"PostgreSQL": pg, "PostGIS": postgis, "Python": platform.python_version()}
    for pkg in ("fastapi", "uvicorn", "psycopg", "tipg", "asyncpg"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}"


def main() -> None:
    if os.environ.get("DATABASE_URL") and not os.environ.get("JOINTGRID_BENCH_SERVER_URL"):
        os.environ["JOINTGRID_BENCH_SERVER_URL"] = os.environ["DATABASE_URL"]
    print(f"[feeds] creating {DB} and loading {ROWS:,} incidents", file=sys.stderr)
    url = common.create_db(DB)
    try:
        t = time.perf_counter()
        load_incidents(url, ROWS)
        load_s = time.perf_counter() - t
        results = run(url)
        results["load_s"] = round(load_s, 1)
        report(url, results)
    finally:
        common.drop_db(DB)


def run(url: str) -> dict[str, Any]:
    log_dir = common.ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    ours_port, tipg_port = common.free_port(), common.free_port()
    ours_env = {
        "DATABASE_URL": url,
        "JOINTGRID_ESCALATION_INTERVAL_S": "0",
        "JOINTGRID_PUBLIC_FEEDS": "true",
    }
    tipg_env = {
        "DATABASE_URL": postgres_url(url),
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": '["public.incidents"]',
        "TIPG_MAX_FEATURES_PER_QUERY": str(LIMIT),
    }
    ours_cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(ours_port)]
    tipg_cmd = [
        sys.executable, "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1",
        "--port", str(tipg_port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    ours_url = f"http://127.0.0.1:{ours_port}/ogc/collections/incidents/items?limit={LIMIT}"
    tipg_url = (
        f"http://127.0.0.1:{tipg_port}/collections/public.incidents/items?limit={LIMIT}"
        f"&geom-column=geom&properties={PUBLIC.replace(' ', '')}"
    )
    rounds: dict[str, list[tuple[int, int, float]]] = {"ours": [], "tipg": [], "copy": []}
    tipg_error = None
    headers = {"Accept-Encoding": "identity", "Accept": "application/geo+json"}
    with contextlib.ExitStack() as stack:
        stack.enter_context(common.serve(ours_cmd, ours_env, ours_port, log_dir / "feeds-ours.log"))
        client = Client(headers)
        stack.callback(client.close)
        try:
            stack.enter_context(
                common.serve(tipg_cmd, tipg_env, tipg_port, log_dir / "feeds-tipg.log")
            )
        except Exception as exc:  # tipg missing or failing to start: the report says so
            tipg_error = f"{type(exc).__name__}: {str(exc)[-300:]}"
        client.get(ours_url.replace(f"limit={LIMIT}", "limit=10"))  # warm up
        for k in range(REPEAT):
            print(f"[feeds] round {k + 1}/{REPEAT}", file=sys.stderr)
            rounds["copy"].append(ceiling(url))
            rounds["ours"].append(page_through(client, ours_url))
            if tipg_error is None:
                try:
                    rounds["tipg"].append(page_through(client, tipg_url))
                except Exception as exc:
                    tipg_error = f"{type(exc).__name__}: {str(exc)[-300:]}"
    return {
        "rounds": rounds,
        "tipg_error": tipg_error,
        "urls": {"ours": ours_url, "tipg": tipg_url},
    }


def _rate(r: tuple[int, int, float]) -> float:
    return r[0] / r[2]


def report(url: str, res: dict[str, Any]) -> None:
    rounds = res["rounds"]
    best = {k: max(v, key=_rate) for k, v in rounds.items() if v}
    rates = {k: _rate(v) for k, v in best.items()}
    med = {k: statistics.median(_rate(r) for r in v) for k, v in rounds.items() if v}
    rows = []
    for key, label in (
        ("ours", "JointGrid /ogc items"),
        ("tipg", "tipg items"),
        ("copy", "COPY ceiling"),
    ):
        if key not in best:
            continue
        n, size, secs = best[key]
        rows.append(
            {
                "what": label,
                "features": f"{n:,}",
                "MB": f"{size / 1e6:.1f}",
                "best s": f"{secs:.2f}",
                "best features/s": f"{rates[key]:,.0f}",
                "median features/s": f"{med[key]:,.0f}",
            }
        )

    def paired(other: str, label: str, target: str, show: Callable[[float], str]) -> str:
        """The ratio of ours to ``other``: the median of the rounds' paired ratios, each round,
        and best against best."""
        within = [_rate(o) / _rate(a) for o, a in zip(rounds["ours"], rounds[other], strict=False)]
        return (
            f"- ours / {label}: **{show(statistics.median(within))}**, the median of the rounds' "
            f"paired ratios (target ≥ {target}); round by round "
            f"{', '.join(show(r) for r in within)}; best against best "
            f"{show(rates['ours'] / rates[other])}"
        )

    ratios = []
    if "copy" in rates:
        ratios.append(paired("copy", "COPY ceiling", "60%", lambda r: f"{r:.0%}"))
    if "tipg" in rates:
        ratios.append(paired("tipg", "tipg", "10×", lambda r: f"{r:.1f}×"))
    else:
        ratios.append(f"- tipg could not be measured: {res['tipg_error']}")
    per_round = [
        f"{k + 1}: ours {_rate(rounds['ours'][k]):,.0f}/s, COPY {_rate(rounds['copy'][k]):,.0f}/s"
        + (f", tipg {_rate(rounds['tipg'][k]):,.0f}/s" if k < len(rounds["tipg"]) else "")
        for k in range(len(rounds["ours"]))
    ]
    load1 = os.getloadavg()[0]
    ver = versions(url)
    body = f"""
{ROWS:,} synthetic point incidents (loaded with COPY in {res["load_s"]} s), paged at
`limit={LIMIT}` with a keep-alive http.client (identity encoding; the timed loop receives every byte and finds
the `next` link in the raw body, then every page is parsed and counted untimed) against
uvicorn on 127.0.0.1, and the ceiling run by psql into a pipe; the same public columns and
geometry in all three. Best of {REPEAT}
rounds; each round measures the three back to back, and the ratios are taken within a round
(the machine is shared, so a fast round of one against a slow round of another says little).

{common.table(rows, ["what", "features", "MB", "best s", "best features/s", "median features/s"])}

{chr(10).join(ratios)}

Rounds: {"; ".join(per_round)}.

- Machine: {machine()}; load average {load1:.1f} at the end (the machine is shared).
- Versions: {", ".join(f"{k} {v}" for k, v in ver.items())}.
- PostgreSQL `shared_preload_libraries`: `{preload(url) or "(none)"}`.
- Requests: ours `{res["urls"]["ours"].split("?", 1)[1]}`; tipg `{res["urls"]["tipg"].split("?", 1)[1][:80]}…`.
"""
    common.write_section("feeds", "Feeds benchmark (bench/feeds.py)", body)
    print(body)


if __name__ == "__main__":
    main()
