"""Who may see and move which case: the caller (``Principal``) and the rules on cases.

Pure policy, shared by the faces (``api.access`` authenticates and applies it per route) and
the use-cases (the delivery worker redacts by it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gis.errors import DomainError, NotFound
from layers import incidents


class Forbidden(DomainError):
    """Known credentials that may not do this."""

    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    """The caller: a key's id, role, side and team, or nobody (anonymous)."""

    key_id: str | None = None
    role: str | None = None
    side: str | None = None
    team: str | None = None
    name: str = ""
    via: str = "anonymous"
    csrf: str | None = None  # the session's CSRF token, for pages to embed

    @property
    def anonymous(self) -> bool:
        return self.role is None

    def actor(self) -> dict[str, Any]:
        """What the audit trail records about the caller."""
        return {
            "kind": "key" if self.key_id else "anonymous",
            "key_id": self.key_id,
            "role": self.role,
            "side": self.side,
            "team": self.team,
        }


# -- cases ---------------------------------------------------------------------------------


def case_scope(who: Principal) -> dict[str, Any]:
    """The scope of the cases the caller may see, for ``layers.incidents.list_cases(scope=)``.

    A scope is applied on top of the caller's own filters, never in place of them: an
    operator of 510904 asking for ``side=500152`` gets the cases involving both.
    """
    if who.role == "admin":
        return {}
    if who.role == "operator":
        return {"side": who.side}
    if who.role == "team_member":
        return {"team": who.team}
    if who.role == "grid_worker":
        return {"reporter_key": who.key_id}
    return {"none": True}


def can_see(who: Principal, row: dict[str, Any]) -> bool:
    """Whether the caller may see this case (the same rule as ``case_scope``)."""
    if who.role == "admin":
        return True
    if who.role == "operator":
        return who.side in row["sides"]
    if who.role == "team_member":
        return any(t.get("code") == who.team for t in row["teams"] or [])
    if who.role == "grid_worker":
        return (row.get("reporter") or {}).get("key_id") == who.key_id
    return False


def find_visible(conn: Any, who: Principal, ref: str) -> dict[str, Any] | None:
    """The case ``ref`` (id or code) if it exists and the caller may see it, else None.

    Every place that resolves a reference to a case given by a caller goes through here, so a
    case the caller may not see is answered exactly like one that does not exist.
    """
    try:
        row = incidents.get(conn, ref)
    except NotFound:
        return None
    return row if can_see(who, row) else None


REFERENCE_FIELDS = ("merged_into", "possible_duplicate_of")


def hide_unseen_refs(conn: Any, who: Principal, views: list[dict[str, Any]]) -> None:
    """Blank, in place, every reference to another case (``merged_into``,
    ``possible_duplicate_of``) that the caller may not see: the id itself says the case exists."""
    if who.role == "admin":
        return
    ids = [v.get(f) for v in views for f in REFERENCE_FIELDS]
    found = incidents.reference_rows(conn, [i for i in ids if i])
    for v in views:
        for f in REFERENCE_FIELDS:
            ref = v.get(f)
            if ref and not (ref in found and can_see(who, found[ref])):
                v[f] = None


def hide_unseen_event_refs(conn: Any, who: Principal, events: list[dict[str, Any]]) -> None:
    """The same for the audit trail: a merge event names the case merged into."""
    if who.role == "admin":
        return
    ids = [(e.get("payload") or {}).get("into") for e in events]
    found = incidents.reference_rows(conn, [i for i in ids if i])
    for e in events:
        into = (e.get("payload") or {}).get("into")
        if into and not (into in found and can_see(who, found[into])):
            e["payload"] = {**e["payload"], "into": None}


def visible(who: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """The row if the caller may see it; a 404 otherwise, so as not to reveal that it exists."""
    if not can_see(who, row):
        raise NotFound("no such case", {})
    return row


def may_see_reporter(who: Principal, row: dict[str, Any]) -> bool:
    return who.role == "admin" or (who.role == "operator" and who.side in row["sides"])


def check_transition(who: Principal, row: dict[str, Any], side: str) -> None:
    """Operators and team members act only for their own side."""
    if who.role == "admin":
        return
    if side != who.side:
        raise Forbidden(
            f"this key acts for side {who.side}; it cannot act for {side}",
            {"side": who.side},
        )
    if who.role == "grid_worker":
        raise Forbidden("grid workers report cases; operators and teams move them")
