"""The routing decision: cross-boundary or not, why, which six-link mechanism, who acts.

Pure: ``decide`` takes the report, the location facts (one SQL round trip) and the catalogue,
and returns a ``Decision`` with an ordered, operator-readable trace. Distances are metres.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from shapely.geometry.base import BaseGeometry

from gis.catalogue import Catalogue
from gis.duty import on_duty
from gis.errors import UnknownSide
from gis.facts import AreaRef, FixRef, GridRef, LocationFacts, PoliceGridRef, TeamCandidate
from gis.location import Placement, place

REASONS = ("border_zone", "extent_crosses", "parties", "joint_grid")


@dataclass(frozen=True)
class Report:
    """A normalised report: WGS84 coordinates, a known category, an aware time."""

    lon: float
    lat: float
    category: str
    severity: str
    occurred_at: datetime
    extent: BaseGeometry | None = None
    parties_sides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step of the decision: what was asked, what was found, and the numbers behind it."""

    step: str
    says: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "says": self.says, "data": self.data}


@dataclass(frozen=True)
class TeamPick:
    code: str
    name: str
    kind: str
    side: str
    covers: bool
    on_duty: bool
    base_distance_m: float
    lead: bool = False
    fix: FixRef | None = None  # the member's fix the team was placed by, if not its base


@dataclass(frozen=True)
class Contact:
    side: str
    role: str  # grid_chief, police_officer, or a chief role (river, forest, road, field)
    name: str | None
    phone: str | None
    unit: str  # the grid, police grid or feature the contact answers for
    unit_code: str
    distance_m: float


@dataclass(frozen=True)
class Decision:
    placement: Placement
    chain: tuple[AreaRef, ...]
    sides: tuple[str, ...]
    cross_boundary: bool
    reasons: tuple[str, ...]
    mechanism: str | None
    lead_side: str
    teams: tuple[TeamPick, ...]
    contacts: tuple[Contact, ...]
    grid: GridRef | None
    police_grid: PoliceGridRef | None
    due_at: datetime
    possible_duplicate_of: str | None
    trace: tuple[Step, ...]


