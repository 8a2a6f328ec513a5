"""The demo's storage: COPY of the synthetic province's layers and of its historical cases
with their audit trail (hash chain computed set-wise), and the few statements around them.

``api.usecases.demo`` generates (``boundary_data.province``), routes and calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import shapely

from gis.catalogue import Catalogue
from gis.workflow import OPEN_STATUSES
from layers import bulk
from layers.db import Conn, translate_errors

SYNTHETIC_PREFIX = "99"  # side codes of the synthetic province


def province_loaded(conn: Conn) -> bool:
    """Whether the synthetic province's districts are there."""
    return bool(
        bulk.count(
            conn,
            "SELECT count(*) FROM areas WHERE level = 'district' AND side LIKE %s",
            (SYNTHETIC_PREFIX + "%",),
        )
    )


def province_cases(conn: Conn) -> int:
    """How many synthetic province cases are stored."""
    return bulk.count(conn, "SELECT count(*) FROM incidents WHERE input->>'synthetic' = 'province'")


def analyze(conn: Conn, *, cases: bool = False) -> None:
    """After a bulk load, outside a transaction: ANALYZE the layers, or VACUUM (FREEZE,
    ANALYZE) the cases and their trail (every new row's hint bits and the visibility map
    set once, here, rather than on the first reads and in an autovacuum of millions of rows
    while the province is in use)."""
    conn.commit()
    prev = conn.autocommit
    conn.autocommit = True
    with translate_errors():
        if cases:
            conn.execute("VACUUM (FREEZE, ANALYZE) incidents, incident_events")
        else:
            conn.execute("ANALYZE areas, grids, police_grids, teams, border")
    conn.autocommit = prev


def real_sides(conn: Conn) -> Any:
    """The union of the real (not synthetic) districts."""
    cols = bulk.fetch_layer(
        conn,
        "SELECT code, ST_AsBinary(geom) AS wkb FROM areas WHERE level = 'district'"
        " AND side NOT LIKE %s",
        (SYNTHETIC_PREFIX + "%",),
    )
    return shapely.union_all(np.asarray(cols["geoms"], dtype=object))


def load_province_layers(conn: Conn, p: Any) -> dict[str, int]:
    """COPY the synthetic province ``p`` (a ``boundary_data.province.Province``): its areas,
    grids, police beats and teams, in one transaction."""
    meta = {"synthetic": True, "generator": "boundary_data.province"}
    counts: dict[str, int] = {}
    acols = [
        "code",
        "name",
        "name_en",
        "level",
        "parent_code",
        "side",
        "synthetic",
        "props",
        "geom",
    ]
    with translate_errors(), conn.transaction():
        for level, lay, parent in (
            ("district", p.districts, None),
            ("town", p.towns, "parent"),
            ("village", p.villages, "parent"),
        ):
            wkb = bulk.ewkb_hex(lay.geom)
            names = lay.cols["name"]
            parents = lay.cols[parent] if parent else [None] * len(lay)
            counts[level + "s"] = bulk.copy_rows(
                conn,
                "areas",
                acols,
                (
                    (c, n, "Demo " + n.split(" Demo ")[1], level, pa, c[:6],
                     True, bulk.jsonb(meta), g)
                    for c, n, pa, g in zip(lay.code.tolist(), names, parents, wkb, strict=True)
                ),
            )  # fmt: skip
        g = p.grids
        wkb = bulk.ewkb_hex(g.geom)
        counts["grids"] = bulk.copy_rows(
            conn,
            "grids",
            ["code", "name", "village_code", "side", "joint", "chief_name", "chief_phone",
             "synthetic", "props", "geom"],
            (
                (c, n, v, s, False, cn, cp, True, bulk.jsonb(meta), w)
                for c, n, v, s, cn, cp, w in zip(
                    g.code.tolist(), g.cols["name"], g.cols["village"], g.cols["side"].tolist(),
                    g.cols["chief_name"], g.cols["chief_phone"], wkb, strict=True,
                )
            ),
        )  # fmt: skip
        pg = p.police
        wkb = bulk.ewkb_hex(pg.geom)
        counts["police_grids"] = bulk.copy_rows(
            conn,
            "police_grids",
            ["code", "name", "station", "officer_name", "officer_phone", "side", "synthetic",
             "props", "geom"],
            (
                (c, n, st, on, op, s, True, bulk.jsonb(meta), w)
                for c, n, st, on, op, s, w in zip(
                    pg.code.tolist(), pg.cols["name"], pg.cols["station"], pg.cols["officer_name"],
                    pg.cols["officer_phone"], pg.cols["side"], wkb, strict=True,
                )
            ),
        )  # fmt: skip
        t = p.teams
        pa = bulk.ewkb_hex([x["patrol_area"] for x in t])
        ba = bulk.ewkb_hex([x["base"] for x in t])
        counts["teams"] = bulk.copy_rows(
            conn,
            "teams",
            ["code", "name", "kind", "side", "sides", "mechanisms", "roster", "members",
             "synthetic", "props", "patrol_area", "base"],
            (
                (x["code"], x["name"], x["kind"], x["side"], x["sides"], x["mechanisms"],
                 bulk.jsonb(x["roster"]), bulk.jsonb(x["members"]), True, bulk.jsonb(meta), a, b)
                for x, a, b in zip(t, pa, ba, strict=True)
            ),
        )  # fmt: skip
    return counts


