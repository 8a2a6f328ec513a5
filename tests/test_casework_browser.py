"""A case worked through the pages only, in Debian's Chromium (1600 x 1000, zh-CN).

Reported through the API as a grid worker would; then accepted, dispatched, started, resolved,
verified by both sides and closed by clicking the case page's buttons, each by a key signed in
through /login. After each step the API and the audit trail are checked. Screenshots go to
var/test-artifacts/.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside
from tests.test_browser import Requests, wait_js

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "test-artifacts"
VIEWPORT = {"width": 1600, "height": 1000}


class Desk:
    """One person at a browser: a context of their own, signed in with their key."""

    def __init__(self, browser: Any, base: str, key: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
        self.seen = Requests(self.context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.key = key

    def sign_in(self, target: str) -> None:
        self.page.goto(f"{self.base}/login?next={quote(target, safe='')}")
        self.page.fill("#key", self.key)
        self.page.click("button[type=submit]")
        path = target.split("?")[0]
        self.page.wait_for_url(lambda url: urlsplit(url).path == path)

    def act(self, action: str, *, note: str | None = None, side: str | None = None) -> None:
        form = self.page.locator(f'form.act[data-action="{action}"]')
        if note is not None:
            form.locator("[name=note]").fill(note)
        if side is not None:
            form.locator("select[name=side]").select_option(side)
        before = self.page.get_attribute(".case-page", "data-status")
        with self.page.expect_navigation():
            form.locator(f'button[data-action="{action}"]').click()
        self.page.wait_for_selector(".case-page")
        assert self.page.locator(".refusal:not([hidden])").count() == 0
        assert self.page.get_attribute(".case-page", "data-status") != before or action == "verify"

    def buttons(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "button[data-action]", "els => els.map(e => e.dataset.action)"
        )

    def close(self) -> None:
        self.context.close()
        assert self.seen.outside() == [], self.seen.outside()
        assert not self.errors, self.errors


def api(base: str, key: str, case_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    case = httpx.get(f"{base}/api/v1/incidents/{case_id}", headers=bearer(key), timeout=10)
    events = httpx.get(f"{base}/api/v1/incidents/{case_id}/events", headers=bearer(key), timeout=10)
    assert case.status_code == 200 and events.status_code == 200
    return case.json(), events.json()["events"]


def test_a_case_worked_through_the_pages_from_report_to_close(
    live_server: str, browser: Any, api_keys: dict[str, str], db_url: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base, admin = live_server, api_keys["admin"]
    lon, lat = point_inside(ANJU, 450, 0.418)
    r = httpx.post(
        f"{base}/api/v1/incidents",
        json={
            "lon": lon,
            "lat": lat,
            "category": "theft",
            "severity": "orange",
            "description": "村口小卖部夜间被盗，嫌疑人往潼南方向逃离",
        },
        headers={**bearer(api_keys["grid_worker:510904"]), "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    case = r.json()
    code, cid = case["code"], case["id"]
    assert case["cross_boundary"] and set(case["sides"]) == {ANJU, TONGNAN}
    target = f"/cases/{code}"
    steps: list[tuple[str, str, str]] = []

    def check(status: str, action: str, side: str | None, role: str) -> dict[str, Any]:
        now, events = api(base, admin, cid)
        assert now["status"] == status, (action, now["status"])
        last = events[-1]
        assert last["action"] == action and last["to_status"] == status
        assert last["actor_side"] == side and last["actor"]["role"] == role
        steps.append((action, status, role))
        assert len(events) == len(steps) + 1  # the report, then one event per step
        return now

    # 2. an operator of Anju accepts it
    anju = Desk(browser, base, api_keys["operator:510904"])
    anju.sign_in(target)
    assert anju.buttons() == ["accept", "reject", "escalate", "merge"]
    assert "待受理" in anju.page.inner_text(".case-head")
    anju.page.wait_for_selector("#case-map[data-ready=true]")
    anju.page.screenshot(path=str(ARTIFACTS / "case-1-reported.png"), full_page=True)
    anju.act("accept", note="已受理，请潼南方面配合")
    check("accepted", "accept", ANJU, "operator")
    assert "已受理" in anju.page.inner_text(".case-head")
    assert "已受理，请潼南方面配合" in anju.page.inner_text(".timeline")

    # 3. an operator of Tongnan dispatches it
    tongnan = Desk(browser, base, api_keys["operator:500152"])
    tongnan.sign_in(target)
    assert "dispatch" in tongnan.buttons() and "accept" not in tongnan.buttons()
    tongnan.act("dispatch")
    now = check("dispatched", "dispatch", TONGNAN, "operator")
    assert now["due_at"] is not None
    tongnan.page.screenshot(path=str(ARTIFACTS / "case-2-dispatched.png"), full_page=True)

    # 4. a member of the lead team starts and resolves it
    lead = next(t for t in now["teams"] if t.get("lead"))
    from layers import keys
    from layers.db import connect

    with connect(db_url) as c:
        c.autocommit = True
        member_key, _ = keys.create(
            c, role="team_member", side=lead["side"], team=lead["code"], name="联防队员"
        )
    member = Desk(browser, base, member_key)
    member.sign_in("/cases")
    member.page.locator(f'tr.case[data-code="{code}"]').wait_for()  # 处置中, its default view
    member.page.screenshot(path=str(ARTIFACTS / "case-3-team-inbox.png"))
    member.page.click(f'tr.case[data-code="{code}"] .code a')
    member.page.wait_for_url(f"{base}{target}")
    member.act("start")
    check("in_progress", "start", lead["side"], "team_member")
    assert "resolve" in member.buttons()
    member.act("resolve", note="已追回被盗物品，嫌疑人移交派出所")
    check("resolved", "resolve", lead["side"], "team_member")
    member.page.screenshot(path=str(ARTIFACTS / "case-4-resolved.png"), full_page=True)

    # 5. both sides verify: verified only after the second
    anju.page.reload()
    assert "等待安居区、潼南区核查" in anju.page.inner_text(".waiting")
    anju.act("verify")
    now = check("resolved", "verify", ANJU, "operator")
    assert now["verified_sides"] == [ANJU]
    assert "verify" not in anju.buttons()
    assert "等待潼南区核查" in anju.page.inner_text(".waiting")
    anju.page.screenshot(path=str(ARTIFACTS / "case-5-one-side-signed.png"), full_page=True)
    tongnan.page.reload()
    tongnan.act("verify")
    now = check("verified", "verify", TONGNAN, "operator")
    assert set(now["verified_sides"]) == {ANJU, TONGNAN}

    # 6. an admin closes it, choosing the side it acts for
    boss = Desk(browser, base, admin)
    boss.sign_in(target)
    assert boss.buttons() == ["close"]
    boss.act("close", side=TONGNAN, note="双方核查通过，结案")
    check("closed", "close", TONGNAN, "admin")
    assert boss.buttons() == []
    timeline = boss.page.inner_text(".timeline")
    for word in ("上报", "受理", "派遣", "开始处置", "办结", "核查通过", "结案"):
        assert word in timeline
    boss.page.screenshot(path=str(ARTIFACTS / "case-6-closed.png"), full_page=True)
    for desk in (anju, tongnan, member, boss):
        desk.close()


def test_a_refused_action_shows_its_reason_in_place_in_chinese(
    live_server: str, browser: Any, api_keys: dict[str, str]
) -> None:
    lon, lat = point_inside(ANJU, 450, 0.418)
    r = httpx.post(
        f"{live_server}/api/v1/incidents",
        json={"lon": lon, "lat": lat, "category": "fight"},
        headers={**bearer(api_keys["grid_worker:510904"]), "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    case = r.json()
    desk = Desk(browser, live_server, api_keys["operator:510904"])
    desk.sign_in(f"/cases/{case['code']}")
    # Another operator accepts it meanwhile: this page still offers 受理.
    httpx.post(
        f"{live_server}/api/v1/incidents/{case['id']}/transitions",
        json={"action": "accept", "side": TONGNAN},
        headers=bearer(api_keys["operator:500152"]),
        timeout=10,
    ).raise_for_status()
    desk.page.locator('button[data-action="accept"]').click()
    refusal = desk.page.locator('form[data-action="accept"] .refusal')
    refusal.wait_for()
    assert refusal.inner_text() == (
        "案件当前为“已受理”，不能受理。现在可以：派遣、不予受理、上报升级、合并"
    )
    desk.page.screenshot(path=str(ARTIFACTS / "case-refused.png"))
    desk.close()


def test_the_inbox_refreshes_and_marks_what_is_new_since_the_last_visit(
    live_server: str, browser: Any, api_keys: dict[str, str]
) -> None:
    def new_case(description: str) -> str:
        lon, lat = point_inside(TONGNAN, 3000, 0.263)
        r = httpx.post(
            f"{live_server}/api/v1/incidents",
            json={"lon": lon, "lat": lat, "category": "fire", "description": description},
            headers={
                **bearer(api_keys["grid_worker:510904"]),
                "Idempotency-Key": str(uuid.uuid4()),
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    old = new_case("刷新测试 旧")
    desk = Desk(browser, live_server, api_keys["operator:500152"])
    desk.sign_in("/cases?q=刷新测试&refresh=2")
    desk.page.locator(f'tr.case[data-code="{old}"]').wait_for()
    assert desk.page.evaluate("window.JointGridInbox.lastSeen") is None  # a first visit
    fresh = new_case("刷新测试 新")
    row = desk.page.locator(f'tr.case[data-code="{fresh}"]')
    row.wait_for(timeout=10_000)  # arrived by a refresh, without a reload
    assert desk.page.locator(f'tr.case[data-code="{fresh}"].new').count() == 1
    assert desk.page.locator(f'tr.case[data-code="{old}"].new').count() == 0
    assert desk.page.evaluate("window.JointGridInbox.refreshes") >= 1
    assert desk.page.evaluate("performance.getEntriesByType('navigation').length") == 1
    desk.page.goto(f"{live_server}/cases?q=刷新测试&refresh=2")  # a later visit
    newer = new_case("刷新测试 更新")
    desk.page.locator(f'tr.case[data-code="{newer}"].new').wait_for(timeout=10_000)
    # seen in the last refresh of the previous visit: no longer new
    assert desk.page.locator(f'tr.case[data-code="{fresh}"].new').count() == 0
    assert desk.page.locator(f'tr.case[data-code="{newer}"] .new-mark').is_visible()
    wait_js(desk.page, "window.JointGridInbox.counted >= 1")
    # the pickers, filled from /cases/choices: every team serving the operator's side
    wait_js(desk.page, "window.JointGridInbox.choices === true")
    assert desk.page.locator("select[name=team] option").count() > 1
    assert desk.page.locator("select[name=side] option").count() > 2
    count = desk.page.inner_text('[data-count="reported"]')
    assert int(count) >= 3
    desk.page.screenshot(path=str(ARTIFACTS / "cases-inbox.png"))
    desk.close()


def test_a_popup_in_a_spiderfied_cluster_stays_open_while_the_map_refreshes(
    live_server: str, browser: Any, api_keys: dict[str, str]
) -> None:
    lon, lat = point_inside(TONGNAN, 350, 0.137)
    made = []
    for k in range(3):  # three reports from the same spot: one cluster at any zoom
        r = httpx.post(
            f"{live_server}/api/v1/incidents",
            json={
                "lon": lon,
                "lat": lat,
                "category": "illegal_dumping",
                "description": f"同一地点第 {k + 1} 次上报：河边倾倒建筑垃圾",
            },
            headers={
                **bearer(api_keys["grid_worker:510904"]),
                "Idempotency-Key": str(uuid.uuid4()),
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    last = made[-1]
    assert last["possible_duplicate_of"] is not None
    desk = Desk(browser, live_server, api_keys["admin"])
    desk.sign_in("/map")
    desk.page.goto(f"{live_server}/map?refresh=2#18/{lat:.6f}/{lon:.6f}")
    wait_js(desk.page, "document.documentElement.getAttribute('data-jg-ready')")
    mark = desk.page.locator(f'.jg-mark[data-code="{last["code"]}"]')
    for _attempt in range(3):  # a person clicks again if the first click hit a redrawn icon
        cluster = desk.page.locator(".jg-mcluster").first
        cluster.wait_for(timeout=10_000)
        cluster.click()
        try:
            mark.wait_for(timeout=5_000)
            break
        except PlaywrightTimeout:
            continue
    mark.wait_for(timeout=5_000)
    desk.page.wait_for_timeout(400)  # the spider's legs unfold
    mark.click()
    popup = desk.page.locator(f'.leaflet-popup .jg-popup[data-code="{last["code"]}"]')
    popup.wait_for(timeout=10_000)
    # a new report nearby while the popup is open: the refresh brings it, and must wait
    later = httpx.post(
        f"{live_server}/api/v1/incidents",
        json={"lon": lon + 0.0003, "lat": lat, "category": "fire", "description": "附近新报"},
        headers={**bearer(api_keys["grid_worker:510904"]), "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    ).json()
    before = desk.page.evaluate("JointGrid.status.incidents.at.getTime()")
    wait_js(
        desk.page, f"JointGrid.status.incidents.at.getTime() > {before} + 3000", timeout=15_000
    )  # two refreshes later
    assert popup.is_visible(), "the popup closed during a refresh"
    assert desk.page.evaluate("JointGrid.hold.spider") is True
    text = popup.inner_text()
    assert "河边倾倒建筑垃圾" in text and "待受理" in text and "乱倒垃圾渣土" in text
    assert popup.locator("a.jg-open-case").first.get_attribute("href") == f"/cases/{last['code']}"
    dup = popup.locator(".jg-duplicate a")
    assert dup.get_attribute("href").startswith("/cases/JG")
    assert "视野内" in desk.page.inner_text("#jg-status")
    desk.page.screenshot(path=str(ARTIFACTS / "map-popup-spiderfied.png"))
    # once the popup closes and the cluster folds, the refresh applies again
    desk.page.locator(".leaflet-popup-close-button").click()
    wait_js(desk.page, "JointGrid.hold.popup === null")
    desk.page.evaluate("JointGrid.container.points.unspiderfy()")
    desk.page.locator(f'.jg-mark[data-code="{later["code"]}"]').wait_for(timeout=10_000)
    desk.close()
