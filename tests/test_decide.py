"""``gis.routing.decide`` on hand-built ``LocationFacts``: pure, no database.

Two sides A and B; each case builds the facts a point would have and checks the choices.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shapely.geometry import LineString

from gis.errors import OutsideServiceArea, UnknownSide
from gis.facts import (
    AreaRef,
    ChiefRef,
    DuplicateRef,
    FixRef,
    GridRef,
    LocationFacts,
    PoliceGridRef,
    SideFact,
    TeamCandidate,
)
from gis.routing import DecisionMemo, Report, decide, decision_view, routing_record, signature

A, B = "880001", "880002"
NOW = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)
ALWAYS = {"timezone": "Asia/Shanghai", "shifts": [
    {"name": "all", "days": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "24:00"}]}  # fmt: skip
NEVER: dict[str, Any] = {"shifts": []}


def grid(side: str, code: str, *, contains: bool = True, d: float = 0.0, joint: bool = False,
         spans: tuple[str, ...] = ()) -> GridRef:  # fmt: skip
    return GridRef(code, f"grid {code}", side, code[:12], joint, f"chief {code}", "1", contains,
                   d, spans or (side,))  # fmt: skip


def police(side: str, code: str, *, contains: bool = True, d: float = 0.0) -> PoliceGridRef:
    return PoliceGridRef(code, f"beat {code}", side, "st", f"officer {code}", "1", contains, d)


def team(code: str, *, covers: bool, d: float, roster: dict[str, Any],
         fix: FixRef | None = None) -> TeamCandidate:  # fmt: skip
    return TeamCandidate(code, f"team {code}", "joint", A, (A, B), ("joint_defense",), roster,
                         covers, d, fix)  # fmt: skip


def fix(member: str, *, d: float, age_s: float) -> FixRef:
    return FixRef(member, f"dev-{member}", "2026-11-27T02:27:00+00:00", 120.001, 45.001, d, age_s)


def facts(*, b_m: float | None = 5000.0, a_in: bool = True, a_m: float = 0.0, b_in: bool = False,
          joint: bool = False, teams: tuple[TeamCandidate, ...] = (),
          chiefs: tuple[ChiefRef, ...] = (), extent_sides: tuple[str, ...] | None = None,
          dups: tuple[DuplicateRef, ...] = ()) -> LocationFacts:  # fmt: skip
    sides = [SideFact(A, "side A", a_in, 0.0 if a_in else a_m)]
    if b_m is not None or b_in:
        sides.append(SideFact(B, "side B", b_in, 0.0 if b_in else float(b_m or 0.0)))
    here = [grid(A, A + "001001001")] if a_in else []
    if joint:
        here.append(grid(A, A + "001001002", joint=True, spans=(A, B)))
    nearest = [grid(A, A + "001001001", contains=False)]
    police_near = [police(A, "PA", contains=False)]
    if (b_m is not None and b_m <= 2000.0) or b_in:
        nearest.append(grid(B, B + "001001001", contains=False, d=b_m or 0.0))
        police_near.append(police(B, "PB", contains=False, d=b_m or 0.0))
    return LocationFacts(
        lon=120.0, lat=45.0, sides=tuple(sides),
        chain=(AreaRef(A, "side A", "district"),) if a_in else (),
        grids_here=tuple(here), nearest_grids=tuple(nearest),
        police_here=(police(A, "PA"),) if a_in else (), nearest_police=tuple(police_near),
        teams=teams, chiefs=chiefs, extent_sides=extent_sides, duplicates=dups,
    )  # fmt: skip


def run(f: LocationFacts, category: str = "theft", **kw: Any):  # type: ignore[no-untyped-def]
    from api import settings
    from api.catalogue import load_catalogue

    cat = load_catalogue(settings.data().catalogue)
    known = kw.pop("known", None)
    rep = Report(120.0, 45.0, category, kw.pop("severity", "yellow"), NOW, **kw)
    return decide(rep, f, cat, now=NOW, known_sides=known)


def test_plain_single_side():
    d = run(facts())
    assert (d.sides, d.cross_boundary, d.reasons, d.mechanism) == ((A,), False, (), None)
    assert d.placement.distance_to_border_m == 5000.0 and not d.placement.in_border_zone
    assert [(c.role, c.unit_code) for c in d.contacts] == [
        ("grid_chief", A + "001001001"), ("police_officer", "PA")]  # fmt: skip
    assert d.teams == () and d.grid is not None and d.grid.code == A + "001001001"
    assert [s.step for s in d.trace] == ["place", "border_zone", "mechanism", "lead_side",
                                         "contacts", "due"]  # fmt: skip


@pytest.mark.parametrize(("metres", "cross"), [(1999.9, True), (2000.0, True), (2000.1, False)])
def test_the_zone_is_closed_at_its_edge(metres, cross):
    d = run(facts(b_m=metres))
    assert d.cross_boundary is cross
    assert d.sides == ((A, B) if cross else (A,))
    assert d.reasons == (("border_zone",) if cross else ())
    if cross:
        assert d.mechanism == "joint_defense"
        assert {c.side for c in d.contacts} == {A, B}


def test_on_the_line():
    d = run(facts(b_in=True))
    assert d.placement.on_line and d.placement.distance_to_border_m == 0.0
    assert d.sides == (A, B) and d.lead_side == A


def test_joint_grid_involves_its_sides():
    d = run(facts(joint=True))
    assert d.reasons == ("joint_grid",) and d.sides == (A, B)


def test_parties():
    d = run(facts(), parties_sides=(B,), known=frozenset({A, B}))
    assert d.reasons == ("parties",) and d.sides == (A, B)
    with pytest.raises(UnknownSide):
        run(facts(), parties_sides=("999999",), known=frozenset({A, B}))
    assert not run(facts(), parties_sides=(A,), known=frozenset({A, B})).cross_boundary


def test_extent():
    line = LineString([(120.0, 45.0), (120.2, 45.0)])
    assert run(facts(extent_sides=(A, B)), extent=line).reasons == ("extent_crosses",)
    assert not run(facts(extent_sides=(A,)), extent=line).cross_boundary


def test_outside_the_service_area():
    d = run(facts(a_in=False, a_m=60.0, b_m=None))
    assert d.placement.side == A and d.placement.snapped_m == 60.0
    with pytest.raises(OutsideServiceArea):
        run(facts(a_in=False, a_m=150.0, b_m=None))


def test_teams_covering_then_nearest_on_duty_then_nearest():
    t = (team("T1", covers=True, d=900.0, roster=ALWAYS),
         team("T2", covers=True, d=300.0, roster=ALWAYS),
         team("T3", covers=False, d=100.0, roster=ALWAYS))  # fmt: skip
    d = run(facts(b_m=500.0, teams=t))
    assert [(x.code, x.lead) for x in d.teams] == [("T2", True), ("T1", False)]
    t = (team("T1", covers=True, d=900.0, roster=NEVER),
         team("T3", covers=False, d=100.0, roster=ALWAYS),
         team("T4", covers=False, d=50.0, roster=NEVER))  # fmt: skip
    assert [(x.code, x.on_duty) for x in run(facts(b_m=500.0, teams=t)).teams] == [("T3", True)]
    t = (team("T1", covers=True, d=900.0, roster=NEVER),
         team("T4", covers=False, d=50.0, roster=NEVER))  # fmt: skip
    assert [(x.code, x.on_duty) for x in run(facts(b_m=500.0, teams=t)).teams] == [("T4", False)]
    assert run(facts(teams=t)).teams == ()  # a single-side case reads no teams


def test_chiefs_by_role_and_zone():
    c = (ChiefRef("RC", "river", A, "river chief", None, "a river", 500.0),
         ChiefRef("FC", "forest", A, "forest chief", None, "a forest", 400.0),
         ChiefRef("RB", "river", B, "far chief", None, "b river", 1500.0))  # fmt: skip
    roles = {x.unit_code for x in run(facts(chiefs=c), "river_pollution").contacts}
    assert "RC" in roles and "FC" not in roles and "RB" not in roles  # B is not involved
    assert "RB" in {
        x.unit_code for x in run(facts(b_m=800.0, chiefs=c), "river_pollution").contacts
    }


def test_duplicates_and_due():
    dups = (
        DuplicateRef("x", "JG-2", 80.0, "2026-11-27"),
        DuplicateRef("y", "JG-1", 20.0, "2026-11-27"),
    )
    d = run(facts(dups=dups), severity="red")
    assert d.possible_duplicate_of == "y"
    assert d.due_at > NOW and d.due_at - NOW <= timedelta(days=7)


def test_the_memo_gives_each_case_its_decision():
    from api import settings
    from api.catalogue import load_catalogue

    cat = load_catalogue(settings.data().catalogue)
    memo = DecisionMemo(cat, now=NOW)
    t = (team("T1", covers=True, d=300.0, roster=ALWAYS),)
    night = NOW + timedelta(hours=12)
    cases = [(facts(), "theft", NOW), (facts(), "theft", night), (facts(b_m=700.0, teams=t), "theft", NOW),
             (facts(b_m=700.0, teams=t), "land_dispute", NOW)]  # fmt: skip
    for f, category, at in cases * 3:
        rep = Report(120.0, 45.0, category, "yellow", at)
        key = repr(f)  # equal facts, equal keys
        assert memo(rep, f, key) == signature(decide(rep, f, cat, now=NOW))
    assert memo.hits >= 8
    r = routing_record(
        decide(Report(120.0, 45.0, "theft", "yellow", NOW), facts(), cat, now=NOW), NOW
    )
    assert r["routing_sig"].split("\x1d")[:3] == ["", A, ""]


def _teams_step(d):  # type: ignore[no-untyped-def]
    return next(s for s in d.trace if s.step == "teams")


def test_a_team_is_placed_by_its_fresh_fix_before_its_base():
    """T1's base is far but a member stands 180 m from the point; T2's base is nearer than
    that but it has no fix: T1 is the nearest on duty, and carries the fix it was placed by."""
    f1 = fix("m1", d=180.4, age_s=190.0)
    t = (team("T1", covers=False, d=9000.0, roster=ALWAYS, fix=f1),
         team("T2", covers=False, d=600.0, roster=ALWAYS))  # fmt: skip
    d = run(facts(b_m=500.0, teams=t))
    assert [(x.code, x.lead, x.fix) for x in d.teams] == [("T1", True, f1)]
    assert d.teams[0].base_distance_m == 9000.0
    step = _teams_step(d)
    assert "nearest on duty: T1, 180 m from the point (fix 3 min old)" in step.says
    assert step.data["candidates"] == [
        {"code": "T1", "covers": False, "on_duty": True, "base_distance_m": 9000.0,
         "distance_m": 180.4, "placed_by": "fix", "fix_age_s": 190},
        {"code": "T2", "covers": False, "on_duty": True, "base_distance_m": 600.0,
         "distance_m": 600.0, "placed_by": "base"},
    ]  # fmt: skip
    view = decision_view(d)["teams"][0]
    assert view["fix"]["member"] == "m1" and view["fix"]["distance_m"] == 180.4
    # the fix also orders the covering teams: T3 by its fix before T4 by its base
    t = (team("T3", covers=True, d=5000.0, roster=ALWAYS, fix=fix("m3", d=50.0, age_s=30.0)),
         team("T4", covers=True, d=400.0, roster=ALWAYS))  # fmt: skip
    d = run(facts(b_m=500.0, teams=t))
    assert [x.code for x in d.teams] == ["T3", "T4"]
    assert _teams_step(d).says.endswith("lead team T3 team T3, 50 m from the point (fix 30 s old)")


@pytest.mark.parametrize("stale", [True, False])
def test_a_stale_or_absent_fix_leaves_the_team_at_its_base(stale):
    f1 = fix("m1", d=100.0, age_s=601.0) if stale else None
    t = (team("T1", covers=False, d=9000.0, roster=ALWAYS, fix=f1),
         team("T2", covers=False, d=600.0, roster=ALWAYS))  # fmt: skip
    d = run(facts(b_m=500.0, teams=t))
    assert [(x.code, x.fix) for x in d.teams] == [("T2", None)]
    step = _teams_step(d)
    assert "nearest on duty: T2 (600 m from its base)" in step.says
    # no team placed by a fix: the data is what it was before positions
    assert step.data["candidates"] == [
        {"code": "T2", "covers": False, "on_duty": True, "base_distance_m": 600.0},
        {"code": "T1", "covers": False, "on_duty": True, "base_distance_m": 9000.0},
    ]
    assert "fix" not in decision_view(d)["teams"][0]


def test_the_trace_is_rendered_from_its_data():
    """Every step's sentence is the renderer's, from the step's data (gis.says)."""
    from gis.says import SAYS

    t = (team("T1", covers=True, d=900.0, roster=ALWAYS, fix=fix("m1", d=80.0, age_s=60.0)),)
    d = run(facts(b_m=500.0, joint=True, teams=t, dups=(DuplicateRef("x", "JG-2", 80.0, "t"),)))
    assert {s.step for s in d.trace} <= set(SAYS)
    says = {s.step: s.says for s in d.trace}
    assert says["border_zone"] == "500 m from side B: within the 2,000 m border zone"
    assert says["teams"] == (
        "1 team(s) serving joint_defense cover the point and are on duty; "
        "lead team T1 team T1, 80 m from the point (fix 1 min old)"
    )
    assert says["duplicates"].startswith("possible duplicate of JG-2: same category, 80 m away")


