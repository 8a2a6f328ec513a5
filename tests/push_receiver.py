"""A local webhook receiver on 127.0.0.1 for the push tests and bench/push.py.

It checks every signature with the ``standardwebhooks`` library, drops duplicates by
``webhook-id`` (and counts them), and can be told to fail, time out, answer 410, 429 with
``Retry-After``, accept and then time out, or stay down (not listening at all). Apprise's
``json://`` notifications to ``/apprise`` are recorded as they come.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    def __init__(self, port: int = 0, secrets: list[str] | None = None) -> None:
        self.port = port
        self.secrets = list(secrets or [])
        self.mode = "ok"  # ok | fail | timeout | gone | throttle | slow_ok
        self.retry_after = "120"
        self.sleep_s = 2.0
        self.lock = threading.Lock()
        self.accepted: dict[str, dict[str, Any]] = {}  # webhook-id -> payload
        self.order: list[tuple[str, dict[str, Any]]] = []  # accepted, in arrival order
        self.duplicates = 0
        self.bad_signatures = 0
        self.requests = 0
        self.seen_ids: list[str] = []  # every webhook-id that arrived, duplicates included
        self.signatures: list[str] = []
        self.hosts: list[str] = []  # the Host header of each webhook
        self.notifications: list[dict[str, Any]] = []
        self.slow_once: set[str] = set()  # ids to accept and then time out on, once
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                code, extra = rec.handle(self.path, dict(self.headers.items()), body)
                if code == 0:  # timed out on purpose: the client gave up already
                    self.close_connection = True
                    return
                self.send_response(code)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.requests += 1
            mode = self.mode
        if path.startswith("/apprise"):
            with self.lock:
                self.notifications.append(json.loads(body))
            return (500 if mode == "fail" else 200), {}
        if mode == "timeout":
            time.sleep(self.sleep_s)
            return 0, {}
        if mode == "fail":
            return 503, {}
        if mode == "gone":
            return 410, {}
        if mode == "throttle":
            return 429, {"Retry-After": self.retry_after}
        with self.lock:
            self.hosts.append({k.lower(): v for k, v in headers.items()}.get("host", ""))
            self.signatures.append({k.lower(): v for k, v in headers.items()}["webhook-signature"])
        payload = self.verify(headers, body)
        if payload is None:
            return 400, {}
        msg_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self.lock:
            self.seen_ids.append(msg_id)
            if msg_id in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[msg_id] = payload
                self.order.append((msg_id, payload))
            slow = msg_id in self.slow_once
            self.slow_once.discard(msg_id)
        if slow or mode == "slow_ok":
            time.sleep(self.sleep_s)  # processed, but the answer comes too late
            return 0, {}
        return 204, {}

    def verify(self, headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
        for s in self.secrets:
            try:
                return Webhook(s).verify(body, headers)  # type: ignore[no-any-return]
            except WebhookVerificationError:
                continue
        with self.lock:
            self.bad_signatures += 1
        return None
