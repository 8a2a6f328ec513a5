"""The case workflow: the closed loop, dual sign-off, time limits, escalation, and a random walk."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gis.catalogue import Rung
from gis.errors import DomainError, InvalidInput, TransitionNotAllowed
from gis.workflow import (
    ACTIONS,
    OPEN_STATUSES,
    STATUSES,
    SYSTEM,
    TERMINAL,
    CaseState,
    SideNotInvolved,
    Transition,
    allowed_actions,
    apply,
    auto_escalation,
    is_overdue,
    ladder_of,
)

ANJU, TONGNAN, TONGLIANG = "510904", "500152", "500151"
CST = timezone(timedelta(hours=8))
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=CST)
LADDER = (("village", 24.0), ("town", 24.0), ("district", 48.0))
YELLOW = timedelta(hours=72)

# Written out by hand from DOMAIN.md and the brief, not derived from the module under test.
EXPECTED_ALLOWED: dict[str, list[str]] = {
    "reported": ["accept", "escalate", "merge", "reject"],
    "accepted": ["dispatch", "escalate", "merge", "reject"],
    "dispatched": ["escalate", "merge", "postpone", "start"],
    "in_progress": ["escalate", "merge", "postpone", "resolve", "return"],
    "resolved": ["escalate", "merge", "return", "verify"],
    "verified": ["close"],
    "closed": [],
    "rejected": [],
    "duplicate": [],
}
EXPECTED_TARGET: dict[tuple[str, str], str] = {
    ("reported", "accept"): "accepted",
    ("accepted", "dispatch"): "dispatched",
    ("dispatched", "start"): "in_progress",
    ("in_progress", "resolve"): "resolved",
    ("verified", "close"): "closed",
    ("reported", "reject"): "rejected",
    ("accepted", "reject"): "rejected",
    ("in_progress", "return"): "dispatched",
    ("resolved", "return"): "dispatched",
}
TIMED = {"dispatched", "in_progress", "resolved", "verified", "closed"}


def state_in(status: str, sides: tuple[str, ...] = (ANJU, TONGNAN)) -> CaseState:
    """A representative case in ``status``: on the bottom rung, nobody signed unless it is done."""
    return CaseState(
        status=status,
        sides=sides,
        due_at=T0 + YELLOW if status in TIMED else None,
        verified_sides=sides if status in {"verified", "closed"} else (),
        merged_into="case-other" if status == "duplicate" else None,
        case_id="case-1",
    )


def valid_inputs(action: str, state: CaseState, now: datetime = T0) -> dict[str, Any]:
    """Everything ``action`` needs to succeed from ``state``."""
    if action == "dispatch":
        return {"resolve_within": YELLOW}
    if action == "postpone":
        floor = max(now, state.due_at) if state.due_at else now
        return {"note": "waiting for the river chief", "due_at": floor + timedelta(hours=12)}
    if action == "merge":
        return {"into": "case-other"}
    if action in {"resolve", "reject", "return"}:
        return {"note": f"{action}: done on site"}
    return {}


def step(state: CaseState, action: str, side: str, now: datetime = T0, **kw: Any) -> CaseState:
    return apply(state, action, side=side, now=now, ladder=LADDER, **kw).after


# -- the closed loop -------------------------------------------------------------------------


def test_constants() -> None:
    assert set(ACTIONS) == {
        "accept", "dispatch", "start", "resolve", "verify", "close",
        "reject", "return", "postpone", "escalate", "merge",
    }  # fmt: skip
    assert set(STATUSES) == set(EXPECTED_ALLOWED)
    assert {"reported", "accepted", "dispatched", "in_progress", "resolved"} == OPEN_STATUSES
    assert {"closed", "rejected", "duplicate"} == TERMINAL


def test_happy_path_single_side() -> None:
    s = CaseState(status="reported", sides=(ANJU,))
    s = step(s, "accept", ANJU)
    assert (s.status, s.due_at) == ("accepted", None)

    t = apply(s, "dispatch", side=ANJU, now=T0, ladder=LADDER, resolve_within=YELLOW)
    s = t.after
    assert s.status == "dispatched"
    assert s.due_at == T0 + YELLOW, "the time limit starts at dispatch"
    assert t.event_payload() == {
        "action": "dispatch",
        "side": ANJU,
        "from": "accepted",
        "to": "dispatched",
        "due_at": {"from": None, "to": (T0 + YELLOW).isoformat()},
    }

    s = step(s, "start", ANJU, T0 + timedelta(hours=1))
    assert s.status == "in_progress"
    t = apply(
        s, "resolve", side=ANJU, now=T0 + timedelta(hours=5), ladder=LADDER, note="  cleared  "
    )
    assert t.after.status == "resolved"
    assert t.note == "cleared"
    assert t.at == T0 + timedelta(hours=5)
    s = step(t.after, "verify", ANJU)
    assert s.status == "verified"
    assert s.verified_sides == (ANJU,)
    s = step(s, "close", ANJU)
    assert s.status == "closed"
    assert allowed_actions(s, ladder=LADDER) == []
    assert not is_overdue(s, T0 + timedelta(days=30)), "a closed case is never overdue"


def test_dual_sign_off_for_a_cross_boundary_case() -> None:
    s = replace(state_in("in_progress"), due_at=T0 + YELLOW)
    s = step(s, "resolve", TONGNAN, note="riverbank cleaned on both banks")

    t = apply(s, "verify", side=ANJU, now=T0, ladder=LADDER)
    s = t.after
    assert s.status == "resolved", "one side's sign-off is not enough"
    assert s.verified_sides == (ANJU,)
    assert t.event_payload()["verified_sides"] == [ANJU]

    with pytest.raises(TransitionNotAllowed) as close_refused:
        step(s, "close", TONGNAN)
    assert close_refused.value.detail == {
        "status": "resolved",
        "action": "close",
        "allowed": ["escalate", "merge", "return", "verify"],
    }

    with pytest.raises(TransitionNotAllowed, match="already signed") as again:
        step(s, "verify", ANJU)
    assert again.value.detail["allowed"] == ["escalate", "merge", "return"]
    assert allowed_actions(s, ladder=LADDER, side=ANJU) == ["escalate", "merge", "return"]
    assert allowed_actions(s, ladder=LADDER, side=TONGNAN) == EXPECTED_ALLOWED["resolved"]

    s = step(s, "verify", TONGNAN)
    assert s.status == "verified"
    assert set(s.verified_sides) == {ANJU, TONGNAN}
    assert step(s, "close", TONGNAN).status == "closed"


def test_three_sides_need_three_sign_offs() -> None:
    s = state_in("resolved", (ANJU, TONGNAN, TONGLIANG))
    s = step(s, "verify", TONGLIANG)
    s = step(s, "verify", ANJU)
    assert s.status == "resolved"
    assert s.unverified_sides == (TONGNAN,)
    assert step(s, "verify", TONGNAN).status == "verified"


# -- the full status × action matrix ---------------------------------------------------------


@pytest.mark.parametrize("status", list(EXPECTED_ALLOWED))
def test_allowed_actions_per_status(status: str) -> None:
    assert allowed_actions(state_in(status), ladder=LADDER) == EXPECTED_ALLOWED[status]


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("status", list(EXPECTED_ALLOWED))
def test_status_action_matrix(status: str, action: str) -> None:
    state = state_in(status)
    if action in EXPECTED_ALLOWED[status]:
        t = apply(state, action, side=ANJU, now=T0, ladder=LADDER, **valid_inputs(action, state))
        assert t.before == state
        assert t.action == action
        if (status, action) in EXPECTED_TARGET:
            assert t.after.status == EXPECTED_TARGET[(status, action)]
        return
    with pytest.raises(TransitionNotAllowed) as err:
        apply(state, action, side=ANJU, now=T0, ladder=LADDER, **valid_inputs(action, state))
    assert not isinstance(err.value, SideNotInvolved)
    assert err.value.code == "transition_not_allowed"
    assert err.value.detail == {
        "status": status,
        "action": action,
        "allowed": EXPECTED_ALLOWED[status],
    }
    assert f"cannot {action} a case that is {status}" in err.value.message


# -- notes and inputs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action"),
    [("in_progress", "resolve"), ("reported", "reject"), ("accepted", "reject"),
     ("in_progress", "return"), ("resolved", "return"), ("dispatched", "postpone")],
)  # fmt: skip
@pytest.mark.parametrize("note", [None, "", "   \n"])
def test_actions_that_need_a_note(status: str, action: str, note: str | None) -> None:
    state = state_in(status)
    inputs = {**valid_inputs(action, state), "note": note}
    with pytest.raises(InvalidInput, match="needs a note") as err:
        apply(state, action, side=ANJU, now=T0, ladder=LADDER, **inputs)
    assert err.value.detail == {"missing": "note"}


def test_the_status_is_checked_before_the_note() -> None:
    with pytest.raises(TransitionNotAllowed):
        step(state_in("dispatched"), "reject", ANJU)


def test_unknown_action() -> None:
    with pytest.raises(InvalidInput, match="unknown action") as err:
        step(state_in("reported"), "approve", ANJU)
    assert err.value.detail == {"valid": list(ACTIONS)}


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step(state_in("reported"), "accept", ANJU, datetime(2025, 3, 1, 9))


def test_dispatch_needs_the_time_limit() -> None:
    with pytest.raises(ValueError, match="resolve_within"):
        step(state_in("accepted"), "dispatch", ANJU)


# -- postpone --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["dispatched", "in_progress"])
def test_postpone_moves_the_due_time(status: str) -> None:
    state = state_in(status)
    later = T0 + YELLOW + timedelta(days=2)
    t = apply(
        state, "postpone", side=TONGNAN, now=T0, ladder=LADDER, note="heavy rain", due_at=later
    )
    assert t.after.status == status
    assert t.after.due_at == later
    assert t.note == "heavy rain"
    assert t.event_payload()["due_at"] == {
        "from": (T0 + YELLOW).isoformat(),
        "to": later.isoformat(),
    }


def test_postpone_needs_reason_and_later_due() -> None:
    state = state_in("dispatched")
    current = state.due_at
    assert current is not None
    with pytest.raises(InvalidInput, match="needs a note"):
        step(state, "postpone", ANJU, due_at=current + timedelta(hours=1))
    with pytest.raises(InvalidInput, match="due time") as missing:
        step(state, "postpone", ANJU, note="rain")
    assert missing.value.detail == {"missing": "due_at"}
    for bad in (current, current - timedelta(hours=1)):
        with pytest.raises(InvalidInput, match="later than the current due time"):
            step(state, "postpone", ANJU, note="rain", due_at=bad)
    with pytest.raises(InvalidInput, match="time zone"):
        step(state, "postpone", ANJU, note="rain", due_at=datetime(2025, 4, 1))

    # Overdue: the new time must also be later than now.
    now = current + timedelta(days=1)
    with pytest.raises(InvalidInput, match="than now"):
        step(state, "postpone", ANJU, now, note="rain", due_at=current + timedelta(hours=1))
    assert step(state, "postpone", ANJU, now, note="rain", due_at=now + timedelta(hours=1)).due_at


# -- return ----------------------------------------------------------------------------------


def test_return_clears_verifications_and_keeps_the_clock() -> None:
    s = step(state_in("resolved"), "verify", ANJU)
    assert s.verified_sides == (ANJU,)
    t = apply(s, "return", side=TONGNAN, now=T0, ladder=LADDER, note="still polluted downstream")
    s = t.after
    assert s.status == "dispatched"
    assert s.verified_sides == ()
    assert s.due_at == T0 + YELLOW, "returning does not restart the time limit"
    assert t.event_payload()["verified_sides"] == []

    # The new resolution needs both sign-offs again.
    s = step(step(s, "start", ANJU), "resolve", ANJU, note="dredged again")
    s = step(s, "verify", ANJU)
    assert s.status == "resolved"
    assert step(s, "verify", TONGNAN).status == "verified"


def test_return_from_in_progress() -> None:
    assert step(state_in("in_progress"), "return", ANJU, note="wrong team").status == "dispatched"


# -- escalation ------------------------------------------------------------------------------


def test_escalation_climbs_the_ladder_and_stops_at_the_top() -> None:
    s = state_in("in_progress")
    t1 = apply(s, "escalate", side=ANJU, now=T0, ladder=LADDER)
    assert t1.after.status == "in_progress"
    assert t1.after.escalation_level == 1
    assert t1.after.due_at == T0 + timedelta(hours=24)
    assert t1.event_payload()["escalation"] == {"from": "village", "to": "town"}

    later = T0 + timedelta(hours=30)
    t2 = apply(t1.after, "escalate", side=TONGNAN, now=later, ladder=LADDER)
    assert t2.after.escalation_level == 2
    assert t2.after.due_at == later + timedelta(hours=48)
    assert t2.event_payload()["escalation"] == {"from": "town", "to": "district"}

    assert "escalate" not in allowed_actions(t2.after, ladder=LADDER)
    with pytest.raises(TransitionNotAllowed, match="top level") as err:
        step(t2.after, "escalate", ANJU, later)
    assert err.value.detail == {
        "status": "in_progress",
        "action": "escalate",
        "allowed": ["merge", "postpone", "resolve", "return"],
    }


def test_escalation_before_dispatch_and_with_the_catalogue_ladder() -> None:
    rungs = [
        Rung(level="village", name="村级协商", name_en="village consultation", extend_hours=24),
        Rung(level="town", name="镇级协商", name_en="town consultation", extend_hours=12),
    ]
    ladder = ladder_of(rungs)
    assert ladder == (("village", 24), ("town", 12))
    t = apply(state_in("reported"), "escalate", side=ANJU, now=T0, ladder=ladder)
    assert t.after.status == "reported"
    assert t.after.due_at == T0 + timedelta(hours=12)
    assert allowed_actions(t.after, ladder=ladder) == ["accept", "merge", "reject"]


def test_a_one_rung_ladder_never_escalates() -> None:
    assert "escalate" not in allowed_actions(state_in("dispatched"), ladder=(("village", 24),))


@pytest.mark.parametrize("status", ["verified", "closed", "rejected", "duplicate"])
def test_escalation_refused_when_not_open(status: str) -> None:
    with pytest.raises(TransitionNotAllowed):
        step(state_in(status), "escalate", ANJU)


def test_auto_escalation_only_when_overdue() -> None:
    s = state_in("in_progress")
    due = s.due_at
    assert due is not None
    assert auto_escalation(s, due - timedelta(minutes=1), ladder=LADDER) is None
    assert auto_escalation(s, due, ladder=LADDER) is None, "due exactly now is not yet overdue"

    now = due + timedelta(minutes=1)
    assert is_overdue(s, now)
    t = auto_escalation(s, now, ladder=LADDER)
    assert isinstance(t, Transition)
    assert t.side == SYSTEM
    assert t.action == "escalate"
    assert t.after.escalation_level == 1
    assert t.after.due_at == now + timedelta(hours=24)
    assert not is_overdue(t.after, now)
    payload = t.event_payload()
    assert payload["automatic"] is True
    assert payload["escalation"] == {"from": "village", "to": "town"}

    top = replace(s, escalation_level=2)
    assert is_overdue(top, now)
    assert auto_escalation(top, now, ladder=LADDER) is None, "the top rung stays overdue"
    for status in ("verified", "closed"):
        assert auto_escalation(replace(s, status=status), now, ladder=LADDER) is None
    assert auto_escalation(state_in("accepted"), now, ladder=LADDER) is None, "no due time yet"


def test_system_cannot_act_through_apply() -> None:
    with pytest.raises(SideNotInvolved):
        step(state_in("in_progress"), "escalate", SYSTEM)


# -- merge -----------------------------------------------------------------------------------


def test_merge_needs_another_case() -> None:
    s = state_in("accepted")
    for into in (None, "", "  "):
        with pytest.raises(InvalidInput, match="into") as err:
            step(s, "merge", ANJU, into=into)
        assert err.value.detail == {"missing": "into"}
    with pytest.raises(InvalidInput, match="itself"):
        step(s, "merge", ANJU, into="case-1")

    t = apply(s, "merge", side=TONGNAN, now=T0, ladder=LADDER, into="case-7")
    assert t.after.status == "duplicate"
    assert t.after.merged_into == "case-7"
    assert t.event_payload()["into"] == "case-7"
    assert allowed_actions(t.after, ladder=LADDER) == []


# -- sides -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(EXPECTED_ALLOWED))
def test_side_not_involved_is_refused(status: str) -> None:
    state = state_in(status, (ANJU,))
    for action in ACTIONS:
        with pytest.raises(SideNotInvolved) as err:
            step(state, action, TONGNAN, **valid_inputs(action, state))
        assert err.value.code == "side_not_involved"
        assert isinstance(err.value, TransitionNotAllowed)
        assert err.value.detail == {"side": TONGNAN, "sides": [ANJU]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "open"},
        {"sides": ()},
        {"sides": (ANJU, ANJU)},
        {"sides": (SYSTEM,)},
        {"due_at": datetime(2025, 3, 1)},
        {"escalation_level": -1},
        {"verified_sides": (TONGLIANG,)},
        {"merged_into": "case-2"},
        {"status": "duplicate"},
    ],
)
def test_malformed_states_are_refused(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"status": "reported", "sides": (ANJU, TONGNAN)}
    with pytest.raises(ValueError):
        CaseState(**{**base, **kwargs})


# -- a random walk through the workflow ------------------------------------------------------

SIDE_POOL = (ANJU, TONGNAN, TONGLIANG)


class Walk(RuleBasedStateMachine):
    """Random actions, sides, inputs and clock jumps; every state reached must make sense."""

    def __init__(self) -> None:
        super().__init__()
        self.state: CaseState | None = None
        self.ladder: tuple[tuple[str, float], ...] = LADDER
        self.now = T0
        self.dispatched = False
        self.max_level = 0

    @initialize(
        sides=st.lists(st.sampled_from(SIDE_POOL), min_size=1, max_size=3, unique=True),
        rungs=st.integers(min_value=1, max_value=4),
    )
    def start(self, sides: list[str], rungs: int) -> None:
        self.state = CaseState(status="reported", sides=tuple(sides), case_id="walk")
        self.ladder = tuple((f"rung{i}", float(6 * (i + 1))) for i in range(rungs))

    def _record(self, t: Transition) -> None:
        assert self.state is not None
        assert t.before == self.state
        assert t.at == self.now
        json.dumps(t.event_payload())
        if (t.before.status, t.action) in EXPECTED_TARGET:
            assert t.after.status == EXPECTED_TARGET[(t.before.status, t.action)]
        self.state = t.after
        self.dispatched |= t.after.status == "dispatched"

    @precondition(lambda self: self.state is not None)
    @rule(
        action=st.sampled_from(ACTIONS),
        side=st.sampled_from(SIDE_POOL),
        complete=st.booleans(),
        hours=st.integers(min_value=0, max_value=200),
    )
    def act(self, action: str, side: str, complete: bool, hours: int) -> None:
        assert self.state is not None
        self.now += timedelta(hours=hours)
        inputs = valid_inputs(action, self.state, self.now) if complete else {}
        if action == "dispatch":
            inputs["resolve_within"] = YELLOW
        involved = side in self.state.sides
        allowed = allowed_actions(self.state, ladder=self.ladder, side=side)
        try:
            t = apply(self.state, action, side=side, now=self.now, ladder=self.ladder, **inputs)
        except SideNotInvolved:
            assert not involved
            return
        except TransitionNotAllowed as err:
            assert involved
            assert action not in allowed
            assert err.detail == {"status": self.state.status, "action": action, "allowed": allowed}
            return
        except InvalidInput:
            assert not complete, "complete inputs were refused"
            return
        assert involved
        assert action in allowed
        self._record(t)

    @precondition(lambda self: self.state is not None)
    @rule(
        pick=st.integers(min_value=0, max_value=99),
        who=st.integers(min_value=0, max_value=2),
        hours=st.integers(min_value=0, max_value=100),
    )
    def progress(self, pick: int, who: int, hours: int) -> None:
        """An allowed, non-terminating move by an involved side: it must always go through.

        Uniform random actions nearly always end in ``merge`` or ``reject`` long before the
        loop closes, so this rule keeps walks going towards ``closed``.
        """
        assert self.state is not None
        self.now += timedelta(hours=hours)
        side = self.state.sides[who % len(self.state.sides)]
        moves = [
            a
            for a in allowed_actions(self.state, ladder=self.ladder, side=side)
            if a not in {"merge", "reject"}
        ]
        if not moves:
            return
        action = moves[pick % len(moves)]
        inputs = valid_inputs(action, self.state, self.now)
        self._record(
            apply(self.state, action, side=side, now=self.now, ladder=self.ladder, **inputs)
        )

    @precondition(lambda self: self.state is not None)
    @rule(hours=st.integers(min_value=0, max_value=300))
    def background_task(self, hours: int) -> None:
        assert self.state is not None
        self.now += timedelta(hours=hours)
        t = auto_escalation(self.state, self.now, ladder=self.ladder)
        if t is None:
            assert not is_overdue(self.state, self.now) or (
                self.state.escalation_level == len(self.ladder) - 1
            )
            return
        assert is_overdue(self.state, self.now)
        self._record(t)

    @invariant()
    def state_makes_sense(self) -> None:
        s = self.state
        if s is None:
            return
        everyone = set(s.sides)
        if s.status in {"verified", "closed"}:
            assert set(s.verified_sides) == everyone
        if s.status == "resolved":
            assert set(s.verified_sides) < everyone
        if s.status in {"reported", "accepted", "dispatched", "in_progress", "rejected"}:
            assert s.verified_sides == ()
        assert 0 <= s.escalation_level < len(self.ladder)
        assert s.escalation_level >= self.max_level, "escalation never goes down"
        self.max_level = s.escalation_level
        if self.dispatched or s.status in TIMED:
            assert s.due_at is not None
        assert (s.merged_into is not None) == (s.status == "duplicate")
        assert set(allowed_actions(s, ladder=self.ladder)) <= set(ACTIONS)
        if s.status in TERMINAL:
            assert allowed_actions(s, ladder=self.ladder) == []


Walk.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_walk = Walk.TestCase


def test_domain_errors_share_a_base() -> None:
    assert issubclass(SideNotInvolved, DomainError)


def test_the_api_offers_exactly_the_workflow_actions():
    from typing import get_args

    from api.usecases.schemas import TransitionAction
    from gis.workflow import ACTIONS

    assert set(get_args(TransitionAction)) == set(ACTIONS)