def test_the_memo_gives_decides_signature_for_every_shape_of_facts():
    """The memo's signatures against ``decide``'s own, over facts of every shape (zones,
    joint grids, chiefs, teams by base and by fix, on and off duty), categories whose
    mechanisms and chief roles differ, and times on and off the day shift, each facts object
    seen under several categories and times so that the memo's steps are shared."""
    import itertools

    from api import settings
    from api.catalogue import load_catalogue

    cat = load_catalogue(settings.data().catalogue)
    memo = DecisionMemo(cat, now=NOW)
    day = {"timezone": "Asia/Shanghai", "shifts": [
        {"name": "day", "days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"}]}  # fmt: skip
    chiefs = (ChiefRef("RC", "river", A, "river chief", None, "a river", 500.0),
              ChiefRef("RB", "river", B, "b chief", None, "b river", 900.0))  # fmt: skip
    teams = ((), (team("T1", covers=True, d=900.0, roster=day),
                  team("T2", covers=False, d=300.0, roster=ALWAYS, fix=fix("m", d=20.0, age_s=9.0)),
                  team("T3", covers=False, d=100.0, roster=day)))  # fmt: skip
    shapes = [facts(b_m=b, joint=j, chiefs=c, teams=t) for b, j, c, t in itertools.product(
        (None, 800.0, 2000.0, 2000.1), (False, True), ((), chiefs), teams)]  # fmt: skip
    cats = ("theft", "river_pollution", "land_dispute", "forest_fire_hazard")
    times = (NOW, NOW + timedelta(hours=12), NOW + timedelta(days=1, minutes=7))
    n = 0
    for i, f in enumerate(shapes):
        for category, at in itertools.product(cats, times):
            rep = Report(120.0, 45.0, category, "yellow", at)
            assert memo(rep, f, str(i)) == signature(decide(rep, f, cat, now=NOW)), (i, category)
            n += 1
    assert memo.calls == n and memo.hits > n / 2 and memo.made["sides"] == len(shapes)
