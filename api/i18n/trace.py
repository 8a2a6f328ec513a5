"""The routing trace in a person's language, rendered from each step's data.

``gis.routing.decide`` records every step as ``{"step", "says", "data"}``: ``says`` is the
English sentence, ``data`` the facts behind it. This module writes the sentence again from
``data`` through the message catalogue, so an operator reads it in Chinese. A step it does not
know (or one whose data lacks a field) falls back to its ``says``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from api.i18n import DEFAULT, join, name, side_name, t, when


def _m(value: Any) -> str:
    """Metres for reading: ``1,234``."""
    return "—" if value is None else f"{float(value):,.0f}"


def _sides(codes: Sequence[str] | None, loc: str) -> str:
    return join((side_name(c, loc, "short") for c in codes or ()), loc)


def _place(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    side = side_name(d["side"], loc, "short")
    if d.get("snapped_m"):
        text = t(
            "trace.place.snapped",
            loc,
            snapped=_m(d["snapped_m"]),
            tolerance=_m(ctx.get("tolerance_m", 100)),
            side=side,
        )
    else:
        text = t(
            "trace.place",
            loc,
            side=side,
            lon=d["lon"],
            lat=d["lat"],
            distance=_m(d.get("distance_to_border_m")),
        )
    if d.get("distance_to_border_m") == 0:
        text += "；" + t("trace.place.on_line", loc)
    return text


def _border_zone(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    if d.get("sides"):
        return t(
            "trace.border_zone",
            loc,
            sides=_sides(d["sides"], loc),
            distance=_m(d.get("distance_m")),
            zone=_m(d["zone_m"]),
        )
    if d.get("distance_m") is None:
        return t("trace.border_zone.none_far", loc, zone=_m(d["zone_m"]))
    return t("trace.border_zone.none", loc, zone=_m(d["zone_m"]), distance=_m(d["distance_m"]))


def _extent(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    sides = d.get("sides") or []
    if len(sides) >= 2 or any(s != ctx.get("side") for s in sides):
        return t("trace.extent", loc, sides=_sides(sides, loc))
    return t("trace.extent.one_side", loc)


def _parties(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    return t("trace.parties", loc, sides=_sides(d["sides"], loc))


def _joint_grid(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    return t("trace.joint_grid", loc, grids=join(d["grids"], loc), sides=_sides(d["sides"], loc))


def _mechanism(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    if d.get("mechanism") is None:
        return t("trace.mechanism.single", loc, side=side_name(ctx.get("side"), loc, "short"))
    return t(
        "trace.mechanism",
        loc,
        reasons=join((name("reason", r, loc) for r in d["reasons"]), loc),
        category=name("category", ctx.get("category"), loc),
        group=name("group", d["group"], loc),
        mechanism=name("mechanism", d["mechanism"], loc),
    )


def _lead_side(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    return t("trace.lead_side", loc, side=side_name(d["lead_side"], loc, "short"))


def _teams(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    # The same choice as gis.routing._pick_teams, read back from its candidates (nearest first).
    # A candidate placed by its member's fix (``placed_by: "fix"``) is said to be so, with its
    # distance from the point and the fix's age; one placed by its base, with its base's.
    cands = list(d.get("candidates") or [])
    mech = name("mechanism", ctx.get("mechanism"), loc)
    covering = [c for c in cands if c.get("covers") and c.get("on_duty")]
    on_duty = [c for c in cands if c.get("on_duty")]
    if covering:
        lead = covering[0]
        text = t("trace.teams.covering", loc, count=len(covering), mechanism=mech)
        if _by_fix(lead) or lead.get("placed_by") == "base":
            fix, base = "trace.teams.lead.fix", "trace.teams.lead.base"
            return text + "；" + _placed(fix, base, lead, loc, ctx)
    elif on_duty:
        lead = on_duty[0]
        fix, base = "trace.teams.nearest_on_duty.fix", "trace.teams.nearest_on_duty"
        text = _placed(fix, base, lead, loc, ctx)
    elif cands:
        lead = cands[0]
        at = when(d.get("at"), "long", loc)
        fix, base = "trace.teams.call_out.fix", "trace.teams.call_out"
        text = _placed(fix, base, lead, loc, ctx, at=at, mechanism=mech)
    else:
        return t("trace.teams.none", loc, mechanism=mech)
    return text + "；" + t("trace.teams.lead", loc, team=_team(lead, ctx))


def _placed(
    fix: str, base: str, lead: Mapping[str, Any], loc: str, ctx: Mapping[str, Any], **more: Any
) -> str:
    """The message ``fix`` when the lead team was placed by its member's fix (where the fix put
    it), else ``base`` (the team and its base's distance); ``more`` fills both."""
    if _by_fix(lead):
        return t(fix, loc, place=_fix_place(lead, loc, ctx), **more)
    return t(base, loc, team=_team(lead, ctx), distance=_m(lead.get("base_distance_m")), **more)


def _by_fix(cand: Mapping[str, Any]) -> bool:
    return cand.get("placed_by") == "fix"


def _fix_place(cand: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    """ "T07，距事发点 180 米（3 分钟前的定位）": where the member's fix put the team."""
    age = float(cand["fix_age_s"])
    age_text = (
        t("trace.teams.fix_age_s", loc, seconds=f"{max(age, 0.0):.0f}")
        if age < 59.5
        else t("trace.teams.fix_age_min", loc, minutes=f"{age / 60:.0f}")
    )
    return t(
        "trace.teams.fix_place",
        loc,
        team=_team(cand, ctx),
        distance=_m(cand["distance_m"]),
        age=age_text,
    )


def _team(cand: Mapping[str, Any], ctx: Mapping[str, Any]) -> str:
    names = ctx.get("team_names") or {}
    code = str(cand.get("code"))
    return f"{code} {names[code]}" if code in names else code


def _contacts(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    text = t("trace.contacts", loc, count=d.get("count", 0))
    if d.get("chief_roles"):
        text += "，" + t(
            "trace.contacts.chiefs",
            loc,
            roles=join((name("role", r, loc) for r in d["chief_roles"]), loc),
        )
    return text


def _due(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    return t(
        "trace.due",
        loc,
        severity=name("severity", ctx.get("severity"), loc),
        hours=f"{float(d['hours']):g}",
    )


def _duplicates(d: Mapping[str, Any], loc: str, ctx: Mapping[str, Any]) -> str:
    return t("trace.duplicates", loc, code=d["code"], distance=_m(d.get("distance_m")))


STEPS: dict[str, Callable[[Mapping[str, Any], str, Mapping[str, Any]], str]] = {
    "place": _place,
    "border_zone": _border_zone,
    "extent": _extent,
    "parties": _parties,
    "joint_grid": _joint_grid,
    "mechanism": _mechanism,
    "lead_side": _lead_side,
    "teams": _teams,
    "contacts": _contacts,
    "due": _due,
    "duplicates": _duplicates,
}


def context(case: Mapping[str, Any]) -> dict[str, Any]:
    """What the steps need besides their own data, taken from the stored case."""
    return {
        "side": case.get("side"),
        "category": case.get("category"),
        "severity": case.get("severity"),
        "mechanism": case.get("mechanism"),
        "team_names": {str(x.get("code")): x.get("name") for x in case.get("teams") or []},
    }


def render(
    trace: Sequence[Mapping[str, Any]], case: Mapping[str, Any], locale: str = DEFAULT
) -> list[dict[str, Any]]:
    """Each step as ``{"step", "title", "text", "says"}`` in ``locale``."""
    ctx = context(case)
    out = []
    for step in trace:
        code = str(step.get("step"))
        says = str(step.get("says") or "")
        fn = STEPS.get(code)
        text = says
        if fn is not None:
            try:
                text = fn(step.get("data") or {}, locale, ctx)
            except (KeyError, TypeError, ValueError):
                text = says  # data of an older shape: its own sentence is still right
        title_key = f"trace.step.{code}"
        title = t(title_key, locale) if title_key != t(title_key, locale) else code
        out.append({"step": code, "title": title, "text": text, "says": says})
    return out
