"""Reliability under load, retries, a killed server, a database outage and racing escalators.

Every test runs real uvicorn servers (``jointgrid serve``) on 127.0.0.1 against its own
throwaway database: a copy of one migrated and loaded template on the test server, or, for the
outage, a whole throwaway cluster (tests/scratch_cluster.py) that the test stops and starts.
Every loop is bounded in count and in time. Each test writes its figures to
``var/test-artifacts/reliability.json`` (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
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
from psycopg.rows import dict_row

from tests import scratch_cluster as sc
from tests.geo import ANJU, TONGNAN, point_inside

pytestmark = pytest.mark.postgis

CATEGORIES = ("land_dispute", "theft", "river_pollution", "fire", "neighbor_dispute", "flood")
SEVERITIES = ("red", "orange", "yellow", "blue")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> Iterator[tuple[str, str]]:
    """One migrated and loaded database on the test server, copied for each test."""
    server = sc.require_server_url()
    name = f"jointgrid_rel_tpl_{uuid.uuid4().hex[:8]}"
    sc.fresh_database(server, name)
    try:
        yield server, name
    finally:
        sc.drop_database(server, name)


@pytest.fixture()
def fresh_db(template: tuple[str, str]) -> Iterator[str]:
    """A database of this test's own, loaded like the template; dropped afterwards."""
    server, tpl = template
    name = f"jointgrid_rel_{uuid.uuid4().hex[:8]}"
    url = sc.create_database(server, name, template=tpl)
    try:
        yield url
    finally:
        sc.drop_database(server, name)


@pytest.fixture(scope="module")
def places() -> list[tuple[float, float]]:
    """WGS84 points on both sides, 150 m to 3 km from the line, spread along it."""
    out = []
    for side, metres, fraction in itertools.product(
        (ANJU, TONGNAN), (150, 900, 1800, 3000), (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)
    ):
        with contextlib.suppress(AssertionError):  # the line bends: not every spot exists
            out.append(point_inside(side, metres, fraction))
    assert len(out) >= 20
    return out


# -- helpers ----------------------------------------------------------------------------------


def owner_conn(url: str) -> psycopg.Connection[Any]:
    """A connection as the database owner (not the app role), for checks and fault setup."""
    return psycopg.connect(url, row_factory=dict_row, autocommit=True)  # type: ignore[arg-type]


def report_body(i: int, places: list[tuple[float, float]], rng: random.Random) -> dict[str, Any]:
    lon, lat = places[i % len(places)]
    # about 50 m of scatter, so that reports are not all stacked on a few points
    return {
        "lon": round(lon + rng.uniform(-0.0005, 0.0005), 7),
        "lat": round(lat + rng.uniform(-0.0005, 0.0005), 7),
        "category": CATEGORIES[i % len(CATEGORIES)],
        "severity": SEVERITIES[i % len(SEVERITIES)],
        "description": f"reliability report {i}",
    }


def stored(url: str, key_id: str) -> dict[str, dict[str, Any]]:
    """Cases reported with this API key, by client idempotency key (the part after the id)."""
    with owner_conn(url) as c:
        rows = c.execute(
            "SELECT i.id::text AS id, i.idempotency_key AS key, i.escalation_level,"
            " (SELECT count(*) FROM incident_events e"
            "   WHERE e.incident_id = i.id AND e.action = 'report') AS report_events"
            " FROM incidents i WHERE i.reporter->>'key_id' = %s",
            (key_id,),
        ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        client_key = r["key"].split(":", 1)[1]
        assert client_key not in out, f"two cases for one idempotency key {client_key}"
        out[client_key] = r
    assert len(out) == len(rows)
    return out


def is_contract_error(resp: httpx.Response) -> bool:
    try:
        body = resp.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and {"code", "message", "detail"} <= set(body)
        and isinstance(body["code"], str)
        and isinstance(body["message"], str)
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 4)

    return {
        "p50_s": at(0.50),
        "p95_s": at(0.95),
        "p99_s": at(0.99),
        "max_s": round(ordered[-1], 4),
        "mean_s": round(statistics.fmean(ordered), 4),
    }


