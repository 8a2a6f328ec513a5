"""Re-routing cases after boundaries, teams or the catalogue change (``jointgrid reroute``).

Which cases: by default only those the changes since the last re-route can reach
(``layers.changes``, migration 0010): the open cases within the border zone (plus the
service-area tolerance) of what a change altered, those in a joint grid an altered area
touches, those whose stored routing reaches farther (``routing_reach()``), and every
cross-boundary case when a team changed. Routing reads nothing farther away, so the others
would be decided exactly as they are stored. A full pass decides every open case: the first
run, after the catalogue changes, after a layer is truncated, after more layer changes than
``FULL_PASS_AFTER_CHANGES``, or when asked (``full``).

Set-based, in four steps:

1. the cases stream out with one COPY (``layers/sql/reroute_cases.sql``), each with the
   signature of its stored routing (mechanism, sides, team codes, md5 of the contacts: the
   column ``routing_sig`` that PostgreSQL keeps), while the reference layers are read on a
   second connection;
2. the facts of every case are gathered at once (``gis.bulkfacts``: STRtree joins over whole
   arrays, the same rules as ``location_facts()``);
3. plain cases are decided by template (their signatures built as arrays, checked against
   ``decide``); the others run the same pure ``gis.routing.decide`` as at report time, with
   the teams' duty memoised (``gis.duty.DutyMemo``), and each signature is compared with the
   stored one;
4. the changed cases are written with COPY into a temp table, one UPDATE ... FROM and one
   INSERT of their audit events (``layers/sql/reroute_write.sql``).

Step 3 is the costly one (pure Python per case); with ``workers`` > 1 it is split over forked
processes that share the facts built in step 2.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import shapely
from psycopg.pq import TransactionStatus

from api.usecases.cases import decision_view, now_utc
from gis.bulkfacts import BulkFacts, Ints, Points, Reference
from gis.catalogue import Catalogue
from gis.duty import DutyMemo
from gis.errors import Conflict, DomainError
from gis.routing import Decision, Report, decide
from layers import bulk, changes
from layers.db import Conn

NOTE = "routing recomputed after a change of boundaries, teams or catalogue"
ACTOR = {"kind": "system", "task": "reroute"}


@dataclass
class RerouteSummary:
    examined: int = 0
    changed: int = 0
    failed: int = 0
    by_change: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False
    mode: str = "full"  # or "incremental"
    why: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    changed_codes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "why": self.why,
            "examined": self.examined,
            "changed": self.changed,
            "failed": self.failed,
            "by_change": dict(self.by_change),
            "dry_run": self.dry_run,
            "examples": self.examples,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def contacts_digest(contacts: list[tuple[str, str, str, str]]) -> str:
    """md5 of the sorted (side, role, unit_code, name) contacts, as reroute_cases.sql makes it."""
    keys = sorted("\x1f".join(c) for c in contacts)
    return hashlib.md5("\x1e".join(keys).encode()).hexdigest()


def signature(d: Decision) -> tuple[str, str, str, str]:
    """What a re-route compares: mechanism, sides, team codes, and the contacts' digest."""
    return (
        d.mechanism or "",
        ",".join(d.sides),
        ",".join(t.code for t in d.teams),
        contacts_digest([(c.side, c.role, c.unit_code, c.name or "") for c in d.contacts]),
    )


SIG_KEYS = ("mechanism", "sides", "teams", "contacts")


def _points(df: Any, catalogue: Catalogue) -> Points:
    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    ext = df["extent"].tolist()
    has_ext = any(ext)
    parties = [_parties(p) for p in df["parties"].tolist()]
    return Points(
        lon=df["lon"].to_numpy(np.float64),
        lat=df["lat"].to_numpy(np.float64),
        mechanism=[mech.get(c) for c in df["category"].tolist()],
        extent=[shapely.from_wkb(bytes.fromhex(e)) if e else None for e in ext]
        if has_ext
        else None,
        sides=parties if any(parties) else None,
    )


def _parties(text: str) -> tuple[str, ...]:
    """The sides named in a case's ``parties_sides`` (its JSON array, '' when absent)."""
    if not text:
        return ()
    items = orjson.loads(text)
    if not isinstance(items, list):
        return ()
    joined = ",".join(
        x if isinstance(x, str) else orjson.dumps(x).decode() for x in items if x is not None
    )
    return tuple(joined.split(",")) if joined else ()


