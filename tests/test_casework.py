"""The operators' inbox and the case page, over HTTP: who sees what, the views, filters, order
and paging, the buttons, and one test per refusal (not shown, and refused when posted anyway).

Through the app on the test database (rolled back after each test, or committed where a
session sign-in needs its own transaction). Browser walks are in tests/test_casework_browser.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside

ZONE_A = point_inside(ANJU, 500, 0.418)  # Anju, inside the border zone: cross-boundary
INLAND_A = point_inside(ANJU, 2600, 0.418)  # Anju, outside the zone: Anju alone


def report(client: Any, keys: dict[str, str], where: tuple[float, float], **body: Any) -> Any:
    r = client.post(
        "/api/v1/incidents",
        json={"lon": where[0], "lat": where[1], "category": "theft", **body},
        headers={**bearer(keys["grid_worker:510904"]), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    return r.json()


def move(client: Any, key: str, case: dict[str, Any], action: str, side: str, **more: Any) -> Any:
    r = client.post(
        f"/api/v1/incidents/{case['id']}/transitions",
        json={"action": action, "side": side, **more},
        headers=bearer(key),
    )
    assert r.status_code == 200, r.text
    return r.json()


def buttons(html: str) -> list[str]:
    return re.findall(r'<button type="submit" data-action="([a-z_]+)"', html)


def codes(html: str) -> list[str]:
    return re.findall(r'<tr class="case[^"]*" data-code="([^"]+)"', html)


# -- the inbox ------------------------------------------------------------------------------


def test_the_inbox_lists_what_the_key_may_see_by_the_apis_rules(
    client: Any, api_keys: dict[str, str], db_url: str
) -> None:
    cross = report(client, api_keys, ZONE_A)
    alone = report(client, api_keys, INLAND_A)
    assert cross["cross_boundary"] and not alone["cross_boundary"]
    for role, sees_cross, sees_alone in [
        ("admin", True, True),
        ("operator:510904", True, True),
        ("operator:500152", True, False),
    ]:
        html = client.get("/cases?view=all&limit=200", headers=bearer(api_keys[role])).text
        api = client.get("/api/v1/incidents?limit=1000", headers=bearer(api_keys[role])).json()
        api_codes = {c["code"] for c in api["items"]}
        listed = set(codes(html))
        assert (cross["code"] in listed) is sees_cross, role
        assert (alone["code"] in listed) is sees_alone, role
        assert listed <= api_codes, role  # never more than the API shows this key
    # a team member sees the cases of its team only
    team = cross["teams"][0]
    from layers import keys
    from layers.db import connect

    with connect(db_url) as c:
        c.autocommit = True
        member, _ = keys.create(
            c, role="team_member", side=team["side"], team=team["code"], name="t"
        )
        serving = [t["code"] for t in cross["teams"]]
        spare = c.execute(
            "SELECT code, side FROM teams WHERE NOT code = ANY(%s) ORDER BY code LIMIT 1",
            (serving,),
        ).fetchone()
        other, _ = keys.create(
            c, role="team_member", side=spare["side"], team=spare["code"], name="t"
        )
    assert cross["code"] in codes(client.get("/cases?view=all", headers=bearer(member)).text)
    assert codes(client.get("/cases?view=all", headers=bearer(other)).text) == []
    assert client.get(f"/cases/{cross['code']}", headers=bearer(other)).status_code == 404
    # grid workers and feeds have no inbox
    assert client.get("/cases", headers=bearer(api_keys["grid_worker:510904"])).status_code == 403
    assert client.get("/cases", headers=bearer(api_keys["feed"])).status_code == 403


def test_views_count_live_and_overdue_is_a_filter_with_its_own_count(
    client: Any, conn: Any, api_keys: dict[str, str]
) -> None:
    op = api_keys["operator:510904"]
    a = report(client, api_keys, INLAND_A, description="view test a")
    b = report(client, api_keys, INLAND_A, description="view test b")
    move(client, op, b, "accept", ANJU)
    conn.execute(
        "UPDATE incidents SET due_at = now() - interval '1 hour' WHERE id = %s", (a["id"],)
    )
    html = client.get("/cases?q=view%20test", headers=bearer(op)).text
    src = re.search(r'data-counts="([^"]+)"', html).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    counts = client.get(src, headers=bearer(op)).json()["counts"]
    assert (counts["reported"], counts["working"], counts["overdue"]) == ("1", "1", "1")
    assert (counts["verifying"], counts["done"], counts["all"]) == ("0", "0", "2")
    assert codes(html) == [a["code"]]  # the default view: 待受理
    assert "待受理" in html and "处置中" in html and "超期" in html
    working = client.get("/cases?q=view%20test&view=working", headers=bearer(op)).text
    assert codes(working) == [b["code"]]
    late = client.get("/cases?q=view%20test&view=all&overdue=1", headers=bearer(op)).text
    assert codes(late) == [a["code"]]
    assert 'class="case late"' in late and "超期" in late
    live = client.get("/cases/live?q=view%20test&view=all", headers=bearer(op))
    assert live.status_code == 200 and "<html" not in live.text
    assert set(codes(live.text)) == {a["code"], b["code"]}


def test_the_filters(client: Any, api_keys: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    theft = report(client, api_keys, ZONE_A, description=f"{tag} 自行车被盗", severity="red")
    river = report(
        client, api_keys, ZONE_A, description=f"{tag} 河水发黑", category="river_pollution"
    )
    alone = report(client, api_keys, INLAND_A, description=f"{tag} 单方")
    admin = bearer(api_keys["admin"])

    def listed(**params: str) -> set[str]:
        query = "&".join(f"{k}={v}" for k, v in {"view": "all", "q": tag, **params}.items())
        r = client.get(f"/cases?{query}", headers=admin)
        assert r.status_code == 200, r.text
        return set(codes(r.text))

    assert listed() == {theft["code"], river["code"], alone["code"]}
    assert listed(mechanism="joint_governance") == {river["code"]}
    assert listed(category="theft") == {theft["code"], alone["code"]}
    assert listed(severity="red") == {theft["code"]}
    assert listed(cross="yes") == {theft["code"], river["code"]}
    assert listed(cross="no") == {alone["code"]}
    assert listed(side=TONGNAN) == {theft["code"], river["code"]}
    assert listed(team=theft["teams"][0]["code"]) >= {theft["code"]}
    assert alone["code"] not in listed(team=theft["teams"][0]["code"])
    assert listed(q=theft["code"]) == {theft["code"]}  # the code, not the description
    assert listed(q=f"{tag}%20河水") == {river["code"]}
    assert listed(q="100%25_none") == set()  # % and _ are taken literally
    day = theft["reported_at"][:10]
    assert listed(**{"from": "2000-01-01", "to": "2000-01-02"}) == set()
    assert len(listed(**{"from": "2000-01-01"})) == 3
    assert day  # the report time's day, in ISO
    bad = client.get("/cases?mechanism=joint_nothing", headers=admin)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"


def test_the_side_and_team_pickers_come_once_from_a_cacheable_list(
    client: Any, conn: Any, api_keys: dict[str, str]
) -> None:
    admin, op = bearer(api_keys["admin"]), bearer(api_keys["operator:510904"])
    html = client.get("/cases", headers=admin).text
    src = re.search(r'data-choices-src="([^"]+)"', html).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    # the page itself lists no team and no side: only "any" until the script fills them in
    team_select = re.search(r'<select name="team" data-choices="team">(.*?)</select>', html, re.S)
    assert team_select and team_select.group(1).count("<option") == 1
    got = client.get(src, headers=admin)
    assert got.status_code == 200 and "max-age" in got.headers["cache-control"]
    assert "private" in got.headers["cache-control"]
    doc = got.json()
    every = conn.execute("SELECT code FROM teams ORDER BY side, code").fetchall()
    assert [c for c, _ in doc["team"]] == [r["code"] for r in every]
    assert {c for c, _ in doc["side"]} >= {ANJU, TONGNAN}
    assert dict(doc["side"])[ANJU] == "安居区（四川）"
    # unchanged: 304 on its ETag, nothing sent again
    again = client.get(src, headers={**admin, "If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # an operator's list is its side's teams and those serving it; other keys get their own
    mine = client.get(src, headers=op).json()["team"]
    served = conn.execute(
        "SELECT code FROM teams WHERE side = %s OR %s = ANY(sides) ORDER BY side, code",
        (ANJU, ANJU),
    ).fetchall()
    assert [c for c, _ in mine] == [r["code"] for r in served]
    # a chosen team and side stay chosen in the page, named, before the script runs
    team = served[0]["code"]
    picked = client.get(f"/cases?team={team}&side={TONGNAN}", headers=op).text
    assert re.search(rf'<option value="{team}" selected>[^<]+ · ', picked)
    assert f'<option value="{TONGNAN}" selected>潼南区（重庆）</option>' in picked
    english = client.get(src.replace("zh_CN", "en"), headers=admin).json()
    assert dict(english["side"])[ANJU] != dict(doc["side"])[ANJU]


def test_sorted_by_due_time_with_a_keyset_cursor_of_its_own(
    client: Any, conn: Any, api_keys: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    made = [report(client, api_keys, INLAND_A, description=f"{tag} {k}") for k in range(5)]
    for k, case in enumerate(made):  # due in reverse order of reporting; one with no limit
        due = None if k == 2 else f"now() + interval '{10 - k} hours'"
        conn.execute(f"UPDATE incidents SET due_at = {due or 'NULL'} WHERE id = %s", (case["id"],))
    expected = [made[4]["code"], made[3]["code"], made[1]["code"], made[0]["code"], made[2]["code"]]
    admin = bearer(api_keys["admin"])
    seen: list[str] = []
    url = f"/cases?view=all&q={tag}&limit=2"
    while url:
        html = client.get(url, headers=admin).text
        seen += codes(html)
        m = re.search(r'<a class="next" href="([^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else ""
    assert seen == expected
    api_cursor = client.get("/api/v1/incidents?limit=1", headers=admin).json()["next_cursor"]
    refused = client.get(f"/cases?view=all&cursor={api_cursor}", headers=admin)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_cursor"


# -- the case page ----------------------------------------------------------------------------


def test_the_case_page_shows_what_an_operator_needs(client: Any, api_keys: dict[str, str]) -> None:
    first = report(client, api_keys, ZONE_A, description="河边有人偷电瓶车")
    case = report(client, api_keys, ZONE_A, description="又一起偷电瓶车")
    html = client.get(f"/cases/{case['code']}", headers=bearer(api_keys["operator:500152"])).text
    assert "又一起偷电瓶车" in html
    assert "盗窃" in html and "联防" in html and "待受理" in html
    assert "安居区（四川省遂宁市）" in html and "潼南区（重庆市）" in html
    for c in case["contacts"]:
        if c.get("phone"):
            assert f'href="tel:{c["phone"]}"' in html
    assert case["possible_duplicate_of"] == first["id"]
    assert f'href="/cases/{first["code"]}"' in html  # the possible duplicate, linked
    assert "边界区域" in html and "米边界区域内" in html  # the trace, in Chinese
    assert 'id="case-map"' in html and "/assets/leaflet/dist/leaflet.js" in html
    assert "<script>" not in html and " onclick=" not in html and " onsubmit=" not in html
    assert 'class="countdown' in html and "剩余" in html
    assert "上报" in html and "网格员" in html  # the first event of the timeline
    data = client.get(f"/cases/{case['code']}/map", headers=bearer(api_keys["operator:500152"]))
    assert data.status_code == 200
    doc = data.json()
    assert doc["border_line"]["features"] and doc["grids"]["features"]
    assert {f["properties"]["side"] for f in doc["districts"]["features"]} == {ANJU, TONGNAN}


def test_buttons_follow_the_workflow_and_the_keys_side(
    client: Any, api_keys: dict[str, str]
) -> None:
    case = report(client, api_keys, ZONE_A)
    page = client.get(f"/cases/{case['code']}", headers=bearer(api_keys["operator:510904"])).text
    assert buttons(page) == ["accept", "reject", "escalate", "merge"]
    assert 'name="side" value="510904"' in page and 'value="500152"' not in page
    admin = client.get(f"/cases/{case['code']}", headers=bearer(api_keys["admin"])).text
    assert buttons(admin) == ["accept", "reject", "escalate", "merge"]
    assert '<select name="side">' in admin  # an admin picks the side
    move(client, api_keys["operator:510904"], case, "accept", ANJU)
    move(client, api_keys["operator:510904"], case, "dispatch", ANJU)
    move(client, api_keys["operator:510904"], case, "start", ANJU)
    move(client, api_keys["operator:510904"], case, "resolve", ANJU, note="已处理")
    move(client, api_keys["operator:510904"], case, "verify", ANJU)
    signed = client.get(f"/cases/{case['code']}", headers=bearer(api_keys["operator:510904"])).text
    assert "verify" not in buttons(signed)
    assert "等待潼南区核查" in signed
    other = client.get(f"/cases/{case['code']}", headers=bearer(api_keys["operator:500152"])).text
    assert "verify" in buttons(other)
    admin = client.get(f"/cases/{case['code']}", headers=bearer(api_keys["admin"])).text
    form = re.search(r'data-action="verify">.*?</form>', admin, re.S)
    assert form and 'value="500152"' in form.group(0) and 'value="510904"' not in form.group(0)


# -- refusals: the button is not shown, and posting its form anyway is refused ---------------


def post_form(client: Any, key: str, case: dict[str, Any], **form: str) -> Any:
    return client.post(f"/cases/{case['code']}/actions", data=form, headers=bearer(key))


def test_refused_an_action_the_workflow_does_not_allow_now(
    client: Any, api_keys: dict[str, str]
) -> None:
    case = report(client, api_keys, ZONE_A)
    op = api_keys["operator:510904"]
    assert "close" not in buttons(client.get(f"/cases/{case['code']}", headers=bearer(op)).text)
    r = post_form(client, op, case, action="close", side=ANJU)
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "transition_not_allowed"
    assert (
        body["message"] == "案件当前为“待受理”，不能结案。现在可以：受理、不予受理、上报升级、合并"
    )
    assert set(body) == {"code", "message", "detail"}
    assert client.get(f"/api/v1/incidents/{case['id']}").json()["status"] == "reported"


def test_refused_acting_for_the_other_side(client: Any, api_keys: dict[str, str]) -> None:
    case = report(client, api_keys, ZONE_A)
    op = api_keys["operator:500152"]
    page = client.get(f"/cases/{case['code']}", headers=bearer(op)).text
    assert 'name="side" value="510904"' not in page
    r = post_form(client, op, case, action="accept", side=ANJU)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden" and "本账号代表潼南区办理" in r.json()["message"]
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    assert [e["action"] for e in events] == ["report"]


def test_refused_a_second_sign_off_by_the_same_side(client: Any, api_keys: dict[str, str]) -> None:
    case = report(client, api_keys, ZONE_A)
    op = api_keys["operator:510904"]
    for action, note in [
        ("accept", None),
        ("dispatch", None),
        ("start", None),
        ("resolve", "好了"),
    ]:
        move(client, op, case, action, ANJU, **({"note": note} if note else {}))
    move(client, op, case, "verify", ANJU)
    assert "verify" not in buttons(client.get(f"/cases/{case['code']}", headers=bearer(op)).text)
    r = post_form(client, op, case, action="verify", side=ANJU)
    assert r.status_code == 409 and r.json()["code"] == "transition_not_allowed"
    assert client.get(f"/api/v1/incidents/{case['id']}").json()["verified_sides"] == [ANJU]


def test_refused_a_team_member_of_another_team(client: Any, api_keys: dict[str, str]) -> None:
    case = report(client, api_keys, ZONE_A)
    key = api_keys[f"team_member:{case['teams'][0]['side']}"]
    if any(t["code"] == api_keys[f"team:{case['teams'][0]['side']}"] for t in case["teams"]):
        pytest.skip("the fixture's team member happens to serve this case")
    assert client.get(f"/cases/{case['code']}", headers=bearer(key)).status_code == 404
    r = post_form(client, key, case, action="accept", side=case["teams"][0]["side"])
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_refused_a_grid_worker(client: Any, api_keys: dict[str, str]) -> None:
    case = report(client, api_keys, ZONE_A)
    key = api_keys["grid_worker:510904"]
    assert client.get(f"/cases/{case['code']}", headers=bearer(key)).status_code == 403
    r = post_form(client, key, case, action="accept", side=ANJU)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_refused_an_action_without_the_note_it_needs(client: Any, api_keys: dict[str, str]) -> None:
    case = report(client, api_keys, ZONE_A)
    op = api_keys["operator:510904"]
    page = client.get(f"/cases/{case['code']}", headers=bearer(op)).text
    form = re.search(r'data-action="reject">.*?</form>', page, re.S)
    assert form and '<textarea name="note" rows="2" required' in form.group(0)
    r = post_form(client, op, case, action="reject", side=ANJU, note="  ")
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input" and "缺少备注" in r.json()["message"]


def test_refused_a_postpone_to_an_earlier_time(client: Any, api_keys: dict[str, str]) -> None:
    case = report(client, api_keys, ZONE_A)
    op = api_keys["operator:510904"]
    move(client, op, case, "accept", ANJU)
    move(client, op, case, "dispatch", ANJU)
    page = client.get(f"/cases/{case['code']}", headers=bearer(op)).text
    assert 'type="datetime-local" name="due_at"' in page
    r = post_form(
        client, op, case, action="postpone", side=ANJU, note="等材料", due_at="2020-01-01T08:00"
    )
    assert r.status_code == 422 and "新的截止时间须晚于" in r.json()["message"]
    ok = post_form(
        client, op, case, action="postpone", side=ANJU, note="等材料", due_at="2099-01-01T08:00"
    )
    assert ok.status_code == 200, ok.text
    due = client.get(f"/api/v1/incidents/{case['id']}").json()["due_at"]
    assert due.startswith("2099-01-01T00:00:00")  # 08:00 Beijing time


# -- signed in with a session: the form's CSRF token ------------------------------------------


@pytest.fixture()
def browser_like(live_client: Any) -> Iterator[Any]:
    """The committed app, without the admin's bearer header: it signs in like a browser."""
    from fastapi.testclient import TestClient

    with TestClient(live_client.app, raise_server_exceptions=False) as c:
        yield c


