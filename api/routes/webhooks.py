"""Webhook subscriptions under ``/api/v1/webhooks`` (admin key), as ``jointgrid webhook``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api import settings
from api.access import Principal, allow
from api.deps import CatalogueDep, Conn
from api.usecases import webhooks as use
from layers import outbox

router = APIRouter(prefix="/api/v1/webhooks", tags=["push"])
Admin = Annotated[Principal, allow("admin")]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http(s) URL that receives the webhooks")
    events: list[str] = Field(min_length=1, max_length=50, description="e.g. incident.dispatched")
    side: str | None = Field(default=None, max_length=20)
    mechanism: str | None = Field(default=None, max_length=50)
    category: str | None = Field(default=None, max_length=50)
    role: str = Field(default="feed", description="whose redaction the payload follows")
    full: bool = Field(default=False, description="send the whole (redacted) case")
    allow_private: bool = Field(default=False, description="admit loopback / private addresses")
    name: str = Field(default="", max_length=200)


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("secret", "old_secret")}


@router.get("", summary="List the webhook subscriptions (secrets are never shown again)")
def list_subscriptions(conn: Conn, who: Admin) -> dict[str, Any]:
    return {"items": [_public(r) for r in outbox.subscriptions(conn)]}


@router.post("", status_code=201, summary="Add a subscription; the answer shows its secret once")
def add_subscription(
    body: SubscriptionIn, conn: Conn, catalogue: CatalogueDep, who: Admin
) -> dict[str, Any]:
    with conn.transaction():
        return use.add(
            conn,
            url=body.url,
            events=body.events,
            side=body.side,
            mechanism=body.mechanism,
            category=body.category,
            role=body.role,
            full=body.full,
            allow_private=body.allow_private,
            name=body.name,
            catalogue=catalogue,
        )


@router.post("/{sub_id}/disable", summary="Stop sending to a subscription")
def disable(sub_id: str, conn: Conn, who: Admin) -> dict[str, Any]:
    with conn.transaction():
        return _public(outbox.disable_subscription(conn, sub_id, reason="disabled by an admin"))


@router.post(
    "/{sub_id}/rotate-secret",
    summary="A new secret; the old one still signs beside it for the grace period",
)
def rotate(sub_id: str, conn: Conn, who: Admin) -> dict[str, Any]:
    grace = timedelta(hours=settings.push().rotation_grace_hours)
    with conn.transaction():
        secret = use.rotate(conn, sub_id, grace=grace)
    return {"id": sub_id, "secret": secret, "old_secret_valid_until": datetime.now(UTC) + grace}


@router.post("/replay", summary="Send the dead deliveries made since a time again")
def replay(body: ReplayIn, conn: Conn, who: Admin) -> dict[str, Any]:
    with conn.transaction():
        n = outbox.replay(conn, since=body.since, now=datetime.now(UTC))
    return {"replayed": n}
