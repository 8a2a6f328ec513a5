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
from gis.duty import DutyMemo, on_duty
from gis.errors import DomainError, UnknownSide
from gis.facts import (
    AreaRef,
    DuplicateRef,
    FixRef,
    GridRef,
    LocationFacts,
    PoliceGridRef,
    TeamCandidate,
)
from gis.location import Placement, place
from gis.says import says

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


# A step's outcome for the trace: its name, its data (stored), and what its sentence also
# quotes (names, exact metres; see gis.says). ``decide`` turns it into a ``Step``.
Traced = tuple[str, dict[str, Any], dict[str, Any]]

# A member's fix older than this places no team; the default of api.settings' fresh_fix_s and
# of the facts readers (layers.locate, layers.bulk).
FRESH_FIX_S = 600.0


def _step(traced: Traced) -> Step:
    name, data, ctx = traced
    return Step(name, says(name, data, ctx), data)


def decide(
    report: Report,
    facts: LocationFacts,
    catalogue: Catalogue,
    *,
    now: datetime,
    known_sides: frozenset[str] | None = None,
    duty: Callable[[dict[str, Any] | None, datetime], bool] = on_duty,
    fresh_fix_s: float = FRESH_FIX_S,
) -> Decision:
    """Decide how a report is handled. Raises ``OutsideServiceArea`` or ``UnknownSide``.

    ``duty`` answers whether a roster is on duty at a moment: ``on_duty``, or for a batch a
    ``gis.duty.DutyMemo`` (the same answers, memoised). ``fresh_fix_s``: a team is placed by
    a member's fix no older than this, else by its base. Each step below returns its value
    and its trace step."""
    catalogue.category(report.category)  # an unknown category is refused before all else
    p, placed = step_place(report, facts, catalogue)
    involved, found = reasons_steps(report, facts, p, catalogue.border_zone_m, known_sides)
    sides, reasons = involve(p, involved)
    mechanism, mech_step = step_mechanism(report, catalogue, p, sides, reasons)
    trace = [placed, *found, mech_step, ("lead_side", {"lead_side": p.side}, {})]
    teams: tuple[TeamPick, ...] = ()
    if mechanism is not None:
        teams, team_step = step_teams(facts.teams, mechanism, report.occurred_at, duty, fresh_fix_s)
        trace.append(team_step)
    roles = catalogue.chief_roles_for(report.category)
    contacts, contact_step = step_contacts(facts, sides, roles, catalogue.border_zone_m)
    due, due_step = step_due(report, catalogue, now)
    dup, dup_step = step_duplicates(facts)
    trace += [contact_step, due_step, *dup_step]
    return Decision(
        placement=p,
        chain=facts.chain,
        sides=sides,
        cross_boundary=len(sides) > 1,
        reasons=tuple(r for r in REASONS if r in reasons),
        mechanism=mechanism,
        lead_side=p.side,
        teams=teams,
        contacts=contacts,
        grid=facts.grid_for(p.side) or next(iter(facts.grids_here), None),
        police_grid=facts.police_for(p.side),
        due_at=due,
        possible_duplicate_of=None if dup is None else dup.id,
        trace=tuple(_step(t) for t in trace),
    )


# -- The steps ----------------------------------------------------------------------------------


def step_place(
    report: Report, facts: LocationFacts, catalogue: Catalogue
) -> tuple[Placement, Traced]:
    """1. Place the point: its side, its distance to the border."""
    tol = catalogue.service_area_tolerance_m
    p = place(facts, zone_m=catalogue.border_zone_m, tolerance_m=tol)
    data = {
        "lon": round(report.lon, 7),
        "lat": round(report.lat, 7),
        "side": p.side,
        "distance_to_border_m": _m(p.distance_to_border_m),
        "nearest_other_side": p.nearest_other_side,
        "snapped_m": _m(p.snapped_m),
    }
    ctx = {"side_name": p.side_name, "chain": [a.name for a in facts.chain], "tolerance_m": tol,
           "snapped_m": p.snapped_m, "on_line": p.on_line}  # fmt: skip
    return p, ("place", data, ctx)


def step_border_zone(
    facts: LocationFacts, p: Placement, zone: float
) -> tuple[tuple[str, ...], Traced]:
    """2a. The other sides within the border zone (all the facts report, on the line)."""
    near = [s for s in facts.sides if s.code != p.side and (s.distance_m <= zone or p.on_line)]
    data: dict[str, Any] = {"distance_m": _m(p.distance_to_border_m), "zone_m": zone}
    if near:
        data["sides"] = [s.code for s in near]
    ctx = {"distance_m": p.distance_to_border_m, "names": {s.code: s.name for s in near}}
    return tuple(s.code for s in near), ("border_zone", data, ctx)