def sign_in(c: Any, key: str, target: str) -> str:
    c.cookies.clear()
    form = c.get(f"/login?next={target}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    r = c.post(
        "/login", data={"key": key, "csrf_token": token, "next": target}, follow_redirects=False
    )
    assert r.status_code == 303
    return target


def test_refused_a_form_posted_without_its_csrf_token(
    browser_like: Any, live_client: Any, api_keys: dict[str, str]
) -> None:
    case = report(live_client, api_keys, ZONE_A)
    c = browser_like
    sign_in(c, api_keys["operator:510904"], f"/cases/{case['code']}")
    page = c.get(f"/cases/{case['code']}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    fields = {"action": "accept", "side": ANJU}
    refused = c.post(f"/cases/{case['code']}/actions", data=fields)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert live_client.get(f"/api/v1/incidents/{case['id']}").json()["status"] == "reported"
    ok = c.post(f"/cases/{case['code']}/actions", data=fields, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    assert ok.json()["status_name"] == "已受理"


def test_view_counts_are_capped(client: Any, api_keys: dict[str, str], monkeypatch: Any) -> None:
    from api.pages import cases

    tag = uuid.uuid4().hex[:8]
    for _ in range(3):
        report(client, api_keys, INLAND_A, description=tag)
    monkeypatch.setattr(cases, "COUNT_CAP", 2)
    got = client.get(f"/cases/counts?q={tag}", headers=bearer(api_keys["admin"])).json()
    assert got["counts"]["reported"] == "2+" and got["counts"]["working"] == "0"
    monkeypatch.setattr(cases, "COUNT_CAP", 3)
    got = client.get(f"/cases/counts?q={tag}", headers=bearer(api_keys["admin"])).json()
    assert got["counts"]["reported"] == "3"


def test_a_sides_counts_read_in_one_pass_agree_with_the_counts_group_by_group(
    client: Any, conn: Any, api_keys: dict[str, str], monkeypatch: Any
) -> None:
    from api.pages import cases
    from layers import incidents

    tag = uuid.uuid4().hex[:8]
    late = report(client, api_keys, INLAND_A, description=tag)
    report(client, api_keys, INLAND_A, description=tag)
    cross = report(client, api_keys, ZONE_A, description=tag)
    move(client, api_keys["operator:510904"], cross, "accept", ANJU)
    conn.execute(
        "UPDATE incidents SET due_at = now() - interval '1 hour' WHERE id = %s", (late["id"],)
    )

    def counts(key: str, **more: str) -> dict[str, str]:
        query = "&".join(f"{k}={v}" for k, v in {"q": tag, **more}.items())
        got = client.get(f"/cases/counts?{query}", headers=bearer(api_keys[key]))
        assert got.status_code == 200, got.text
        return got.json()["counts"]  # type: ignore[no-any-return]

    zero = {"verifying": "0", "closing": "0", "done": "0"}
    anju = {"reported": "2", "working": "1", "all": "3", "overdue": "1", **zero}
    tongnan = {"reported": "0", "working": "1", "all": "1", "overdue": "0", **zero}
    late_only = {"reported": "1", "working": "0", "all": "1", "overdue": "1", **zero}
    capped = {"reported": "1+", "working": "1", "all": "1+", "overdue": "1", **zero}
    one_pass = [counts("operator:510904"), counts("operator:500152")]
    one_pass.append(counts("operator:510904", overdue="1"))
    monkeypatch.setattr(cases, "COUNT_CAP", 1)
    one_pass.append(counts("operator:510904"))
    monkeypatch.setattr(cases, "COUNT_CAP", 999)
    assert one_pass == [anju, tongnan, late_only, capped]
    # a side with more cases than one pass reads is counted group by group, to the same counts
    monkeypatch.setattr(incidents, "SCOPE_SCAN_MAX", 1)
    by_group = [counts("operator:510904"), counts("operator:500152")]
    by_group.append(counts("operator:510904", overdue="1"))
    monkeypatch.setattr(cases, "COUNT_CAP", 1)
    by_group.append(counts("operator:510904"))
    assert by_group == one_pass
