"""The words of notifications to people, in one module so that they can move into the message
catalogue (``api/i18n``) as they are: Chinese first, times in Beijing time."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gis.catalogue import Catalogue

BEIJING = ZoneInfo("Asia/Shanghai")

EVENT_TITLES = {
    "incident.reported": "新上报案件",
    "incident.accepted": "案件已受理",
    "incident.dispatched": "案件已派遣，请及时处置",
    "incident.started": "案件处置中",
    "incident.resolved": "案件已办结，待本方核查",
    "incident.verified": "案件已核查",
    "incident.closed": "案件已结案",
    "incident.rejected": "案件不予受理",
    "incident.returned": "案件被退回重办",
    "incident.postponed": "案件已延期",
    "incident.escalated": "案件已上报升级",
    "incident.merged": "案件已合并",
    "incident.overdue": "案件已超期，请立即处置",
    "incident.rerouted": "案件已重新分派",
    "incident.photo_added": "案件新增照片",
    "incident.media_refused": "案件照片未通过检查，未予采用",
}

STATUS_NAMES = {
    "reported": "待受理",
    "accepted": "已受理",
    "dispatched": "已派遣",
    "in_progress": "处置中",
    "resolved": "待核查",
    "verified": "已核查",
    "closed": "已结案",
    "rejected": "不予受理",
    "duplicate": "已合并",
}

SIDE_NAMES = {"510904": "安居区（四川省遂宁市）", "500152": "潼南区（重庆市）"}

LABELS = {
    "category": "类别",
    "severity": "等级",
    "status": "状态",
    "sides": "涉及",
    "lead_team": "牵头队伍",
    "due": "办理期限",
    "link": "查看",
    "brand": "川渝联动网格",
}


def batch_title(n: int) -> str:
    """The title of one message that carries ``n`` notifications."""
    return f"【{LABELS['brand']}】{n} 条案件提醒"


def beijing(t: datetime | None) -> str:
    """A time as people read it: 2026年12月2日 09:30 (Beijing time)."""
    if t is None:
        return "—"
    b = t.astimezone(BEIJING)
    return f"{b.year}年{b.month}月{b.day}日 {b:%H:%M}"


def side_name(code: str) -> str:
    return SIDE_NAMES.get(code, f"区县 {code}")


def message(
    event_type: str, case: dict[str, Any], *, catalogue: Catalogue | None, link: str
) -> tuple[str, str]:
    """(title, body) of a notification about ``case`` (a stored case row)."""
    title = f"【{LABELS['brand']}】{EVENT_TITLES.get(event_type, event_type)} {case['code']}"
    cat = case["category"]
    sev = case["severity"]
    if catalogue is not None:
        cat = catalogue.categories[cat].name if cat in catalogue.categories else cat
        sev = catalogue.severities[sev].name if sev in catalogue.severities else sev
    lead = next((t for t in case.get("teams") or [] if t.get("lead")), None)
    lines = [
        f"{LABELS['category']}：{cat}（{sev}）",
        f"{LABELS['status']}：{STATUS_NAMES.get(case['status'], case['status'])}",
        f"{LABELS['sides']}：{'、'.join(side_name(s) for s in case['sides'])}",
    ]
    if lead is not None:
        lines.append(f"{LABELS['lead_team']}：{lead.get('name') or lead.get('code')}")
    lines.append(f"{LABELS['due']}：{beijing(case.get('due_at'))}")
    lines.append(f"{LABELS['link']}：{link}")
    return title, "\n".join(lines)
