"""Push on real PostGIS: the outbox written with each event, signed webhooks to a local
receiver, the retry schedule on a controllable clock, address safety, apprise notifications.

The module keeps a database of its own: its subscriptions are committed (the worker reads them
on other connections), and no other test's server may deliver them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql as q
from psycopg.rows import dict_row

from api.usecases import webhooks
from api.usecases.cases import escalate_overdue, report, transition
from api.usecases.deliver import SCHEDULE, Deliverer
from api.usecases.schemas import ReportIn, TransitionIn
from gis.errors import InvalidInput
from layers import outbox
from tests.conftest import _server_url, _with_db, serving
from tests.geo import ANJU, TONGNAN, point_inside
from tests.push_receiver import Receiver

ACTOR = {"kind": "key", "key_id": None, "role": "admin", "side": None, "team": None}


@pytest.fixture(scope="module")
def push_db() -> Iterator[str]:
    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases.loading import seed
    from layers.db import connect, migrate

    server = _server_url()
    name = f"jointgrid_push_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(_with_db(server, "postgres"), autocommit=True)
    admin.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
    url = _with_db(server, name)
    try:
        with connect(url) as c:
            c.autocommit = True
            migrate(c)
            c.autocommit = False
            seed(
                c,
                settings.data().boundary_dir,
                catalogue=load_catalogue(settings.data().catalogue),
            )
            c.commit()
        yield url
    finally:
        admin.execute(q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(name)))
        admin.close()


@pytest.fixture()
def db(push_db: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection; every subscription, channel and delivery is gone afterwards."""
    with psycopg.connect(push_db, row_factory=dict_row, autocommit=True) as c:  # type: ignore[arg-type]
        yield c
        c.execute("DELETE FROM outbox")
        c.execute("DELETE FROM webhook_subscriptions")
        c.execute("DELETE FROM notify_channels")


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def new_case(
    conn: Any,
    catalogue: Any,
    side: str = ANJU,
    fraction: float = 0.35,
    metres: float = 300,
    **kw: Any,
) -> dict[str, Any]:
    lon, lat = point_inside(side, metres, fraction)
    body = ReportIn(lon=lon, lat=lat, category=kw.pop("category", "land_dispute"), **kw)
    case, _ = report(conn, body, catalogue, idempotency_key=None, actor=ACTOR)
    return case


def move(
    conn: Any, catalogue: Any, case: dict[str, Any], action: str, side: str | None = None
) -> dict[str, Any]:
    return transition(
        conn,
        case["id"],
        TransitionIn(action=action, side=side or case["lead_side"]),
        catalogue,
        actor=ACTOR,
    )


def subscribe(conn: Any, receiver: Receiver, events: str = "*", **kw: Any) -> dict[str, Any]:
    sub = webhooks.add(conn, url=receiver.url + "/hook", events=events, allow_private=True, **kw)
    receiver.secrets.append(sub["secret"])
    return sub


def drain(conn: Any, d: Deliverer, now: datetime, rounds: int = 200) -> int:
    n = 0
    for _ in range(rounds):
        s = d.deliver_once(conn, now=now)
        n += s.claimed
        if not s.claimed:
            break
    return n


def rows(conn: Any, **where: Any) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = %({k})s" for k in where) or "true"
    return conn.execute(f"SELECT * FROM outbox WHERE {clause} ORDER BY id", where).fetchall()


# -- the outbox --------------------------------------------------------------------------------


