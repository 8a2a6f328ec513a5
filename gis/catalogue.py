"""The mechanism and category catalogue (``boundary_data/mechanisms.yaml``), validated.

Pure: ``parse_catalogue`` takes the already-read mapping. Every problem in the file is collected
and reported at once, each with its path, so an administrator can fix the file in one pass.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gis.errors import CatalogueError, UnknownCategory


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Severity(_Frozen):
    name: str
    name_en: str
    resolve_hours: float = Field(gt=0)


class Rung(_Frozen):
    level: str
    name: str
    name_en: str
    extend_hours: float = Field(gt=0)


class ChiefRole(_Frozen):
    name: str
    name_en: str


class Mechanism(_Frozen):
    name: str
    name_en: str
    aliases: tuple[str, ...] = ()
    groups: tuple[str, ...]
    bodies: tuple[str, ...] = ()


class Group(_Frozen):
    name: str
    name_en: str
    chief_roles: tuple[str, ...] = ()


class Category(_Frozen):
    group: str
    name: str
    name_en: str
    sensitive: bool = False
    chief_roles: tuple[str, ...] | None = None


class Duplicates(_Frozen):
    radius_m: float = Field(gt=0, le=10_000)
    window_hours: float = Field(gt=0, le=24 * 30)


class Catalogue(_Frozen):
    """The whole catalogue. Distances in metres, durations in hours."""

    version: int
    border_zone_m: float = Field(gt=0, le=50_000)
    service_area_tolerance_m: float = Field(ge=0, le=5_000)
    max_extent_vertices: int = Field(gt=1, le=1_000_000)
    duplicates: Duplicates
    default_severity: str
    severities: dict[str, Severity]
    escalation: tuple[Rung, ...] = Field(min_length=1)
    chief_roles: dict[str, ChiefRole]
    mechanisms: dict[str, Mechanism]
    groups: dict[str, Group]
    categories: dict[str, Category]
    # Who is told of which event (push): event type -> audiences (`lead_team`, `sides`).
    notifications: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "incident.dispatched": ("lead_team", "sides"),
            "incident.escalated": ("lead_team", "sides"),
            "incident.overdue": ("lead_team", "sides"),
            "incident.resolved": ("sides",),
        }
    )

    @model_validator(mode="after")
    def _cross_references(self) -> Catalogue:
        problems: list[str] = []
        if self.default_severity not in self.severities:
            problems.append(f"default_severity {self.default_severity!r} is not a severity")
        owner: dict[str, str] = {}
        for code, m in self.mechanisms.items():
            for g in m.groups:
                if g not in self.groups:
                    problems.append(f"mechanisms.{code}.groups: unknown group {g!r}")
                elif g in owner:
                    problems.append(
                        f"mechanisms.{code}.groups: group {g!r} is already handled by {owner[g]!r}"
                    )
                else:
                    owner[g] = code
        for g in self.groups:
            if g not in owner:
                problems.append(f"groups.{g}: no mechanism handles this group")
        for code, gr in self.groups.items():
            problems += [
                f"groups.{code}.chief_roles: unknown role {r!r}"
                for r in gr.chief_roles
                if r not in self.chief_roles
            ]
        for code, c in self.categories.items():
            if c.group not in self.groups:
                problems.append(f"categories.{code}.group: unknown group {c.group!r}")
            problems += [
                f"categories.{code}.chief_roles: unknown role {r!r}"
                for r in c.chief_roles or ()
                if r not in self.chief_roles
            ]
        for ev, audiences in self.notifications.items():
            problems += [
                f"notifications.{ev}: unknown audience {a!r} (lead_team or sides)"
                for a in audiences
                if a not in ("lead_team", "sides")
            ]
        levels = [r.level for r in self.escalation]
        if len(set(levels)) != len(levels):
            problems.append("escalation: levels must be distinct")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- look-ups used by the routing decision ---------------------------------------------

    def category(self, code: str) -> Category:
        """The category, or ``UnknownCategory`` listing the valid codes."""
        try:
            return self.categories[code]
        except KeyError:
            raise UnknownCategory(
                f"unknown category {code!r}; choose one of the catalogue's codes",
                {"valid": sorted(self.categories)},
            ) from None

    def mechanism_for(self, category: str) -> str:
        """The six-link mechanism code that handles ``category``'s group."""
        group = self.category(category).group
        return next(code for code, m in self.mechanisms.items() if group in m.groups)

    def chief_roles_for(self, category: str) -> tuple[str, ...]:
        """The chief roles to bring into a cross-boundary case of ``category``."""
        c = self.category(category)
        if c.chief_roles is not None:
            return c.chief_roles
        return self.groups[c.group].chief_roles

    def resolve_within(self, severity: str) -> timedelta:
        """The time limit to resolve a case of ``severity``."""
        return timedelta(hours=self.severities[severity].resolve_hours)

    @property
    def sensitive_categories(self) -> frozenset[str]:
        return frozenset(code for code, c in self.categories.items() if c.sensitive)


def parse_catalogue(data: Any) -> Catalogue:
    """Validate a catalogue mapping; raise ``CatalogueError`` listing every problem with its path."""
    if not isinstance(data, dict):
        raise CatalogueError("the catalogue must be a mapping at the top level", [])
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"path": ".".join(str(p) for p in e["loc"]) or "(top)", "problem": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        raise CatalogueError(
            f"the catalogue has {len(problems)} problem(s); fix them and reload", problems
        ) from None
