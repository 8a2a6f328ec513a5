"""``jointgrid webhook``, ``notify`` and ``deliver``: push to other platforms and to people."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta

import click

from api import settings
from api.catalogue import load_catalogue
from api.cli_common import _autocommit, _conn

# -- push: webhooks, notification channels, the delivery worker ----------------------------


@click.group("webhook")
def webhook() -> None:
    """Webhook subscriptions of other platforms (Standard Webhooks 1.0), for admins."""


@webhook.command("add")
@click.argument("url")
@click.option("--events", required=True, help="comma-separated, e.g. dispatched,escalated or *")
@click.option("--side", default=None, help="only cases involving this side (district code)")
@click.option("--mechanism", default=None, help="only cases of this six-link mechanism")
@click.option("--category", default=None, help="only cases of this category")
@click.option(
    "--role",
    default="feed",
    show_default=True,
    type=click.Choice(["feed", "operator", "admin"]),
    help="whose redaction the payload follows",
)
@click.option("--full", is_flag=True, help="send the whole case (redacted by --role)")
@click.option("--allow-private", is_flag=True, help="admit a loopback or private address")
@click.option("--name", default="", help="who receives it")
def webhook_add(
    url: str,
    events: str,
    side: str | None,
    mechanism: str | None,
    category: str | None,
    role: str,
    full: bool,
    allow_private: bool,
    name: str,
) -> None:
    """Add a subscription: prints its id and, on its own line, its whsec_ secret."""
    from api.usecases import webhooks

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        conn.autocommit = True
        sub = webhooks.add(
            conn,
            url=url,
            events=events,
            side=side,
            mechanism=mechanism,
            category=category,
            role=role,
            full=full,
            allow_private=allow_private,
            name=name,
            catalogue=cat,
        )
    click.echo(sub["id"])
    click.echo(sub["secret"])
    click.echo("(keep the secret safe: it cannot be shown again)", err=True)


@webhook.command("list")
def webhook_list() -> None:
    """List subscriptions (never their secrets), with open and dead deliveries."""
    from layers import outbox

    with _conn() as conn:
        for s in outbox.subscriptions(conn):
            state = "enabled" if s["enabled"] else f"disabled ({s['disabled_reason']})"
            filters = " ".join(
                f"{k}={s[k]}" for k in ("side", "mechanism", "category") if s[k] is not None
            )
            click.echo(
                f"{s['id']}  {state}  {s['url']}  events={','.join(s['events'])}"
                f"  role={s['role']}{' full' if s['full_payload'] else ''}"
                f"{' allow-private' if s['allow_private'] else ''}"
                f"{'  ' + filters if filters else ''}  open={s['open']} dead={s['dead']}"
            )


@webhook.command("disable")
@click.argument("sub_id")
def webhook_disable(sub_id: str) -> None:
    """Stop sending to a subscription."""
    from layers import outbox

    _autocommit(
        lambda conn: outbox.disable_subscription(conn, sub_id, reason="disabled by an admin")
    )
    click.echo(f"disabled {sub_id}")


@webhook.command("rotate-secret")
@click.argument("sub_id")
def webhook_rotate(sub_id: str) -> None:
    """A new secret (printed); the old one still signs beside it for the grace period."""

    from api.usecases import webhooks

    grace = timedelta(hours=settings.push().rotation_grace_hours)
    secret = _autocommit(lambda conn: webhooks.rotate(conn, sub_id, grace=grace))
    click.echo(secret)
    click.echo(f"(the old secret still signs for {grace})", err=True)


@webhook.command("replay")
@click.option("--since", required=True, help="ISO 8601 time, e.g. 2026-12-01T08:00+08:00")
def webhook_replay(since: str) -> None:
    """Send the dead deliveries made since a time again (same webhook ids)."""

    from layers import outbox

    try:
        t = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter("give an ISO 8601 time, e.g. 2026-12-01T08:00+08:00") from None
    if t.tzinfo is None:
        raise click.BadParameter("give the time with its zone, e.g. +08:00")
    n = _autocommit(lambda conn: outbox.replay(conn, since=t, now=datetime.now(UTC)))
    click.echo(f"replaying {n} dead deliver{'y' if n == 1 else 'ies'}")


@click.group("notify")
def notify() -> None:
    """Channels that notify people (apprise: wecombot://, dingtalk://, mailto://, json://)."""


@notify.command("add")
@click.argument("url")
@click.option("--team", default=None, help="the team whose group chat this is")
@click.option("--side", default=None, help="a side's channel (its command centre)")
@click.option("--role", default=None, help="a contact role, e.g. grid_chief, police_officer")
@click.option("--name", default="", help="what the channel is")
def notify_add(url: str, team: str | None, side: str | None, role: str | None, name: str) -> None:
    """Add a channel; the catalogue's `notifications` says which events reach it."""
    from api.usecases import webhooks

    with _conn() as conn:
        conn.autocommit = True
        ch = webhooks.add_channel(conn, url=url, team=team, side=side, role=role, name=name)
    click.echo(ch["id"])


@notify.command("list")
def notify_list() -> None:
    """List channels (their URLs masked)."""
    from api.usecases import webhooks
    from layers import outbox

    with _conn() as conn:
        for c in outbox.channels(conn):
            who = (c["team"] and f"team={c['team']}") or " ".join(
                f"{k}={c[k]}" for k in ("side", "role") if c[k]
            )
            state = "enabled" if c["enabled"] else "disabled"
            click.echo(f"{c['id']}  {state}  {who}  {webhooks.mask(c['url'])}")


@notify.command("disable")
@click.argument("channel_id")
def notify_disable(channel_id: str) -> None:
    """Stop notifying on a channel."""
    from layers import outbox

    with _conn() as conn:
        conn.autocommit = True
        outbox.disable_channel(conn, channel_id)
    click.echo(f"disabled {channel_id}")


@click.command("deliver")
@click.option("--once", is_flag=True, help="one round, then exit")
def deliver_cmd(once: bool) -> None:
    """Send webhooks and notifications from the outbox until stopped (SIGTERM); several may
    run at once."""

    from api.usecases.deliver import from_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cat = load_catalogue(settings.data().catalogue)
    worker = from_settings(cat)
    try:
        if once:
            with _conn() as conn:
                conn.autocommit = True
                s = worker.deliver_once(conn)
            click.echo(
                f"claimed {s.claimed}: delivered {s.delivered}, failed {s.failed}, dead {s.dead}"
            )
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        worker.run(_conn, stop=stop, idle_s=max(settings.push().interval_s, 0.2))
    finally:
        worker.close()
