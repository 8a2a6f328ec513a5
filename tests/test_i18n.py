"""The message catalogue: complete for every code people may meet, Chinese first."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from api import i18n
from api.errors import HTTP_CODES
from api.i18n import trace as trace_text
from api.settings import data
from gis import errors, workflow


def _codes() -> set[str]:
    found = {
        cls.code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.DomainError)
    }
    found |= {
        cls.code
        for _, cls in inspect.getmembers(workflow, inspect.isclass)
        if issubclass(cls, errors.DomainError)
    }
    found |= {code for code, _ in HTTP_CODES.values()}
    return found | {"invalid_request", "internal_error", "http_error"}


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_each_catalogue_entry_has_one_msgid_and_one_msgstr(locale: str) -> None:
    # A merge once left a second msgstr under three keys; Babel's reader quietly kept the
    # first, as gettext's msgfmt would not. Each entry: one msgid, then one msgstr.
    path = Path(i18n.__file__).parent / "locales" / locale / "LC_MESSAGES" / "messages.po"
    last = ""
    bad = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        word = line.split(" ", 1)[0]
        if word in ("msgid", "msgstr"):
            if word == last:
                bad.append(n)
            last = word
    assert bad == [], f"{path.name}: a second {last} at lines {bad}"


def test_both_languages_have_the_same_keys() -> None:
    zh, en = i18n.messages("zh_CN"), i18n.messages("en")
    assert set(zh) == set(en)
    assert len(zh) > 200


@pytest.mark.parametrize("code", sorted(_codes()))
def test_every_api_error_code_has_a_chinese_template(code: str) -> None:
    keys = [
        k for k in i18n.messages("zh_CN") if k == f"error.{code}" or k.startswith(f"error.{code}.")
    ]
    assert keys, f"no template for error code {code}"
    text = i18n.error_text(code, {}, "zh_CN")
    assert text != i18n.t("error.unknown", code=code), f"{code} falls through to the unknown text"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_names_follow_the_catalogue_file() -> None:
    doc = yaml.safe_load(data().catalogue.read_text(encoding="utf-8"))
    for kind in ("mechanisms", "categories", "groups"):
        for code, entry in doc[kind].items():
            key = f"{kind[:-1] if kind != 'categories' else 'category'}.{code}"
            assert i18n.t(key) == entry["name"], key
            assert i18n.t(key, "en") == entry["name_en"], key
    for status in workflow.STATUSES:
        assert i18n.has(f"status.{status}")
    for action in workflow.ACTIONS:
        assert i18n.has(f"action.{action}")
    for rung in doc["escalation"]:
        assert i18n.has(f"ladder.{rung['level']}")


def test_domain_names() -> None:
    assert i18n.t("status.resolved") == "待核查"
    assert i18n.t("action.return") == "退回重办"
    assert i18n.side_name("510904") == "安居区（四川省遂宁市）"
    assert i18n.side_name("500152") == "潼南区（重庆市）"
    assert i18n.side_name("500152", form="label") == "潼南区（重庆）"
    assert i18n.side_name("500224") == "辖区 500224"  # a new neighbour before it is named
    assert i18n.t("severity.red") == "红色（特别重大）"


def test_times_are_beijing_time() -> None:
    at = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)
    assert i18n.when(at) == "2026年12月2日 09:30"
    assert i18n.when(at, "short") == "12-02 09:30"
    assert i18n.when("2026-12-01T16:05:00+00:00", "short") == "12-02 00:05"
    assert i18n.when(None) == "—"
    assert i18n.iso_local(at) == "2026-12-02T09:30"
    now = at
    assert i18n.time_left(at + timedelta(hours=5, minutes=10), now) == "剩余 5小时10分"
    assert i18n.time_left(at - timedelta(days=2, hours=3), now) == "超期 2天3小时"
    assert i18n.time_left(None, now) == "未计时"
    # the strftime fast path writes what babel writes, in both languages, around the year
    from babel.dates import format_datetime

    for k in range(0, 366 * 24, 7):
        moment = datetime(2026, 1, 1, 0, 17, tzinfo=UTC) + timedelta(hours=k)
        for loc in ("zh_CN", "en"):
            pattern, fast = next(iter(i18n._NUMERIC.items()))
            assert i18n.when(moment, "short", loc) == format_datetime(
                moment, pattern, tzinfo=i18n.TZ, locale=loc
            )
            assert fast


@pytest.mark.parametrize(
    ("code", "detail", "expected"),
    [
        ("invalid_coordinates", {"lon": 30.2, "lat": 105.6}, "经度=105.6、纬度=30.2"),
        ("invalid_coordinates", {"lon": 200.0, "lat": 30.0}, "经度须在 ±180"),
        ("invalid_coordinates", {"lon": "nan", "lat": "nan"}, "有限的十进制度"),
        (
            "transition_not_allowed",
            {"status": "reported", "action": "close", "allowed": ["accept", "reject"]},
            "案件当前为“待受理”，不能结案。现在可以：受理、不予受理",
        ),
        (
            "transition_not_allowed",
            {"status": "closed", "action": "close", "allowed": []},
            "现在可以：无",
        ),
        ("invalid_input", {"missing": "note"}, "缺少备注"),
        ("invalid_input", {"missing": "due_at"}, "缺少新的截止时间"),
        ("forbidden", {"side": "510904"}, "本账号代表安居区办理"),
        (
            "outside_service_area",
            {"distance_m": 12345.6, "nearest_side": "500152"},
            "12,346 米（最近辖区：潼南区）",
        ),
        (
            "side_not_involved",
            {"side": "510904", "sides": ["500152"]},
            "安居区不是该案件的涉及方；涉及方：潼南区",
        ),
        ("unknown_category", {"valid": ["theft"]}, "盗窃 theft"),
        ("invalid_request", [{"field": "lon", "problem": "x"}], "请求字段有误：lon"),
    ],
)
def test_error_templates_render_the_detail(code: str, detail: Any, expected: str) -> None:
    assert expected in i18n.error_text(code, detail)


def test_trace_is_rendered_from_its_data() -> None:
    case = {
        "side": "510904",
        "category": "theft",
        "severity": "red",
        "mechanism": "joint_defense",
        "teams": [{"code": "T1", "name": "安居联防一队"}],
    }
    trace = [
        {
            "step": "border_zone",
            "says": "x",
            "data": {"distance_m": 812.4, "zone_m": 2000, "sides": ["500152"]},
        },
        {
            "step": "mechanism",
            "says": "x",
            "data": {
                "reasons": ["border_zone"],
                "group": "public_security",
                "mechanism": "joint_defense",
                "sides": ["510904", "500152"],
            },
        },
        {
            "step": "teams",
            "says": "x",
            "data": {
                "at": "2026-12-01T02:00:00+00:00",
                "candidates": [
                    {"code": "T2", "covers": False, "on_duty": True, "base_distance_m": 100},
                    {"code": "T1", "covers": True, "on_duty": True, "base_distance_m": 300},
                ],
            },
        },
        {
            "step": "due",
            "says": "x",
            "data": {"hours": 24.0, "due_at": "2026-12-02T02:00:00+00:00"},
        },
        {"step": "new_step", "says": "an English sentence", "data": {}},
    ]
    out = trace_text.render(trace, case)
    assert out[0]["text"] == "距潼南区 812 米，在 2,000 米边界区域内"
    assert out[1]["text"] == "跨界事件（位于边界区域）：盗窃属于治安类，由联防机制办理"
    assert out[2]["text"] == "1 支联防队伍覆盖该点且在岗；牵头队伍 T1 安居联防一队"
    assert out[3]["text"] == "红色（特别重大）：须在 24 小时内办结（派遣时起算）"
    assert out[4]["text"] == "an English sentence"
    assert out[0]["title"] == "边界区域"


def test_browser_copy(client: Any) -> None:
    r = client.get("/i18n/zh_CN.json")
    assert r.status_code == 200
    assert r.json()["messages"]["status.reported"] == "待受理"
    assert "max-age" in r.headers["cache-control"]
    again = client.get("/i18n/zh_CN.json", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/i18n/en.json").json()["messages"]["status.reported"] == "reported"
    missing = client.get("/i18n/fr.json")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_the_sign_in_page_is_chinese_first_from_the_catalogue(client: Any) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    for key in ("login.title", "login.key", "login.hint"):
        zh, en = i18n.t(key), i18n.t(key, "en")
        assert zh != en and zh in page.text and en in page.text, key
        assert page.text.index(zh) < page.text.index(en), key
    refused = client.post("/login", data={"key": "nope", "csrf_token": "not the cookie's"})
    assert refused.status_code == 403
    zh, en = i18n.t("login.expired"), i18n.t("login.expired", "en")
    assert refused.text.index(zh) < refused.text.index(en)