@dataclass
class Ledger:
    """What the clients sent and what came back."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    ids: dict[str, set[str]] = field(default_factory=dict)  # key -> ids seen in 2xx answers
    created: Counter[str] = field(default_factory=Counter)  # key -> 201s seen
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)  # by exception class

    def note(self, key: str, resp: httpx.Response, latency: float) -> None:
        self.statuses[resp.status_code] += 1
        self.latencies.append(latency)
        if resp.status_code in (200, 201):
            self.ids.setdefault(key, set()).add(resp.json()["id"])
            if resp.status_code == 201:
                self.created[key] += 1
        elif resp.status_code != 503:
            self.problems.append(f"{key}: {resp.status_code} {resp.text[:300]}")
        if resp.status_code >= 400 and not is_contract_error(resp):
            self.problems.append(f"{key}: error body off contract: {resp.text[:300]}")


async def post_report(
    client: httpx.AsyncClient,
    ledger: Ledger,
    key: str,
    body: dict[str, Any],
    *,
    timeout: float = 30.0,
) -> httpx.Response | None:
    """One POST; None when no answer came (a timeout or a dropped connection)."""
    ledger.sent += 1
    t0 = time.monotonic()
    try:
        resp = await client.post(
            "/api/v1/incidents", json=body, headers={"Idempotency-Key": key}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        ledger.transport_errors[type(exc).__name__] += 1
        return None
    ledger.note(key, resp, time.monotonic() - t0)
    return resp


async def deliver(
    client: httpx.AsyncClient,
    ledger: Ledger,
    key: str,
    body: dict[str, Any],
    *,
    attempts: int = 6,
) -> httpx.Response | None:
    """Send until an answer other than 503 arrives, as a well-behaved client would (bounded)."""
    for attempt in range(attempts):
        if attempt:
            ledger.retries["until_answered"] += 1
        resp = await post_report(client, ledger, key, body)
        if resp is None:
            await asyncio.sleep(0.2)
            continue
        if resp.status_code == 503:
            await asyncio.sleep(min(float(resp.headers.get("Retry-After", "1")), 1.0))
            continue
        return resp
    ledger.problems.append(f"{key}: no answer after {attempts} attempts")
    return None


async def report_many(
    base: str, token: str, places: list[tuple[float, float]], n: int, *, concurrency: int = 8
) -> list[str]:
    """Report ``n`` cases (8 at a time); return their ids."""
    rng = random.Random(f"many-{n}")
    sem = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, i: int) -> str:
        async with sem:
            r = await client.post(
                "/api/v1/incidents",
                json=report_body(i, places, rng),
                headers={"Idempotency-Key": f"many-{i}"},
            )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async with httpx.AsyncClient(base_url=base, headers=sc.bearer(token), timeout=30) as client:
        return list(
            await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(n))), 120)
        )


def check_against_store(ledger: Ledger, rows: dict[str, dict[str, Any]]) -> None:
    """Every id the clients were given is the stored case of that key, and no key has two."""
    for key, ids in ledger.ids.items():
        assert len(ids) == 1, f"{key} was answered with different cases: {ids}"
        assert key in rows, f"{key} was acknowledged but is not stored"
        assert rows[key]["id"] == next(iter(ids)), f"{key}: answer and store disagree"
    for key, n in ledger.created.items():
        assert n <= 1, f"{key} was answered 201 (created) {n} times"
    for key, r in rows.items():
        assert r["report_events"] == 1, f"{key}: {r['report_events']} 'report' events"


def record(section: str, figures: dict[str, Any]) -> None:
    sc.record_figures(section, figures)
    print(f"\n[reliability] {section}: {json.dumps(figures, sort_keys=True)}")


# -- 1. load with retries ---------------------------------------------------------------------

LOAD_REPORTS = 2000
LOAD_CLIENTS = 64
LOAD_DEADLINE_S = 180.0
P_GIVE_UP_EARLY = 0.05  # the client times out before the answer and retries with the same key
P_DOUBLE_TAP = 0.03  # two copies of the same report in flight at once
P_RESEND = 0.10  # the same report sent again after it was acknowledged


def test_load_with_retries_makes_each_report_exactly_once(
    fresh_db: str, places: list[tuple[float, float]], tmp_path: Path
) -> None:
    token, key_id = sc.make_key(fresh_db, role="grid_worker", side=ANJU, name="load test")
    ledger = Ledger()
    next_report = itertools.count()
    run = uuid.uuid4().hex[:8]

    async def one_client(client: httpx.AsyncClient, cid: int) -> None:
        rng = random.Random(f"load-{cid}")
        while (i := next(next_report)) < LOAD_REPORTS:
            key = f"load-{run}-{i:05d}"
            body = report_body(i, places, rng)
            roll = rng.random()
            if roll < P_GIVE_UP_EARLY:
                ledger.retries["after_client_timeout"] += 1
                first = await post_report(
                    client, ledger, key, body, timeout=rng.uniform(0.005, 0.08)
                )
                if first is None:
                    ledger.retries["client_timeouts"] += 1
                await deliver(client, ledger, key, body)
            elif roll < P_GIVE_UP_EARLY + P_DOUBLE_TAP:
                ledger.retries["double_tap"] += 1
                await asyncio.gather(
                    deliver(client, ledger, key, body), deliver(client, ledger, key, body)
                )
            else:
                await deliver(client, ledger, key, body)
            if rng.random() < P_RESEND:
                ledger.retries["resend_after_ack"] += 1
                again = await deliver(client, ledger, key, body)
                if again is not None and again.status_code != 200:
                    ledger.problems.append(f"{key}: resend answered {again.status_code}")

    async def main(base: str) -> float:
        limits = httpx.Limits(
            max_connections=2 * LOAD_CLIENTS, max_keepalive_connections=LOAD_CLIENTS
        )
        async with httpx.AsyncClient(
            base_url=base, headers=sc.bearer(token), limits=limits
        ) as client:
            t0 = time.monotonic()
            await asyncio.wait_for(
                asyncio.gather(*(one_client(client, c) for c in range(LOAD_CLIENTS))),
                timeout=LOAD_DEADLINE_S,
            )
            return time.monotonic() - t0

    with sc.ServerProcess(fresh_db, tmp_path / "server.log") as server:
        server.start()
        elapsed = asyncio.run(main(server.base))
        health = httpx.get(f"{server.base}/healthz", timeout=5)
        assert health.status_code == 200, "the server is unwell after the load"

    rows = stored(fresh_db, key_id)
    figures = {
        "reports": LOAD_REPORTS,
        "clients": LOAD_CLIENTS,
        "requests_sent": ledger.sent,
        "retries": dict(ledger.retries),
        "retries_total": ledger.sent - LOAD_REPORTS,
        "statuses": {str(k): v for k, v in sorted(ledger.statuses.items())},
        "unanswered_requests": dict(ledger.transport_errors),
        "cases_stored": len(rows),
        "elapsed_s": round(elapsed, 2),
        "reports_per_s": round(LOAD_REPORTS / elapsed, 1),
        "requests_per_s": round(ledger.sent / elapsed, 1),
        "latency": percentiles(ledger.latencies),
    }
    record("load", figures)
    assert not ledger.problems, ledger.problems[:10]
    assert not [s for s in ledger.statuses if s >= 500], figures["statuses"]
    assert len(rows) == LOAD_REPORTS, f"{len(rows)} cases stored for {LOAD_REPORTS} reports"
    assert len(ledger.ids) == LOAD_REPORTS, "some reports were never acknowledged"
    check_against_store(ledger, rows)


# -- 2. kill -9 the server part-way -----------------------------------------------------------

CRASH_REPORTS = 300
CRASH_CLIENTS = 16
CRASH_KILLS_AT = (70, 160)  # acknowledged reports so far when each SIGKILL is sent


def test_kill_9_loses_no_acknowledged_report(
    fresh_db: str, places: list[tuple[float, float]], tmp_path: Path
) -> None:
    token, key_id = sc.make_key(fresh_db, role="grid_worker", side=TONGNAN, name="crash test")
    run = uuid.uuid4().hex[:8]
    rng = random.Random("crash")
    bodies = {f"crash-{run}-{i:04d}": report_body(i, places, rng) for i in range(CRASH_REPORTS)}
    server = sc.ServerProcess(fresh_db, tmp_path / "server.log")
    acked: dict[str, str] = {}  # key -> case id, from a 2xx answer
    ledgers: list[Ledger] = []
    pending = list(bodies)
    in_flight: list[int] = []
    restarts: list[float] = []
    committed_unacked: set[str] = set()  # stored by a life that died before it answered

    async def life(kill_at: int) -> Ledger:
        """Send reports until ``kill_at`` are acknowledged, then kill -9 the server."""
        ledger = Ledger()
        unanswered: list[str] = []
        killed = False

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal killed
            while pending and not killed:
                key = pending.pop(0)
                resp = await post_report(client, ledger, key, bodies[key], timeout=20)
                if resp is not None and resp.status_code in (200, 201):
                    acked[key] = resp.json()["id"]
                else:
                    unanswered.append(key)
                if len(acked) >= kill_at and not killed:
                    killed = True
                    server.kill()  # with about CRASH_CLIENTS reports still in flight

        async with httpx.AsyncClient(base_url=server.base, headers=sc.bearer(token)) as client:
            await asyncio.wait_for(
                asyncio.gather(*(worker(client) for _ in range(CRASH_CLIENTS))), timeout=120
            )
        assert killed, "the server was never killed"
        in_flight.append(len(unanswered))
        pending[:0] = unanswered  # a client resends what was never answered, same key
        return ledger

    async def last_life() -> Ledger:
        """Deliver everything still unacknowledged, and resend some acknowledged reports."""
        ledger = Ledger()
        sem = asyncio.Semaphore(CRASH_CLIENTS)

        async def again(key: str) -> None:
            async with sem:
                resp = await deliver(client, ledger, key, bodies[key])
                if resp is not None and resp.status_code in (200, 201):
                    acked[key] = resp.json()["id"]

        async with httpx.AsyncClient(base_url=server.base, headers=sc.bearer(token)) as client:
            await asyncio.wait_for(
                asyncio.gather(*(again(k) for k in pending + resend_acked)), timeout=120
            )
        return ledger

    try:
        for kill_at in CRASH_KILLS_AT:
            restarts.append(server.start())
            ledgers.append(asyncio.run(life(kill_at)))
            # Commit happens before the answer: with the server dead, every acknowledged case
            # is already in the database (an open transaction would have died with the server).
            rows = stored(fresh_db, key_id)
            missing = [k for k, case_id in acked.items() if rows.get(k, {}).get("id") != case_id]
            assert not missing, f"acknowledged but not committed: {missing[:5]}"
            committed_unacked |= set(rows) - set(acked)
        restarts.append(server.start())
        resend_acked = rng.sample(sorted(acked), 25)
        resent = len(pending)
        final = asyncio.run(last_life())
        ledgers.append(final)
    finally:
        server.stop()

    rows = stored(fresh_db, key_id)
    merged = Ledger()
    for ledger in ledgers:
        for key, ids in ledger.ids.items():
            merged.ids.setdefault(key, set()).update(ids)
        merged.created.update(ledger.created)
        merged.problems += ledger.problems
        merged.statuses.update(ledger.statuses)
    figures = {
        "reports": CRASH_REPORTS,
        "clients": CRASH_CLIENTS,
        "faults_injected": f"{len(CRASH_KILLS_AT)} x SIGKILL of the server",
        "kills_at_acknowledged": list(CRASH_KILLS_AT),
        "in_flight_at_each_kill": in_flight,
        "committed_but_unacknowledged": len(committed_unacked),
        "requests_sent": sum(ledger.sent for ledger in ledgers),
        "resent_after_last_restart": resent,
        "acknowledged_resent_as_check": len(resend_acked),
        "restart_to_healthy_s": [round(s, 2) for s in restarts],
        "statuses": {str(k): v for k, v in sorted(merged.statuses.items())},
        "cases_stored": len(rows),
        "cases_lost": len([k for k in acked if k not in rows]),
        "cases_duplicated": 0,  # stored() fails on two cases for one key
    }
    record("crash", figures)
    assert not merged.problems, merged.problems[:10]
    assert set(rows) == set(bodies), "a report is missing or extra after the restarts"
    assert set(acked) == set(bodies), "a report was never acknowledged"
    for key in resend_acked:
        assert final.ids.get(key) == {acked[key]} and not final.created[key], key
    for key in committed_unacked:
        # stored by a killed server before it could answer: a resend replays it (200)
        assert not merged.created[key] and merged.ids.get(key) == {rows[key]["id"]}, key
    check_against_store(merged, rows)


# -- 3. database outage -----------------------------------------------------------------------

OUTAGE_CLIENTS = 4
OUTAGE_HEALTHY_S = 2.0
OUTAGE_DOWN_S = 6.0
OUTAGE_RECOVERY_BOUND_S = 30.0
OUTAGE_CONNECT_TIMEOUT_S = 2  # JOINTGRID_DB_CONNECT_TIMEOUT_S for the server under test
OUTAGE_LATENCY_BOUND_S = 10.0  # no request may hang longer than this while the database is down


@dataclass
class Sample:
    kind: str
    key: str | None
    sent: float
    answered: float
    status: int | None
    retry_after: str | None = None
    contract_body: bool = True
    body: Any = None


def test_database_outage_answers_503_and_recovers_without_restart(
    places: list[tuple[float, float]], tmp_path: Path
) -> None:
    sc.require_server_url()  # the scratch cluster needs the same PostgreSQL + PostGIS install
    with sc.ScratchCluster() as cluster:
        cluster.start()
        url = cluster.create_database("jointgrid")
        env = {**os.environ, "DATABASE_URL": url}
        for cmd in ("migrate", "seed"):
            out = subprocess.run(
                [sys.executable, "-m", "api.cli", cmd],
                env=env,
                cwd=sc.ROOT,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert out.returncode == 0, f"jointgrid {cmd} failed: {out.stderr}"
        token, key_id = sc.make_key(url, role="grid_worker", side=ANJU, name="outage test")
        server = sc.ServerProcess(
            url,
            tmp_path / "server.log",
            env={"JOINTGRID_DB_CONNECT_TIMEOUT_S": str(OUTAGE_CONNECT_TIMEOUT_S)},
        )
        samples: list[Sample] = []
        marks: dict[str, float] = {}
        bodies: dict[str, dict[str, Any]] = {}
        run = uuid.uuid4().hex[:8]
        counter = itertools.count()

        async def client_loop(client: httpx.AsyncClient, cid: int, stop: asyncio.Event) -> None:
            rng = random.Random(f"outage-{cid}")
            while not stop.is_set():
                i = next(counter)
                if i % 3 == 2:
                    lon, lat = places[i % len(places)]
                    kind, key = "locate", None
                    req = client.build_request(
                        "GET", "/api/v1/locate", params={"lon": lon, "lat": lat}
                    )
                else:
                    kind, key = "report", f"outage-{run}-{i:05d}"
                    bodies[key] = report_body(i, places, rng)
                    req = client.build_request(
                        "POST",
                        "/api/v1/incidents",
                        json=bodies[key],
                        headers={"Idempotency-Key": key},
                    )
                t0 = time.monotonic()
                try:
                    resp = await client.send(req)
                except httpx.HTTPError as exc:
                    samples.append(Sample(kind, key, t0, time.monotonic(), None, body=repr(exc)))
                    continue
                samples.append(
                    Sample(
                        kind,
                        key,
                        t0,
                        time.monotonic(),
                        resp.status_code,
                        resp.headers.get("Retry-After"),
                        resp.status_code < 400 or is_contract_error(resp),
                        resp.json() if resp.status_code in (200, 201) else resp.text[:300],
                    )
                )
                await asyncio.sleep(0.05)

        async def health_loop(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    resp = await client.get("/healthz")
                    samples.append(
                        Sample(
                            "healthz",
                            None,
                            t0,
                            time.monotonic(),
                            resp.status_code,
                            resp.headers.get("Retry-After"),
                            True,
                            resp.json(),
                        )
                    )
                except httpx.HTTPError as exc:
                    samples.append(
                        Sample("healthz", None, t0, time.monotonic(), None, body=repr(exc))
                    )
                await asyncio.sleep(0.25)

        def recovered_since(t: float) -> bool:
            return any(
                s.kind == "report" and s.sent >= t and s.status in (200, 201) for s in samples
            ) and any(s.kind == "healthz" and s.sent >= t and s.status == 200 for s in samples)

        async def scenario() -> None:
            stop = asyncio.Event()
            timeout = httpx.Timeout(OUTAGE_LATENCY_BOUND_S + 5)
            async with httpx.AsyncClient(
                base_url=server.base, headers=sc.bearer(token), timeout=timeout
            ) as client:
                tasks = [
                    asyncio.create_task(client_loop(client, c, stop)) for c in range(OUTAGE_CLIENTS)
                ]
                tasks.append(asyncio.create_task(health_loop(client, stop)))
                try:
                    await asyncio.sleep(OUTAGE_HEALTHY_S)
                    marks["stop_begin"] = time.monotonic()
                    await asyncio.to_thread(cluster.stop, mode="fast")
                    marks["stop_end"] = time.monotonic()
                    await asyncio.sleep(OUTAGE_DOWN_S)
                    marks["start_begin"] = time.monotonic()
                    await asyncio.to_thread(cluster.start)
                    marks["start_end"] = time.monotonic()
                    deadline = marks["start_end"] + OUTAGE_RECOVERY_BOUND_S
                    while time.monotonic() < deadline and not recovered_since(marks["start_end"]):
                        await asyncio.sleep(0.1)
                    marks["recovered"] = time.monotonic()
                    await asyncio.sleep(OUTAGE_HEALTHY_S)
                finally:
                    stop.set()
                    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

        try:
            server.start()
            asyncio.run(scenario())
            assert recovered_since(marks["start_end"]), (
                f"no successful report within {OUTAGE_RECOVERY_BOUND_S} s of the restart:\n"
                + server.tail()
            )
            # A client that got 503 retries with the same key once the database is back.
            after = Ledger()
            answered_503 = sorted({s.key for s in samples if s.key and s.status == 503})

            async def resend() -> None:
                async with httpx.AsyncClient(
                    base_url=server.base, headers=sc.bearer(token), timeout=30
                ) as client:
                    for key in answered_503:
                        await deliver(client, after, key, bodies[key])

            asyncio.run(resend())
            server_pid_unchanged = server.starts == 1 and server.proc is not None
            assert server_pid_unchanged and server.proc.poll() is None, "the server died"
        finally:
            server.stop()
        rows = stored(url, key_id)

    down = [
        s
        for s in samples
        if s.sent >= marks["stop_end"] + 0.5 and s.answered <= marks["start_begin"]
    ]
    down_api = [s for s in down if s.kind != "healthz"]
    acked = {s.key: s.body["id"] for s in samples if s.key and s.status in (200, 201)}
    acked.update({k: next(iter(v)) for k, v in after.ids.items()})
    statuses = Counter(str(s.status) for s in samples)
    figures = {
        "faults_injected": "pg_ctl stop -m fast, then pg_ctl start on the same port",
        "clients": OUTAGE_CLIENTS,
        "connect_timeout_s": OUTAGE_CONNECT_TIMEOUT_S,
        "requests": len([s for s in samples if s.kind != "healthz"]),
        "healthz_polls": len([s for s in samples if s.kind == "healthz"]),
        "statuses": dict(sorted(statuses.items())),
        "stop_took_s": round(marks["stop_end"] - marks["stop_begin"], 2),
        "down_for_s": round(marks["start_begin"] - marks["stop_end"], 2),
        "requests_while_down": len(down_api),
        "latency_while_down": percentiles([s.answered - s.sent for s in down_api]),
        "recovery_after_start_s": round(marks["recovered"] - marks["start_end"], 2),
        "reports_acknowledged": len(acked),
        "answered_503_then_resent": len(answered_503),
        "resends_that_found_a_committed_case": sum(
            1 for k in answered_503 if k in after.ids and not after.created[k]
        ),
        "cases_stored": len(rows),
        "cases_lost": len([k for k in acked if k not in rows]),
        "server_restarts": 0,
    }
    record("outage", figures)

    assert not [s for s in samples if s.status is None], "a request hung or lost its connection"
    assert not [s for s in samples if s.status and s.status >= 500 and s.status != 503], statuses
    assert not [s for s in samples if s.kind != "healthz" and s.status not in (200, 201, 503)]
    for s in samples:
        if s.status == 503:
            assert s.retry_after, f"a 503 without Retry-After: {s}"
            if s.kind != "healthz":
                assert s.contract_body and '"database_unavailable"' in s.body, s.body
    assert down_api, "no request was sent while the database was down"
    assert all(s.status == 503 for s in down_api), Counter(s.status for s in down_api)
    assert max(s.answered - s.sent for s in down_api) <= OUTAGE_LATENCY_BOUND_S
    down_health = [s for s in down if s.kind == "healthz"]
    assert down_health and all(
        s.status == 503 and s.body.get("database") == "unreachable" for s in down_health
    ), [s.body for s in down_health][:3]
    assert not after.problems, after.problems[:10]
    assert not figures["cases_lost"], "an acknowledged report was lost"
    for key, case_id in acked.items():
        assert rows[key]["id"] == case_id
    assert set(rows) == set(acked), "a stored case was never acknowledged, even on retry"


# -- 4. two servers escalating at once --------------------------------------------------------

ESCALATION_CASES = 40
ESCALATION_ROUNDS = 2
ESCALATION_SETTLE_S = 2.0  # after every case has climbed: about 4 more passes per server


def test_two_servers_escalate_each_overdue_case_exactly_once(
    fresh_db: str, places: list[tuple[float, float]], tmp_path: Path
) -> None:
    token, _ = sc.make_key(fresh_db, role="grid_worker", side=ANJU, name="escalation test")
    env = {"JOINTGRID_ESCALATION_INTERVAL_S": "0.5"}
    servers = [
        sc.ServerProcess(fresh_db, tmp_path / f"server-{n}.log", env=env) for n in ("a", "b")
    ]
    rounds: list[dict[str, Any]] = []
    try:
        for s in servers:
            s.launch()
        for s in servers:
            s.wait_healthy()
        ids = asyncio.run(report_many(servers[0].base, token, places, ESCALATION_CASES))
        with owner_conn(fresh_db) as db:
            for level in range(1, ESCALATION_ROUNDS + 1):
                t0 = time.monotonic()
                db.execute(
                    "UPDATE incidents SET due_at = now() - interval '1 hour'"
                    " WHERE id = ANY(%s::uuid[])",
                    (ids,),
                )
                deadline = t0 + 20
                while time.monotonic() < deadline:
                    row = db.execute(
                        "SELECT count(*) AS n FROM incidents"
                        " WHERE id = ANY(%s::uuid[]) AND escalation_level >= %s",
                        (ids, level),
                    ).fetchone()
                    if row and row["n"] == len(ids):
                        break
                    time.sleep(0.1)
                climbed_s = time.monotonic() - t0
                time.sleep(ESCALATION_SETTLE_S)
                levels = Counter(
                    r["escalation_level"]
                    for r in db.execute(
                        "SELECT escalation_level FROM incidents WHERE id = ANY(%s::uuid[])",
                        (ids,),
                    )
                )
                events = Counter(
                    r["n"]
                    for r in db.execute(
                        "SELECT i.id, count(e.id) AS n FROM incidents i"
                        " LEFT JOIN incident_events e"
                        "   ON e.incident_id = i.id AND e.action = 'escalate'"
                        " WHERE i.id = ANY(%s::uuid[]) GROUP BY i.id",
                        (ids,),
                    )
                )
                rounds.append(
                    {
                        "level": level,
                        "all_climbed_within_s": round(climbed_s, 2),
                        "levels": {str(k): v for k, v in levels.items()},
                        "escalate_events_per_case": {str(k): v for k, v in events.items()},
                    }
                )
                assert levels == {level: len(ids)}, rounds[-1]
                assert events == {level: len(ids)}, rounds[-1]
        for s in servers:
            assert s.proc is not None and s.proc.poll() is None, s.tail()
    finally:
        sc.ServerProcess.stop_all(servers)
    record(
        "escalation_race",
        {
            "servers": len(servers),
            "interval_s": 0.5,
            "cases": ESCALATION_CASES,
            "rounds": rounds,
            "escalations_total": ESCALATION_CASES * ESCALATION_ROUNDS,
            "double_escalations": 0,
        },
    )
