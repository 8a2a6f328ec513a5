"""Case use-cases shared by the HTTP routes and the CLI: report, route, transition, escalate.

Locate and decide, then one atomic statement writes the case and its first event; an
idempotency key gives exactly one case.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shapely.geometry import Point

from api import settings
from api.usecases import trail
from api.usecases.schemas import ReportIn, TransitionIn
from gis.catalogue import Catalogue
from gis.crs import geometry_to_wgs84, parse_crs, to_wgs84
from gis.errors import IdempotencyConflict, InvalidInput, NotFound, UnknownSeverity
from gis.geojson import parse_geometry, point_lonlat
from gis.location import check_lonlat
from gis.routing import Decision, Report, decide, decision_view, routing_record
from gis.trail import TrailDrift
from gis.workflow import CaseState, Transition, apply, auto_escalation, ladder_of
from layers import incidents, locate, outbox
from layers.db import Conn, try_xact_lock

FUTURE_SLACK = timedelta(minutes=10)  # phone clocks drift; a report may not come from later


def now_utc() -> datetime:
    return datetime.now(UTC)


def normalise(
    body: ReportIn, catalogue: Catalogue, *, now: datetime
) -> tuple[Report, dict[str, Any]]:
    """Check a report body and convert its coordinates to WGS84; raise clear domain errors."""
    crs = parse_crs(body.crs)
    if body.location is not None and (body.lon is not None or body.lat is not None):
        raise InvalidInput(
            "give either location (a GeoJSON Point) or lon and lat, not both",
            {"fix": "drop lon/lat or drop location"},
        )
    if body.location is not None:
        raw = point_lonlat(body.location)
    elif body.lon is not None and body.lat is not None:
        raw = (body.lon, body.lat)
    else:
        raise InvalidInput(
            "the report has no location: give location (a GeoJSON Point) or lon and lat",
            {"example": {"location": {"type": "Point", "coordinates": [105.57, 30.19]}}},
        )
    x, y = check_lonlat(*raw)
    lon, lat = to_wgs84(x, y, crs)
    catalogue.category(body.category)
    severity = body.severity or catalogue.default_severity
    if severity not in catalogue.severities:
        raise UnknownSeverity(
            f"unknown severity {severity!r}", {"valid": list(catalogue.severities)}
        )
    occurred = body.occurred_at or now
    if occurred > now + FUTURE_SLACK:
        raise InvalidInput(
            "occurred_at is in the future; check the phone's clock and time zone",
            {"occurred_at": occurred.isoformat(), "server_time": now.isoformat()},
        )
    extent = None
    if body.extent is not None:
        extent = parse_geometry(
            body.extent,
            allowed=("LineString", "Polygon", "MultiLineString", "MultiPolygon"),
            field="extent",
            max_vertices=catalogue.max_extent_vertices,
        )
        extent = geometry_to_wgs84(extent, crs)
    report = Report(
        lon=lon,
        lat=lat,
        category=body.category,
        severity=severity,
        occurred_at=occurred,
        extent=extent,
        parties_sides=tuple(dict.fromkeys(body.parties_sides)),
    )
    given: dict[str, Any] = {"lon": x, "lat": y, "crs": crs}
    if report.parties_sides:
        given["parties_sides"] = list(report.parties_sides)
    return report, given


def request_hash(body: ReportIn, media_hashes: Sequence[str] = ()) -> str:
    """A stable hash of the request body, to tell a retry from a different report.

    A report sent with photos is "the same body" when its JSON and its photos' SHA-256 (in any
    order) are the same; a report without photos hashes as it always did.
    """
    doc: Any = body.model_dump(mode="json")
    if media_hashes:
        doc = {"report": doc, "media": sorted(media_hashes)}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _decide(conn: Conn, report: Report, catalogue: Catalogue, *, now: datetime) -> Decision:
    dup = catalogue.duplicates
    facts = locate.facts(
        conn,
        lon=report.lon,
        lat=report.lat,
        radius_m=catalogue.border_zone_m,
        mechanism=catalogue.mechanism_for(report.category),
        extent=report.extent,
        duplicates=locate.DuplicateQuery(
            category=report.category,
            radius_m=dup.radius_m,
            since=now - timedelta(hours=dup.window_hours),
        ),
        sides=report.parties_sides,
        teams_if_cross=True,  # teams are read only for a cross-boundary decision
        # the members' fixes as of the decision's time, which is stored as its decided_at: a
        # re-route reads them as of that time again (layers/sql/reroute_cases.sql)
        as_of=now,
        fix_max_age_s=settings.patrol().fresh_fix_s,
    )
    return decide(
        report,
        facts,
        catalogue,
        now=now,
        known_sides=frozenset(s.code for s in facts.sides),
        fresh_fix_s=settings.patrol().fresh_fix_s,
    )


def route(conn: Conn, body: ReportIn, catalogue: Catalogue) -> dict[str, Any]:
    """The decision for a report, without storing anything (``POST /api/v1/route``)."""
    now = now_utc()
    report, given = normalise(body, catalogue, now=now)
    d = _decide(conn, report, catalogue, now=now)
    return {
        "location": {"type": "Point", "coordinates": [round(report.lon, 7), round(report.lat, 7)]},
        "input": given,
        "category": report.category,
        "severity": report.severity,
        **decision_view(d),
    }


def report(
    conn: Conn,
    body: ReportIn,
    catalogue: Catalogue,
    *,
    idempotency_key: str | None,
    actor: dict[str, Any],
    media_hashes: Sequence[str] = (),
) -> tuple[dict[str, Any], bool]:
    """Store a report as a case; return (case, created). A retry returns the first case.

    Idempotency keys are per caller (``actor``), so one key cannot reach another's case.
    ``media_hashes`` are the SHA-256 of photos sent with the report (see ``api.usecases.media``).
    """
    if idempotency_key and actor.get("key_id"):
        idempotency_key = f"{actor['key_id']}:{idempotency_key}"
    digest = request_hash(body, media_hashes)
    now = now_utc()
    rep, given = normalise(body, catalogue, now=now)
    # Two round trips: the facts (a read), then one statement that writes the case and its
    # first event and returns the stored case: atomic on its own, so no BEGIN/COMMIT round
    # trips around it. A retry with a known key costs the facts once more, instead of every
    # report paying a look-up first.
    d = _decide(conn, rep, catalogue, now=now)
    row = incidents.insert_reported(
        conn,
        fields={
            "side": d.lead_side,
            "status": "reported",
            "category": rep.category,
            "severity": rep.severity,
            "description": body.description,
            "occurred_at": rep.occurred_at,
            "due_at": d.due_at,
            **routing_record(d, now),
            "possible_duplicate_of": d.possible_duplicate_of,
            "input": given,
            "reporter": (body.reporter.model_dump() if body.reporter else {})
            | {k: v for k, v in actor.items() if k in ("key_id", "role", "side")},
        },
        geom=_point(rep.lon, rep.lat),
        extent=rep.extent,
        idempotency_key=idempotency_key,
        request_hash=digest,
        event={
            "action": "report",
            "actor": actor,
            "actor_side": actor.get("side"),
            "payload": {
                "cross_boundary": d.cross_boundary,
                "reasons": list(d.reasons),
                "mechanism": d.mechanism,
                "sides": list(d.sides),
                "teams": [t.code for t in d.teams],
                "due_at": d.due_at.isoformat(),  # the first time limit, for the trail's replay
            },
        },
    )
    if row is None:
        # A concurrent retry with the same key committed first: answer with its case.
        assert idempotency_key is not None
        existing = incidents.by_key(conn, idempotency_key)
        assert existing is not None
        return _replay(existing, digest, idempotency_key)
    return case_view(row), True


def _replay(row: dict[str, Any], digest: str, key: str) -> tuple[dict[str, Any], bool]:
    if row["request_hash"] != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different report; "
            "use a new key for a new report",
            {"idempotency_key": key, "case": row["code"]},
        )
    return case_view(row), False


def _point(lon: float, lat: float) -> Any:

    return Point(lon, lat)


# The top-level fields of a case as the API shows it (``case_view``): what a list may be
# narrowed to with ``fields=`` (a test holds the two equal).
CASE_FIELDS = frozenset(
    [
        "id",
        "code",
        "status",
        "category",
        "severity",
        "description",
        "location",
        "extent",
        "side",
        "sides",
        "distance_to_border_m",
        "in_border_zone",
        "cross_boundary",
        "cross_boundary_reasons",
        "mechanism",
        "lead_side",
        "teams",
        "contacts",
        "grid",
        "police_grid",
        "due_at",
        "occurred_at",
        "reported_at",
        "updated_at",
        "escalation_level",
        "verified_sides",
        "merged_into",
        "possible_duplicate_of",
        "input",
        "reporter",
        "routing",
        "links",
    ]
)


def case_view(row: dict[str, Any], *, show_reporter: bool = True) -> dict[str, Any]:
    """A stored case as the API shows it; the reporter only to those who may see it."""
    routing = row.get("routing") or {}
    view = {
        "id": row["id"],
        "code": row["code"],
        "status": row["status"],
        "category": row["category"],
        "severity": row["severity"],
        "description": row["description"],
        "location": row["location"],
        "extent": row["extent"],
        "side": row["lead_side"],  # the side containing the point now (the intake side may differ)
        "sides": row["sides"],
        "distance_to_border_m": row["distance_to_border_m"],
        "in_border_zone": routing.get("in_border_zone"),
        "cross_boundary": row["cross_boundary"],
        "cross_boundary_reasons": row["reasons"],
        "mechanism": row["mechanism"],
        "lead_side": row["lead_side"],
        "teams": row["teams"],
        "contacts": row["contacts"],
        "grid": routing.get("grid"),
        "police_grid": routing.get("police_grid"),
        "due_at": _iso(row["due_at"]),
        "occurred_at": _iso(row["occurred_at"]),
        "reported_at": _iso(row["reported_at"]),
        "updated_at": _iso(row["updated_at"]),
        "escalation_level": row["escalation_level"],
        "verified_sides": row["verified_sides"],
        "merged_into": row["merged_into"],
        "possible_duplicate_of": row["possible_duplicate_of"],
        "input": row["input"],
        "reporter": row["reporter"],
        "routing": {
            "trace": routing.get("trace", []),
            "chain": routing.get("chain", []),
            "decided_at": routing.get("decided_at"),
        },
        "links": {
            "self": f"/api/v1/incidents/{row['id']}",
            "events": f"/api/v1/incidents/{row['id']}/events",
            "media": f"/api/v1/incidents/{row['id']}/media",
        },
    }
    if not show_reporter:
        view["reporter"] = None
    return view


def _iso(v: Any) -> str | None:
    return None if v is None else v.isoformat()


def state_of(row: dict[str, Any]) -> CaseState:
    """The workflow state of a stored case."""
    return CaseState(
        status=row["status"],
        sides=tuple(row["sides"]),
        due_at=row["due_at"],
        escalation_level=row["escalation_level"],
        verified_sides=tuple(row["verified_sides"]),
        merged_into=row["merged_into"],
        case_id=row["id"],
    )


def _record(conn: Conn, row: dict[str, Any], t: Transition, *, actor: dict[str, Any]) -> None:
    a = t.after
    incidents.update_state(
        conn,
        row["id"],
        changes={
            "status": a.status,
            "due_at": a.due_at,
            "escalation_level": a.escalation_level,
            "verified_sides": list(a.verified_sides),
            "merged_into": a.merged_into,
        },
    )
    incidents.append_event(
        conn,
        incident_id=row["id"],
        side=row["side"],
        action=t.action,
        from_status=t.before.status,
        to_status=a.status,
        actor=actor,
        actor_side=None if t.side == "system" else t.side,
        note=t.note,
        payload=t.event_payload(),
        at=t.at,
    )


def transition(
    conn: Conn,
    case_id: str,
    body: TransitionIn,
    catalogue: Catalogue,
    *,
    actor: dict[str, Any],
    find_case: Callable[[Conn, str], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Apply one workflow action to a case, with its audit event, in one transaction.

    ``find_case(conn, ref)`` resolves the case a merge goes into, as the caller may see it
    (``api.access.find_visible``): None for a case that does not exist and for one the caller
    may not see alike, so the answer never tells the two apart. Without it, every case counts.
    """
    now = now_utc()
    with conn.transaction():
        row = incidents.get(conn, case_id, for_update=True)
        trail.refuse_drift(conn, row, ladder=ladder_of(catalogue.escalation))
        into = None
        if body.action == "merge" and body.into:
            target = (find_case or _any_case)(conn, body.into)
            if target is None:
                raise InvalidInput(
                    f"cannot merge into {body.into}: no such case", {"into": body.into}
                )
            into = target["id"]
        t = apply(
            state_of(row),
            body.action,
            side=body.side,
            now=now,
            ladder=ladder_of(catalogue.escalation),
            note=body.note,
            resolve_within=catalogue.resolve_within(row["severity"]),
            due_at=body.due_at,
            into=into,
        )
        _record(conn, row, t, actor=actor)
    return case_view(incidents.get(conn, row["id"]))