def test_a_rolled_back_event_has_no_deliveries_and_a_committed_one_has_one_per_subscription(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    everything = subscribe(db, receiver)
    anju_only = subscribe(db, receiver, side=ANJU)
    tongnan_only = subscribe(db, receiver, side=TONGNAN)
    dispatch_only = subscribe(db, receiver, events="dispatched")
    other_category = subscribe(db, receiver, category="fire")

    with pytest.raises(RuntimeError), db.transaction():
        gone = new_case(db, catalogue, fraction=0.2)
        raise RuntimeError("roll back")
    assert (
        db.execute(
            "SELECT count(*) AS n FROM outbox WHERE incident_id = %s", (gone["id"],)
        ).fetchone()["n"]
        == 0
    )

    case = new_case(db, catalogue, fraction=0.5, metres=3000)  # an Anju-only case
    assert case["sides"] == [ANJU]
    case = move(db, catalogue, case, "accept")
    case = move(db, catalogue, case, "dispatch")
    got = rows(db, incident_id=case["id"])
    by_target: dict[str, list[str]] = {}
    for r in got:
        by_target.setdefault(r["target"], []).append(r["event_type"])
    assert by_target[everything["id"]] == [
        "incident.reported",
        "incident.accepted",
        "incident.dispatched",
    ]
    assert by_target[anju_only["id"]] == by_target[everything["id"]]
    assert by_target[dispatch_only["id"]] == ["incident.dispatched"]
    assert tongnan_only["id"] not in by_target and other_category["id"] not in by_target
    assert all(r["status"] == "pending" and r["kind"] == "webhook" for r in got)


def test_a_statement_of_many_events_fans_out_in_one_go(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    cases = [new_case(db, catalogue, fraction=0.2 + i * 0.01) for i in range(5)]
    sub = subscribe(db, receiver, events="rerouted")
    # the re-route's bulk INSERT ... SELECT of events, in miniature
    db.execute(
        "INSERT INTO incident_events (incident_id, side, seq, action, from_status, to_status, payload)"
        " SELECT i.id, i.side, 2, 'reroute', i.status, i.status, '{}' FROM incidents i"
        " WHERE i.id = ANY (%s::uuid[])",
        ([c["id"] for c in cases],),
    )
    got = rows(db, target=sub["id"])
    assert sorted(r["incident_id"] for r in got) == sorted(uuid.UUID(c["id"]) for c in cases)
    assert {r["event_type"] for r in got} == {"incident.rerouted"}


def test_overdue_is_emitted_once_per_case_and_due_time(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, events="overdue,escalated")
    case = new_case(db, catalogue, fraction=0.4, parties_sides=[ANJU, TONGNAN])
    case = move(db, catalogue, case, "accept")
    case = move(db, catalogue, case, "dispatch")
    due = datetime.fromisoformat(case["due_at"])
    later = due + timedelta(minutes=1)
    escalate_overdue(db, catalogue, now=later)
    escalate_overdue(db, catalogue, now=later)  # a second pass adds nothing
    events = [r["event_type"] for r in rows(db, target=sub["id"], incident_id=case["id"])]
    assert events == ["incident.overdue", "incident.escalated"]
    trail = db.execute(
        "SELECT action, payload FROM incident_events WHERE incident_id = %s AND action = 'overdue'",
        (case["id"],),
    ).fetchall()
    assert len(trail) == 1 and datetime.fromisoformat(trail[0]["payload"]["due_at"]) == due


# -- webhooks ----------------------------------------------------------------------------------


def test_deliveries_are_signed_ordered_and_recorded(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, role="feed", full=True)
    case = new_case(
        db,
        catalogue,
        fraction=0.33,
        description="邻居占地",
        reporter={"name": "张三", "phone": "13800000000"},
    )
    for a in ("accept", "dispatch", "start"):
        case = move(db, catalogue, case, a)
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        now = datetime.now(UTC)
        drain(db, d, now)
    finally:
        d.close()
    assert receiver.bad_signatures == 0
    got = [p for _, p in receiver.order]
    assert [p["type"] for p in got] == [
        "incident.reported",
        "incident.accepted",
        "incident.dispatched",
        "incident.started",
    ]
    assert [p["data"]["seq"] for p in got] == [1, 2, 3, 4]
    data = got[-1]["data"]
    assert data["code"] == case["code"] and data["status"] == "in_progress"
    assert (
        data["sides"] == case["sides"]
        and "mechanism" in data
        and data["link"].endswith(case["code"])
    )
    full = data["case"]  # a feed subscription never receives the reporter or contacts
    assert "reporter" not in full and "contacts" not in full and "description" not in full
    assert "13800000000" not in str(got) and "张三" not in str(got)
    assert all(
        r["status"] == "delivered" and r["attempts"] == 1 for r in rows(db, target=sub["id"])
    )
    assert set(receiver.accepted) == {f"msg_{r['id']}" for r in rows(db, target=sub["id"])}


def test_an_operator_subscription_gets_the_contacts(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    subscribe(db, receiver, role="operator", side=ANJU, full=True, events="reported")
    case = new_case(db, catalogue, fraction=0.36)
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    ((_, p),) = receiver.order
    assert p["data"]["case"]["contacts"] == case["contacts"]


def test_a_rotated_secret_signs_with_both_for_the_grace_period(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, events="reported")
    old = sub["secret"]
    new = webhooks.rotate(db, sub["id"], grace=timedelta(hours=1))
    receiver.secrets = [new]  # a receiver that already knows only the new secret
    new_case(db, catalogue, fraction=0.37)
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        drain(db, d, datetime.now(UTC))
        assert receiver.bad_signatures == 0 and len(receiver.accepted) == 1
        assert len(receiver.signatures[-1].split(" ")) == 2
        receiver.secrets = [old]  # and one that still knows only the old one
        new_case(db, catalogue, fraction=0.38)
        drain(db, d, datetime.now(UTC))
        assert receiver.bad_signatures == 0 and len(receiver.accepted) == 2
        db.execute("UPDATE webhook_subscriptions SET old_secret_until = now() - interval '1 s'")
        new_case(db, catalogue, fraction=0.39)
        drain(db, d, datetime.now(UTC))  # the grace is over: the old secret no longer signs
        assert receiver.bad_signatures == 1 and len(receiver.signatures[-1].split(" ")) == 1
    finally:
        d.close()


def test_retries_follow_the_schedule_and_the_answers(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, events="reported")
    d = Deliverer(catalogue=catalogue, timeout_s=0.5, seed=1)
    try:
        now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
        case = new_case(db, catalogue, fraction=0.41)
        (row,) = rows(db, target=sub["id"])
        db.execute("UPDATE outbox SET next_at = %s", (now,))

        receiver.mode = "fail"  # 503: retried after about 5 s
        d.deliver_once(db, now=now)
        (r,) = rows(db, id=row["id"])
        assert r["status"] == "failed" and r["attempts"] == 1 and r["last_status"] == 503
        assert timedelta(seconds=4.5) <= r["next_at"] - now <= timedelta(seconds=5.5)
        assert d.deliver_once(db, now=now + timedelta(seconds=2)).claimed == 0  # not yet due

        receiver.mode = "timeout"  # a timeout: retried after about 5 min
        now = r["next_at"]
        d.deliver_once(db, now=now)
        (r,) = rows(db, id=row["id"])
        assert r["status"] == "failed" and r["attempts"] == 2 and "timeout" in r["last_error"]
        assert timedelta(minutes=4.5) <= r["next_at"] - now <= timedelta(minutes=5.5)

        receiver.mode, receiver.retry_after = "throttle", "777"  # 429 with Retry-After
        now = r["next_at"]
        d.deliver_once(db, now=now)
        (r,) = rows(db, id=row["id"])
        assert r["last_status"] == 429 and r["next_at"] - now == timedelta(seconds=777)

        receiver.mode = "fail"  # until the schedule runs out: dead
        for _ in range(len(SCHEDULE)):
            now = r["next_at"]
            d.deliver_once(db, now=now)
            (r,) = rows(db, id=row["id"])
        assert r["status"] == "dead" and r["attempts"] == len(SCHEDULE) + 1
        assert "exhausted" in r["last_error"]
        assert case["code"]  # the case itself is untouched by its deliveries
    finally:
        d.close()


def test_410_disables_other_4xx_is_dead_and_dead_releases_the_next(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    gone = subscribe(db, receiver, events="reported,accepted")
    d = Deliverer(catalogue=catalogue, timeout_s=1)
    try:
        case = new_case(db, catalogue, fraction=0.42)
        move(db, catalogue, case, "accept")
        receiver.mode = "gone"
        drain(db, d, datetime.now(UTC))
        first, second = rows(db, target=gone["id"])
        assert first["status"] == "dead" and first["last_status"] == 410
        assert second["status"] == "pending"  # waits: the subscription is disabled
        (s,) = [x for x in outbox.subscriptions(db) if x["id"] == gone["id"]]
        assert not s["enabled"] and "410" in s["disabled_reason"]

        bad = subscribe(db, receiver, events="reported,accepted")
        receiver.mode = "ok"
        case2 = new_case(db, catalogue, fraction=0.43)
        move(db, catalogue, case2, "accept")
        # the receiver rejects the first as 400 (an unknown signature), then accepts the next
        receiver.secrets.remove(bad["secret"])
        d.deliver_once(db, now=datetime.now(UTC))
        receiver.secrets.append(bad["secret"])
        drain(db, d, datetime.now(UTC))
        a, b = rows(db, target=bad["id"])
        assert a["status"] == "dead" and a["last_status"] == 400 and a["attempts"] == 1
        assert b["status"] == "delivered"  # the dead one released the next of its case
    finally:
        d.close()


def test_one_destination_failing_never_marks_another_done(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    other = Receiver().start()
    try:
        up = subscribe(db, receiver, events="reported")
        down = webhooks.add(db, url=other.url + "/hook", events="reported", allow_private=True)
        other.stop()  # stays down
        new_case(db, catalogue, fraction=0.44)
        d = Deliverer(catalogue=catalogue, timeout_s=1)
        try:
            drain(db, d, datetime.now(UTC))
        finally:
            d.close()
        (u,) = rows(db, target=up["id"])
        (w,) = rows(db, target=down["id"])
        assert u["status"] == "delivered"
        assert w["status"] == "failed" and "connection" in w["last_error"] and w["attempts"] == 1
    finally:
        other.stop()


@pytest.mark.parametrize(
    ("address", "allow", "refused"),
    [
        ("169.254.169.254", True, "metadata"),
        ("100.100.100.200", True, "metadata"),
        ("fe80::1", True, "link-local"),
        ("127.0.0.1", False, "loopback or private"),
        ("10.1.2.3", False, "loopback or private"),
        ("::ffff:192.168.1.1", False, "loopback or private"),
    ],
)
def test_unsafe_addresses_are_refused_before_any_attempt(
    db: Any, catalogue: Any, receiver: Receiver, address: str, allow: bool, refused: str
) -> None:
    from api.usecases.deliver import Refused, pin

    with pytest.raises(Refused, match=refused):
        pin("https://hooks.example/x", allow_private=allow, resolver=lambda h, p: [address])
    sub = webhooks.add(db, url="https://hooks.example/x", events="reported", allow_private=allow)
    new_case(db, catalogue, fraction=0.45)
    d = Deliverer(catalogue=catalogue, resolver=lambda h, p: [address])
    try:
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    (r,) = rows(db, target=sub["id"])
    assert r["status"] == "dead" and refused in r["last_error"] and r["last_status"] is None
    assert receiver.requests == 0


def test_a_pinned_request_keeps_the_name_in_host(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    from api.usecases.deliver import pin

    t = pin(
        f"http://hooks.example:{receiver.port}/p?q=1",
        allow_private=True,
        resolver=lambda h, p: ["127.0.0.1"],
    )
    assert (
        t.url == f"http://127.0.0.1:{receiver.port}/p?q=1"
        and t.host_header == f"hooks.example:{receiver.port}"
    )
    s = pin("https://hooks.example/p", allow_private=False, resolver=lambda h, p: ["93.184.216.34"])
    assert s.url == "https://93.184.216.34/p" and s.sni == "hooks.example"


def test_the_request_goes_to_the_checked_address_under_its_name(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    # hooks.example resolves nowhere: only the checked (pinned) address can reach the receiver
    sub = webhooks.add(
        db, url=f"http://hooks.example:{receiver.port}/hook", events="reported", allow_private=True
    )
    receiver.secrets.append(sub["secret"])
    new_case(db, catalogue, fraction=0.53)
    d = Deliverer(catalogue=catalogue, timeout_s=2, resolver=lambda h, p: ["127.0.0.1"])
    try:
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    assert len(receiver.accepted) == 1 and receiver.hosts == [f"hooks.example:{receiver.port}"]


def test_adding_a_metadata_url_is_refused(db: Any) -> None:
    with pytest.raises(InvalidInput, match="metadata"):
        webhooks.add(db, url="http://169.254.169.254/latest", events="reported", allow_private=True)
    with pytest.raises(InvalidInput, match="unknown event"):
        webhooks.add(db, url="http://127.0.0.1:9/x", events="exploded", allow_private=True)


def test_replay_sends_the_dead_again_under_the_same_id(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, events="reported")
    receiver.mode = "gone"
    new_case(db, catalogue, fraction=0.46)
    d = Deliverer(catalogue=catalogue, timeout_s=1)
    try:
        drain(db, d, datetime.now(UTC))
        (r,) = rows(db, target=sub["id"])
        assert r["status"] == "dead"
        db.execute("UPDATE webhook_subscriptions SET enabled = true")
        receiver.mode = "ok"
        assert (
            outbox.replay(db, since=datetime.now(UTC) - timedelta(hours=1), now=datetime.now(UTC))
            == 1
        )
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    (r,) = rows(db, target=sub["id"])
    assert r["status"] == "delivered" and list(receiver.accepted) == [f"msg_{r['id']}"]


# -- a thousand cases, a receiver down for an hour -------------------------------------------------


def test_every_event_of_1000_cases_arrives_once_and_in_order_after_an_hour_down(
    db: Any, catalogue: Any
) -> None:
    receiver = Receiver()  # not started: down
    receiver.start()
    port = receiver.port
    receiver.stop()
    sub = webhooks.add(db, url=f"http://127.0.0.1:{port}/hook", events="*", allow_private=True)
    receiver.secrets.append(sub["secret"])
    case_ids = []
    for i in range(1000):
        c = new_case(db, catalogue, side=ANJU if i % 2 else TONGNAN, fraction=0.2 + (i % 40) / 100)
        c = move(db, catalogue, c, "accept")
        if i % 3 == 0:
            c = move(db, catalogue, c, "dispatch")
        case_ids.append(c["id"])
    expected = rows(db, target=sub["id"])
    assert len(expected) == 1000 * 2 + 334
    t0 = datetime.now(UTC)
    db.execute("UPDATE outbox SET next_at = %s", (t0,))
    d = Deliverer(catalogue=catalogue, timeout_s=0.3, concurrency=32, batch=500, seed=2)
    try:
        now = t0
        while now < t0 + timedelta(hours=1):  # the receiver is down: every attempt fails
            drain(db, d, now)
            # the clock jumps to when every open delivery is due (the jitter spreads them)
            now = db.execute(
                "SELECT max(next_at) AS t FROM outbox WHERE status IN ('pending', 'failed')"
            ).fetchone()["t"]
        assert rows(db, status="delivered") == []
        assert now - t0 > timedelta(hours=1)
        receiver.port = port
        receiver.start()
        # a few are processed but answered too late: the worker retries, the receiver drops them
        receiver.sleep_s = 0.6
        receiver.slow_once = {f"msg_{r['id']}" for r in expected[::97]}
        while True:
            drain(db, d, now)
            left = db.execute(
                "SELECT max(next_at) AS t, count(*) AS n FROM outbox"
                " WHERE status IN ('pending', 'failed')"
            ).fetchone()
            if left["n"] == 0:
                break
            now = max(left["t"], now)
            assert now < t0 + timedelta(days=3)
    finally:
        d.close()
        receiver.stop()
    assert receiver.bad_signatures == 0
    assert len(receiver.accepted) == len(expected)
    assert set(receiver.accepted) == {f"msg_{r['id']}" for r in expected}
    assert receiver.duplicates == len(expected[::97]) > 0
    seqs: dict[str, list[int]] = {}
    for _, p in receiver.order:
        seqs.setdefault(p["data"]["id"], []).append(p["data"]["seq"])
    assert set(seqs) == set(case_ids)
    assert all(s == sorted(s) and s == list(range(1, len(s) + 1)) for s in seqs.values())
    assert all(r["status"] == "delivered" for r in rows(db, target=sub["id"]))


# -- notifications through apprise ------------------------------------------------------------


def test_dispatch_notifies_the_lead_team_and_each_side_through_apprise(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    case = new_case(db, catalogue, fraction=0.5, parties_sides=[ANJU, TONGNAN])
    lead = next(t for t in case["teams"] if t.get("lead"))
    team_ch = webhooks.add_channel(
        db, url=f"json://127.0.0.1:{receiver.port}/apprise/team", team=lead["code"]
    )
    side_ch = webhooks.add_channel(
        db, url=f"json://127.0.0.1:{receiver.port}/apprise/side", side=TONGNAN
    )
    role = case["contacts"][0]
    role_ch = webhooks.add_channel(
        db,
        url=f"json://127.0.0.1:{receiver.port}/apprise/role",
        side=role["side"],
        role=role["role"],
    )
    other_team = webhooks.add_channel(
        db, url=f"json://127.0.0.1:{receiver.port}/apprise/x", team="NOPE"
    )
    case = move(db, catalogue, case, "accept")
    assert rows(db, kind="notify") == []  # acceptance notifies nobody
    case = move(db, catalogue, case, "dispatch")
    targets = {r["target"] for r in rows(db, kind="notify")}
    assert (
        targets == {team_ch["id"], side_ch["id"], role_ch["id"]} and other_team["id"] not in targets
    )
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        receiver.mode = "fail"  # apprise reports failure: retried on the schedule
        now = datetime.now(UTC)
        drain(db, d, now)
        assert {r["status"] for r in rows(db, kind="notify")} == {"failed"}
        receiver.mode = "ok"
        drain(db, d, now + timedelta(seconds=6))
    finally:
        d.close()
    assert {r["status"] for r in rows(db, kind="notify")} == {"delivered"}
    msgs = [n for n in receiver.notifications]
    assert len(msgs) == 6  # three failed, three delivered
    assert all("案件已派遣" in m["title"] and case["code"] in m["title"] for m in msgs)
    assert "潼南区" in msgs[-1]["message"] and "办理期限" in msgs[-1]["message"]
    shown = outbox.deliveries_for_case(db, case["code"])
    notes = [s for s in shown if s["kind"] == "notify"]
    assert len(notes) == 3 and all(
        s["status"] == "delivered" and "json://" not in s["to"] for s in notes
    )


# -- the faces -----------------------------------------------------------------------------------


def test_cli_adds_lists_rotates_and_disables(push_db: str, db: Any) -> None:
    from click.testing import CliRunner

    from api.cli import main

    env = {"DATABASE_URL": push_db}
    from api import settings

    settings.database.cache_clear()
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = push_db
    try:
        r = CliRunner().invoke(
            main,
            [
                "webhook",
                "add",
                "http://127.0.0.1:9/h",
                "--events",
                "dispatched,escalated",
                "--side",
                ANJU,
                "--full",
                "--allow-private",
            ],
            env=env,
        )
        assert r.exit_code == 0, r.output
        sub_id, secret = r.stdout.splitlines()[:2]
        assert sub_id.startswith("wh_") and secret.startswith("whsec_")
        r = CliRunner().invoke(main, ["webhook", "list"], env=env)
        assert sub_id in r.stdout and "whsec_" not in r.stdout and "incident.dispatched" in r.stdout
        r = CliRunner().invoke(main, ["webhook", "rotate-secret", sub_id], env=env)
        assert (
            r.exit_code == 0
            and r.stdout.strip().startswith("whsec_")
            and r.stdout.strip() != secret
        )
        r = CliRunner().invoke(main, ["webhook", "disable", sub_id], env=env)
        assert r.exit_code == 0
        r = CliRunner().invoke(
            main, ["webhook", "replay", "--since", "2026-01-01T00:00+08:00"], env=env
        )
        assert r.exit_code == 0 and "replaying" in r.stdout
        r = CliRunner().invoke(
            main, ["webhook", "add", "http://127.0.0.1:9/h", "--events", "dispatched"], env=env
        )
        assert r.exit_code == 2 and "--allow-private" in r.output
    finally:
        settings.database.cache_clear()
        if old is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = old


def test_api_manages_subscriptions_for_admins_only(client: Any, api_keys: dict[str, str]) -> None:
    from tests.conftest import bearer

    r = client.post(
        "/api/v1/webhooks",
        json={
            "url": "http://127.0.0.1:9/h",
            "events": ["incident.dispatched"],
            "allow_private": True,
        },
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["secret"].startswith("whsec_") and sub["events"] == ["incident.dispatched"]
    listed = client.get("/api/v1/webhooks").json()["items"]
    assert any(s["id"] == sub["id"] for s in listed) and "whsec_" not in str(listed)
    r = client.post(f"/api/v1/webhooks/{sub['id']}/rotate-secret")
    assert r.status_code == 200 and r.json()["secret"] != sub["secret"]
    assert client.post(f"/api/v1/webhooks/{sub['id']}/disable").json()["enabled"] is False
    assert client.post("/api/v1/webhooks/nope/disable").status_code == 404
    r = client.post(
        "/api/v1/webhooks",
        json={"url": "http://169.254.169.254/", "events": ["reported"], "allow_private": True},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    r = client.get("/api/v1/webhooks", headers=bearer(api_keys[f"operator:{ANJU}"]))
    assert r.status_code == 403


# -- kill -9 of the worker in mid-send ----------------------------------------------------------


def test_a_worker_killed_mid_send_loses_nothing_and_resends_under_the_same_id(
    push_db: str, db: Any, catalogue: Any, receiver: Receiver
) -> None:
    import signal
    import subprocess
    import sys
    import time

    sub = subscribe(db, receiver, events="reported")
    for i in range(20):
        new_case(db, catalogue, fraction=0.2 + i * 0.02)
    ids = {f"msg_{r['id']}" for r in rows(db, target=sub["id"])}
    assert len(ids) == 20
    receiver.mode, receiver.sleep_s = "slow_ok", 3.0  # takes each one, answers late
    env = {
        **os.environ,
        "DATABASE_URL": push_db,
        "JOINTGRID_PUSH_BATCH": "10",
        "JOINTGRID_PUSH_TIMEOUT_S": "30",
        "JOINTGRID_PUSH_INTERVAL_S": "0.2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "deliver"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(receiver.seen_ids) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.seen_ids, "the worker sent nothing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = set(receiver.seen_ids)
    assert before <= ids
    time.sleep(0.5)  # the server notices the dropped connection and ends its transaction
    open_rows = db.execute(
        "SELECT count(*) AS n FROM outbox WHERE target = %s AND status = 'pending'", (sub["id"],)
    ).fetchone()["n"]
    assert open_rows == 20  # the killed round recorded nothing: every row is still to send
    receiver.mode = "ok"
    d = Deliverer(catalogue=catalogue, timeout_s=5)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and drain(db, d, datetime.now(UTC)) == 0:
            time.sleep(0.2)  # until the killed worker's row locks are gone
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    assert {r["status"] for r in rows(db, target=sub["id"])} == {"delivered"}
    assert set(receiver.accepted) == ids  # nothing lost
    assert receiver.duplicates == len(before) > 0  # each resent under its first id
    assert receiver.bad_signatures == 0


def test_a_burst_reaches_a_channel_as_one_message_and_the_channel_is_spaced(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    ch = webhooks.add_channel(
        db, url=f"json://127.0.0.1:{receiver.port}/apprise/centre", side=ANJU, name="安居区指挥中心"
    )
    cases = []
    for i in range(3):
        c = new_case(db, catalogue, fraction=0.25 + i * 0.05, parties_sides=[ANJU, TONGNAN])
        c = move(db, catalogue, c, "accept")
        cases.append(move(db, catalogue, c, "dispatch"))
    assert len(rows(db, target=ch["id"])) == 3
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        now = datetime.now(UTC)
        drain(db, d, now)
        assert len(receiver.notifications) == 1  # one message for the burst
        (m,) = receiver.notifications
        assert "3 条案件提醒" in m["title"] and all(c["code"] in m["message"] for c in cases)
        assert {r["status"] for r in rows(db, target=ch["id"])} == {"delivered"}
        c = new_case(db, catalogue, fraction=0.45, parties_sides=[ANJU, TONGNAN])
        c = move(db, catalogue, move(db, catalogue, c, "accept"), "dispatch")
        assert d.deliver_once(db, now=now + timedelta(seconds=1)).claimed == 0  # spaced
        assert d.deliver_once(db, now=now + timedelta(seconds=4)).claimed == 1
    finally:
        d.close()
    assert len(receiver.notifications) == 2 and c["code"] in receiver.notifications[-1]["title"]


def test_events_outside_the_trail_are_emitted_in_the_callers_transaction(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, events="audit.checkpoint,photo_added")
    case = new_case(db, catalogue, fraction=0.47)
    with pytest.raises(RuntimeError), db.transaction():
        outbox.on_checkpoint(db, {"id": 7, "events": 120, "head": "ab12"})
        raise RuntimeError("roll back")
    assert rows(db, target=sub["id"]) == []
    outbox.on_checkpoint(db, {"id": 8, "events": 121, "head": "cd34"})
    outbox.on_photo_added(db, incident_id=case["id"], media={"sha256": "f" * 64, "kind": "report"})
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    got = {p["type"]: p for _, p in receiver.order}  # two streams: no order between them
    assert sorted(got) == ["audit.checkpoint", "incident.photo_added"]
    assert got["audit.checkpoint"]["data"]["head"] == "cd34"
    photo = got["incident.photo_added"]["data"]
    assert photo["code"] == case["code"] and photo["media"]["kind"] == "report"


def test_the_server_delivers_in_a_thread_of_its_own(
    push_db: str, db: Any, catalogue: Any, receiver: Receiver
) -> None:
    import time

    sub = subscribe(db, receiver, events="reported")
    with serving(push_db, env={"JOINTGRID_PUSH_INTERVAL_S": "0.2"}) as (_base, proc):
        case = new_case(db, catalogue, fraction=0.48)
        deadline = time.monotonic() + 20
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.1)
    (p,) = receiver.accepted.values()
    assert p["data"]["code"] == case["code"]
    assert proc.returncode in (0, -15)  # uvicorn ends with the signal it was given
    (r,) = rows(db, target=sub["id"])
    assert r["status"] == "delivered"


def test_a_reroute_writes_its_deliveries_with_its_events(
    push_db: str, db: Any, catalogue: Any, receiver: Receiver
) -> None:
    from api.usecases.reroute import reroute
    from tests.geo import hand_strip_to_anju

    sub = subscribe(db, receiver, events="rerouted")
    with (
        psycopg.connect(push_db, row_factory=dict_row) as c,  # type: ignore[arg-type]
        c.transaction(force_rollback=True),
    ):
        made = [new_case(c, catalogue, fraction=f, metres=600) for f in (0.3, 0.45, 0.55)]
        reroute(c, catalogue)  # settle whatever the earlier tests left
        before = c.execute(
            "SELECT count(*) AS n FROM outbox WHERE target = %s", (sub["id"],)
        ).fetchone()["n"]
        hand_strip_to_anju(c, 3000)
        done = reroute(c, catalogue)
        assert done.changed >= len(made)
        got = c.execute(
            "SELECT o.incident_id::text AS id, e.action FROM outbox o"
            " JOIN incident_events e ON e.id = o.event_id WHERE o.target = %s",
            (sub["id"],),
        ).fetchall()
        assert len(got) - before == done.changed  # one per re-routed case, written in bulk
        assert {m["id"] for m in made} <= {g["id"] for g in got}
        assert {g["action"] for g in got} == {"reroute"}


def test_delivered_rows_are_pruned_after_the_retention_and_shown_until_then(
    db: Any, catalogue: Any, receiver: Receiver
) -> None:
    sub = subscribe(db, receiver, events="reported")
    receiver.mode = "gone"
    dead_case = new_case(db, catalogue, fraction=0.51)
    d = Deliverer(catalogue=catalogue, timeout_s=2)
    try:
        drain(db, d, datetime.now(UTC))
        db.execute("UPDATE webhook_subscriptions SET enabled = true")
        receiver.mode = "ok"
        case = new_case(db, catalogue, fraction=0.52)
        drain(db, d, datetime.now(UTC))
    finally:
        d.close()
    (shown,) = outbox.deliveries_for_case(db, case["id"])
    assert shown["status"] == "delivered" and shown["to"].startswith(receiver.url)
    assert shown["webhook_id"] in receiver.accepted
    assert outbox.prune(db, before=datetime.now(UTC) - timedelta(days=1)) == 0
    assert outbox.prune(db, before=datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert outbox.deliveries_for_case(db, case["id"]) == []
    (dead,) = outbox.deliveries_for_case(db, dead_case["code"])  # the dead stay
    assert dead["status"] == "dead" and dead["target"] == sub["id"]