def step_extent(
    report: Report, facts: LocationFacts, p: Placement
) -> tuple[tuple[str, ...], Traced]:
    """2b. The sides the report's extent touches, when it leaves the point's side."""
    ext = tuple(facts.extent_sides or ())
    crosses = len(ext) >= 2 or any(s != p.side for s in ext)
    return (ext if crosses else ()), ("extent", {"sides": list(ext)}, {"side": p.side})


def step_parties(
    report: Report, p: Placement, known_sides: frozenset[str] | None
) -> tuple[tuple[str, ...], list[Traced]]:
    """2c. The other sides the people involved belong to."""
    unknown = [s for s in report.parties_sides if known_sides is not None and s not in known_sides]
    if unknown:
        raise UnknownSide(
            f"unknown side code(s) in parties_sides: {', '.join(unknown)}",
            {"valid": sorted(known_sides or ())},
        )
    others = [s for s in report.parties_sides if s != p.side]
    return tuple(others), [("parties", {"sides": others}, {})] if others else []


def step_joint_grid(facts: LocationFacts, p: Placement) -> tuple[tuple[str, ...], list[Traced]]:
    """2d. The sides that run a joint grid the point lies in."""
    joint = [g for g in facts.grids_here if g.joint]
    if not joint:
        return (), []
    spans = sorted({s for g in joint for s in (g.spans or (g.side,))} | {g.side for g in joint})
    if not (any(s != p.side for s in spans) or len(spans) > 1):
        return (), []
    data = {"grids": [g.code for g in joint], "sides": spans}
    return tuple(spans), [("joint_grid", data, {"grid_names": {joint[0].code: joint[0].name}})]


def reasons_steps(report: Report, facts: LocationFacts, p: Placement, zone: float,
                  known_sides: frozenset[str] | None) -> tuple[dict[str, tuple[str, ...]], list[Traced]]:  # fmt: skip
    """2. The reasons to involve other sides, each with the sides it brings in (a reason that
    brings in none is not a reason), and their trace steps."""
    involved: dict[str, tuple[str, ...]] = {}
    near, zone_step = step_border_zone(facts, p, zone)
    involved["border_zone"], trace = near, [zone_step]
    if report.extent is not None:
        involved["extent_crosses"], ext_step = step_extent(report, facts, p)
        trace.append(ext_step)
    if report.parties_sides:
        involved["parties"], party_steps = step_parties(report, p, known_sides)
        trace += party_steps
    involved["joint_grid"], joint_steps = step_joint_grid(facts, p)
    return {k: v for k, v in involved.items() if v}, trace + joint_steps


