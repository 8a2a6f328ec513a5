"""The closed loop on real PostGIS: transitions, dual sign-off, escalation, append-only events, re-route."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from api.usecases.cases import escalate_overdue
from api.usecases.reroute import reroute
from tests.geo import ANJU, TONGNAN, point_inside


def new_case(client, side=ANJU, metres=300, category="land_dispute", fraction=0.35):  # type: ignore[no-untyped-def]
    lon, lat = point_inside(side, metres, fraction)
    r = client.post("/api/v1/incidents", json={"lon": lon, "lat": lat, "category": category})
    assert r.status_code == 201, r.text
    return r.json()


def move(client, case, action, side, **extra):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/incidents/{case['id']}/transitions",
        json={"action": action, "side": side, **extra},
    )


def test_cross_boundary_case_closes_only_after_both_sides_verify(client):
    case = new_case(client)
    assert case["cross_boundary"] and set(case["sides"]) == {ANJU, TONGNAN}
    for action, note in [
        ("accept", None),
        ("dispatch", None),
        ("start", None),
        ("resolve", "boundary re-marked with both villages present"),
    ]:
        r = move(client, case, action, ANJU, note=note)
        assert r.status_code == 200, r.text
    assert move(client, case, "verify", ANJU).json()["status"] == "resolved"
    r = move(client, case, "close", TONGNAN)
    assert r.status_code == 409
    assert r.json()["code"] == "transition_not_allowed"
    assert "verify" in r.json()["detail"]["allowed"]  # Tongnan has yet to sign
    r = move(client, case, "verify", ANJU)
    assert r.status_code == 409  # Anju signed already
    assert move(client, case, "verify", TONGNAN).json()["status"] == "verified"
    assert move(client, case, "close", TONGNAN).json()["status"] == "closed"
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    assert [e["action"] for e in events] == [
        "report",
        "accept",
        "dispatch",
        "start",
        "resolve",
        "verify",
        "verify",
        "close",
    ]
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert events[5]["actor_side"] == ANJU and events[6]["actor_side"] == TONGNAN


def test_dispatch_starts_the_clock_from_the_severity(client, catalogue):
    case = new_case(client)
    before = datetime.now(UTC)
    move(client, case, "accept", ANJU)
    got = move(client, case, "dispatch", ANJU).json()
    due = datetime.fromisoformat(got["due_at"])
    limit = catalogue.resolve_within(case["severity"])
    assert before + limit <= due <= datetime.now(UTC) + limit


def test_illegal_move_is_409_listing_allowed_actions(client):
    case = new_case(client)
    r = move(client, case, "close", ANJU)
    assert r.status_code == 409
    body = r.json()
    assert body["detail"]["status"] == "reported"
    assert set(body["detail"]["allowed"]) >= {"accept", "reject", "merge", "escalate"}


def test_side_not_involved_cannot_act(client):
    case = new_case(client, metres=2100, category="theft")  # single-side case
    assert case["sides"] == [ANJU]
    r = move(client, case, "accept", TONGNAN)
    assert r.status_code == 409 and r.json()["code"] == "side_not_involved"


def test_postpone_needs_a_reason_and_a_later_due_time(client):
    case = new_case(client)
    move(client, case, "accept", ANJU)
    due = datetime.fromisoformat(move(client, case, "dispatch", ANJU).json()["due_at"])
    r = move(client, case, "postpone", ANJU, due_at=(due + timedelta(days=2)).isoformat())
    assert r.status_code == 422 and "note" in r.json()["message"]
    r = move(
        client,
        case,
        "postpone",
        ANJU,
        note="waiting for the survey",
        due_at=(due - timedelta(hours=1)).isoformat(),
    )
    assert r.status_code == 422
    r = move(
        client,
        case,
        "postpone",
        ANJU,
        note="waiting for the survey",
        due_at=(due + timedelta(days=2)).isoformat(),
    )
    assert r.status_code == 200
    assert datetime.fromisoformat(r.json()["due_at"]) == due + timedelta(days=2)


def test_merge_into_another_case(client):
    a = new_case(client)
    b = new_case(client, fraction=0.36)
    r = move(client, b, "merge", ANJU, into=a["code"])
    assert r.status_code == 200
    assert r.json()["status"] == "duplicate" and r.json()["merged_into"] == a["id"]
    r = move(client, a, "merge", ANJU, into="JG00000000-000000")
    assert r.status_code == 422


def test_unknown_action_is_422(client):
    case = new_case(client)
    r = move(client, case, "explode", ANJU)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


def test_events_are_append_only_in_the_database(client, conn):
    case = new_case(client)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("UPDATE incident_events SET note = 'x' WHERE incident_id = %s", (case["id"],))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("DELETE FROM incident_events WHERE incident_id = %s", (case["id"],))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("TRUNCATE incident_events CASCADE")


def test_overdue_cases_escalate_one_rung_at_a_time(client, conn, catalogue):
    case = new_case(client)
    move(client, case, "accept", ANJU)
    move(client, case, "dispatch", ANJU)
    conn.execute(
        "UPDATE incidents SET due_at = now() - interval '1 minute' WHERE id = %s", (case["id"],)
    )
    levels = []
    for i in range(4):  # each pass a month later, so every new rung's time limit has passed too
        escalate_overdue(conn, catalogue, now=datetime.now(UTC) + timedelta(days=30 * (i + 1)))
        levels.append(client.get(f"/api/v1/incidents/{case['id']}").json()["escalation_level"])
    assert levels == [1, 2, 2, 2]  # village -> town -> district, then the top
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    esc = [e for e in events if e["action"] == "escalate"]
    assert len(esc) == 2
    assert esc[0]["actor"]["kind"] == "system" and esc[0]["payload"]["automatic"] is True


def test_not_overdue_is_not_escalated(client, conn, catalogue):
    case = new_case(client)
    move(client, case, "accept", ANJU)
    move(client, case, "dispatch", ANJU)
    escalate_overdue(conn, catalogue)
    assert client.get(f"/api/v1/incidents/{case['id']}").json()["escalation_level"] == 0


def test_two_escalators_at_once_escalate_each_case_once(live_client, db_url, catalogue):
    ids = []
    for i in range(5):
        lon, lat = point_inside(TONGNAN, 400, 0.1 + i * 0.05)
        r = live_client.post(
            "/api/v1/incidents", json={"lon": lon, "lat": lat, "category": "flood"}
        )
        ids.append(r.json()["id"])
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(
            "UPDATE incidents SET due_at = now() - interval '1 hour' WHERE id = ANY(%s::uuid[])",
            (ids,),
        )
    barrier = threading.Barrier(2)

    def run() -> None:
        from psycopg.rows import dict_row

        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
            barrier.wait()
            escalate_overdue(c, catalogue)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(db_url) as c:
        rows = c.execute(
            "SELECT i.escalation_level, (SELECT count(*) FROM incident_events e"
            " WHERE e.incident_id = i.id AND e.action = 'escalate') FROM incidents i"
            " WHERE i.id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    assert rows == [(1, 1)] * 5


def test_case_list_filters_and_pages(client):
    made = [new_case(client, fraction=0.2 + i * 0.02, category="theft") for i in range(5)]
    page1 = client.get("/api/v1/incidents", params={"category": "theft", "limit": 3}).json()
    assert page1["count"] == 3 and "next_cursor" in page1
    page2 = client.get(
        "/api/v1/incidents",
        params={"category": "theft", "limit": 3, "cursor": page1["next_cursor"]},
    ).json()
    got = [c["id"] for c in page1["items"] + page2["items"]]
    assert set(c["id"] for c in made) <= set(got) and len(got) == len(set(got))
    assert all(c["mechanism"] == "joint_defense" for c in page1["items"])
    r = client.get("/api/v1/incidents", params={"status": "nonsense"})
    assert r.status_code == 422 and "reported" in r.json()["detail"]["valid"]
    r = client.get("/api/v1/incidents", params={"bbox": "1,2,3"})
    assert r.status_code == 422
    near = client.get(
        "/api/v1/incidents", params={"bbox": "105.0,29.0,106.0,31.0", "side": ANJU}
    ).json()
    assert near["count"] >= 5


def test_reroute_after_a_team_change(conn, client, catalogue):
    case = new_case(client, category="theft", fraction=0.3)
    assert case["teams"]
    lead = case["teams"][0]["code"]
    dry = reroute(conn, catalogue, dry_run=True)
    assert dry.changed == 0 and dry.examined >= 1
    # The lead team stops serving joint defence: the cases it led must be re-routed.
    conn.execute(
        "UPDATE teams SET mechanisms = array_remove(mechanisms, 'joint_defense') WHERE code = %s",
        (lead,),
    )
    dry = reroute(conn, catalogue, dry_run=True)
    assert dry.changed >= 1 and dry.by_change["teams"] >= 1
    assert client.get(f"/api/v1/incidents/{case['id']}").json()["teams"][0]["code"] == lead
    done = reroute(conn, catalogue)
    assert done.changed == dry.changed
    after = client.get(f"/api/v1/incidents/{case['id']}").json()
    assert lead not in [t["code"] for t in after["teams"]]
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    assert events[-1]["action"] == "reroute" and "teams" in events[-1]["payload"]["changed"]
    assert reroute(conn, catalogue).changed == 0  # stable once applied
