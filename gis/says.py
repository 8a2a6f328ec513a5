"""The English sentence of each routing step (``Step.says``), rendered from the step's data.

``gis.routing`` records every step as its name and its data; the sentence is written here
from that data, as ``api/i18n/trace.py`` writes the Chinese one. The data rounds metres to
0.1 m, and the sentences quote whole metres of the exact value (as they always have), so
each renderer is also given ``ctx``: the names the data refers to by code (sides, grids,
teams, categories, mechanisms) and the exact values behind its rounded ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Data = Mapping[str, Any]


def _place(d: Data, ctx: Data) -> str:
    side = f"{ctx['side_name']} ({d['side']})"
    if ctx["snapped_m"]:
        text = (
            f"{ctx['snapped_m']:.0f} m outside every side, within the {ctx['tolerance_m']:.0f} m "
            f"tolerance: taken as {side}"
        )
    else:
        text = f"in {side}: {' / '.join(ctx['chain']) or 'no village polygon here'}"
    if ctx["on_line"]:
        text += "; the point lies on the line itself"
    return text


def _border_zone(d: Data, ctx: Data) -> str:
    dist, zone = ctx["distance_m"], d["zone_m"]
    if d.get("sides"):
        names = ", ".join(ctx["names"][s] for s in d["sides"])
        return f"{dist:,.0f} m from {names}: within the {zone:,.0f} m border zone"
    far = f" ({dist:,.0f} m > {zone:,.0f} m)" if dist is not None else ""
    return "no other side within the border zone" + far


def _extent(d: Data, ctx: Data) -> str:
    sides = d["sides"]
    if len(sides) >= 2 or any(s != ctx["side"] for s in sides):
        return f"the extent touches sides {', '.join(sides)}"
    return "the extent stays on one side"


def _parties(d: Data, ctx: Data) -> str:
    return f"people involved belong to {', '.join(d['sides'])}"


def _joint_grid(d: Data, ctx: Data) -> str:
    first = d["grids"][0]
    return f"inside joint grid {first} {ctx['grid_names'][first]}, run by {', '.join(d['sides'])}"


def _mechanism(d: Data, ctx: Data) -> str:
    if d["mechanism"] is None:
        return (
            f"single-side case: {ctx['side_name']} handles it alone through its own grid and "
            "police grid"
        )
    return (
        f"cross-boundary ({', '.join(d['reasons'])}): category {ctx['category']} "
        f"({ctx['category_name']}) is in group {d['group']}, handled by {d['mechanism']} "
        f"{ctx['mechanism_name']}"
    )


def _lead_side(d: Data, ctx: Data) -> str:
    return f"lead side {d['lead_side']}: it contains the point"


def fix_age(age_s: float) -> str:
    """How old a fix is, for reading: ``45 s``, ``3 min``."""
    return f"{age_s:.0f} s" if age_s < 60 else f"{age_s / 60:.0f} min"


def _by_fix(c: Data, ctx: Data) -> str:
    dist = ctx["distance_m"][c["code"]]
    return f"{dist:,.0f} m from the point (fix {fix_age(c['fix_age_s'])} old)"


def _placed(c: Data, ctx: Data, *, base: str) -> str:
    """Where a candidate team was measured from: ``T07, 180 m from the point (fix 3 min old)``
    by a member's fix, else ``T07 (1,234 m<base>)`` from its base, as before positions."""
    if c.get("placed_by") == "fix":
        return f"{c['code']}, {_by_fix(c, ctx)}"
    return f"{c['code']} ({ctx['distance_m'][c['code']]:,.0f} m{base})"


def _teams(d: Data, ctx: Data) -> str:
    # The choice of gis.routing.choose_teams, read back from its candidates (nearest first).
    cands, mech = d["candidates"], ctx["mechanism"]
    covering = [c for c in cands if c["covers"] and c["on_duty"]]
    on = [c for c in cands if c["on_duty"]]
    if covering:
        lead = covering[0]
        text = f"{len(covering)} team(s) serving {mech} cover the point and are on duty"
    elif on:
        lead = on[0]
        text = (
            f"no team serving {mech} covers the point while on duty; "
            f"nearest on duty: {_placed(lead, ctx, base=' from its base')}"
        )
    elif cands:
        lead = cands[0]
        text = (
            f"no team serving {mech} is on duty at {d['at']}; "
            f"nearest: {_placed(lead, ctx, base='')}, to be called out"
        )
    else:
        return f"no team serves {mech}; the contacts on each side act"
    text += f"; lead team {lead['code']} {ctx['names'][lead['code']]}"
    if covering and lead.get("placed_by") == "fix":
        text += ", " + _by_fix(lead, ctx)
    return text


def _contacts(d: Data, ctx: Data) -> str:
    contacts, sides = ctx["contacts"], ctx["sides"]
    found = [
        f"{s}: "
        + ", ".join(f"{c.role} {c.name} ({c.distance_m:,.0f} m)" for c in contacts if c.side == s)
        for s in sides
        if any(c.side == s for c in contacts)
    ]
    missing = [s for s in sides if not any(c.side == s for c in contacts)]
    return "; ".join(found) + (f"; no contact found for {', '.join(missing)}" if missing else "")


def _due(d: Data, ctx: Data) -> str:
    return (
        f"severity {ctx['severity']}: resolve within {d['hours']:.0f} h "
        "(the clock restarts at dispatch)"
    )


def _duplicates(d: Data, ctx: Data) -> str:
    return (
        f"possible duplicate of {d['code']}: same category, {ctx['distance_m']:,.0f} m away, "
        "still open (not merged automatically)"
    )


# each renderer is named after its step: ``_place`` renders the step "place"
SAYS: dict[str, Callable[[Data, Data], str]] = {
    fn.__name__.removeprefix("_"): fn
    for fn in (_place, _border_zone, _extent, _parties, _joint_grid, _mechanism, _lead_side,
               _teams, _contacts, _due, _duplicates)
}  # fmt: skip


def says(step: str, data: Data, ctx: Data) -> str:
    """The English sentence of ``step`` from its ``data`` (and ``ctx``, see the module)."""
    return SAYS[step](data, ctx)
