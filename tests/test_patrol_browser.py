"""The patrol layers in a real browser (Debian's Chromium): live team positions that refresh by
themselves, a team's popup, and coverage coloured by the time since the last patrol."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from layers import devices
from tests.geo import ANJU, point_inside
from tests.test_browser import DESKTOP, auth, new_page, view_hash, wait_js  # noqa: F401

pytestmark = pytest.mark.browser


def patrol_now(db_url: str, base: str) -> dict[str, Any]:
    """A new member of an Anju team posting ten fixes (the last one now) through /osmand, once
    the server's patrol worker has put them on a track."""
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:  # type: ignore[arg-type]
        team = c.execute(
            "SELECT code FROM teams WHERE side = %s ORDER BY code LIMIT 1", (ANJU,)
        ).fetchone()
        member = f"浏览器队员 {uuid.uuid4().hex[:6]}"
        key, dev = devices.add_device(c, team=team["code"], member_name=member)
    now = datetime.now(UTC)
    pts = [point_inside(ANJU, 300 + 30 * i, 0.52) for i in range(10)]
    for i, (x, y) in enumerate(pts):
        t = now - timedelta(seconds=30 * (9 - i))
        r = httpx.get(
            f"{base}/osmand",
            params={
                "key": key,
                "id": dev["id"],
                "timestamp": int(t.timestamp()),
                "lat": y,
                "lon": x,
                "accuracy": 5,
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text
    # the server's patrol worker builds the track after the answers (every 2 s)
    deadline = time.monotonic() + 30
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:  # type: ignore[arg-type]
        while (
            c.execute("SELECT 1 FROM patrol_backlog WHERE device = %s", (dev["id"],)).fetchone()
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
    return {
        "team": team["code"],
        "member": member,
        "device": dev["id"],
        "key": key,
        "last": pts[-1],
    }


def test_team_positions_refresh_by_themselves_and_coverage_marks_the_gaps(
    live_server: str,
    db_url: str,
    browser: Any,
    auth: dict[str, str],  # noqa: F811
) -> None:
    p = patrol_now(db_url, live_server)
    context, page, seen = new_page(browser, auth, viewport=DESKTOP)
    try:
        lon, lat = p["last"]
        page.goto(
            f"{live_server}/map?layers=team_positions,patrol_tracks_today,patrol_coverage,districts{view_hash(lon, lat, 13)}"
        )
        wait_js(page, "JointGrid.status.layers.team_positions.state === 'loaded'")
        wait_js(page, "JointGrid.status.layers.patrol_coverage.state === 'loaded'")
        assert page.evaluate("JointGrid.status.layers.patrol_tracks_today.features") >= 1
        # the live layer reloads by itself (every 15 s), with no pan or zoom
        first = page.evaluate("JointGrid.status.layers.team_positions.loads")
        wait_js(page, f"JointGrid.status.layers.team_positions.loads > {first}", timeout=45_000)
        # coverage: the cells just patrolled are green, the others (never patrolled) are gaps
        colours = page.evaluate(
            "(() => { const out = {}; const l = JointGrid.handles.layers.patrol_coverage;"
            " l.eachLayer(x => { out[x.feature.id] = [x.options.color, x.options.dashArray || null,"
            " x.feature.properties.days_since_patrol]; }); return out; })()"
        )
        fresh = [c for c in colours.values() if c[2] is not None and c[2] < 1]
        gaps = [c for c in colours.values() if c[2] is None]
        assert fresh and all(c[0] == "#1a9850" for c in fresh), fresh[:3]
        assert gaps and all(c[0] == "#d73027" and c[1] == "4 3" for c in gaps)
        # the team's popup: its member on duty, the last fix's age, today's distance, open cases
        page.evaluate(
            "(() => { JointGrid.handles.layers.team_positions.eachLayer(x => {"
            f" if (x.feature.id === {p['team']!r}) x.openPopup(); }}); return true; }})()"
        )
        wait_js(page, "document.querySelector('.jg-team')")
        text = page.inner_text(".jg-team")
        assert p["member"] in text and "分钟前" in text and "公里" in text and "未结案件" in text
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        context.close()
    assert seen.outside() == [], seen.outside()
    assert seen.failed == [], seen.failed