NUL = "\\N"  # COPY's NULL
DISPATCH_AFTER_S = 60.0  # a synthetic case is dispatched a minute after its report
_TO = {"accepted": 2, "dispatched": 3, "in_progress": 4, "resolved": 5, "closed": 5}


def _trail_lines(
    case_id: str,
    side: str,
    sides: list[str],
    status: str,
    actor: str,
    reported: float,
    first_due: str,
    due: str,
    other: str,
) -> list[str]:
    """COPY lines of one synthetic case's events: the workflow's own moves to ``status``
    (report, accept, dispatch, start, resolve, each side's verify, close; or reject, or a
    merge into ``other``), as ``gis.trail.replay`` expects them."""

    def at(offset_s: float) -> str:
        return datetime.fromtimestamp(reported + offset_s, UTC).isoformat()

    def pay(d: dict[str, Any]) -> str:
        return orjson.dumps({"synthetic": True, **d}).decode().replace("\\", "\\\\")

    rows: list[tuple[str, str | None, str, str | None, str | None, str, str]] = [
        ("report", None, "reported", None, None, pay({"sides": sides, "due_at": first_due}), at(0))
    ]
    closed = 2 * 86400.0  # closed, rejected and merged two days after the report
    if status == "rejected":
        rows.append(("reject", "reported", "rejected", side, "synthetic", pay({}), at(closed)))
    elif status == "duplicate":
        rows.append(
            ("merge", "reported", "duplicate", side, None, pay({"into": other}), at(closed))
        )
    else:
        steps = [
            ("accept", "reported", "accepted", side, None, pay({}), at(30)),
            ("dispatch", "accepted", "dispatched", side, None,
             pay({"due_at": {"from": first_due, "to": due}}), at(DISPATCH_AFTER_S)),
            ("start", "dispatched", "in_progress", side, None, pay({}), at(120)),
            ("resolve", "in_progress", "resolved", side, "synthetic", pay({}),
             at(closed - 3600 if status == "closed" else 180)),
        ]  # fmt: skip
        rows.extend(steps[: _TO.get(status, 1) - 1])
        if status == "closed":
            for j, s in enumerate(sides):
                last = j == len(sides) - 1
                rows.append(("verify", "resolved", "verified" if last else "resolved", s, None,
                             pay({}), at(closed - 1800 + j)))  # fmt: skip
            rows.append(("close", "verified", "closed", side, None, pay({}), at(closed)))
    return [
        "\t".join((case_id, side, str(seq), a, f or NUL, t, actor, s or NUL, note or NUL, p, when))
        for seq, (a, f, t, s, note, p, when) in enumerate(rows, 1)
    ]


def _iso(epoch: np.ndarray) -> list[str]:
    return [datetime.fromtimestamp(float(e), UTC).isoformat() for e in np.asarray(epoch).tolist()]


