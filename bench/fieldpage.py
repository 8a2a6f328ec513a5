"""The grid worker's page over a phone's link: first visit, repeat visit, and with no signal.

Debian's Chromium (Playwright, ``executable_path``) opens ``/report`` signed in as a grid worker,
on a 360 x 740 phone, with the DevTools Protocol's throttling: 50 KB/s each way, 400 ms of
latency, and the CPU slowed 4x. Every byte between the browser and the server goes through a
counting TCP relay in this process, so the service worker's own fetches are counted too (the
page's DevTools session does not see them).

Measured per visit: bytes over the wire, first contentful paint, and the time until the form
can be sent (``data-jg-usable``, set by ``report.js`` when the page is ready). The anchor, in
the same run, is the same page without its map (``/report?map=off``). Goals: the first visit
is usable in at most 2x the anchor's time; a repeat visit transfers under 10 KB; with the
server stopped and the browser offline the page still opens.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import threading
import time
from typing import Any

from bench._common import ROOT, create_db, drop_db, free_port, serve, table, write_section
from tests.test_browser import wait_js  # the pages' CSP refuses Playwright's eval

DB = "jointgrid_bench_fieldpage"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LINK = {"offline": False, "latency": 400, "downloadThroughput": 50_000, "uploadThroughput": 50_000}
CPU_SLOWDOWN = 4
ROUNDS = int(os.environ.get("JOINTGRID_BENCH_FIELD_ROUNDS", "3"))


class Relay:
    """A TCP relay from a local port to the server's that counts the bytes each way, and which
    request they belong to (HTTP/1.1 answers follow their requests in order on a connection)."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.down = 0
        self.up = 0
        self.exchanges: list[dict[str, Any]] = []  # {"request", "status", "up", "down"}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        sent: list[dict[str, Any]] = []  # this connection's requests, oldest first
        answered = [0]  # how many of them have an answer started

        def count_up(data: bytes) -> None:
            self.up += len(data)
            for line in REQUEST_LINE.finditer(data):
                x = {"request": line.group(1).decode(), "status": "", "up": 0, "down": 0}
                sent.append(x)
                self.exchanges.append(x)
            if sent:  # a request's bytes (its line in this chunk or an earlier one)
                sent[-1]["up"] += len(data)

        def count_down(data: bytes) -> None:
            self.down += len(data)
            at = 0
            for line in STATUS_LINE.finditer(data):
                self._add_down(sent, answered[0] - 1, line.start() - at)
                at = line.start()
                answered[0] += 1
                if answered[0] <= len(sent):
                    sent[answered[0] - 1]["status"] = line.group(1).decode()
            self._add_down(sent, answered[0] - 1, len(data) - at)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            try:
                while data := await src.read(65536):
                    (count_down if down else count_up)(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w, False), pipe(up_r, writer, True))

    @staticmethod
    def _add_down(sent: list[dict[str, Any]], i: int, n: int) -> None:
        if n and 0 <= i < len(sent):
            sent[i]["down"] += n

    def reset(self) -> None:
        self.down = self.up = 0
        self.exchanges = []

    def seen(self, path: str) -> bool:
        return any(x["request"].split("?")[0] == path for x in list(self.exchanges))


# Request and status lines (a body that happened to hold one would only shift the breakdown
# between two requests; the totals are counted apart).
REQUEST_LINE = re.compile(rb"(?:^|\r\n)(?:GET|POST|HEAD|PUT|PATCH|DELETE) (\S+) HTTP/1\.1\r\n")
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
# After a visit that the service worker controls, the browser checks the worker's script for
# an update: part of a repeat visit's bytes, so the visit waits for it (at most this long).
SW_CHECK_WAIT_S = 15.0


