"""A case against its audit trail: replay the events through the workflow, compare. Pure.

``replay(events, ...)`` folds a case's events, oldest first, through :mod:`gis.workflow`:
each workflow action is applied again, by the side that made it, at the time it was made, and
must be allowed from the state the trail had reached and lead where the event says. What the
workflow cannot know is taken from the event itself, which the hash chain covers:

- ``report`` (the first event) gives the involved sides (``payload.sides``) and the first time
  limit (``payload.due_at``; trails written before it was recorded leave the first due time
  unknown until a later event sets one);
- ``dispatch`` and ``postpone`` give the new due time (``payload.due_at.to``), ``escalate``
  too (the catalogue's hours may have changed since), and ``merge`` its target
  (``payload.into``);
- an automatic escalation (``payload.automatic``) must have been overdue at its time;
- ``reroute`` may change the involved sides (``payload.changed.sides.to``) and never the status;
- any other kind of event (one added later, e.g. a photo) must leave the status as it was.

``drift(stored, replayed)`` names every field of the stored case that differs from the trail:
status, escalation level, each side's sign-off, merge target, due time and involved sides.
The server checks it before every transition; ``jointgrid audit-trail verify`` for every case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from gis import workflow as wf
from gis.errors import Conflict, DomainError

FIELDS: Final[tuple[str, ...]] = (
    "status",
    "escalation_level",
    "verified_sides",
    "merged_into",
    "due_at",
    "sides",
)
"""The stored fields a trail decides, in the order findings name them."""


class TrailDrift(Conflict):
    """The stored case differs from what its audit trail says: it was changed without an event."""

    code = "case_trail_drift"


@dataclass(frozen=True)
class Replayed:
    """What a trail says about its case.

    ``state`` is ``None`` when the trail has no usable first event. ``problems`` lists the
    events the workflow refuses (each ``"event N (action): why"``); replay stops at the first.
    ``due_known`` / ``sides_known``: whether the trail itself fixes the due time / sides.
    """

    state: wf.CaseState | None
    events: int
    last_seq: int
    problems: tuple[str, ...] = ()
    due_known: bool = True
    sides_known: bool = True


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d


def _when(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v
    if isinstance(v, str) and v:
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            return None
        return t if t.tzinfo is not None else None
    return None


def replay(
    events: Iterable[Mapping[str, Any]],
    *,
    ladder: wf.Ladder,
    case_id: str | None = None,
    sides: Iterable[str] = (),
) -> Replayed:
    """Fold ``events`` (oldest first: seq, action, from_status, to_status, actor_side, note,
    payload, at) through the workflow. ``sides`` (the stored ones) stand in for a trail whose
    first event does not name its sides (synthetic or older trails)."""
    state: wf.CaseState | None = None
    n, last = 0, 0
    due_known = sides_known = True
    for e in events:
        n += 1
        seq, action = int(e["seq"]), str(e["action"])
        where = f"event {seq} ({action})"
        if seq != last + 1:
            return Replayed(
                state, n, seq, (f"{where}: event {last + 1} is missing",), due_known, sides_known
            )
        last = seq
        payload = e.get("payload") or {}
        at = _when(e.get("at"))
        if at is None:
            return Replayed(state, n, seq, (f"{where}: no time",), due_known, sides_known)
        if state is None:
            if action != "report" or e.get("to_status") != "reported":
                return Replayed(
                    None,
                    n,
                    seq,
                    (f"{where}: a trail starts with a report",),
                    due_known,
                    sides_known,
                )
            named = _get(payload, "sides")
            sides_known = isinstance(named, list) and bool(named)
            first_sides = tuple(named) if sides_known else tuple(sides)
            due = _when(_get(payload, "due_at"))
            due_known = due is not None
            try:
                state = wf.CaseState(
                    status="reported", sides=first_sides, due_at=due, case_id=case_id
                )
            except ValueError as exc:
                return Replayed(None, n, seq, (f"{where}: {exc}",), due_known, sides_known)
            continue
        if e.get("from_status") != state.status:
            why = f"says it left {e.get('from_status')} but the trail was at {state.status}"
            return Replayed(state, n, seq, (f"{where}: {why}",), due_known, sides_known)
        if not due_known and state.due_at is None and _get(payload, "automatic"):
            # A trail older than the recorded first due time: its case was overdue by the
            # due time nobody recorded; the escalation itself is all the trail can show.
            state = replace(state, due_at=at - timedelta(microseconds=1))
        try:
            state, due_set = _step(state, action, e, payload, at, ladder)
        except (DomainError, ValueError) as exc:
            msg = getattr(exc, "message", None) or str(exc)
            return Replayed(state, n, seq, (f"{where}: {msg}",), due_known, sides_known)
        due_known = due_known or due_set
        if state.status != e.get("to_status"):
            why = f"says it led to {e.get('to_status')} but the workflow leads to {state.status}"
            return Replayed(state, n, seq, (f"{where}: {why}",), due_known, sides_known)
    return Replayed(state, n, last, (), due_known, sides_known)


def _step(
    state: wf.CaseState,
    action: str,
    e: Mapping[str, Any],
    payload: Mapping[str, Any],
    at: datetime,
    ladder: wf.Ladder,
) -> tuple[wf.CaseState, bool]:
    """One event applied to ``state``; returns the new state and whether it set the due time."""
    new_due = _when(_get(payload, "due_at", "to"))
    if action == "reroute":
        to = _get(payload, "changed", "sides", "to")
        return (replace(state, sides=tuple(to)) if isinstance(to, list) and to else state), False
    if action not in wf.ACTIONS:
        if e.get("to_status") != state.status:
            raise ValueError(f"{action!r} is not a workflow action, so it may not move the status")
        return state, False
    if _get(payload, "automatic") and action == "escalate":
        t = wf.auto_escalation(state, at, ladder=ladder)
        if t is None:
            raise ValueError(
                "an automatic escalation of a case that was not overdue (or at the top)"
            )
    else:
        t = wf.apply(
            state,
            action,
            side=str(e.get("actor_side") or ""),
            now=at,
            ladder=ladder,
            note=e.get("note"),
            resolve_within=(new_due - at) if action == "dispatch" and new_due else None,
            due_at=new_due if action == "postpone" else None,
            into=_get(payload, "into") if action == "merge" else None,
        )
    after = t.after
    if new_due is not None and action == "escalate":
        after = replace(after, due_at=new_due)  # the hours of the ladder at that time
    return after, after.due_at != state.due_at


@dataclass(frozen=True)
class Drift:
    """One stored field that differs from the trail."""

    field: str
    stored: Any
    trail: Any

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "stored": _show(self.stored), "trail": _show(self.trail)}


def _show(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, tuple | frozenset | set):
        return sorted(v)
    return v


def drift(stored: Mapping[str, Any], replayed: Replayed) -> list[Drift]:
    """Every field of ``stored`` (status, escalation_level, verified_sides, merged_into,
    due_at, sides) that differs from the trail's state. Sign-offs compare as sets of sides;
    the due time only once the trail fixes it, the sides only when the trail names them."""
    s = replayed.state
    if s is None:
        return []
    out: list[Drift] = []
    if stored["status"] != s.status:
        out.append(Drift("status", stored["status"], s.status))
    if int(stored["escalation_level"]) != s.escalation_level:
        out.append(Drift("escalation_level", stored["escalation_level"], s.escalation_level))
    if frozenset(stored["verified_sides"] or ()) != frozenset(s.verified_sides):
        out.append(
            Drift(
                "verified_sides",
                frozenset(stored["verified_sides"] or ()),
                frozenset(s.verified_sides),
            )
        )
    merged = stored.get("merged_into")
    if (str(merged) if merged is not None else None) != s.merged_into:
        out.append(Drift("merged_into", merged, s.merged_into))
    if replayed.due_known and stored.get("due_at") != s.due_at:
        out.append(Drift("due_at", stored.get("due_at"), s.due_at))
    if replayed.sides_known and frozenset(stored["sides"] or ()) != frozenset(s.sides):
        out.append(Drift("sides", frozenset(stored["sides"] or ()), frozenset(s.sides)))
    return out


def check(
    stored: Mapping[str, Any], events: Iterable[Mapping[str, Any]], *, ladder: wf.Ladder
) -> list[str]:
    """Everything wrong between a stored case and its trail, as sentences (empty: it agrees).

    The one check the server makes before each transition and ``verify`` makes for every case.
    """
    r = replay(events, ladder=ladder, case_id=str(stored["id"]), sides=stored.get("sides") or ())
    if r.events == 0:
        return ["its trail has no events"]
    out = list(r.problems)
    if not r.problems:
        out += [
            f"{d.field} is {_show(d.stored)!s} but its trail says {_show(d.trail)!s}"
            for d in drift(stored, r)
        ]
    return out


__all__ = [
    "FIELDS",
    "Drift",
    "Replayed",
    "TrailDrift",
    "check",
    "drift",
    "replay",
]