def _any_case(conn: Conn, ref: str) -> dict[str, Any] | None:
    try:
        return incidents.get(conn, ref)
    except NotFound:
        return None


ESCALATION_LOCK = 7_311_002  # advisory lock key: one escalator at a time across servers


def escalate_overdue(conn: Conn, catalogue: Catalogue, *, now: datetime | None = None) -> int:
    """Escalate every overdue open case one rung; return how many. Safe to run anywhere at once.

    A transaction-level advisory lock keeps two servers (or a server and cron) from working at
    the same moment; the row locks and the re-check of the due time make a second pass a no-op.
    """
    now = now or now_utc()
    ladder = ladder_of(catalogue.escalation)
    done = 0
    with conn.transaction():
        if not try_xact_lock(conn, ESCALATION_LOCK):
            return 0
        for row in incidents.overdue(conn, now=now):
            # Logged when the case differs from its trail, but still escalated: an overdue
            # case must climb, and the escalation's event shows the drift to `verify`.
            with contextlib.suppress(TrailDrift):
                trail.refuse_drift(conn, row, ladder=ladder)
            outbox.mark_overdue(conn, case=row, now=now)  # once per case and due time
            t = auto_escalation(state_of(row), now, ladder=ladder)
            if t is not None:
                _record(conn, row, t, actor={"kind": "system", "task": "escalate-overdue"})
                done += 1
    return done