def visit(context: Any, url: str, relay: Relay | None = None) -> dict[str, float]:
    """Open ``url`` in a new tab, throttled; the page's timings (ms since navigation start).
    With ``relay``, the tab stays open until the browser has checked the service worker."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", LINK)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": CPU_SLOWDOWN})
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    wait_js(page, "document.documentElement.hasAttribute('data-jg-usable')", timeout=120_000)
    out = page.evaluate(
        """() => ({
            fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
            usable: Number(document.documentElement.getAttribute('data-jg-usable')),
            dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
        })"""
    )
    # The worker has stored the page's files once it controls the page (it claims its pages
    # when installed and activated): on a loaded machine that takes longer than the page.
    wait_js(
        page, "!('serviceWorker' in navigator) || !!navigator.serviceWorker.controller", 120_000
    )
    page.wait_for_timeout(1500)  # let the map layers finish
    if relay is not None:
        end = time.monotonic() + SW_CHECK_WAIT_S
        while not relay.seen("/report-sw.js") and time.monotonic() < end:
            page.wait_for_timeout(250)
        page.wait_for_timeout(500)  # its answer
    page.close()
    return {k: float(v or 0) for k, v in out.items()}


def main() -> None:
    from playwright.sync_api import sync_playwright

    from layers import keys
    from layers.db import connect

    url = create_db(DB)
    port = free_port()
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    env = {"DATABASE_URL": url, "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
    args = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    with connect(url) as c:
        c.autocommit = True
        key, _ = keys.create(c, role="grid_worker", side="510904", name="bench grid worker")
    rows: list[dict[str, Any]] = []
    offline_ok = []
    repeat_requests: dict[str, list[list[dict[str, Any]]]] = {}
    try:
        relay = Relay(port)
        base = f"http://127.0.0.1:{relay.port}"
        with serve(args, env, port, logs / "fieldpage-server.log") as proc, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(ROUNDS):
                for label, path in (("no map (anchor)", "/report?map=off"), ("page", "/report")):
                    context = browser.new_context(
                        viewport={"width": 360, "height": 740}, is_mobile=True, locale="zh-CN"
                    )
                    page = context.new_page()
                    page.goto(f"{base}/login?next={path}")
                    page.fill("#key", key)
                    relay.reset()
                    page.click("button[type=submit]")
                    page.wait_for_url(f"{base}{path}*")
                    page.close()
                    # The sign-in above already loaded the page once: measure from a fresh
                    # context's cache instead, with the cookie carried over.
                    cookies = context.cookies()
                    context.close()
                    context = browser.new_context(
                        viewport={"width": 360, "height": 740}, is_mobile=True, locale="zh-CN"
                    )
                    context.add_cookies(cookies)
                    relay.reset()
                    first = visit(context, f"{base}{path}")
                    first_bytes = relay.down + relay.up
                    relay.reset()
                    again = visit(context, f"{base}{path}", relay)
                    again_bytes = relay.down + relay.up
                    repeat_requests.setdefault(label, []).append(list(relay.exchanges))
                    rows.append(
                        {
                            "visit": label,
                            "first_kb": first_bytes / 1000,
                            "first_fcp": first["fcp"],
                            "first_usable": first["usable"],
                            "repeat_kb": again_bytes / 1000,
                            "repeat_usable": again["usable"],
                        }
                    )
                    if label == "page":
                        # No signal: the page offline and the server unreachable (the relay's
                        # target is closed for this check by pointing it at a dead port).
                        live, relay.target = relay.target, free_port()
                        context.set_offline(True)
                        tab = context.new_page()
                        try:
                            tab.goto(f"{base}{path}", timeout=30_000)
                            tab.locator("#report").wait_for(timeout=30_000)
                            offline_ok.append(True)
                        except Exception:
                            offline_ok.append(False)
                        tab.close()
                        context.set_offline(False)
                        relay.target = live
                    context.close()
            browser.close()
            assert proc.poll() is None
    finally:
        drop_db(DB)
    _report(rows, offline_ok, repeat_requests)


def _breakdown(runs: list[list[dict[str, Any]]]) -> str:
    """The last round's repeat visit of the page, request by request (bytes both ways)."""
    out = [
        {
            "request": f"`{x['request']}`",
            "answer": x["status"],
            "up B": x["up"],
            "down B": x["down"],
        }
        for x in runs[-1]
    ]
    return table(out, ["request", "answer", "up B", "down B"]) if out else "(no requests)"


def _report(
    rows: list[dict[str, Any]],
    offline_ok: list[bool],
    repeat_requests: dict[str, list[list[dict[str, Any]]]],
) -> None:
    def med(label: str, col: str) -> float:
        return statistics.median(r[col] for r in rows if r["visit"] == label)

    summary = []
    for label in ("no map (anchor)", "page"):
        summary.append(
            {
                "visit": label,
                "first visit KB": f"{med(label, 'first_kb'):.1f}",
                "first contentful paint ms": f"{med(label, 'first_fcp'):.0f}",
                "usable ms": f"{med(label, 'first_usable'):.0f}",
                "repeat visit KB": f"{med(label, 'repeat_kb'):.1f}",
                "repeat usable ms": f"{med(label, 'repeat_usable'):.0f}",
            }
        )
    ratio = med("page", "first_usable") / max(1.0, med("no map (anchor)", "first_usable"))
    repeat_kb = med("page", "repeat_kb")
    body = (
        f"Debian's Chromium on a 360 x 740 phone, throttled by the DevTools Protocol to "
        f"{LINK['downloadThroughput'] // 1000} KB/s each way with {LINK['latency']} ms latency "
        f"and the CPU slowed {CPU_SLOWDOWN}x; bytes counted on the wire by a relay (service "
        f"worker fetches included); median of {ROUNDS} rounds.\n\n"
        + table(summary, list(summary[0]))
        + f"\n\n- first visit usable: **{ratio:.2f}x** the page without its map (goal <= 2x): "
        + ("met" if ratio <= 2 else "missed")
        + f"\n- repeat visit: **{repeat_kb:.1f} KB** (goal < 10 KB): "
        + ("met" if repeat_kb < 10 else "missed")
        + f"\n- opens with no signal (offline, server unreachable): {sum(offline_ok)} of "
        f"{len(offline_ok)} rounds\n"
        + "\nWhere a repeat visit's bytes go (the page, last round; each request with its "
        "headers, the cookie included; the visit lasts until the browser has checked the "
        "service worker's script):\n\n" + _breakdown(repeat_requests.get("page", [])) + "\n"
    )
    print(body)
    write_section("fieldpage", "The grid worker's page on a phone's link", body)


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