def _report(df_row: dict[str, Any], ext: Any, parties: tuple[str, ...]) -> Report:
    return Report(
        lon=df_row["lon"],
        lat=df_row["lat"],
        category=df_row["category"],
        severity=df_row["severity"],
        occurred_at=datetime.fromtimestamp(df_row["occurred"], UTC),
        extent=ext,
        parties_sides=parties,
    )


# The state shared with forked workers (copy-on-write): set before the pool starts.
_JOB: dict[str, Any] = {}


def _report_of(i: int) -> Report:
    job = _JOB
    pts: Points = job["facts"].pts
    cols = job["cols"]
    return Report(
        lon=float(pts.lon[i]),
        lat=float(pts.lat[i]),
        category=cols["category"][i],
        severity=cols["severity"][i],
        occurred_at=datetime.fromtimestamp(cols["occurred"][i], UTC),
        extent=None if pts.extent is None else pts.extent[i],
        parties_sides=() if pts.sides is None else pts.sides[i],
    )


def _old_signatures(
    old: dict[str, npt.NDArray[np.object_]], rows: list[int]
) -> dict[int, tuple[str, str, str, str]]:
    """The stored signatures of ``rows``, as ``signature`` makes them."""
    sel = np.asarray(rows, dtype=np.int64)
    return dict(
        zip(
            rows,
            zip(*(old[k][sel].tolist() for k in SIG_KEYS), strict=True),
            strict=True,
        )
    )


def _decide_rows(rows: list[int]) -> tuple[list[int], list[tuple[str, ...]], list[tuple[int, str]]]:
    """Decide the given cases in full; return the changed ones, their diffs, and failures."""
    job = _JOB
    bf: BulkFacts = job["facts"]
    cat, now, duty = job["catalogue"], job["now"], job["duty"]
    old = _old_signatures(job["cols"]["old"], rows)
    changed: list[int] = []
    diffs: list[tuple[str, ...]] = []
    failed: list[tuple[int, str]] = []
    for i in rows:
        try:
            d = decide(_report_of(i), bf.facts(i), cat, now=now, duty=duty)
        except DomainError as exc:
            failed.append((i, exc.message))
            continue
        new = signature(d)
        if new != old[i]:
            changed.append(i)
            diffs.append(tuple(k for k, a, b in zip(SIG_KEYS, old[i], new, strict=True) if a != b))
    return changed, diffs, failed