def load_cases(
    conn: Conn,
    c: Any,
    routing: dict[str, Any],
    *,
    catalogue: Catalogue,
    say: Callable[[str], None],
    batch: int = 200_000,
) -> dict[str, int]:
    """COPY the synthetic cases ``c`` (``boundary_data.province.Cases``) and their audit events (report, and the last move for closed
    ones), with the hash chain computed set-wise. ``routing`` holds per-case columns."""
    n = len(c)
    cols = [
        "id", "code", "side", "sides", "status", "category", "severity", "description",
        "occurred_at", "reported_at", "updated_at", "due_at", "cross_boundary", "reasons",
        "mechanism", "lead_side", "distance_to_border_m", "grid_code", "police_grid_code",
        "teams", "contacts", "routing", "routing_sig", "input", "reporter", "geom",
        "verified_sides", "merged_into",
    ]  # fmt: skip
    hours = {k: v.resolve_hours * 3600.0 for k, v in catalogue.severities.items()}
    limit = np.array([hours[s] for s in c.severity.tolist()])
    due = c.reported + limit
    # The trail is the workflow's, step by step (`jointgrid audit-trail verify` replays it):
    # dispatched a minute after the report, so its time limit runs from then.
    dispatched = ~np.isin(c.status, ("reported", "accepted", "rejected", "duplicate"))
    dispatch_due = c.reported + DISPATCH_AFTER_S + limit
    due = np.where(dispatched, dispatch_due, due)
    first_due = _iso(c.reported + limit)
    # ids embed the intake side, like layers.incidents.new_id, and are deterministic
    ids = [f"00{side}-5eed-4000-8000-{k:012x}" for k, side in enumerate(routing["side"])]
    dates = [
        datetime.fromtimestamp(float(e) + 8 * 3600, UTC).strftime("%Y%m%d")
        for e in c.reported.tolist()
    ]
    occurred, reported, due_iso = _iso(c.occurred), _iso(c.reported), _iso(due)
    closed_at = c.reported + 2 * 86400.0
    updated = _iso(np.where(np.isin(c.status, sorted(OPEN_STATUSES)), c.reported, closed_at))
    lon, lat = c.lon.tolist(), c.lat.tolist()
    r = routing
    inp = orjson.dumps({"crs": "wgs84", "synthetic": "province"}).decode()
    rep = orjson.dumps({"kind": "synthetic", "role": "grid_worker"}).decode()
    actor = orjson.dumps({"kind": "synthetic", "task": "jointgrid demo"}).decode()

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    def arr(xs: list[str]) -> str:
        return "{" + ",".join(xs) + "}"

    def nul(v: Any) -> str:
        return "\\N" if v is None else str(v)

    def case_chunks() -> Iterator[str]:
        for start in range(0, n, batch):
            lines = []
            for k in range(start, min(n, start + batch)):
                lines.append(
                    "\t".join(
                        (
                            ids[k],
                            f"JG{dates[k]}-S{k + 1:07d}",
                            r["side"][k],
                            arr(r["sides"][k]),
                            c.status[k],
                            c.category[k],
                            c.severity[k],
                            "synthetic historical case / 合成历史案件",
                            occurred[k],
                            reported[k],
                            updated[k],
                            due_iso[k],
                            "t" if r["cross_boundary"][k] else "f",
                            arr(r["reasons"][k]),
                            nul(r["mechanism"][k]),
                            r["side"][k],
                            nul(r["distance_to_border_m"][k]),
                            nul(r["grid_code"][k]),
                            nul(r["police_grid_code"][k]),
                            esc(r["teams"][k]),
                            esc(r["contacts"][k]),
                            esc(r["routing"][k]),
                            esc(r["routing_sig"][k]),
                            inp,
                            rep,
                            f"SRID=4326;POINT({lon[k]!r} {lat[k]!r})",
                            arr(r["sides"][k]) if c.status[k] == "closed" else "{}",
                            ids[k - 1 if k else 1] if c.status[k] == "duplicate" else "\\N",
                        )
                    )
                )
            say(f"  cases {min(n, start + batch):,} / {n:,}")
            yield "\n".join(lines) + "\n"

    out: dict[str, int] = {}
    with translate_errors(), conn.transaction():
        # Into empty tables, build the secondary indexes once at the end: maintaining them
        # row by row (three GiST, one GIN) costs several times the COPY itself.
        empty = not conn.execute("SELECT EXISTS (SELECT FROM incidents) AS x").fetchone()["x"]  # type: ignore[index]
        rebuild = (
            bulk.drop_secondary_indexes(conn, ("incidents", "incident_events")) if empty else []
        )
        bulk.copy_text(conn, "incidents", cols, case_chunks())
        out["cases"] = n
        conn.execute(
            "CREATE TEMP TABLE _demo_events (LIKE incident_events INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        ecols = ["incident_id", "side", "seq", "action", "from_status", "to_status", "actor",
                 "actor_side", "note", "payload", "at"]  # fmt: skip

        def event_chunks() -> Iterator[str]:
            for start in range(0, n, batch):
                lines: list[str] = []
                for k in range(start, min(n, start + batch)):
                    lines.extend(
                        _trail_lines(
                            ids[k],
                            r["side"][k],
                            list(r["sides"][k]),
                            c.status[k],
                            actor,
                            float(c.reported[k]),
                            first_due[k],
                            due_iso[k],
                            ids[k - 1 if k else 1],
                        )
                    )
                yield "\n".join(lines) + "\n"

        bulk.copy_text(conn, "_demo_events", ecols, event_chunks())
        say("  events staged; chaining")
        out["events"] = bulk.chain_events(conn, "_demo_events")
        if rebuild:
            say(f"  rebuilding {len(rebuild)} indexes")
            bulk.create_indexes(conn, rebuild)
    return out


def cell_bounds(conn: Conn) -> np.ndarray:
    """Bounds of every synthetic grid cell (lon/lat), to sample case locations in."""
    with translate_errors():
        rows = conn.execute(
            "SELECT ST_XMin(geom) AS a, ST_YMin(geom) AS b, ST_XMax(geom) AS c, ST_YMax(geom) AS d"
            " FROM grids WHERE side LIKE %s ORDER BY code",
            (SYNTHETIC_PREFIX + "%",),
        ).fetchall()
    return np.array([[r["a"], r["b"], r["c"], r["d"]] for r in rows], dtype=np.float64)
