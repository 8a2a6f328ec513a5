"""The deliver use-case: send what the outbox holds (webhooks and notifications to people).

One round (``deliver_once``) is one transaction: claim the due deliveries (``FOR UPDATE SKIP
LOCKED``, so several workers share the work and never send the same row at once), send them
concurrently, record every outcome, commit. A worker killed mid-round leaves its rows pending;
the next round sends them again under the same ``webhook-id``: at least once.

Why not pgqueuer or procrastinate (both install): the outbox rows are written by a trigger in
the event's own statement, in bulk for a re-route, and both libraries enqueue through their own
Python call per job; neither keeps per (subscription, case) order with "a dead delivery releases
the next", which here is one ``NOT EXISTS`` over an index. The queue is one table and two
queries (layers/outbox.py), so the library would add a second schema and a second worker loop
without taking anything away.

Webhooks follow Standard Webhooks 1.0 and are signed with the ``standardwebhooks`` library.
The URL's name is resolved here and every address checked (gis.netsafety); the request goes to
the checked address (the Host header and TLS SNI keep the name), and redirects are not followed.
Notifications go through apprise, which reports only success or failure.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from api import settings
from api.usecases import push_text
from api.usecases.cases import case_view
from api.usecases.policy import Principal, may_see_reporter
from api.usecases.rounds import run_rounds
from gis.catalogue import Catalogue
from gis.netsafety import refusal
from layers import outbox
from layers.db import Conn
from layers.incidents import SPEC

log = logging.getLogger("jointgrid.deliver")

# Seconds to wait after the 1st, 2nd, ... failed attempt; after the last, the delivery is dead.
SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 24 * 3600)
JITTER = 0.1  # each wait is stretched or shrunk by up to 10 %, so retries do not come in waves
MAX_RETRY_AFTER_S = 24 * 3600

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(i[4][0]) for i in infos))


class Refused(Exception):
    """The destination may not be contacted (a safety rule, not a network failure)."""


@dataclass
class Target:
    url: str  # the URL with the checked address in place of the name
    host_header: str
    sni: str | None


def pin(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> Target:
    """Resolve ``url``'s host, check every address, and return the URL to connect to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"{url!r} is not an http(s) URL")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise ConnectionError(f"{host} resolves to no address")
    for a in addresses:
        why = refusal(a, allow_private=allow_private)
        if why is not None:
            raise Refused(f"{host} resolves to {why}")
    ip = addresses[0]
    netloc = f"[{ip}]" if ":" in ip else ip
    if parts.port:
        netloc += f":{parts.port}"
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host_header=parts.netloc.rsplit("@", 1)[-1],
        sni=host if parts.scheme == "https" else None,
    )


