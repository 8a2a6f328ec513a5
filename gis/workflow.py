"""The closed-loop case workflow, after GB/T 30428 (受理-立案-派遣-处置-核查-结案).

::

    reported → accepted → dispatched → in_progress → resolved → verified → closed
       │           │
       └───────────┴─→ rejected            any open status ─→ duplicate (merged into another case)

    side moves: return (back to dispatched), postpone (new due time), escalate (one rung up)

Pure: every function takes the case's state and the current time (timezone-aware) and returns a
new state wrapped in a :class:`Transition`; the caller appends it to the audit log. Nothing here
reads a clock, a setting or the database.

Design choices worth knowing:

- The time limit starts at dispatch: ``due_at = now + resolve_within``. A return to
  ``dispatched`` keeps the running time limit; it does not restart the clock.
- A case is *open* in ``reported``, ``accepted``, ``dispatched``, ``in_progress`` and
  ``resolved``. ``verified`` only waits to be closed; ``closed``, ``rejected`` and
  ``duplicate`` are terminal.
- ``verify`` is a per-side sign-off. The status moves to ``verified`` only when every involved
  side has signed (dual sign-off for a cross-boundary case); ``resolve`` and ``return`` wipe
  earlier sign-offs, because they are about a different piece of work.
- ``escalate`` climbs one rung of the consultation ladder (village → town → district) and sets
  ``due_at = now + extend_hours`` of the new rung, even when that is sooner than the old due
  time: the higher level sets its own pace.
- Every action names the acting side, which must be one of the case's involved sides. The
  background task's automatic escalation (:func:`auto_escalation`) acts as :data:`SYSTEM`
  instead, so that the audit log never credits a side with a move nobody on it made. ``SYSTEM``
  is refused by :func:`apply`: people cannot act as the system.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from gis.catalogue import Rung
from gis.errors import InvalidInput, TransitionNotAllowed

STATUSES: Final[tuple[str, ...]] = (
    "reported",
    "accepted",
    "dispatched",
    "in_progress",
    "resolved",
    "verified",
    "closed",
    "rejected",
    "duplicate",
)
"""Every status, in workflow order (stable API values)."""

ACTIONS: Final[tuple[str, ...]] = (
    "accept",
    "dispatch",
    "start",
    "resolve",
    "verify",
    "close",
    "reject",
    "return",
    "postpone",
    "escalate",
    "merge",
)
"""Every action (stable API values)."""

OPEN_STATUSES: Final[frozenset[str]] = frozenset(
    {"reported", "accepted", "dispatched", "in_progress", "resolved"}
)
"""Statuses in which the case is still being worked: it can be escalated, merged, be overdue."""

TERMINAL: Final[frozenset[str]] = frozenset({"closed", "rejected", "duplicate"})
"""Statuses from which no action leads anywhere."""

SYSTEM: Final[str] = "system"
"""The actor of automatic moves (the overdue escalation); never an involved side."""

NOTE_REQUIRED: Final[frozenset[str]] = frozenset({"resolve", "reject", "return", "postpone"})
"""Actions that need a note: what was done, or why."""

Ladder = Sequence[tuple[str, float]]
"""The consultation ladder, bottom first: ``(level code, extend_hours)`` per rung."""

# Where each action may start, before the finer checks (escalation top, unsigned sides).
_FROM: Final[dict[str, frozenset[str]]] = {
    "accept": frozenset({"reported"}),
    "dispatch": frozenset({"accepted"}),
    "start": frozenset({"dispatched"}),
    "resolve": frozenset({"in_progress"}),
    "verify": frozenset({"resolved"}),
    "close": frozenset({"verified"}),
    "reject": frozenset({"reported", "accepted"}),
    "return": frozenset({"in_progress", "resolved"}),
    "postpone": frozenset({"dispatched", "in_progress"}),
    "escalate": OPEN_STATUSES,
    "merge": OPEN_STATUSES,
}

# Statuses in which the time limit is running, so ``due_at`` must be set.
_TIMED: Final[frozenset[str]] = frozenset(
    {"dispatched", "in_progress", "resolved", "verified", "closed"}
)


class SideNotInvolved(TransitionNotAllowed):
    """The acting side is not one of the case's involved sides."""

    code = "side_not_involved"


def ladder_of(rungs: Iterable[Rung]) -> tuple[tuple[str, float], ...]:
    """The ladder for :func:`apply` from the catalogue's ``escalation`` rungs (hours)."""
    return tuple((r.level, r.extend_hours) for r in rungs)


def _aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None


def _require_aware(now: datetime) -> None:
    if not _aware(now):
        raise ValueError("now must be timezone-aware")


def _check_ladder(ladder: Ladder) -> None:
    if not ladder:
        raise ValueError("the escalation ladder needs at least one rung")