def _slot_digests(bf: BulkFacts, side_of: Ints, g_of: Ints, p_of: Ints) -> npt.NDArray[np.object_]:
    """The contacts' digest of ``simple`` cases from their slots (own side, grid, police grid):
    computed once per distinct (side, grid, police grid)."""
    g, p = bf.ref.grids.cols, bf.ref.police.cols
    ng, npol = len(g["code"]) + 1, len(p["code"]) + 1
    key = (side_of * ng + g_of) * npol + p_of
    uk, inv = np.unique(key, return_inverse=True)
    out = np.empty(len(uk), dtype=object)
    for k, (s, gj, pj) in enumerate(
        zip(
            (uk // (ng * npol)).tolist(),
            (uk // npol % ng).tolist(),
            (uk % npol).tolist(),
            strict=True,
        )
    ):
        side = bf.side_codes[s]
        out[k] = contacts_digest(
            [
                (side, "grid_chief", g["code"][gj], g["chief_name"][gj] or ""),
                (side, "police_officer", p["code"][pj], p["officer_name"][pj] or ""),
            ]
        )
    return out[inv]


def _simple_rows(bf: BulkFacts, rows: Ints, sample: int = 200) -> list[int]:
    """Decide the ``simple`` cases by template: ``decide`` runs on one case per (category,
    side) and on a random sample; if it ever disagrees with the slot signature, the whole
    group goes back to the full path. Returns the cases that need the full path: those of a
    disagreeing group, and those whose routing changed (the full decision writes them).
    The slot signatures are built as arrays: one digest per distinct (side, grid, police grid)."""
    job = _JOB
    cat, now, cols, duty = job["catalogue"], job["now"], job["cols"], job["duty"]
    old = cols["old"]
    if not len(rows):
        return []
    _, side_all, g_all, p_all = bf.slot_arrays()
    side_of, g_of, p_of = side_all[rows], g_all[rows], p_all[rows]
    codes = np.asarray(bf.side_codes, dtype=object)
    new_sides = codes[side_of]
    digests = _slot_digests(bf, side_of, g_of, p_of)

    def agrees(j: int) -> bool:
        i = int(rows[j])
        try:
            d = decide(_report_of(i), bf.facts(i), cat, now=now, duty=duty)
        except DomainError:
            return False
        return signature(d) == ("", new_sides[j], "", digests[j])

    cat_ids = cols["category_id"][rows]
    ns = max(1, len(bf.side_codes))
    group = cat_ids * ns + side_of
    rng = np.random.default_rng(0)
    checks = rng.choice(len(rows), size=min(sample, len(rows)), replace=False).tolist()
    groups, first, inv = np.unique(group, return_index=True, return_inverse=True)
    bf.resolve(rows[np.union1d(checks, first).astype(np.int64)])
    bad_groups = {int(group[j]) for j in checks if not agrees(j)}
    good = np.array(
        [int(k) not in bad_groups and agrees(int(j)) for k, j in zip(groups, first, strict=True)],
        dtype=bool,
    )
    changed = (
        (old["mechanism"][rows] != "")
        | (old["sides"][rows] != new_sides)
        | (old["teams"][rows] != "")
        | (old["contacts"][rows] != digests)
    )
    return rows[~good[inv] | changed].tolist()


def _run_decisions(
    rows: list[int], workers: int
) -> tuple[list[int], list[tuple[str, ...]], list[tuple[int, str]]]:
    import gc

    # The facts and columns (millions of objects) outlive the decisions: frozen, the cyclic
    # collector no longer walks them on every full collection, nor touches (and so copies) a
    # forked worker's shared pages.
    gc.collect()
    gc.freeze()
    try:
        if workers <= 1 or len(rows) < 20_000:
            return _decide_rows(rows)
        import multiprocessing as mp

        step = -(-len(rows) // (workers * 4))
        chunks = [rows[lo : lo + step] for lo in range(0, len(rows), step)]
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_decide_rows, chunks)
    finally:
        gc.unfreeze()
    out: tuple[list[int], list[tuple[str, ...]], list[tuple[int, str]]] = ([], [], [])
    for a, b, c in parts:
        out[0].extend(a)
        out[1].extend(b)
        out[2].extend(c)
    return out


def _read(
    conn: Conn, reference: Reference | None, *, open_only: bool, candidates: bool
) -> tuple[Reference, Any]:
    """The reference layers and the cases. The COPY out keeps PostgreSQL busy while Python
    builds the layers, so the layers are read on a second connection in a thread beside it
    (when ``conn`` has no transaction open, else one after the other on ``conn``)."""
    kw = {"open_only": open_only, "candidates": candidates}
    if reference is not None:
        return reference, bulk.reroute_cases(conn, **kw)
    other = bulk.sibling(conn)
    if other is None:
        return bulk.reference(conn), bulk.reroute_cases(conn, **kw)
    from concurrent.futures import ThreadPoolExecutor

    with other, ThreadPoolExecutor(max_workers=1) as pool:
        ref = pool.submit(bulk.reference, other)
        df = bulk.reroute_cases(conn, **kw)
        return ref.result(), df


def catalogue_digest(catalogue: Catalogue) -> str:
    """What a recorded re-route decided with: a changed catalogue calls for a full pass."""
    return hashlib.sha256(catalogue.model_dump_json().encode()).hexdigest()


# Beyond this many pending layer changes (most of a layer re-imported) the cases within their
# reach are most of the province: a full pass instead. Measured on the province: 20,000 grids
# changed put 100,840 open cases within reach, staged in 6.3 s (then decided in about a tenth
# of a full pass's time); a full pass took 35-56 s.
FULL_PASS_AFTER_CHANGES = 50_000


def _scope(
    conn: Conn, digest: str, *, full: bool, open_only: bool
) -> tuple[str, str, changes.Pending]:
    """Full pass or incremental, why, and the pending layer changes."""
    pend = changes.pending(conn)
    last = changes.last_run(conn)
    if full:
        return "full", "a full pass was asked for", pend
    if not open_only:
        return "full", "every case, closed ones too", pend
    if last is None:
        return "full", "no earlier re-route is recorded", pend
    if last["catalogue"] != digest:
        return "full", "the catalogue changed since the last re-route", pend
    if pend.unlocated:
        return "full", "a layer was emptied (TRUNCATE) since the last re-route", pend
    if len(pend.ids) > FULL_PASS_AFTER_CHANGES:
        return "full", f"{pend.describe()} since the last re-route: a full pass is cheaper", pend
    return "incremental", pend.describe() + " since the last re-route", pend


def routing_columns(d: Decision, now: datetime, *, rerouted: bool) -> dict[str, Any]:
    """The stored routing columns of a decision (as ``api.cases.report`` writes them)."""
    view = decision_view(d)
    routing = {
        **view["routing"],
        "grid": view["grid"],
        "police_grid": view["police_grid"],
        "in_border_zone": view["in_border_zone"],
        "decided_at": now.isoformat(),
    }
    if rerouted:
        routing["rerouted"] = True
    return {
        "side": view["lead_side"],
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
    }


def reroute(
    conn: Conn,
    catalogue: Catalogue,
    *,
    open_only: bool = True,
    dry_run: bool = False,
    now: datetime | None = None,
    workers: int | None = None,
    reference: Reference | None = None,
    full: bool = False,
    say: Callable[[str], None] = lambda _m: None,
) -> RerouteSummary:
    """Recompute routing for the cases the layer changes since the last re-route can reach
    (or all, see the module's doc); write changes and events unless ``dry_run``."""
    if not changes.lock(conn):
        raise Conflict("another re-route is running; run this one when it has finished", {})
    try:
        return _reroute(
            conn, catalogue, open_only=open_only, dry_run=dry_run, now=now or now_utc(),
            workers=workers, reference=reference, full=full, say=say,
        )  # fmt: skip
    finally:
        # after a failed statement inside a transaction, the caller's rollback must come
        # first; the session's lock then goes with the session
        if conn.info.transaction_status != TransactionStatus.INERROR:
            changes.drop_candidates(conn)
            changes.unlock(conn)


def _reroute(
    conn: Conn,
    catalogue: Catalogue,
    *,
    open_only: bool,
    dry_run: bool,
    now: datetime,
    workers: int | None,
    reference: Reference | None,
    full: bool,
    say: Callable[[str], None],
) -> RerouteSummary:
    import time

    summary = RerouteSummary(dry_run=dry_run)
    clock = time.perf_counter()
    digest = catalogue_digest(catalogue)
    summary.mode, summary.why, pend = _scope(conn, digest, full=full, open_only=open_only)
    say(f"{summary.mode}: {summary.why}")

    def record() -> None:  # in the caller's transaction, beside the writes if any
        changes.record_run(
            conn, pend.ids, mode=summary.mode, catalogue=digest,
            examined=summary.examined, changed=summary.changed,
        )  # fmt: skip

    def settle() -> RerouteSummary:  # nothing to write: record the run, consume the changes
        if not dry_run:
            with conn.transaction():
                record()
        return summary

    def lap(name: str) -> None:
        nonlocal clock
        t = time.perf_counter()
        summary.seconds[name] = t - clock
        say(f"{name}: {t - clock:.2f} s")
        clock = t

    incremental = summary.mode == "incremental"
    if incremental:
        if not pend.ids:
            return summary
        reach = catalogue.border_zone_m + catalogue.service_area_tolerance_m
        staged = changes.stage_candidates(conn, pend, reach_m=reach)
        lap(f"stage the {staged} open cases within reach of the changes")
        if staged == 0:
            return settle()
    ref, df = _read(conn, reference, open_only=open_only, candidates=incremental)
    n = len(df)
    summary.examined = n
    lap(f"read reference layers and COPY out {n} cases")
    if n == 0:
        return settle()
    pts = _points(df, catalogue)
    bf = BulkFacts(ref, pts, radius_m=catalogue.border_zone_m)
    lap("set-based facts")
    category = df["category"].to_numpy(object)
    cols = {
        "category": category.tolist(),
        "category_id": np.asarray(df["category"].factorize()[0], dtype=np.int64),
        "severity": df["severity"].tolist(),
        "occurred": df["occurred"].tolist(),
        "old": {k: df[f"old_{k}"].to_numpy(object) for k in SIG_KEYS},
    }
    _JOB.update(facts=bf, cols=cols, catalogue=catalogue, now=now, duty=DutyMemo())
    try:
        simple = bf.simple()
        again = _simple_rows(bf, np.flatnonzero(simple))
        lap(f"decide {int(simple.sum())} plain cases by template")
        todo = sorted(again + np.flatnonzero(~simple).tolist())
        bf.resolve(np.asarray(todo, dtype=np.int64))
        changed, diffs, failed = _run_decisions(todo, workers or min(2, os.cpu_count() or 1))
        lap(f"decide {len(todo)} cases in full")
    finally:
        _JOB.clear()
    codes = df["code"].tolist()
    summary.failed = len(failed)
    for i, msg in failed[:10]:
        summary.examples.append({"case": codes[i], "error": msg})
    summary.changed = len(changed)
    summary.changed_codes = [codes[i] for i in changed]
    for i, diff in zip(changed, diffs, strict=True):
        summary.by_change.update(diff)
        if len(summary.examples) < 10:
            summary.examples.append({"case": codes[i], "changed": list(diff)})
    if dry_run or not changed:
        return settle()
    ids, status = df["id"].tolist(), df["status"].tolist()
    old = _old_signatures(cols["old"], changed)

    def rows() -> Any:
        for i, diff in zip(changed, diffs, strict=True):
            rep = _report(
                {"lon": float(pts.lon[i]), "lat": float(pts.lat[i]), "category": cols["category"][i],
                 "severity": cols["severity"][i], "occurred": cols["occurred"][i]},
                None if pts.extent is None else pts.extent[i],
                () if pts.sides is None else pts.sides[i],
            )  # fmt: skip
            d = decide(rep, bf.facts(i), catalogue, now=now, duty=duty)
            r = routing_columns(d, now, rerouted=True)
            new = signature(d)
            change = {
                k: {"from": _sig_value(k, old[i][j]), "to": _sig_value(k, new[j])}
                for j, k in enumerate(SIG_KEYS)
                if k in diff
            }
            if "contacts" in diff:
                change["contacts"]["to"] = sorted(
                    [c["side"], c["role"], c["unit_code"], c.get("name") or ""]
                    for c in r["contacts"]
                )
            yield (
                ids[i], status[i], r["side"], r["sides"], r["cross_boundary"], r["reasons"],
                r["mechanism"], r["distance_to_border_m"], r["grid_code"], r["police_grid_code"],
                bulk.jsonb(r["teams"]), bulk.jsonb(r["contacts"]), bulk.jsonb(r["routing"]),
                bulk.jsonb(change),
            )  # fmt: skip

    duty = DutyMemo()
    with conn.transaction():  # the writes, the run and the consumed changes: all or nothing
        bulk.write_reroute(conn, rows(), actor=ACTOR, note=NOTE, at=now)
        record()
    lap(f"write {len(changed)} changed cases and events")
    return summary


def _sig_value(key: str, v: str) -> Any:
    if key == "mechanism":
        return v or None
    if key in ("sides", "teams"):
        return v.split(",") if v else []
    return v  # contacts: the digest; the new list is filled in by the caller


def bulk_decisions(
    conn: Conn, cases: Any, *, catalogue: Catalogue, say: Callable[[str], None] = lambda _m: None
) -> dict[str, list[Any]]:
    """Routing columns for generated cases (``gis.province.Cases``), for the demo loader.

    Open cases get the decision: the plain ones (``BulkFacts.simple``) from their slots,
    checked against ``decide`` on a sample; the others in full. Closed ones get only their
    side, grid and police grid (their history is not replayed).
    """
    ref = bulk.reference(conn)
    n = len(cases)
    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    pts = Points(lon=cases.lon, lat=cases.lat, mechanism=[mech[c] for c in cases.category.tolist()])
    is_open = np.isin(
        cases.status, ["reported", "accepted", "dispatched", "in_progress", "resolved"]
    )
    bf = BulkFacts(ref, pts, radius_m=catalogue.border_zone_m)
    bf.resolve()
    say(f"  facts for {n:,} cases gathered")
    now = now_utc()
    out: dict[str, list[Any]] = {
        k: [None] * n
        for k in ("side", "sides", "cross_boundary", "reasons", "mechanism", "distance_to_border_m",
                  "grid_code", "police_grid_code", "teams", "contacts", "routing")
    }  # fmt: skip
    empty = "[]"
    synthetic_routing = orjson.dumps({"synthetic": True, "trace": []}).decode()
    simple = bf.simple()
    g, pg = ref.grids.cols, ref.police.cols

    def slot_contacts(i: int) -> list[dict[str, Any]]:
        side, gj, pj = bf.slots(i)
        return [
            {"side": side, "role": "grid_chief", "name": g["chief_name"][gj],
             "phone": g["chief_phone"][gj], "unit": g["name"][gj], "unit_code": g["code"][gj],
             "distance_m": 0.0},
            {"side": side, "role": "police_officer", "name": pg["officer_name"][pj],
             "phone": pg["officer_phone"][pj], "unit": pg["name"][pj], "unit_code": pg["code"][pj],
             "distance_m": 0.0},
        ]  # fmt: skip

    def full(i: int) -> Decision | None:
        rep = Report(
            lon=float(cases.lon[i]),
            lat=float(cases.lat[i]),
            category=str(cases.category[i]),
            severity=str(cases.severity[i]),
            occurred_at=datetime.fromtimestamp(float(cases.occurred[i]), UTC),
        )
        try:
            return decide(rep, bf.facts(i), catalogue, now=now)
        except DomainError:
            return None

    # The plain cases' contacts come from their slots; check that on a sample first.
    plain_ok = True
    rng = np.random.default_rng(1)
    sample = np.flatnonzero(simple & is_open)
    for i in rng.choice(sample, size=min(200, len(sample)), replace=False).tolist():
        d = full(i)
        if d is None or routing_columns(d, now, rerouted=False)["contacts"] != slot_contacts(i):
            plain_ok = False
            say("  the plain cases' template disagrees with the decision: deciding each in full")
            break
    for i in range(n):
        if i and i % 200_000 == 0:
            say(f"  routed {i:,} / {n:,}")
        if is_open[i] and not (plain_ok and simple[i]):
            d = full(i)
            if d is not None:
                r = routing_columns(d, now, rerouted=False)
                for k in ("side", "sides", "cross_boundary", "reasons", "mechanism",
                          "distance_to_border_m", "grid_code", "police_grid_code"):  # fmt: skip
                    out[k][i] = r[k]
                out["teams"][i] = orjson.dumps(r["teams"]).decode()
                out["contacts"][i] = orjson.dumps(r["contacts"]).decode()
                out["routing"][i] = orjson.dumps(r["routing"]).decode()
                continue
        if simple[i]:
            side, gj, pj = bf.slots(i)
            gc, pc = g["code"][gj], pg["code"][pj]
            other = float(bf.other_d[i])
            out["distance_to_border_m"][i] = None if not np.isfinite(other) else round(other, 1)
            out["contacts"][i] = orjson.dumps(slot_contacts(i)).decode() if is_open[i] else empty
        else:
            sides = bf.side_list(i)
            inside = [s for s in sides if s.contains]
            side = (inside[0] if inside else min(sides, key=lambda s: s.distance_m)).code
            gn = bf._nearest_of("grids", i, side)
            pn = bf._nearest_of("police", i, side)
            gc = None if gn is None else g["code"][gn[0]]
            pc = None if pn is None else pg["code"][pn[0]]
            out["contacts"][i] = empty
        out["side"][i] = side
        out["sides"][i] = [side]
        out["cross_boundary"][i] = False
        out["reasons"][i] = []
        out["grid_code"][i] = gc
        out["police_grid_code"][i] = pc
        out["teams"][i] = empty
        out["routing"][i] = synthetic_routing
    return out
