"""Duty rosters of the SYNTHETIC teams, shared by the demo (``make_demo.py``) and the province
(``province.py``)."""

from __future__ import annotations

from typing import Any

ROTAS = ("full", "office", "weekend_nights")


def roster(rota: str) -> dict[str, Any]:
    """Shift pattern; days are ISO weekdays (1 = Monday), times local (Asia/Shanghai)."""
    every_day = [1, 2, 3, 4, 5, 6, 7]
    day = {"name": "day", "days": every_day, "start": "08:00", "end": "20:00"}
    night = {"name": "night", "days": every_day, "start": "20:00", "end": "08:00"}
    if rota == "office":
        shifts = [{"name": "day", "days": [1, 2, 3, 4, 5], "start": "08:30", "end": "17:30"}]
    elif rota == "weekend_nights":
        shifts = [day, {**night, "days": [5, 6, 7]}]
    else:
        shifts = [day, night]
    return {"timezone": "Asia/Shanghai", "shifts": shifts}