@dataclass(frozen=True)
class CaseState:
    """What the workflow needs to know about one case.

    ``escalation_level`` indexes the ladder: 0 is its bottom rung (village), where every case
    starts. ``due_at`` is timezone-aware, or ``None`` before dispatch.
    """

    status: str
    sides: tuple[str, ...]
    due_at: datetime | None = None
    escalation_level: int = 0
    verified_sides: tuple[str, ...] = ()
    merged_into: str | None = None
    case_id: str | None = None

    def __post_init__(self) -> None:
        # A state that breaks these came from a bug or a corrupt row, not from a person.
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if not self.sides or len(set(self.sides)) != len(self.sides):
            raise ValueError("sides must be a non-empty tuple of distinct side codes")
        if SYSTEM in self.sides:
            raise ValueError(f"{SYSTEM!r} is not a side")
        if self.due_at is not None and not _aware(self.due_at):
            raise ValueError("due_at must be timezone-aware")
        if self.escalation_level < 0:
            raise ValueError("escalation_level must not be negative")
        if len(set(self.verified_sides)) != len(self.verified_sides) or not set(
            self.verified_sides
        ) <= set(self.sides):
            raise ValueError("verified_sides must be distinct involved sides")
        if (self.merged_into is not None) != (self.status == "duplicate"):
            raise ValueError("merged_into is set exactly when the status is duplicate")

    @property
    def unverified_sides(self) -> tuple[str, ...]:
        """Involved sides that have not signed off the current resolution, in ``sides`` order."""
        return tuple(s for s in self.sides if s not in self.verified_sides)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class Transition:
    """One move of the workflow: the state before and after, who did it, when and why.

    ``escalated`` is ``(from level, to level)`` when the move climbed the ladder.
    """

    before: CaseState
    after: CaseState
    action: str
    side: str
    note: str | None
    at: datetime
    escalated: tuple[str, str] | None = field(default=None)

    def event_payload(self) -> dict[str, Any]:
        """A JSON-able summary for the audit event.

        Always ``action``, ``side``, ``from`` and ``to`` (statuses). Then, only when they apply:
        ``due_at`` ``{"from", "to"}`` (ISO 8601) when the time limit changed,
        ``verified_sides`` when sign-offs changed, ``escalation`` ``{"from", "to"}`` (level
        codes), ``into`` (the case merged into) and ``automatic: true`` for system moves.
        """
        b, a = self.before, self.after
        payload: dict[str, Any] = {
            "action": self.action,
            "side": self.side,
            "from": b.status,
            "to": a.status,
        }
        if b.due_at != a.due_at:
            payload["due_at"] = {
                "from": b.due_at.isoformat() if b.due_at else None,
                "to": a.due_at.isoformat() if a.due_at else None,
            }
        if b.verified_sides != a.verified_sides:
            payload["verified_sides"] = list(a.verified_sides)
        if self.escalated is not None:
            payload["escalation"] = {"from": self.escalated[0], "to": self.escalated[1]}
        if a.merged_into is not None and b.merged_into is None:
            payload["into"] = a.merged_into
        if self.side == SYSTEM:
            payload["automatic"] = True
        return payload


def at_top(state: CaseState, ladder: Ladder) -> bool:
    """Whether the case is already on the top rung of ``ladder`` (or beyond, after a shortening)."""
    _check_ladder(ladder)
    return state.escalation_level >= len(ladder) - 1


def allowed_actions(state: CaseState, *, ladder: Ladder, side: str | None = None) -> list[str]:
    """The actions allowed now, sorted.

    Escalation is left out on the top rung. ``verify`` is offered only while some side has not
    signed; with ``side`` given, only if that side has not.
    """
    allowed = []
    for action, sources in _FROM.items():
        if state.status not in sources:
            continue
        if action == "escalate" and at_top(state, ladder):
            continue
        if action == "verify":
            pending = state.unverified_sides
            if not pending or (side is not None and side not in pending):
                continue
        allowed.append(action)
    return sorted(allowed)


def is_overdue(state: CaseState, now: datetime) -> bool:
    """Whether an open case's time limit passed before ``now``."""
    _require_aware(now)
    return state.is_open and state.due_at is not None and state.due_at < now


def _refuse(state: CaseState, action: str, side: str | None, ladder: Ladder, why: str) -> None:
    allowed = allowed_actions(state, ladder=ladder, side=side)
    raise TransitionNotAllowed(
        f"cannot {action} a case that is {state.status}: {why}; "
        f"allowed now: {', '.join(allowed) or 'nothing'}",
        {"status": state.status, "action": action, "allowed": allowed},
    )


def _need_note(action: str, note: str | None) -> str:
    text = (note or "").strip()
    if not text:
        what = "saying what was done" if action == "resolve" else "giving the reason"
        raise InvalidInput(f"{action} needs a note {what}; add one", {"missing": "note"})
    return text


