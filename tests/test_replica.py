"""A replicated cluster (pg_auto_failover) under load: losing the primary's machine, the old
primary's return and a switchover back, and feeds read from the standby during ingestion.

One cluster for the module, built by ``scripts/pgcluster.sh ha start`` on 127.0.0.1 in a
folder of its own: a monitor, a primary and a synchronous standby. The monitor's timings are
those of the tests (below), chosen so that a whole node's loss costs about 10 s; their cost in
false failovers is in docs/reliability.md. Servers are real ``jointgrid serve`` processes on the
cluster's multi-host URL. Every loop is bounded. Figures go to
``var/test-artifacts/reliability.json`` (docs/reliability.md, "A replicated cluster").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests import scratch_cluster as sc
from tests.geo import ANJU, TONGNAN, point_inside

pytestmark = [pytest.mark.postgis, pytest.mark.replica, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pgcluster.sh"

# The monitor's and keepers' timings for these tests (pg_auto_failover's defaults: 5 s checks,
# 20 s before a silent node is unhealthy, 30 s demote timeout).
HA_TIMINGS = {
    "JOINTGRID_HA_HEALTH_CHECK_PERIOD_MS": "1000",
    "JOINTGRID_HA_HEALTH_CHECK_TIMEOUT_MS": "1000",
    "JOINTGRID_HA_HEALTH_CHECK_MAX_RETRIES": "1",
    "JOINTGRID_HA_HEALTH_CHECK_RETRY_DELAY_MS": "500",
    "JOINTGRID_HA_UNHEALTHY_TIMEOUT_MS": "3000",
    "JOINTGRID_HA_DEMOTE_TIMEOUT_MS": "5000",
    "JOINTGRID_HA_NETWORK_PARTITION_TIMEOUT_S": "3",
    "JOINTGRID_HA_SHARED_BUFFERS": "64MB",
}
# JOINTGRID_TEST_HA_TIMINGS=defaults measures `ha start`'s own defaults instead (slower).
if os.environ.get("JOINTGRID_TEST_HA_TIMINGS") == "defaults":
    HA_TIMINGS = {"JOINTGRID_HA_SHARED_BUFFERS": "64MB"}
WRITE_GAP_GOAL_S = 30.0

CATEGORIES = ("land_dispute", "theft", "river_pollution", "fire", "neighbor_dispute", "flood")
SEVERITIES = ("red", "orange", "yellow", "blue")


def record(section: str, figures: dict[str, Any]) -> None:
    figures = {**figures, "load_average": os.getloadavg()[0]}
    sc.record_figures(section, figures)
    print(f"\n[replica] {section}: {json.dumps(figures, sort_keys=True)}")


# -- the cluster ------------------------------------------------------------------------------


class Cluster:
    """The module's replicated cluster, driven through scripts/pgcluster.sh."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {**os.environ, **HA_TIMINGS, "JOINTGRID_HA_DIR": str(folder)}
        for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"):
            self.env.pop(var, None)

    def ha(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            [str(SCRIPT), "ha", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pgcluster.sh ha {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    @property
    def url(self) -> str:
        return (self.folder / "url").read_text().strip()

    def state(self) -> list[dict[str, Any]]:
        return list(json.loads(self.ha("state", timeout=30)))

    def states(self) -> dict[str, str]:
        return {n["nodename"]: n["current_group_state"] for n in self.state()}

    def primary(self) -> str:
        names = [k for k, v in self.states().items() if v in ("primary", "wait_primary", "single")]
        assert len(names) == 1, self.states()
        return names[0]

    def node_url(self, name: str) -> str:
        """The owner's URL on one node alone."""
        port = next(str(n["nodeport"]) for n in self.state() if n["nodename"] == name)
        params = conninfo_to_dict(self.url)
        params.update(host="127.0.0.1", port=port, target_session_attrs="any")
        return make_conninfo(**params)  # type: ignore[arg-type]

    def wait_states(self, want: dict[str, str], *, timeout: float = 120) -> float:
        t0 = time.monotonic()
        got: dict[str, str] = {}
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(RuntimeError, ValueError):
                got = self.states()
                if got == want:
                    return time.monotonic() - t0
            time.sleep(0.5)
        raise AssertionError(f"states {got} did not become {want} in {timeout} s")

    def wait_pair(self, *, timeout: float = 120) -> float:
        """Until one node is primary and the other secondary."""
        t0 = time.monotonic()
        got: dict[str, str] = {}
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(RuntimeError, ValueError):
                got = self.states()
                if sorted(got.values()) == ["primary", "secondary"]:
                    return time.monotonic() - t0
            time.sleep(0.5)
        raise AssertionError(f"states {got} did not become a primary and a secondary")

    def node_pids(self, name: str) -> set[int]:
        """Every process of a node: its pg_autoctl processes, postmaster and backends."""
        pgdata = str(self.folder / name)
        procs: dict[int, tuple[int, str]] = {}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            procs[int(p.name)] = (ppid, cmd)
        doomed = {
            pid
            for pid, (_pp, cmd) in procs.items()
            if f"--pgdata {pgdata}" in cmd or f"-D {pgdata}" in cmd
        }
        grew = True
        while grew:
            grew = False
            for pid, (pp, _c) in procs.items():
                if pp in doomed and pid not in doomed:
                    doomed.add(pid)
                    grew = True
        return doomed

    def cpu_s(self, name: str) -> float:
        """CPU seconds used so far by a node's live processes (user + system)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.node_pids(name):
            with contextlib.suppress(OSError, ValueError, IndexError):
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / tick
        return total

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL, at once, every process of a node: its pg_autoctl processes, its postmaster
        and the postmaster's children, as when its machine dies."""
        doomed = self.node_pids(name)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return sorted(doomed)


def _folder() -> Path:
    if os.geteuid() == 0:
        # the postgres user must reach it: not under root's 0700 home, nor a private /tmp
        parent = Path("/var/lib/jointgrid")
        parent.mkdir(parents=True, exist_ok=True)
        parent.chmod(0o755)
        return parent / f"hatest-{uuid.uuid4().hex[:10]}"
    return Path(tempfile.mkdtemp(prefix="jointgrid-ha-")) / "ha"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not shutil.which("pg_autoctl"):
        pytest.fail("pg_autoctl is not installed: run `make test` (scripts/setup.sh test)")
    c = Cluster(_folder())
    t0 = time.monotonic()
    try:
        c.ha("start", timeout=400)
        built_s = time.monotonic() - t0
        sc.migrate_and_seed(c.url)
        record("replica_cluster", {"build_s": round(built_s, 1), "states": c.states()})
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.ha("destroy", timeout=120)
        shutil.rmtree(c.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ha_server(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sc.ServerProcess]:
    """One server on the cluster's URL for the whole module: it lives through the failover and
    the switchover without a restart."""
    with server_for(cluster.url, tmp_path_factory.mktemp("ha") / "server.log") as server:
        server.start(timeout=240)
        yield server


@pytest.fixture(scope="module")
def places() -> list[tuple[float, float]]:
    out = []
    for side, metres, fraction in itertools.product(
        (ANJU, TONGNAN), (150, 900, 1800), (0.1, 0.3, 0.5, 0.7, 0.9)
    ):
        with contextlib.suppress(AssertionError):
            out.append(point_inside(side, metres, fraction))
    assert len(out) >= 10
    return out


def server_for(url: str, log: Path, **env: str) -> sc.ServerProcess:
    return sc.ServerProcess(
        url,
        log,
        env={
            "JOINTGRID_PUSH_INTERVAL_S": "0",
            "JOINTGRID_AUDIT_CHECKPOINT_INTERVAL_S": "0",
            "JOINTGRID_DB_CONNECT_TIMEOUT_S": "2",
            "JOINTGRID_DB_READ_CHECK_INTERVAL_S": "0.5",
            **env,
        },
    )


# -- reporters ---------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What the reporters and readers sent and got."""

    statuses: Counter[int] = field(default_factory=Counter)
    reads: Counter[int] = field(default_factory=Counter)
    read_log: list[tuple[float, int]] = field(default_factory=list)  # (answered at, status)
    acked: dict[str, str] = field(default_factory=dict)  # idempotency key -> case id
    created: Counter[str] = field(default_factory=Counter)
    ack_times: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unanswered: int = 0
    retry_after_missing: int = 0

    def gap_window(self, t: float) -> tuple[float, float]:
        """The longest time without an acknowledged write from ``t - 1 s`` on: (start, end)."""
        times = sorted(x for x in self.ack_times if x >= t - 1.0)
        return max(itertools.pairwise(times), key=lambda ab: ab[1] - ab[0], default=(t, t))

    def gap_after(self, t: float) -> float:
        a, b = self.gap_window(t)
        return b - a


async def reporter(
    client: httpx.AsyncClient,
    traffic: Traffic,
    cid: int,
    places: list[tuple[float, float]],
    stop: asyncio.Event,
    *,
    rate_s: float = 0.1,
) -> None:
    """Reports at a steady pace; each one is sent until answered, with the same key."""
    rng = random.Random(cid)
    for i in itertools.count():
        if stop.is_set():
            return
        key = f"ha-{cid}-{i}"
        lon, lat = places[(cid + i) % len(places)]
        body = {
            "lon": round(lon + rng.uniform(-0.0005, 0.0005), 7),
            "lat": round(lat + rng.uniform(-0.0005, 0.0005), 7),
            "category": CATEGORIES[i % len(CATEGORIES)],
            "severity": SEVERITIES[i % len(SEVERITIES)],
            "description": f"replica report {cid}/{i}",
        }
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                r = await client.post(
                    "/api/v1/incidents", json=body, headers={"Idempotency-Key": key}, timeout=15
                )
            except httpx.HTTPError:
                traffic.unanswered += 1
                await asyncio.sleep(0.3)
                continue
            traffic.statuses[r.status_code] += 1
            if r.status_code in (200, 201):
                cid_ = r.json()["id"]
                if traffic.acked.setdefault(key, cid_) != cid_:
                    traffic.problems.append(f"{key}: two ids {traffic.acked[key]} {cid_}")
                if r.status_code == 201:
                    traffic.created[key] += 1
                traffic.ack_times.append(time.monotonic())
                break
            if r.status_code == 503:
                if "retry-after" not in r.headers:
                    traffic.retry_after_missing += 1
                await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 0.5))
                continue
            traffic.problems.append(f"{key}: {r.status_code} {r.text[:200]}")
            break
        else:
            traffic.problems.append(f"{key}: no acknowledgement in 90 s")
        await asyncio.sleep(rate_s)


async def reader(
    client: httpx.AsyncClient, traffic: Traffic, stop: asyncio.Event, path: str
) -> None:
    while not stop.is_set():
        try:
            r = await client.get(path, timeout=15)
            traffic.reads[r.status_code] += 1
            traffic.read_log.append((time.monotonic(), r.status_code))
            if r.status_code >= 500 and r.status_code != 503:
                traffic.problems.append(f"read {path}: {r.status_code} {r.text[:200]}")
        except httpx.HTTPError:
            traffic.reads[0] += 1
        await asyncio.sleep(0.05)


def stored_cases(url: str, key_id: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(
            "SELECT idempotency_key, id::text FROM incidents WHERE reporter->>'key_id' = %s",
            (key_id,),
        ).fetchall()
    out: dict[str, str] = {}
    for key, id_ in rows:
        client_key = key.split(":", 1)[1]
        assert client_key not in out, f"two cases for one idempotency key {client_key}"
        out[client_key] = id_
    return out


def check_store(traffic: Traffic, rows: dict[str, str]) -> dict[str, int]:
    lost = [k for k in traffic.acked if k not in rows]
    wrong = [k for k, v in traffic.acked.items() if k in rows and rows[k] != v]
    twice = [k for k, n in traffic.created.items() if n > 1]
    assert not lost, f"{len(lost)} acknowledged reports are not stored: {lost[:5]}"
    assert not wrong, f"answers and store disagree: {wrong[:5]}"
    assert not twice, f"created twice: {twice[:5]}"
    return {"acknowledged": len(traffic.acked), "stored": len(rows), "lost": 0, "twice": 0}


async def traffic_while(
    base: str,
    token: str,
    places: list[tuple[float, float]],
    action: Any,
    *,
    clients: int = 6,
    after_s: float = 4.0,
    settle_acks: int = 30,
    read_path: str | None = None,
) -> tuple[Traffic, float, Any]:
    """Reporters (and a reader) run; ``action()`` runs in a thread after ``after_s``; the
    traffic goes on until ``settle_acks`` more reports are acknowledged after it returns."""
    traffic = Traffic()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=4 * clients)
    async with httpx.AsyncClient(base_url=base, headers=sc.bearer(token), limits=limits) as client:
        tasks = [
            asyncio.create_task(reporter(client, traffic, c, places, stop)) for c in range(clients)
        ]
        if read_path:
            tasks.append(asyncio.create_task(reader(client, traffic, stop, read_path)))
        await asyncio.sleep(after_s)
        assert traffic.ack_times, "no report was acknowledged before the fault"
        t_action = time.monotonic()
        result = await asyncio.to_thread(action)
        n = len(traffic.acked)
        deadline = time.monotonic() + 120
        while len(traffic.acked) < n + settle_acks and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return traffic, t_action, result


# -- 1. the primary's machine dies -----------------------------------------------------------


def test_losing_the_primary_machine_loses_no_acknowledged_report(
    cluster: Cluster, ha_server: sc.ServerProcess, places: list[tuple[float, float]]
) -> None:
    token, key_id = sc.make_key(cluster.url, role="grid_worker", side=ANJU, name="ha failover")
    reader_token, _ = sc.make_key(cluster.url, role="admin", name="ha reader")
    old = cluster.primary()
    assert cluster.states() == {"node1": "primary", "node2": "secondary"} or old == "node2"
    new = "node2" if old == "node1" else "node1"
    server = ha_server
    health = httpx.get(f"{server.base}/healthz", timeout=5).json()
    assert health["pools"]["write"]["role"] == "primary"
    assert [n["in_read_pool"] for n in health["pools"]["read"]].count(True) == 1, health

    promoted: dict[str, float] = {}

    def kill_and_wait() -> list[int]:
        killed = cluster.kill_node(old)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90:
            with contextlib.suppress(RuntimeError, ValueError):
                if cluster.states().get(new) in ("wait_primary", "primary"):
                    promoted["s"] = time.monotonic() - t0
                    break
            time.sleep(0.25)
        return killed

    async def main() -> tuple[Traffic, float, Any]:
        # the reader reads with its own key, a feed served from the standby
        async with httpx.AsyncClient(base_url=server.base, headers=sc.bearer(reader_token)) as rc:
            rtraffic = Traffic()
            rstop = asyncio.Event()
            rtask = asyncio.create_task(
                reader(rc, rtraffic, rstop, "/ogc/collections/incidents/items?limit=20")
            )
            out = await traffic_while(server.base, token, places, kill_and_wait)
            rstop.set()
            await rtask
            out[0].reads.update(rtraffic.reads)
            out[0].read_log.extend(rtraffic.read_log)
            out[0].problems.extend(rtraffic.problems)
        return out

    traffic, t_kill, killed = asyncio.run(main())
    after = httpx.get(f"{server.base}/healthz", timeout=5).json()
    assert killed, "no process of the primary's node was found"
    window = traffic.gap_window(t_kill)
    gap = window[1] - window[0]
    rows = stored_cases(cluster.url, key_id)
    figures = {
        **check_store(traffic, rows),
        "killed_processes": len(killed),
        "promoted_after_s": round(promoted.get("s", -1), 1),
        "time_without_writes_s": round(gap, 1),
        "goal_s": WRITE_GAP_GOAL_S,
        "statuses": {str(k): v for k, v in sorted(traffic.statuses.items())},
        "reads": {str(k): v for k, v in sorted(traffic.reads.items())},
        # the feed's answers while no write was acknowledged
        "reads_without_writes": dict(
            Counter(str(st) for at, st in traffic.read_log if window[0] < at < window[1])
        ),
        "unanswered": traffic.unanswered,
        "timings": HA_TIMINGS,
        "write_pool_after": after["pools"]["write"],
    }
    record("replica_failover", figures)
    assert not traffic.problems, traffic.problems[:10]
    assert not [s for s in traffic.statuses if s >= 500 and s != 503], figures["statuses"]
    assert traffic.retry_after_missing == 0, "a 503 without Retry-After"
    assert not [s for s in traffic.reads if s >= 500 and s != 503], figures["reads"]
    assert figures["reads_without_writes"].get("200", 0) > 0, (
        f"the feed was not read from the standby while writes were stopped: {figures['reads']}"
    )
    assert after["pools"]["write"]["role"] == "primary"
    assert gap <= WRITE_GAP_GOAL_S, f"{gap:.1f} s without writes (goal {WRITE_GAP_GOAL_S} s)"


# -- 2. the old primary comes back, and a switchover under load moves the primary back -------


def test_old_primary_rejoins_and_a_switchover_under_load_loses_nothing(
    cluster: Cluster, ha_server: sc.ServerProcess, places: list[tuple[float, float]]
) -> None:
    t_rejoin = time.monotonic()
    cluster.ha("start", timeout=300)  # starts a dead node's pg_autoctl again; waits for both
    rejoin_s = time.monotonic() - t_rejoin
    cluster.wait_pair()
    before = cluster.primary()
    token, key_id = sc.make_key(cluster.url, role="grid_worker", side=TONGNAN, name="ha switch")

    def switchover() -> float:
        t0 = time.monotonic()
        cluster.ha("switchover", timeout=180)
        return time.monotonic() - t0

    traffic, t_switch, took = asyncio.run(traffic_while(ha_server.base, token, places, switchover))
    after = cluster.primary()
    rows = stored_cases(cluster.url, key_id)
    gap = traffic.gap_after(t_switch)
    figures = {
        **check_store(traffic, rows),
        "rejoin_s": round(rejoin_s, 1),
        "switchover_s": round(took, 1),
        "time_without_writes_s": round(gap, 1),
        "primary_before": before,
        "primary_after": after,
        "statuses": {str(k): v for k, v in sorted(traffic.statuses.items())},
        "unanswered": traffic.unanswered,
    }
    record("replica_switchover", figures)
    assert after != before, "the switchover did not move the primary"
    assert not traffic.problems, traffic.problems[:10]
    assert not [s for s in traffic.statuses if s >= 500 and s != 503], figures["statuses"]
    assert traffic.retry_after_missing == 0, "a 503 without Retry-After"


# -- 3. feeds from the standby during ingestion ----------------------------------------------


def test_feeds_read_from_the_standby_during_ingestion(
    cluster: Cluster,
    ha_server: sc.ServerProcess,
    places: list[tuple[float, float]],
    tmp_path: Path,
) -> None:
    cluster.wait_pair()
    primary = cluster.primary()
    token, _ = sc.make_key(cluster.url, role="grid_worker", side=ANJU, name="ha ingest")
    reader_token, _ = sc.make_key(cluster.url, role="admin", name="ha feed reader")
    feed = "/ogc/collections/incidents/items?limit=100"
    phase_s = 8.0
    figures: dict[str, Any] = {"phase_s": phase_s}

    standby = "node2" if primary == "node1" else "node1"

    async def phase(base: str, label: str) -> None:
        cpu0 = {n: cluster.cpu_s(n) for n in (primary, standby)}
        lags: list[float] = []
        done = Counter[int]()
        stop = asyncio.Event()
        ingest = Traffic()
        async with (
            httpx.AsyncClient(base_url=base, headers=sc.bearer(token)) as wc,
            httpx.AsyncClient(base_url=base, headers=sc.bearer(reader_token)) as rc,
        ):

            async def feed_reader() -> None:
                while not stop.is_set():
                    r = await rc.get(feed, timeout=30)
                    done[r.status_code] += 1

            async def lag_sampler() -> None:
                while not stop.is_set():
                    h = (await rc.get("/healthz", timeout=10)).json()
                    for n in h["pools"].get("read", []):
                        if n["role"] == "standby" and n["lag_s"] is not None:
                            lags.append(n["lag_s"])
                    await asyncio.sleep(0.5)

            tasks = [
                asyncio.create_task(reporter(wc, ingest, c, places, stop, rate_s=0.02))
                for c in range(4)
            ]
            tasks += [asyncio.create_task(feed_reader()) for _ in range(4)]
            tasks.append(asyncio.create_task(lag_sampler()))
            await asyncio.sleep(phase_s)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert not ingest.problems, ingest.problems[:5]
        assert set(done) == {200}, done
        figures[label] = {
            "feed_requests_per_s": round(done[200] / phase_s, 1),
            "reports_per_s": round(len(ingest.acked) / phase_s, 1),
            "standby_lag_s_max": round(max(lags), 3) if lags else None,
            "standby_lag_s_median": round(sorted(lags)[len(lags) // 2], 3) if lags else None,
            "cpu_s_primary": round(cluster.cpu_s(primary) - cpu0[primary], 1),
            "cpu_s_standby": round(cluster.cpu_s(standby) - cpu0[standby], 1),
        }

    on_standby = ha_server
    with server_for(cluster.node_url(primary), tmp_path / "primary.log") as on_primary:
        on_primary.start(timeout=240)
        # After the switchover of the test before, the standby re-enters the read pool once the
        # replica check (every second) finds it caught up: wait for that, within bounds.
        deadline = time.monotonic() + 60
        while True:
            h = httpx.get(f"{on_standby.base}/healthz", timeout=5).json()
            if any(n["in_read_pool"] and n["role"] == "standby" for n in h["pools"]["read"]):
                break
            assert time.monotonic() < deadline, h
            time.sleep(1)
        assert "read" not in httpx.get(f"{on_primary.base}/healthz", timeout=5).json()["pools"]
        asyncio.run(phase(on_standby.base, "from_standby"))
        asyncio.run(phase(on_primary.base, "from_primary"))
    a, b = figures["from_standby"], figures["from_primary"]
    figures["feed_ratio_standby_over_primary"] = round(
        a["feed_requests_per_s"] / max(b["feed_requests_per_s"], 0.1), 2
    )
    figures["reports_ratio_standby_over_primary"] = round(
        a["reports_per_s"] / max(b["reports_per_s"], 0.1), 2
    )
    record("replica_standby_reads", figures)
    assert a["standby_lag_s_max"] is not None, "the standby's lag was never measured"
