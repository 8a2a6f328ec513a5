"""Request bodies of the public API (the field names are fixed by the contract)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gis.workflow import ACTIONS


class Reporter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)


class ReportIn(BaseModel):
    """A grid worker's report. Give ``location`` (a GeoJSON Point) or ``lon`` and ``lat``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "location": {"type": "Point", "coordinates": [105.5702, 30.1951]},
                    "crs": "gcj02",
                    "category": "land_dispute",
                    "severity": "yellow",
                    "description": "Two families dispute a field boundary by the village road.",
                }
            ]
        },
    )

    location: dict[str, Any] | None = Field(default=None, description="GeoJSON Point")
    lon: float | None = Field(default=None, description="longitude (instead of location)")
    lat: float | None = Field(default=None, description="latitude (instead of location)")
    crs: str = Field(default="wgs84", description="wgs84, cgcs2000, gcj02 or bd09")
    category: str = Field(description="a catalogue code, see GET /api/v1/catalogue", max_length=100)
    severity: str | None = Field(default=None, description="red, orange, yellow (default) or blue")
    description: str = Field(default="", max_length=4000)
    occurred_at: AwareDatetime | None = Field(default=None, description="ISO 8601 with zone")
    extent: dict[str, Any] | None = Field(default=None, description="GeoJSON LineString or Polygon")
    parties_sides: list[str] = Field(default_factory=list, max_length=20)
    reporter: Reporter | None = None


# The actions a transition may name: exactly the workflow's, in its order (the JSON schema's enum).
if TYPE_CHECKING:
    TransitionAction = str
else:
    TransitionAction = Literal[ACTIONS]


class TransitionIn(BaseModel):
    """A move in the case workflow, made by one side."""

    model_config = ConfigDict(extra="forbid")

    action: TransitionAction
    side: str = Field(description="the acting side's code", max_length=20)
    note: str | None = Field(default=None, max_length=4000)
    due_at: AwareDatetime | None = Field(default=None, description="new due time, for postpone")
    into: str | None = Field(default=None, description="the case merged into, for merge")
