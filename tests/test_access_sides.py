"""Nothing crosses a side that should not: references to other cases, side filters, team keys."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN
from tests.test_access import report_as

MISSING = "00000000-0000-4000-8000-000000000000"


def _merge(client: Any, api_keys: dict[str, str], case_id: str, into: str) -> Any:
    return client.post(
        f"/api/v1/incidents/{case_id}/transitions",
        json={"action": "merge", "side": ANJU, "into": into},
        headers=bearer(api_keys["operator:510904"]),
    )


def test_a_merge_into_a_case_of_another_side_is_answered_like_a_missing_case(client, api_keys):
    own = report_as(client, api_keys, "grid_worker:510904", ANJU, 5000, "fire")
    theirs = report_as(client, api_keys, "grid_worker:500152", TONGNAN, 4000, "fire", fraction=0.6)
    assert theirs["sides"] == [TONGNAN]
    anju = bearer(api_keys["operator:510904"])
    assert client.get(f"/api/v1/incidents/{theirs['id']}", headers=anju).status_code == 404

    hidden_by_code = _merge(client, api_keys, own["id"], theirs["code"])
    hidden_by_id = _merge(client, api_keys, own["id"], theirs["id"])
    missing = _merge(client, api_keys, own["id"], MISSING)
    missing_code = _merge(client, api_keys, own["id"], "JG20000101-000001")

    def shape(r: Any, ref: str) -> tuple[int, str, str, Any]:
        body = r.json()
        # the same answer, with the caller's own words put back where they appear
        return (
            r.status_code,
            body["code"],
            body["message"].replace(ref, "<ref>"),
            {k: ("<ref>" if v == ref else v) for k, v in (body["detail"] or {}).items()},
        )

    assert hidden_by_code.status_code == 422, hidden_by_code.text
    assert shape(hidden_by_code, theirs["code"]) == shape(missing_code, "JG20000101-000001")
    assert shape(hidden_by_id, theirs["id"]) == shape(missing, MISSING)
    assert theirs["id"] not in hidden_by_code.text
    # nothing was linked: both cases are as they were
    mine = client.get(f"/api/v1/incidents/{own['id']}").json()
    assert mine["status"] == "reported" and mine["merged_into"] is None
    # a case the caller may see can still be merged into
    seen = report_as(client, api_keys, "grid_worker:510904", ANJU, 5000, "fire", fraction=0.41)
    ok = _merge(client, api_keys, own["id"], seen["code"])
    assert ok.status_code == 200 and ok.json()["merged_into"] == seen["id"]


def test_references_to_cases_the_caller_may_not_see_are_blanked(client, conn, api_keys):
    shared = report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    theirs = report_as(client, api_keys, "grid_worker:500152", TONGNAN, 4000, "fire", fraction=0.6)
    # a Tongnan operator merges the shared case into a Tongnan-only case
    r = client.post(
        f"/api/v1/incidents/{shared['id']}/transitions",
        json={"action": "merge", "side": TONGNAN, "into": theirs["id"]},
        headers=bearer(api_keys["operator:500152"]),
    )
    assert r.status_code == 200 and r.json()["merged_into"] == theirs["id"]
    conn.execute(
        "UPDATE incidents SET possible_duplicate_of = %s WHERE id = %s",
        (theirs["id"], shared["id"]),
    )
    anju = bearer(api_keys["operator:510904"])
    seen = client.get(f"/api/v1/incidents/{shared['id']}", headers=anju).json()
    assert seen["status"] == "duplicate"
    assert seen["merged_into"] is None and seen["possible_duplicate_of"] is None
    listed = client.get("/api/v1/incidents?limit=1000", headers=anju).json()["items"]
    row = next(c for c in listed if c["id"] == shared["id"])
    assert row["merged_into"] is None and row["possible_duplicate_of"] is None
    events = client.get(f"/api/v1/incidents/{shared['id']}/events", headers=anju).json()
    assert theirs["id"] not in str(events)
    # those who may see the other case still see the link
    tong = bearer(api_keys["operator:500152"])
    assert client.get(f"/api/v1/incidents/{shared['id']}", headers=tong).json()["merged_into"]
    admin_events = client.get(f"/api/v1/incidents/{shared['id']}/events").json()
    assert theirs["id"] in str(admin_events)


def test_a_report_does_not_name_a_possible_duplicate_the_reporter_may_not_see(client, api_keys):
    first = report_as(client, api_keys, "grid_worker:510904", ANJU, 300, "theft")
    again = report_as(client, api_keys, "grid_worker:510904", ANJU, 300, "theft")
    assert again["possible_duplicate_of"] == first["id"]  # the reporter's own case
    other = report_as(client, api_keys, "grid_worker:500152", ANJU, 300, "theft")
    assert other["possible_duplicate_of"] is None
    admin_view = client.get(f"/api/v1/incidents/{other['id']}").json()
    assert admin_view["possible_duplicate_of"] is not None


def test_a_side_filter_is_applied_within_what_the_key_may_see(client, api_keys):
    anju_only = report_as(client, api_keys, "grid_worker:510904", ANJU, 5000, "fire")
    shared = report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    tong_only = report_as(
        client, api_keys, "grid_worker:500152", TONGNAN, 4000, "fire", fraction=0.6
    )
    anju = bearer(api_keys["operator:510904"])
    items = client.get(f"/api/v1/incidents?side={TONGNAN}&limit=1000", headers=anju).json()["items"]
    assert items, "the shared case involves both sides"
    assert all(set(c["sides"]) >= {ANJU, TONGNAN} for c in items)
    ids = {c["id"] for c in items}
    assert shared["id"] in ids
    assert anju_only["id"] not in ids and tong_only["id"] not in ids
    # the admin's answer to the same question includes the Tongnan-only case
    admin = client.get(f"/api/v1/incidents?side={TONGNAN}&limit=1000").json()["items"]
    assert tong_only["id"] in {c["id"] for c in admin}
    assert all(TONGNAN in c["sides"] for c in admin)


def test_the_map_and_dashboard_side_filters_stay_within_the_scope(client, api_keys):
    report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    report_as(client, api_keys, "grid_worker:500152", TONGNAN, 4000, "fire", fraction=0.6)
    anju = bearer(api_keys["operator:510904"])
    r = client.get(
        f"/map/data/incidents?side={TONGNAN}&status=all&z=18&bbox=100,20,110,40", headers=anju
    )
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    assert feats and all("sides" in f["properties"] for f in feats)
    for f in feats:
        assert set(f["properties"]["sides"]) >= {ANJU, TONGNAN}, f["properties"]
    stats = client.get(f"/api/v1/stats?side={TONGNAN}&status=all", headers=anju)
    assert stats.status_code == 200, stats.text
    admin = client.get(f"/api/v1/stats?side={TONGNAN}&status=all").json()
    assert stats.json() != admin


def _one_sided_team(conn: Any, code: str, source: str) -> None:
    """A copy of team ``source`` that serves Tongnan only."""
    conn.execute(
        "INSERT INTO teams (code, name, kind, side, sides, mechanisms, roster, members,"
        " synthetic, props, patrol_area, base)"
        " SELECT %s, name, kind, %s, ARRAY[%s], mechanisms, roster, members, synthetic, props,"
        " patrol_area, base FROM teams WHERE code = %s",
        (code, TONGNAN, TONGNAN, source),
    )


def test_a_team_member_key_acts_only_for_a_side_of_its_team(conn, api_keys):
    from gis.errors import InvalidInput
    from layers import keys

    _one_sided_team(conn, "TTEST1", api_keys["team:500152"])
    with pytest.raises(InvalidInput) as err:
        keys.create(conn, role="team_member", side=ANJU, team="TTEST1", name="wrong side")
    assert "TTEST1" in err.value.message and TONGNAN in err.value.message
    assert err.value.detail["team_sides"] == [TONGNAN]
    token, rec = keys.create(conn, role="team_member", side=TONGNAN, team="TTEST1", name="ok")
    assert rec["side"] == TONGNAN and token.startswith("jg_")
    # a joint team's member may act for either of its sides
    joint = api_keys["team:500152"]
    for side in (ANJU, TONGNAN):
        keys.create(conn, role="team_member", side=side, team=joint, name="joint")


def test_the_cli_refuses_a_team_member_key_for_another_side(db_url):
    from layers.db import connect

    with connect(db_url) as c:
        c.autocommit = True
        source = c.execute("SELECT code FROM teams ORDER BY code LIMIT 1").fetchone()["code"]
        _one_sided_team(c, "TTEST2", source)
        try:
            env = {**os.environ, "DATABASE_URL": db_url}
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "api.cli",
                    "apikey",
                    "create",
                    "--role",
                    "team_member",
                    "--side",
                    ANJU,
                    "--team",
                    "TTEST2",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            made = c.execute("SELECT count(*) AS n FROM api_keys WHERE team = 'TTEST2'").fetchone()
        finally:
            c.execute("DELETE FROM teams WHERE code = 'TTEST2'")
    assert out.returncode != 0
    assert "jg_" not in out.stdout
    assert "TTEST2" in out.stderr and TONGNAN in out.stderr
    assert made["n"] == 0