def involve(
    p: Placement, involved: dict[str, tuple[str, ...]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The sides (the point's first, then the others in order) and the reasons, in order."""
    others = {code for codes in involved.values() for code in codes} - {p.side}
    return (p.side, *sorted(others)), tuple(r for r in REASONS if r in involved)


def step_mechanism(report: Report, catalogue: Catalogue, p: Placement, sides: tuple[str, ...],
                   reasons: tuple[str, ...]) -> tuple[str | None, Traced]:  # fmt: skip
    """3. The six-link mechanism of a cross-boundary case (none for a single side)."""
    category = catalogue.category(report.category)
    if len(sides) < 2:
        data: dict[str, Any] = {"group": category.group, "mechanism": None}
        return None, ("mechanism", data, {"side_name": p.side_name})
    mechanism = catalogue.mechanism_for(report.category)
    data = {"reasons": list(reasons), "group": category.group, "mechanism": mechanism,
            "sides": list(sides)}  # fmt: skip
    ctx = {"category": report.category, "category_name": category.name,
           "mechanism_name": catalogue.mechanisms[mechanism].name}  # fmt: skip
    return mechanism, ("mechanism", data, ctx)


@dataclass(frozen=True)
class Placed:
    """A candidate team as the teams step measured it: from a member's fresh fix, else its base."""

    team: TeamCandidate
    on_duty: bool
    distance_m: float
    fix: FixRef | None


def serving(candidates: tuple[TeamCandidate, ...], mechanism: str) -> list[TeamCandidate]:
    return [t for t in candidates if mechanism in t.mechanisms]


def choose_teams(serve: tuple[TeamCandidate, ...], duty: tuple[bool, ...],
                 fresh_fix_s: float) -> tuple[tuple[TeamPick, ...], tuple[Placed, ...]]:  # fmt: skip
    """4. The teams, from the serving candidates and their duty answers: those covering the
    point on duty, else the nearest on duty, else the nearest to call out; the first leads.
    A team's distance is its fresh fix's when it has one, else its base's. Also the
    candidates as measured, nearest first."""
    placed = []
    for t, on in zip(serve, duty, strict=True):
        fix = t.fix if t.fix is not None and t.fix.age_s <= fresh_fix_s else None
        placed.append(Placed(t, on, t.base_distance_m if fix is None else fix.distance_m, fix))
    ordered = tuple(sorted(placed, key=lambda c: (c.distance_m, c.team.code)))
    chosen = [c for c in ordered if c.team.covers and c.on_duty]
    if not chosen:
        chosen = [c for c in ordered if c.on_duty][:1] or list(ordered[:1])
    picks = tuple(
        TeamPick(
            c.team.code,
            c.team.name,
            c.team.kind,
            c.team.side,
            c.team.covers,
            c.on_duty,
            c.team.base_distance_m,
            lead=i == 0,
            fix=c.fix,
        )
        for i, c in enumerate(chosen)
    )
    return picks, ordered


def step_teams(candidates: tuple[TeamCandidate, ...], mechanism: str, at: datetime,
               duty: Callable[[dict[str, Any] | None, datetime], bool],
               fresh_fix_s: float) -> tuple[tuple[TeamPick, ...], Traced]:  # fmt: skip
    """4. The teams of a cross-boundary case, at the report's time."""
    serve = tuple(serving(candidates, mechanism))
    picks, ordered = choose_teams(serve, tuple(duty(t.roster, at) for t in serve), fresh_fix_s)
    return picks, teams_traced(picks, ordered, mechanism, at)


def teams_traced(picks: tuple[TeamPick, ...], ordered: tuple[Placed, ...], mechanism: str,
                 at: datetime) -> Traced:  # fmt: skip
    """The teams step's trace: each candidate nearest first; by whose fix or base, when any
    team was placed by a fix (a decision by bases alone keeps the data it had before)."""
    by_fix = any(c.fix is not None for c in ordered)
    cands = []
    for c in ordered:
        item: dict[str, Any] = {"code": c.team.code, "covers": c.team.covers,
                                "on_duty": c.on_duty, "base_distance_m": _m(c.team.base_distance_m)}  # fmt: skip
        if by_fix:
            item |= {
                "distance_m": _m(c.distance_m),
                "placed_by": "base" if c.fix is None else "fix",
            }
        if c.fix is not None:
            item["fix_age_s"] = round(c.fix.age_s)
        cands.append(item)
    ctx = {"mechanism": mechanism, "names": {p.code: p.name for p in picks},
           "distance_m": {c.team.code: c.distance_m for c in ordered}}  # fmt: skip
    return "teams", {"at": at.isoformat(), "candidates": cands}, ctx


def step_contacts(facts: LocationFacts, sides: tuple[str, ...], roles: tuple[str, ...],
                  zone: float) -> tuple[tuple[Contact, ...], Traced]:  # fmt: skip
    """5. The contacts on every involved side: its grid's chief, its police grid's officer,
    and the chiefs of ``roles`` (the category's) within the zone."""
    contacts: list[Contact] = []
    for code in sides:
        g = facts.grid_for(code)
        if g is not None:
            contacts.append(Contact(code, "grid_chief", g.chief_name, g.chief_phone, g.name,
                                    g.code, g.distance_m))  # fmt: skip
        pg = facts.police_for(code)
        if pg is not None:
            contacts.append(Contact(code, "police_officer", pg.officer_name, pg.officer_phone,
                                    pg.name, pg.code, pg.distance_m))  # fmt: skip
    chiefs = [
        c for c in facts.chiefs if c.role in roles and c.side in sides and c.distance_m <= zone
    ]
    contacts += [
        Contact(c.side, c.role, c.name, c.phone, c.feature_name or c.code, c.code, c.distance_m)
        for c in chiefs
    ]
    data = {"count": len(contacts), "chief_roles": list(roles) if chiefs else []}
    return tuple(contacts), ("contacts", data, {"contacts": contacts, "sides": sides})


def step_due(report: Report, catalogue: Catalogue, now: datetime) -> tuple[datetime, Traced]:
    """6. The time limit, from the severity."""
    limit = catalogue.resolve_within(report.severity)
    due = now + limit
    data = {"hours": limit.total_seconds() / 3600, "due_at": due.isoformat()}
    return due, ("due", data, {"severity": report.severity})


def step_duplicates(facts: LocationFacts) -> tuple[DuplicateRef | None, list[Traced]]:
    """7. The nearest open case of the same category close by, if any (never merged)."""
    dup = min(facts.duplicates, key=lambda d: d.distance_m, default=None)
    if dup is None:
        return None, []
    data = {"id": dup.id, "code": dup.code, "distance_m": _m(dup.distance_m)}
    return dup, [("duplicates", data, {"distance_m": dup.distance_m})]


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
    """The signature of ``decide``'s decision, for a batch that compares signatures: the steps
    that make it (the place and the reasons, the mechanism, the teams, the contacts), the
    same functions ``decide`` runs, each memoised on its exact inputs, reduced to what the
    step reads.

    ``key`` names the facts (the key of their document, which the caller gives: equal
    documents, equal facts). For a report without parties or an extent:
    - the place, the sides and the reasons read only the facts: memoised per ``key``;
    - the category enters only through the mechanism (of a cross-boundary case) and the chief
      roles the contacts may bring in, reduced to the roles of the chiefs the facts hold;
    - the report's time enters only through the serving teams' duty answers; the distances
      only through the teams' order, which the facts fix;
    - the report's position, time and severity enter only the trace, which is not compared.
    Reports with parties or an extent are decided by ``decide`` itself, as are errors. The
    decisions a batch writes are ``decide``'s, never the memo's.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        now: datetime,
        duty: Callable[[dict[str, Any] | None, datetime], bool] | None = None,
        fresh_fix_s: float = FRESH_FIX_S,
    ) -> None:
        self.catalogue, self.now, self.fresh_fix_s = catalogue, now, fresh_fix_s
        self.duty = duty or DutyMemo()
        self._category: dict[tuple[str, bool], tuple[str | None, tuple[str, ...]]] = {}
        self._sides: dict[str, tuple[Placement, tuple[str, ...], frozenset[str]] | DomainError] = {}
        self._teams: dict[tuple[Any, ...], str] = {}
        self._contacts: dict[tuple[Any, ...], str] = {}
        self.calls = self.hits = self.whole = 0
        self.made = {"sides": 0, "teams": 0, "contacts": 0}  # steps computed, not repeated

    def __call__(self, report: Report, facts: LocationFacts, key: str) -> tuple[str, str, str, str]:
        """``signature(decide(report, facts, ...))``."""
        self.calls += 1
        if report.extent is not None or report.parties_sides:
            self.whole += 1
            d = decide(report, facts, self.catalogue, now=self.now, duty=self.duty,
                       fresh_fix_s=self.fresh_fix_s)  # fmt: skip
            return signature(d)
        self.catalogue.category(report.category)  # refused first, as decide refuses it
        made = sum(self.made.values())
        p, sides, chief_roles = self._place(report, facts, key)
        mechanism, roles = self._by_category(report, p, sides)
        teams = ""
        if mechanism is not None:
            serve = tuple(serving(facts.teams, mechanism))
            duty = tuple(self.duty(t.roster, report.occurred_at) for t in serve)
            team_key = (key, mechanism, duty)
            codes = self._teams.get(team_key)
            if codes is None:
                self.made["teams"] += 1
                picks, _ = choose_teams(serve, duty, self.fresh_fix_s)
                codes = self._teams[team_key] = ",".join(t.code for t in picks)
            teams = codes
        present = tuple(r for r in roles if r in chief_roles)
        digest = self._contacts.get((key, sides, present))
        if digest is None:
            self.made["contacts"] += 1
            contacts, _ = step_contacts(facts, sides, present, self.catalogue.border_zone_m)
            digest = self._contacts[(key, sides, present)] = contacts_digest(
                [(c.side, c.role, c.unit_code, c.name or "") for c in contacts]
            )
        if sum(self.made.values()) == made:
            self.hits += 1
        return mechanism or "", ",".join(sides), teams, digest

    def _place(self, report: Report, facts: LocationFacts, key: str) -> tuple[Placement, tuple[str, ...], frozenset[str]]:  # fmt: skip
        got = self._sides.get(key)
        if got is None:
            self.made["sides"] += 1
            try:
                p, _ = step_place(report, facts, self.catalogue)
                involved, _ = reasons_steps(report, facts, p, self.catalogue.border_zone_m, None)
                got = (p, involve(p, involved)[0], frozenset(c.role for c in facts.chiefs))
            except DomainError as exc:
                got = exc
            self._sides[key] = got
        if isinstance(got, DomainError):
            raise got
        return got

    def _by_category(self, report: Report, p: Placement, sides: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:  # fmt: skip
        k = (report.category, len(sides) > 1)
        got = self._category.get(k)
        if got is None:
            mechanism, _ = step_mechanism(report, self.catalogue, p, sides, ())
            got = self._category[k] = (mechanism, self.catalogue.chief_roles_for(report.category))
        return got