def signature(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,...`` per secret, space separated."""
    return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def next_wait(attempts_done: int, *, rng: random.Random) -> float | None:
    """Seconds until the next attempt after ``attempts_done`` failed ones; None: give up."""
    if attempts_done > len(SCHEDULE):
        return None
    base = SCHEDULE[attempts_done - 1]
    return base * (1 + rng.uniform(-JITTER, JITTER))


def iso(t: Any) -> str | None:
    if t is None:
        return None
    return t.astimezone(push_text.BEIJING).isoformat() if isinstance(t, datetime) else str(t)


def redacted_case(row: dict[str, Any], *, role: str, side: str | None) -> dict[str, Any]:
    """The case a ``full`` subscription receives, redacted as its role sees cases: a feed gets
    the public properties only (never the reporter or contacts), an operator of a side what an
    operator of that side sees, an admin everything."""
    who = Principal(key_id=None, role=role, side=side)
    view = case_view(row, show_reporter=may_see_reporter(who, row))
    if role == "feed":
        keep = set(SPEC.public) | {"location", "links", "side"}
        view = {k: v for k, v in view.items() if k in keep}
        view["id"] = row["id"]
    return view


def webhook_payload(d: dict[str, Any], *, public_url: str) -> dict[str, Any]:
    """The JSON body of one webhook (Standard Webhooks: ``type``, ``timestamp``, ``data``)."""
    case, ev = d["case"], d["event"]
    data: dict[str, Any] = dict(d["data"] or {})
    if case is not None:
        data.update(
            id=case["id"],
            code=case["code"],
            status=ev["to_status"] if ev else case["status"],
            mechanism=case["mechanism"],
            sides=case["sides"],
            category=case["category"],
            severity=case["severity"],
            link=f"{public_url.rstrip('/')}/cases/{case['code']}",
            api=f"{public_url.rstrip('/')}/api/v1/incidents/{case['id']}",
        )
    if ev is not None:
        data.update(
            seq=ev["seq"],
            action=ev["action"],
            from_status=ev["from_status"],
            side=ev["actor_side"],
            time=iso(ev["at"]),
        )
        if ev["action"] == "overdue":
            data["due_at"] = (ev["payload"] or {}).get("due_at")
    data.setdefault("time", iso(d["created_at"]))
    if d["full_payload"] and case is not None:
        data["case"] = redacted_case(case, role=d["role"] or "feed", side=d.get("sub_side"))
    return {"type": d["event_type"], "timestamp": iso(d["created_at"]), "data": data}


@dataclass
class RoundSummary:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    disabled: list[str] = field(default_factory=list)


class Deliverer:
    """Sends outbox rows. Thread-safe httpx client and apprise per send; ``now`` injectable."""

    def __init__(
        self,
        *,
        catalogue: Catalogue | None = None,
        public_url: str = "http://127.0.0.1:8000",
        timeout_s: float = 10.0,
        concurrency: int = 16,
        batch: int = 100,
        resolver: Resolver = resolve,
        seed: int | None = None,
        retention: timedelta | None = None,
    ) -> None:
        self.retention = retention  # delivered rows older than this are deleted, hourly
        self.catalogue = catalogue
        self.public_url = public_url
        self.batch = batch
        self.resolver = resolver
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        self.client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            trust_env=False,  # a proxy from the environment would skip the address check
        )
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

    # -- one round ---------------------------------------------------------------------------

    def deliver_once(self, conn: Conn, *, now: datetime | None = None) -> RoundSummary:
        """Claim, send and record one batch of due deliveries, in one transaction."""
        now = now or datetime.now(UTC)
        s = RoundSummary()
        with conn.transaction():
            rows = outbox.claim(conn, now=now, limit=self.batch)
            s.claimed = len(rows)
            if not rows:
                return s
            hooks = [r for r in rows if r["kind"] == "webhook"]
            groups: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                if r["kind"] == "notify":
                    groups.setdefault(r["target"], []).append(r)
            # one job per webhook, one per channel (its events of this round in one message)
            jobs = [[r] for r in hooks] + list(groups.values())
            outcomes = [
                o for batch in self.pool.map(lambda j: self._job(j, now), jobs) for o in batch
            ]
            if groups:
                outbox.channels_sent(conn, list(groups), at=now)
            for o in outcomes:
                setattr(s, o["status"], getattr(s, o["status"]) + 1)
                if o.pop("disable", False):
                    outbox.disable_subscription(
                        conn, o["target"], reason=f"the receiver answered 410 Gone at {now}"
                    )
                    s.disabled.append(o["target"])
            outbox.record(conn, outcomes)
        return s

    def _job(self, rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        if rows[0]["kind"] == "notify":
            return self._notify_group(rows, now)
        return [self._attempt(rows[0], now)]

    def _attempt(self, d: dict[str, Any], now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"id": d["id"], "target": d["target"], "at": now}
        try:
            body = (
                d["body"] or orjson.dumps(webhook_payload(d, public_url=self.public_url)).decode()
            )
            out["body"] = body
            code, headers = self._post(d, body)
        except Refused as exc:
            return out | {"status": "dead", "next_at": now, "error": f"refused: {exc}"}
        except (httpx.TimeoutException, TimeoutError) as exc:
            return self._retry(out, d, now, f"timeout: {exc!r}", None)
        except (httpx.TransportError, ConnectionError, OSError) as exc:
            return self._retry(out, d, now, f"connection: {exc}", None)
        except Exception as exc:  # a bug in one delivery must not lose the others' outcomes
            log.exception("delivery %s failed unexpectedly", d["id"])
            return self._retry(out, d, now, f"error: {exc!r}", None)
        out["http"] = code
        if 200 <= code < 300:
            return out | {"status": "delivered", "next_at": now}
        if code == 410:
            return out | {
                "status": "dead",
                "next_at": now,
                "error": "410 Gone: the subscription is disabled",
                "disable": True,
            }
        if code in (408, 429) or code >= 500:
            wait = retry_after(headers.get("retry-after"), now)
            return self._retry(out, d, now, f"HTTP {code}", wait)
        if 300 <= code < 400:
            return out | {
                "status": "dead",
                "next_at": now,
                "error": f"HTTP {code}: redirects are not followed",
            }
        return out | {"status": "dead", "next_at": now, "error": f"HTTP {code}"}

    def _retry(
        self, out: dict[str, Any], d: dict[str, Any], now: datetime, error: str, wait: float | None
    ) -> dict[str, Any]:
        attempts = d["attempts"] + 1
        scheduled = next_wait(attempts, rng=self.rng)
        if scheduled is None:
            return out | {"status": "dead", "next_at": now, "error": f"{error}; retries exhausted"}
        delay = scheduled if wait is None else max(wait, 1.0)
        return out | {"status": "failed", "next_at": now + timedelta(seconds=delay), "error": error}

    def _post(self, d: dict[str, Any], body: str) -> tuple[int, httpx.Headers]:
        target = pin(d["url"], allow_private=d["allow_private"], resolver=self.resolver)
        msg_id = f"msg_{d['id']}"
        signed_at = datetime.now(UTC)  # the receiver checks it against its own clock
        secrets = [d["secret"]]
        if d["old_secret"] and d["old_secret_until"] and d["old_secret_until"] > signed_at:
            secrets.append(d["old_secret"])
        headers = {
            "host": target.host_header,
            "content-type": "application/json",
            "user-agent": "JointGrid-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": signature(secrets, msg_id, signed_at, body),
        }
        ext = {"sni_hostname": target.sni} if target.sni else None
        r = self.client.post(target.url, content=body.encode(), headers=headers, extensions=ext)
        return r.status_code, r.headers

    def _message(self, d: dict[str, Any]) -> str:
        case = d["case"]
        if case is None:
            title, text = push_text.EVENT_TITLES.get(d["event_type"], d["event_type"]), ""
        else:
            title, text = push_text.message(
                d["event_type"],
                case,
                catalogue=self.catalogue,
                link=f"{self.public_url.rstrip('/')}/cases/{case['code']}",
            )
        return json.dumps({"title": title, "body": text}, ensure_ascii=False)

    def _notify_group(self, group: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """Notify one channel of every event of this round in one message (a WeCom group bot
        takes about 20 messages a minute; the claim spaces a channel's rounds too). apprise
        reports only success or failure, so a failure is retried on the schedule."""
        import apprise

        outs = []
        messages = []
        for d in group:
            body = d["body"] or self._message(d)
            outs.append({"id": d["id"], "target": d["target"], "at": now, "body": body})
            messages.append(json.loads(body))
        if len(messages) == 1:
            title, text = messages[0]["title"], messages[0]["body"]
        else:
            title = push_text.batch_title(len(messages))
            text = "\n\n".join(f"{m['title']}\n{m['body']}" for m in messages)
        a = apprise.Apprise()
        try:
            if not a.add(group[0]["channel_url"]):
                raise Refused("apprise does not understand this channel URL")
            ok = bool(a.notify(title=title, body=text))
            error = "apprise reported a failure"
        except Refused as exc:
            return [
                o | {"status": "dead", "next_at": now, "error": f"refused: {exc}"} for o in outs
            ]
        except Exception as exc:  # apprise's plugins may raise; treated as a failed send
            log.warning("notification to %s failed", group[0]["target"], exc_info=True)
            ok, error = False, f"error: {exc!r}"
        if ok:
            return [o | {"status": "delivered", "next_at": now} for o in outs]
        return [self._retry(o, d, now, error, None) for o, d in zip(outs, group, strict=True)]

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self,
        connect: Callable[[], Conn],
        *,
        stop: threading.Event,
        idle_s: float = 1.0,
    ) -> None:
        """Deliver until ``stop`` is set: rounds back to back while there is work, a pause
        of ``idle_s`` when there is none, a reconnect after a lost connection."""
        pruned_at = 0.0

        def once(conn: Conn) -> bool:
            nonlocal pruned_at
            if self.retention is not None and time.monotonic() - pruned_at > 3600:
                pruned_at = time.monotonic()
                outbox.prune(conn, before=datetime.now(UTC) - self.retention)
            s = self.deliver_once(conn)
            if s.claimed:
                log.info("delivered %d, failed %d, dead %d", s.delivered, s.failed, s.dead)
            return bool(s.claimed)

        run_rounds(connect, once, stop=stop, idle_s=idle_s, what="a delivery round", log=log)


def from_settings(catalogue: Catalogue | None) -> Deliverer:

    p = settings.push()
    return Deliverer(
        catalogue=catalogue,
        public_url=p.public_url,
        timeout_s=p.timeout_s,
        concurrency=p.concurrency,
        batch=p.batch,
        retention=timedelta(days=p.retention_days) if p.retention_days else None,
    )
