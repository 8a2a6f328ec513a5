"""Re-routing cases after boundaries, teams or the catalogue change (``jointgrid reroute``).

Which cases: by default only those the changes since the last re-route can reach
(``layers.changes``, migration 0010): the open cases within the border zone (plus the
service-area tolerance) of what a change altered, those in a joint grid an altered area
touches, those whose stored routing reaches farther (``routing_reach()``), and every
cross-boundary case when a team changed. Routing reads nothing farther away, so the others
would be decided exactly as they are stored. A full pass decides every open case: the first
run, after the catalogue changes, after a layer is truncated, after more layer changes than
``FULL_PASS_AFTER_CHANGES``, or when asked (``full``).

Set-based, in three steps, with the one facts engine and the one decision:

1. the cases stream out with one COPY (``layers/sql/reroute_cases.sql``), each with the
   signature of its stored routing and its location facts from ``jointgrid_facts()``, the
   function every report and ``/locate`` use, asked without the far sides so that the facts
   of plain cases repeat exactly (each distinct document comes once);
2. every case's signature is that of ``gis.routing.decide``'s decision, made by the steps
   that decide it, each memoised on its exact, reduced inputs (``gis.routing.DecisionMemo``:
   the facts' place and sides, the category's mechanism and chief roles, the teams' duty),
   and compared with the stored one;
3. the changed cases' facts are gathered again in full (far sides too: their distance to the
   border is stored), decided again, and written with COPY into a temp table, one UPDATE ...
   FROM and one INSERT of their audit events (``layers/sql/reroute_write.sql``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import shapely
from psycopg.pq import TransactionStatus

from api.settings import patrol
from api.usecases.cases import now_utc
from gis.catalogue import Catalogue
from gis.duty import DutyMemo
from gis.errors import Conflict, DomainError
from gis.facts import LocationFacts
from gis.location import place
from gis.routing import (
    SIG_KEYS,
    DecisionMemo,
    Report,
    contacts_digest,
    decide,
    routing_record,
    signature,
    signature_text,
)
from gis.workflow import OPEN_STATUSES
from layers import bulk, changes, locate
from layers.db import Conn

OPEN_LIST = sorted(OPEN_STATUSES)
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


def _reports(df: Any) -> list[Report]:
    ext = df["extent"].tolist()
    return [
        Report(
            lon=x,
            lat=y,
            category=c,
            severity=s,
            occurred_at=datetime.fromtimestamp(o, UTC),
            extent=shapely.from_wkb(bytes.fromhex(e)) if e else None,
            parties_sides=_parties(p),
        )
        for x, y, c, s, o, e, p in zip(
            df["lon"].tolist(),
            df["lat"].tolist(),
            df["category"].tolist(),
            df["severity"].tolist(),
            df["occurred"].tolist(),
            ext,
            df["parties"].tolist(),
            strict=True,
        )
    ]


def _facts_by_key(df: Any) -> dict[str, LocationFacts]:
    """Each distinct facts document of the COPY (given once, hex), as ``LocationFacts``."""
    return {
        k: locate.to_facts(0.0, 0.0, orjson.loads(bytes.fromhex(h)))
        for k, h in zip(df["key"].tolist(), df["facts"].tolist(), strict=True)
        if h
    }


def _read(conn: Conn, catalogue: Catalogue, *, open_only: bool, candidates: bool,
          far: bool = False, ids: list[str] | None = None) -> Any:  # fmt: skip
    """The cases and their facts. A full read runs as two halves on two connections at once
    (the engine's statement uses one core); the staged candidates live in a temp table of
    ``conn``, and a connection inside a transaction has no sibling: then one statement."""
    import pandas as pd

    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    kw = {"open_only": open_only, "candidates": candidates, "ids": ids, "far": far,
          "radius_m": catalogue.border_zone_m, "mechanisms": mech,
          "fix_max_age_s": patrol().fresh_fix_s}  # fmt: skip
    other = None if candidates or ids is not None else bulk.sibling(conn)
    if other is None:
        return bulk.reroute_cases(conn, **kw)  # type: ignore[arg-type]
    from concurrent.futures import ThreadPoolExecutor

    with other, ThreadPoolExecutor(max_workers=1) as pool:
        second = pool.submit(bulk.reroute_cases, other, **kw, half=1)  # type: ignore[arg-type]
        first = bulk.reroute_cases(conn, **kw, half=0)  # type: ignore[arg-type]
        return pd.concat([first, second.result()], ignore_index=True)


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


def reroute(
    conn: Conn,
    catalogue: Catalogue,
    *,
    open_only: bool = True,
    dry_run: bool = False,
    now: datetime | None = None,
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
            full=full, say=say,
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
    df = _read(conn, catalogue, open_only=open_only, candidates=incremental)
    n = len(df)
    summary.examined = n
    lap(f"COPY out {n} cases with their facts")
    if n == 0:
        return settle()
    reports = _reports(df)
    by_key = _facts_by_key(df)
    lap(f"parse the {len(by_key)} distinct facts")
    memo = DecisionMemo(catalogue, now=now, fresh_fix_s=patrol().fresh_fix_s)
    old = {k: df[f"old_{k}"].tolist() for k in SIG_KEYS}
    changed: list[int] = []
    diffs: list[tuple[str, ...]] = []
    failed: list[tuple[int, str]] = []
    for i, (rep, key) in enumerate(zip(reports, df["key"].tolist(), strict=True)):
        try:
            new = memo(rep, by_key[key], key)
        except DomainError as exc:
            failed.append((i, exc.message))
            continue
        was = (old["mechanism"][i], old["sides"][i], old["teams"][i], old["contacts"][i])
        if new != was:
            changed.append(i)
            diffs.append(tuple(k for k, a, b in zip(SIG_KEYS, was, new, strict=True) if a != b))
    made = ", ".join(f"{v} {k}" for k, v in memo.made.items())
    lap(f"decide {n} cases ({memo.hits} wholly from the memo; steps made: {made}; "
        f"{memo.whole} decided whole)")  # fmt: skip
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
    # The changed cases' facts in full (their distance to the border is stored), decided again.
    ids = df["id"].tolist()
    full_df = _read(conn, catalogue, open_only=open_only, candidates=False, far=True,
                    ids=[ids[i] for i in changed])  # fmt: skip
    full_facts = _facts_by_key(full_df)
    full_key = dict(zip(full_df["id"].tolist(), full_df["key"].tolist(), strict=True))
    lap(f"gather the {len(changed)} changed cases' facts in full")
    status = df["status"].tolist()
    duty = DutyMemo()

    def rows() -> Any:
        for i, diff in zip(changed, diffs, strict=True):
            rep = reports[i]
            d = decide(rep, full_facts[full_key[ids[i]]], catalogue, now=now, duty=duty,
                       fresh_fix_s=memo.fresh_fix_s)  # fmt: skip
            r = routing_record(d, now, rerouted=True)
            new = signature(d)
            was = tuple(old[k][i] for k in SIG_KEYS)
            change = {
                k: {"from": _sig_value(k, was[j]), "to": _sig_value(k, new[j])}
                for j, k in enumerate(SIG_KEYS)
                if k in diff
            }
            if "contacts" in diff:
                change["contacts"]["to"] = sorted(
                    [c["side"], c["role"], c["unit_code"], c.get("name") or ""]
                    for c in r["contacts"]
                )
            yield (
                ids[i], status[i], r["lead_side"], r["sides"], r["cross_boundary"], r["reasons"],
                r["mechanism"], r["distance_to_border_m"], r["grid_code"], r["police_grid_code"],
                bulk.jsonb(r["teams"]), bulk.jsonb(r["contacts"]), bulk.jsonb(r["routing"]),
                r["routing_sig"], bulk.jsonb(change),
            )  # fmt: skip

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


BULK_CHUNK = 50_000  # points per facts statement in the loader: bounds its memory


def bulk_decisions(
    conn: Conn, cases: Any, *, catalogue: Catalogue, say: Callable[[str], None] = lambda _m: None
) -> dict[str, list[Any]]:
    """Routing columns for generated cases (``gis.province.Cases``), for the demo loader.

    Open cases get the decision, from the facts engine and ``decide`` as a report would; closed
    ones only their side, grid and police grid (their history is not replayed).
    """
    n = len(cases)
    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    is_open = np.isin(cases.status, OPEN_LIST)
    cats = cases.category.tolist()
    lon, lat = cases.lon.tolist(), cases.lat.tolist()
    zone, tol = catalogue.border_zone_m, catalogue.service_area_tolerance_m
    now = now_utc()
    out: dict[str, list[Any]] = {
        k: [None] * n
        for k in ("side", "sides", "cross_boundary", "reasons", "mechanism", "distance_to_border_m",
                  "grid_code", "police_grid_code", "teams", "contacts", "routing", "routing_sig")
    }  # fmt: skip
    empty = "[]"

    def none_sig(side: str) -> str:  # a case decided by no one: its side alone
        return signature_text(("", side, "", contacts_digest([])))

    synthetic_routing = orjson.dumps({"synthetic": True, "trace": []}).decode()
    duty, fresh = DutyMemo(), patrol().fresh_fix_s
    # In chunks: the facts of a million points at once, parsed, held about 22 GB.
    batches = [
        (want_open, idx[k : k + BULK_CHUNK])
        for want_open in (True, False)
        for idx in [np.flatnonzero(is_open == want_open).tolist()]
        for k in range(0, len(idx), BULK_CHUNK)
    ]
    for want_open, sel in batches:
        many = locate.facts_of_points(
            conn, [lon[i] for i in sel], [lat[i] for i in sel], radius_m=zone,
            mechanism=[mech[cats[i]] for i in sel], far=want_open, as_of=now,
            fix_max_age_s=fresh,
        )  # fmt: skip
        facts = {k: locate.to_facts(0.0, 0.0, v) for k, v in many.docs.items()}
        say(f"  facts for {len(sel):,} {'open' if want_open else 'closed'} cases gathered")
        for j, i in enumerate(sel):
            f = facts[many.keys[j]]
            if want_open:
                rep = Report(
                    lon=lon[i], lat=lat[i], category=cats[i], severity=str(cases.severity[i]),
                    occurred_at=datetime.fromtimestamp(float(cases.occurred[i]), UTC),
                )  # fmt: skip
                try:
                    d = decide(rep, f, catalogue, now=now, duty=duty, fresh_fix_s=fresh)
                except DomainError:
                    d = None
                if d is not None:
                    r = routing_record(d, now)
                    for k in ("sides", "cross_boundary", "reasons", "mechanism",
                              "distance_to_border_m", "grid_code", "police_grid_code",
                              "routing_sig"):  # fmt: skip
                        out[k][i] = r[k]
                    out["side"][i] = r["lead_side"]
                    out["teams"][i] = orjson.dumps(r["teams"]).decode()
                    out["contacts"][i] = orjson.dumps(r["contacts"]).decode()
                    out["routing"][i] = orjson.dumps(r["routing"]).decode()
                    continue
            try:
                p = place(f, zone_m=zone, tolerance_m=tol)
                side = p.side
            except DomainError:
                p, side = None, (f.nearest_side() or f.sides[0]).code
            g, pg = f.grid_for(side), f.police_for(side)
            out["side"][i] = side
            out["sides"][i] = [side]
            out["cross_boundary"][i] = False
            out["reasons"][i] = []
            out["distance_to_border_m"][i] = (
                None if p is None or p.distance_to_border_m is None
                else round(p.distance_to_border_m, 1)
            )  # fmt: skip
            out["grid_code"][i] = None if g is None else g.code
            out["police_grid_code"][i] = None if pg is None else pg.code
            out["teams"][i] = empty
            out["contacts"][i] = empty
            out["routing"][i] = synthetic_routing
            out["routing_sig"][i] = none_sig(side)
    return out
