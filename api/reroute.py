"""Re-routing cases after boundaries, teams or the catalogue change (``jointgrid reroute``).

One set-based facts query streams every case with its fresh facts; the same pure decision as
at report time runs on each; cases whose mechanism, sides, teams or contacts changed get their
routing replaced and one audit event each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import shapely

from api.cases import decision_view, now_utc
from gis.catalogue import Catalogue
from gis.errors import DomainError
from gis.routing import Report, decide
from layers import incidents
from layers.db import Conn
from layers.locate import degrees_covering, to_facts


@dataclass
class RerouteSummary:
    examined: int = 0
    changed: int = 0
    failed: int = 0
    by_change: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "changed": self.changed,
            "failed": self.failed,
            "by_change": dict(self.by_change),
            "dry_run": self.dry_run,
            "examples": self.examples,
        }


def _signature(mechanism: Any, sides: Any, teams: Any, contacts: Any) -> dict[str, Any]:
    return {
        "mechanism": mechanism,
        "sides": list(sides or []),
        "teams": [t["code"] for t in teams or []],
        "contacts": sorted(
            (c["side"], c["role"], c["unit_code"], c.get("name") or "") for c in contacts or []
        ),
    }


def reroute(
    conn: Conn,
    catalogue: Catalogue,
    *,
    open_only: bool = True,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RerouteSummary:
    """Recompute routing for the cases; write changes and events unless ``dry_run``."""
    now = now or now_utc()
    summary = RerouteSummary(dry_run=dry_run)
    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    changes: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for row in incidents.stream_for_reroute(
        conn,
        open_only=open_only,
        radius_m=catalogue.border_zone_m,
        radius_deg=degrees_covering(catalogue.border_zone_m, 60.0),
        mechanism_by_category=mech,
    ):
        summary.examined += 1
        given = row["input"] or {}
        extent = shapely.from_wkb(row["extent"]) if row["extent"] is not None else None
        rep = Report(
            lon=row["lon"],
            lat=row["lat"],
            category=row["category"],
            severity=row["severity"],
            occurred_at=row["occurred_at"],
            extent=extent,
            parties_sides=tuple(given.get("parties_sides") or ()),
        )
        facts = to_facts(row["lon"], row["lat"], row["facts"])
        try:
            d = decide(rep, facts, catalogue, now=now)
        except DomainError as exc:  # e.g. the point is no longer inside any side
            summary.failed += 1
            if len(summary.examples) < 10:
                summary.examples.append({"case": row["code"], "error": exc.message})
            continue
        view = decision_view(d)
        old = _signature(row["mechanism"], row["sides"], row["teams"], row["contacts"])
        new = _signature(d.mechanism, d.sides, view["teams"], view["contacts"])
        diff = [k for k in old if old[k] != new[k]]
        if diff:
            summary.changed += 1
            summary.by_change.update(diff)
            if len(summary.examples) < 10:
                summary.examples.append({"case": row["code"], "changed": diff})
            changes.append((row, view, {k: {"from": old[k], "to": new[k]} for k in diff}))
    if not dry_run:
        _write(conn, changes, now=now)
    return summary


def _write(
    conn: Conn,
    changes: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]],
    *,
    now: datetime,
) -> None:
    with conn.transaction():
        for row, view, diff in changes:
            incidents.update_routing(
                conn,
                row["id"],
                fields={
                    "side": view["lead_side"],
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
                    "routing": {
                        **view["routing"],
                        "grid": view["grid"],
                        "police_grid": view["police_grid"],
                        "in_border_zone": view["in_border_zone"],
                        "decided_at": now.isoformat(),
                        "rerouted": True,
                    },
                },
            )
            incidents.append_event(
                conn,
                incident_id=row["id"],
                side=view["lead_side"],
                action="reroute",
                from_status=row["status"],
                to_status=row["status"],
                actor={"kind": "system", "task": "reroute"},
                actor_side=None,
                note="routing recomputed after a change of boundaries, teams or catalogue",
                payload={"changed": diff},
                at=now,
            )