def apply(
    state: CaseState,
    action: str,
    *,
    side: str,
    now: datetime,
    ladder: Ladder,
    note: str | None = None,
    resolve_within: timedelta | None = None,
    due_at: datetime | None = None,
    into: str | None = None,
) -> Transition:
    """Apply ``action`` by ``side`` at ``now``; return the transition, or raise a domain error.

    - ``resolve_within`` (dispatch only) is the time limit for the case's severity
      (``Catalogue.resolve_within``); ``due_at = now + resolve_within``.
    - ``due_at`` (postpone only) is the new, later due time, timezone-aware.
    - ``into`` (merge only) is the id of the case this one duplicates.
    - ``ladder`` is the consultation ladder, bottom first, ``(level, extend_hours)``.

    Raises ``SideNotInvolved`` when ``side`` is not involved, ``TransitionNotAllowed`` when the
    action is not allowed now (``detail`` lists the allowed actions), and ``InvalidInput`` when
    the action is unknown or a note, due time or target case is missing or wrong.
    """
    if side == SYSTEM:
        raise SideNotInvolved(
            f"{SYSTEM!r} acts only through automatic escalation; name an involved side",
            {"side": side, "sides": list(state.sides)},
        )
    return _apply(
        state,
        action,
        side=side,
        now=now,
        ladder=ladder,
        note=note,
        resolve_within=resolve_within,
        due_at=due_at,
        into=into,
    )


def _apply(
    state: CaseState,
    action: str,
    *,
    side: str,
    now: datetime,
    ladder: Ladder,
    note: str | None,
    resolve_within: timedelta | None = None,
    due_at: datetime | None = None,
    into: str | None = None,
) -> Transition:
    _require_aware(now)
    _check_ladder(ladder)
    if action not in ACTIONS:
        raise InvalidInput(
            f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}",
            {"valid": list(ACTIONS)},
        )
    if side != SYSTEM and side not in state.sides:
        raise SideNotInvolved(
            f"side {side!r} is not involved in this case; involved: {', '.join(state.sides)}",
            {"side": side, "sides": list(state.sides)},
        )

    if state.status not in _FROM[action]:
        _refuse(state, action, side, ladder, "not from this status")
    if action == "escalate" and at_top(state, ladder):
        top = ladder[min(state.escalation_level, len(ladder) - 1)][0]
        _refuse(state, action, side, ladder, f"already at the top level ({top})")
    if action == "verify" and side in state.verified_sides:
        _refuse(state, action, side, ladder, f"side {side} already signed off this resolution")

    text = _need_note(action, note) if action in NOTE_REQUIRED else (note or "").strip() or None
    after = state
    escalated: tuple[str, str] | None = None

    if action == "accept":
        after = replace(state, status="accepted")
    elif action == "dispatch":
        if resolve_within is None or resolve_within <= timedelta(0):
            raise ValueError("dispatch needs a positive resolve_within from the case's severity")
        after = replace(state, status="dispatched", due_at=now + resolve_within)
    elif action == "start":
        after = replace(state, status="in_progress")
    elif action == "resolve":
        after = replace(state, status="resolved", verified_sides=())
    elif action == "verify":
        signed = (*state.verified_sides, side)
        done = set(signed) >= set(state.sides)
        after = replace(state, status="verified" if done else "resolved", verified_sides=signed)
    elif action == "close":
        after = replace(state, status="closed")
    elif action == "reject":
        after = replace(state, status="rejected")
    elif action == "return":
        after = replace(state, status="dispatched", verified_sides=())
    elif action == "postpone":
        after = replace(state, due_at=_new_due(state, now, due_at))
    elif action == "escalate":
        level = state.escalation_level + 1
        code, hours = ladder[level]
        escalated = (ladder[state.escalation_level][0], code)
        after = replace(state, escalation_level=level, due_at=now + timedelta(hours=hours))
    elif action == "merge":
        target = (into or "").strip()
        if not target:
            raise InvalidInput(
                "merge needs `into`: the id of the case this one duplicates", {"missing": "into"}
            )
        if state.case_id is not None and target == state.case_id:
            raise InvalidInput(
                "a case cannot be merged into itself; name another case", {"into": target}
            )
        after = replace(state, status="duplicate", merged_into=target)

    return Transition(
        before=state, after=after, action=action, side=side, note=text, at=now, escalated=escalated
    )


def _new_due(state: CaseState, now: datetime, due_at: datetime | None) -> datetime:
    if due_at is None:
        raise InvalidInput(
            "postpone needs a new due time (`due_at`); add one", {"missing": "due_at"}
        )
    if not _aware(due_at):
        raise InvalidInput("give the new due time with a time zone", {"due_at": due_at.isoformat()})
    floor = max(now, state.due_at) if state.due_at is not None else now
    if due_at <= floor:
        raise InvalidInput(
            "the new due time must be later than the current due time and than now",
            {"due_at": due_at.isoformat(), "must_be_after": floor.isoformat()},
        )
    return due_at


def auto_escalation(state: CaseState, now: datetime, *, ladder: Ladder) -> Transition | None:
    """The background task's move: escalate an overdue case one rung, acting as :data:`SYSTEM`.

    ``None`` when the case is not overdue, or already on the top rung (then it stays overdue
    and the top level must act).
    """
    due = state.due_at
    if due is None or not is_overdue(state, now) or at_top(state, ladder):
        return None
    return _apply(
        state,
        "escalate",
        side=SYSTEM,
        now=now,
        ladder=ladder,
        note=f"time limit {due.isoformat()} passed",
    )
