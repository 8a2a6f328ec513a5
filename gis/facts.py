"""What the database knows about a location, as plain values (filled by ``layers.locate``).

Distances are metres on the WGS84 ellipsoid (PostGIS geography).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SideFact:
    """One side (district) and the point's distance to its territory (0 inside it)."""

    code: str
    name: str
    contains: bool
    distance_m: float


@dataclass(frozen=True)
class AreaRef:
    code: str
    name: str
    level: str


@dataclass(frozen=True)
class GridRef:
    code: str
    name: str
    side: str
    village_code: str
    joint: bool
    chief_name: str | None
    chief_phone: str | None
    contains: bool
    distance_m: float
    spans: tuple[str, ...] = ()  # for a joint grid: every side whose territory it covers


@dataclass(frozen=True)
class PoliceGridRef:
    code: str
    name: str
    side: str
    station: str
    officer_name: str | None
    officer_phone: str | None
    contains: bool
    distance_m: float


@dataclass(frozen=True)
class FixRef:
    """A team member's latest fresh fix, as the facts engine found it for a point: whose device,
    when (ISO 8601), where (WGS84), how far from the point and how old at the decision's time."""

    member: str
    device: str
    at: str
    lon: float
    lat: float
    distance_m: float
    age_s: float


@dataclass(frozen=True)
class TeamCandidate:
    """A joint team near the point: whether its patrol area covers it, and how far its base is."""

    code: str
    name: str
    kind: str
    side: str
    sides: tuple[str, ...]
    mechanisms: tuple[str, ...]
    roster: dict[str, Any]
    covers: bool
    base_distance_m: float
    fix: FixRef | None = None  # the nearest on-duty member's fresh fix, when there is one


@dataclass(frozen=True)
class ChiefRef:
    code: str
    role: str
    side: str
    name: str
    phone: str | None
    feature_name: str | None
    distance_m: float


@dataclass(frozen=True)
class DuplicateRef:
    id: str
    code: str
    distance_m: float
    reported_at: str


@dataclass(frozen=True)
class LocationFacts:
    """Everything routing needs about one point (and an optional extent), from one query."""

    lon: float
    lat: float
    sides: tuple[SideFact, ...]
    chain: tuple[AreaRef, ...] = ()
    grids_here: tuple[GridRef, ...] = ()
    nearest_grids: tuple[GridRef, ...] = ()
    police_here: tuple[PoliceGridRef, ...] = ()
    nearest_police: tuple[PoliceGridRef, ...] = ()
    teams: tuple[TeamCandidate, ...] = ()
    chiefs: tuple[ChiefRef, ...] = ()
    extent_sides: tuple[str, ...] | None = None
    duplicates: tuple[DuplicateRef, ...] = field(default=())

    def containing_sides(self) -> tuple[SideFact, ...]:
        return tuple(s for s in self.sides if s.contains)

    def nearest_side(self) -> SideFact | None:
        return min(self.sides, key=lambda s: (s.distance_m, s.code), default=None)

    def grid_for(self, side: str) -> GridRef | None:
        """The grid of ``side`` containing the point, else that side's nearest grid."""
        here = [g for g in self.grids_here if g.side == side]
        if here:
            return min(here, key=lambda g: g.code)
        return next((g for g in self.nearest_grids if g.side == side), None)

    def police_for(self, side: str) -> PoliceGridRef | None:
        """The police grid of ``side`` containing the point, else that side's nearest one."""
        here = [p for p in self.police_here if p.side == side]
        if here:
            return min(here, key=lambda p: p.code)
        return next((p for p in self.nearest_police if p.side == side), None)
