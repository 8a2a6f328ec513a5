"""Managing push: webhook subscriptions and notification channels (admins only), shared by
``jointgrid webhook|notify`` and ``/api/v1/webhooks``."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from api.usecases.deliver import Refused, pin
from api.usecases.push_text import EVENT_TITLES
from gis.catalogue import Catalogue
from gis.errors import InvalidInput
from layers import outbox
from layers.db import Conn

EVENT_TYPES = (*EVENT_TITLES, "audit.checkpoint")
ROLES = ("feed", "operator", "admin")


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_events(events: list[str] | str) -> list[str]:
    """Event types from a list or a comma-separated string; short names (``dispatched``) are
    taken as ``incident.dispatched``."""
    items = events.split(",") if isinstance(events, str) else events
    out = []
    for e in (x.strip() for x in items):
        if not e:
            continue
        full = e if "." in e or e == "*" else f"incident.{e}"
        if full != "*" and full not in EVENT_TYPES:
            raise InvalidInput(
                f"unknown event type {e!r}", {"valid": [*EVENT_TYPES, "*"], "given": e}
            )
        out.append(full)
    if not out:
        raise InvalidInput("give at least one event type", {"valid": [*EVENT_TYPES, "*"]})
    return list(dict.fromkeys(out))


def add(
    conn: Conn,
    *,
    url: str,
    events: list[str] | str,
    side: str | None = None,
    mechanism: str | None = None,
    category: str | None = None,
    role: str = "feed",
    full: bool = False,
    allow_private: bool = False,
    name: str = "",
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """Add a subscription; the answer carries its secret (shown this once)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("the webhook URL must be http:// or https:// with a host", {"url": url})
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", {"valid": list(ROLES)})
    if catalogue is not None:
        if mechanism is not None and mechanism not in catalogue.mechanisms:
            raise InvalidInput(
                f"unknown mechanism {mechanism!r}", {"valid": sorted(catalogue.mechanisms)}
            )
        if category is not None:
            catalogue.category(category)
    try:
        pin(url, allow_private=allow_private)
    except Refused as exc:
        raise InvalidInput(str(exc), {"url": url, "allow_private": allow_private}) from None
    except ConnectionError:
        pass  # not resolvable now: checked again before every attempt
    secret = new_secret()
    row = outbox.add_subscription(
        conn,
        fields={
            "id": "wh_" + secrets.token_urlsafe(9),
            "url": url,
            "events": parse_events(events),
            "side": side,
            "mechanism": mechanism,
            "category": category,
            "role": role,
            "full_payload": full,
            "allow_private": allow_private,
            "secret": secret,
            "name": name,
        },
    )
    return {**row, "secret": secret}


def rotate(conn: Conn, sub_id: str, *, grace: timedelta, now: datetime | None = None) -> str:
    """A new secret; the old one keeps signing (beside it) for ``grace``."""
    secret = new_secret()
    outbox.rotate_secret(
        conn, sub_id, secret=secret, grace_until=(now or datetime.now(UTC)) + grace
    )
    return secret


def add_channel(
    conn: Conn,
    *,
    url: str,
    team: str | None = None,
    side: str | None = None,
    role: str | None = None,
    name: str = "",
) -> dict[str, Any]:
    """Add a notification channel (an apprise URL) for a team, or a side and/or contact role."""
    import apprise

    if team is None and side is None and role is None:
        raise InvalidInput("a channel belongs to a team (--team), or a side and/or role", {})
    if team is not None and (side is not None or role is not None):
        raise InvalidInput("a team's channel takes no side or role", {"team": team})
    if apprise.Apprise.instantiate(url) is None:
        raise InvalidInput(
            "apprise does not understand this URL (e.g. wecombot://KEY, dingtalk://TOKEN, "
            "mailto://user:pass@host, json://host/path)",
            {},
        )
    return outbox.add_channel(
        conn,
        fields={
            "id": "nc_" + secrets.token_urlsafe(9),
            "team": team,
            "side": side,
            "role": role,
            "url": url,
            "name": name,
        },
    )


def mask(url: str) -> str:
    """An apprise URL with its key or password hidden (it may be the bot's only secret)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest[:4]}…" if len(rest) > 4 else f"{scheme}://…"