def _m(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def decide(
    report: Report,
    facts: LocationFacts,
    catalogue: Catalogue,
    *,
    now: datetime,
    known_sides: frozenset[str] | None = None,
    duty: Callable[[dict[str, Any] | None, datetime], bool] = on_duty,
) -> Decision:
    """Decide how a report is handled. Raises ``OutsideServiceArea`` or ``UnknownSide``.

    ``duty`` answers whether a roster is on duty at a moment: ``on_duty``, or for a batch a
    ``gis.duty.DutyMemo`` (the same answers, memoised)."""
    trace: list[Step] = []
    zone = catalogue.border_zone_m
    category = catalogue.category(report.category)
    group = category.group

    # 1. Place the point.
    p = place(facts, zone_m=zone, tolerance_m=catalogue.service_area_tolerance_m)
    chain_names = " / ".join(a.name for a in facts.chain) or "no village polygon here"
    where = f"in {p.side_name} ({p.side}): {chain_names}"
    if p.snapped_m:
        where = (
            f"{p.snapped_m:.0f} m outside every side, within the {catalogue.service_area_tolerance_m:.0f} m "
            f"tolerance: taken as {p.side_name} ({p.side})"
        )
    if p.on_line:
        where += "; the point lies on the line itself"
    trace.append(
        Step(
            "place",
            where,
            {
                "lon": round(report.lon, 7),
                "lat": round(report.lat, 7),
                "side": p.side,
                "distance_to_border_m": _m(p.distance_to_border_m),
                "nearest_other_side": p.nearest_other_side,
                "snapped_m": _m(p.snapped_m),
            },
        )
    )

    # 2. Reasons to involve other sides.
    involved: dict[str, list[str]] = {p.side: []}
    reasons: list[str] = []

    near = [s for s in facts.sides if s.code != p.side and (s.distance_m <= zone or p.on_line)]
    if near:
        reasons.append("border_zone")
        for side_fact in near:
            involved.setdefault(side_fact.code, []).append("border_zone")
        trace.append(
            Step(
                "border_zone",
                f"{p.distance_to_border_m:,.0f} m from {', '.join(s.name for s in near)}: "
                f"within the {zone:,.0f} m border zone",
                {
                    "distance_m": _m(p.distance_to_border_m),
                    "zone_m": zone,
                    "sides": [s.code for s in near],
                },
            )
        )
    else:
        trace.append(
            Step(
                "border_zone",
                "no other side within the border zone"
                + (
                    f" ({p.distance_to_border_m:,.0f} m > {zone:,.0f} m)"
                    if p.distance_to_border_m is not None
                    else ""
                ),
                {"distance_m": _m(p.distance_to_border_m), "zone_m": zone},
            )
        )

    if report.extent is not None:
        ext = tuple(facts.extent_sides or ())
        if len(ext) >= 2 or any(s != p.side for s in ext):
            reasons.append("extent_crosses")
            for code in ext:
                involved.setdefault(code, []).append("extent_crosses")
            trace.append(
                Step("extent", f"the extent touches sides {', '.join(ext)}", {"sides": list(ext)})
            )
        else:
            trace.append(Step("extent", "the extent stays on one side", {"sides": list(ext)}))

    if report.parties_sides:
        unknown = [
            s for s in report.parties_sides if known_sides is not None and s not in known_sides
        ]
        if unknown:
            raise UnknownSide(
                f"unknown side code(s) in parties_sides: {', '.join(unknown)}",
                {"valid": sorted(known_sides or ())},
            )
        others = [s for s in report.parties_sides if s != p.side]
        if others:
            reasons.append("parties")
            for code in others:
                involved.setdefault(code, []).append("parties")
            trace.append(
                Step("parties", f"people involved belong to {', '.join(others)}", {"sides": others})
            )

    joint = [g for g in facts.grids_here if g.joint]
    if joint:
        spans = sorted({s for g in joint for s in (g.spans or (g.side,))} | {g.side for g in joint})
        if any(s != p.side for s in spans) or len(spans) > 1:
            reasons.append("joint_grid")
            for code in spans:
                involved.setdefault(code, []).append("joint_grid")
            trace.append(
                Step(
                    "joint_grid",
                    f"inside joint grid {joint[0].code} {joint[0].name}, run by {', '.join(spans)}",
                    {"grids": [g.code for g in joint], "sides": spans},
                )
            )

    sides = (p.side, *sorted(s for s in involved if s != p.side))
    cross = len(sides) > 1
    mechanism = catalogue.mechanism_for(report.category) if cross else None
    if cross:
        m = catalogue.mechanisms[mechanism]  # type: ignore[index]
        trace.append(
            Step(
                "mechanism",
                f"cross-boundary ({', '.join(reasons)}): category {report.category} "
                f"({category.name}) is in group {group}, handled by {mechanism} {m.name}",
                {"reasons": reasons, "group": group, "mechanism": mechanism, "sides": list(sides)},
            )
        )
    else:
        trace.append(
            Step(
                "mechanism",
                f"single-side case: {p.side_name} handles it alone through its own grid and police grid",
                {"group": group, "mechanism": None},
            )
        )
    trace.append(
        Step("lead_side", f"lead side {p.side}: it contains the point", {"lead_side": p.side})
    )

    # 3. Teams.
    teams = _pick_teams(facts.teams, mechanism, report.occurred_at, trace, duty) if cross else ()

    # 4. Contacts on every involved side.
    contacts: list[Contact] = []
    for code in sides:
        g = facts.grid_for(code)
        if g is not None:
            contacts.append(
                Contact(
                    code, "grid_chief", g.chief_name, g.chief_phone, g.name, g.code, g.distance_m
                )
            )
        pg = facts.police_for(code)
        if pg is not None:
            contacts.append(
                Contact(
                    code,
                    "police_officer",
                    pg.officer_name,
                    pg.officer_phone,
                    pg.name,
                    pg.code,
                    pg.distance_m,
                )
            )
    roles = catalogue.chief_roles_for(report.category)
    chiefs = [
        c for c in facts.chiefs if c.role in roles and c.side in sides and c.distance_m <= zone
    ]
    contacts += [
        Contact(c.side, c.role, c.name, c.phone, c.feature_name or c.code, c.code, c.distance_m)
        for c in chiefs
    ]
    missing = [s for s in sides if not any(c.side == s for c in contacts)]
    trace.append(
        Step(
            "contacts",
            "; ".join(
                f"{s}: "
                + ", ".join(
                    f"{c.role} {c.name} ({c.distance_m:,.0f} m)" for c in contacts if c.side == s
                )
                for s in sides
                if any(c.side == s for c in contacts)
            )
            + (f"; no contact found for {', '.join(missing)}" if missing else ""),
            {"count": len(contacts), "chief_roles": list(roles) if chiefs else []},
        )
    )

    # 5. Time limit and duplicates.
    limit = catalogue.resolve_within(report.severity)
    due = now + limit
    trace.append(
        Step(
            "due",
            f"severity {report.severity}: resolve within {limit.total_seconds() / 3600:.0f} h "
            "(the clock restarts at dispatch)",
            {"hours": limit.total_seconds() / 3600, "due_at": due.isoformat()},
        )
    )
    dup = min(facts.duplicates, key=lambda d: d.distance_m, default=None)
    if dup is not None:
        trace.append(
            Step(
                "duplicates",
                f"possible duplicate of {dup.code}: same category, {dup.distance_m:,.0f} m away, "
                "still open (not merged automatically)",
                {"id": dup.id, "code": dup.code, "distance_m": _m(dup.distance_m)},
            )
        )

    return Decision(
        placement=p,
        chain=facts.chain,
        sides=sides,
        cross_boundary=cross,
        reasons=tuple(r for r in REASONS if r in reasons),
        mechanism=mechanism,
        lead_side=p.side,
        teams=teams,
        contacts=tuple(contacts),
        grid=facts.grid_for(p.side) or next(iter(facts.grids_here), None),
        police_grid=facts.police_for(p.side),
        due_at=due,
        possible_duplicate_of=None if dup is None else dup.id,
        trace=tuple(trace),
    )


def _pick_teams(
    candidates: tuple[TeamCandidate, ...],
    mechanism: str | None,
    at: datetime,
    trace: list[Step],
    is_on_duty: Callable[[dict[str, Any] | None, datetime], bool] = on_duty,
) -> tuple[TeamPick, ...]:
    serving = [t for t in candidates if mechanism is None or mechanism in t.mechanisms]

    def pick(t: TeamCandidate, duty: bool) -> TeamPick:
        return TeamPick(t.code, t.name, t.kind, t.side, t.covers, duty, t.base_distance_m)

    duty = {t.code: is_on_duty(t.roster, at) for t in serving}
    by_dist = sorted(serving, key=lambda t: (t.base_distance_m, t.code))
    covering = [t for t in by_dist if t.covers and duty[t.code]]
    if covering:
        chosen = [pick(t, True) for t in covering]
        says = f"{len(chosen)} team(s) serving {mechanism} cover the point and are on duty"
    else:
        on = [t for t in by_dist if duty[t.code]]
        if on:
            chosen = [pick(on[0], True)]
            says = (
                f"no team serving {mechanism} covers the point while on duty; "
                f"nearest on duty: {on[0].code} ({on[0].base_distance_m:,.0f} m from its base)"
            )
        elif by_dist:
            chosen = [pick(by_dist[0], False)]
            says = (
                f"no team serving {mechanism} is on duty at {at.isoformat()}; "
                f"nearest: {by_dist[0].code} ({by_dist[0].base_distance_m:,.0f} m), to be called out"
            )
        else:
            chosen = []
            says = f"no team serves {mechanism}; the contacts on each side act"
    if chosen:
        chosen[0] = TeamPick(**{**chosen[0].__dict__, "lead": True})
        says += f"; lead team {chosen[0].code} {chosen[0].name}"
    trace.append(
        Step(
            "teams",
            says,
            {
                "at": at.isoformat(),
                "candidates": [
                    {
                        "code": t.code,
                        "covers": t.covers,
                        "on_duty": duty[t.code],
                        "base_distance_m": _m(t.base_distance_m),
                    }
                    for t in by_dist
                ],
            },
        )
    )
    return tuple(chosen)


# -- What is stored of a decision, and what a re-route compares ---------------------------------
#
# Defined once, here: the report path (``api.usecases.cases``) and the batch re-route (``api.usecases.reroute``)
# both store ``routing_record`` and compare ``signature``.

SIG_KEYS = ("mechanism", "sides", "teams", "contacts")
SIG_SEP = "\x1d"  # between the signature's four fields, in the stored column ``routing_sig``


def contacts_digest(contacts: list[tuple[str, str, str, str]]) -> str:
    """md5 of the contacts' (side, role, unit_code, name), each joined by U+001F, sorted
    bytewise and joined by U+001E."""
    keys = sorted("\x1f".join(c) for c in contacts)
    return hashlib.md5("\x1e".join(keys).encode()).hexdigest()


def signature(d: Decision) -> tuple[str, str, str, str]:
    """What a re-route compares: mechanism ('' for none), sides and team codes (comma-joined,
    in order), and the contacts' digest."""
    return (
        d.mechanism or "",
        ",".join(d.sides),
        ",".join(t.code for t in d.teams),
        contacts_digest([(c.side, c.role, c.unit_code, c.name or "") for c in d.contacts]),
    )


def signature_text(sig: tuple[str, str, str, str]) -> str:
    """The signature as the column ``routing_sig`` stores it."""
    return SIG_SEP.join(sig)


def _flat(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _team_view(t: TeamPick) -> dict[str, Any]:
    view = {**_flat(t), "base_distance_m": round(t.base_distance_m, 1)}
    if t.fix is None:
        del view["fix"]  # a decision by bases alone stores what it stored before positions
    else:
        view["fix"] = {**_flat(t.fix), "distance_m": round(t.fix.distance_m, 1)}
    return view


def decision_view(d: Decision) -> dict[str, Any]:
    """The routing decision as the API shows it (the same shape as a stored case's routing)."""
    p = d.placement
    return {
        "side": p.side,
        "sides": list(d.sides),
        "distance_to_border_m": _m(p.distance_to_border_m),
        "in_border_zone": p.in_border_zone,
        "cross_boundary": d.cross_boundary,
        "cross_boundary_reasons": list(d.reasons),
        "mechanism": d.mechanism,
        "lead_side": d.lead_side,
        "teams": [_team_view(t) for t in d.teams],
        "contacts": [{**_flat(c), "distance_m": round(c.distance_m, 1)} for c in d.contacts],
        "grid": None
        if d.grid is None
        else {"code": d.grid.code, "name": d.grid.name, "side": d.grid.side, "joint": d.grid.joint},
        "police_grid": None
        if d.police_grid is None
        else {
            "code": d.police_grid.code,
            "name": d.police_grid.name,
            "side": d.police_grid.side,
            "station": d.police_grid.station,
        },
        "due_at": d.due_at.isoformat(),
        "possible_duplicate_of": d.possible_duplicate_of,
        "routing": {
            "chain": [_flat(a) for a in d.chain],
            "trace": [s.as_dict() for s in d.trace],
        },
    }


def routing_record(
    d: Decision, decided_at: datetime, *, rerouted: bool = False, view: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stored routing columns of a decision, as a report writes them and a re-route
    rewrites them (``routing_sig`` among them). ``view``: ``decision_view(d)`` if at hand."""
    view = decision_view(d) if view is None else view
    routing = {
        **view["routing"],
        "grid": view["grid"],
        "police_grid": view["police_grid"],
        "in_border_zone": view["in_border_zone"],
        "decided_at": decided_at.isoformat(),
    }
    if rerouted:
        routing["rerouted"] = True
    return {
        "lead_side": view["lead_side"],
        "sides": view["sides"],
        "cross_boundary": view["cross_boundary"],
        "reasons": view["cross_boundary_reasons"],
        "mechanism": view["mechanism"],
        "distance_to_border_m": view["distance_to_border_m"],
        "grid_code": (view["grid"] or {}).get("code"),
        "police_grid_code": (view["police_grid"] or {}).get("code"),
        "teams": view["teams"],
        "contacts": view["contacts"],
        "routing": routing,
        "routing_sig": signature_text(signature(d)),
    }


class DecisionMemo:
    """``decide`` memoised for a batch, on what the decision's choices read.

    The key: the facts (the key of their document, which the caller gives: equal documents,
    equal facts), the category, the severity, and the duty answers of the facts' teams at the
    report's time, which are all the report's time enters into. The report's position is only
    quoted in the trace's first step. So every case with the same key gets the same sides,
    mechanism, teams and contacts, and the memo returns the first such case's decision (its
    trace quotes that case's position and time): for comparing signatures, not for storing.
    Reports with parties or an extent are decided each on their own, as are errors.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        now: datetime,
        duty: Callable[[dict[str, Any] | None, datetime], bool] | None = None,
    ) -> None:
        from gis.duty import DutyMemo

        self.catalogue, self.now = catalogue, now
        self.duty = duty or DutyMemo()
        self._memo: dict[tuple[Any, ...], Decision] = {}
        self.calls = self.hits = 0

    def __call__(self, report: Report, facts: LocationFacts, key: str) -> Decision:
        self.calls += 1
        if report.extent is not None or report.parties_sides:
            return decide(report, facts, self.catalogue, now=self.now, duty=self.duty)
        at = report.occurred_at
        k = (key, report.category, report.severity, *(self.duty(t.roster, at) for t in facts.teams))
        hit = self._memo.get(k)
        if hit is not None:
            self.hits += 1
            return hit
        d = self._memo[k] = decide(report, facts, self.catalogue, now=self.now, duty=self.duty)
        return d
