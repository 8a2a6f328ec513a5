#!/usr/bin/env python3
"""Send a set of hostile requests to a running JointGrid and count how it answered.

    .venv/bin/python scripts/probe_hostile.py --base http://127.0.0.1:8101 --key jg_...

Prints, as JSON: probes tried, answers by class (2xx/3xx, 4xx, 5xx), hangs (no answer within
5 s), connections dropped without ``Connection: close``, and messages leaked (an answer that
carries PostgreSQL's or the driver's own text, or a traceback). Every 5xx, hang, drop and leak
is listed after the counts. Exit status 1 when any of those is not zero.

The probes are the classes of docs/reliability.md ("Hostile input"): a body's content type,
NaN and Infinity, lone surrogates, deep nesting, cursors (forged, tampered, huge numbers) on
every OGC collection, the map's refresh, body sizes per route, unknown paths and methods
under each face, and odd paths and query values. They run on one keep-alive connection, as a
browser or a phone's app would, so a connection dropped after an answer is seen.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlparse

HANG_S = 5.0
LEAKS = re.compile(
    r"invalid input syntax|out of range for type|violates .* constraint|DETAIL:|HINT:|"
    r"psycopg|Traceback|File \"|connection to server|server at \"|syntax error at|"
    r"relation \"|column \"|ERROR:|couldn't get a connection|PoolTimeout|OperationalError",
)
LON, LAT = 105.58, 30.27  # inside 安居区 (510904)
GOOD: dict[str, Any] = {"lon": LON, "lat": LAT, "category": "land_dispute"}
JSON_ROUTES = ("/api/v1/incidents", "/api/v1/route", "/api/v1/incidents/{case}/transitions")

Probe = tuple[str, str, bytes | None, dict[str, str]]  # method, target, body, headers


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _json(method: str, target: str, raw: bytes | str, ctype: str = "application/json") -> Probe:
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return method, target, body, {"Content-Type": ctype}


def probes(case: str, collections: list[str]) -> Iterator[Probe]:
    """The hostile requests, built for one real case id and the server's collections."""
    routes = [r.replace("{case}", case) for r in JSON_ROUTES]
    good = json.dumps(GOOD)
    transition = json.dumps({"action": "accept", "side": "510904", "note": "ok"})

    # 1. content types on JSON routes
    for path in routes:
        body = transition if "transitions" in path else good
        for ctype in (
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
            "multipart/form-data",
            "application/xml",
            "application/json-patch",
            "text/json",
            "*/*",
        ):
            yield _json("POST", path, body, ctype)

    # 2. NaN, Infinity and numbers beyond a double in every field
    fields = [
        "lon",
        "lat",
        "category",
        "severity",
        "description",
        "crs",
        "occurred_at",
        "parties_sides",
        "location",
        "extent",
        "reporter",
    ]
    for path in routes[:2]:
        for name in fields:
            for bad in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400"):
                yield _json("POST", path, json.dumps({**GOOD, name: "X"}).replace('"X"', bad))
            yield _json("POST", path, json.dumps({**GOOD, name: "NaN"}))
    for name in ("action", "side", "note", "due_at", "into"):
        for bad in ("NaN", "Infinity", "1e400"):
            yield _json(
                "POST",
                routes[2],
                transition.replace('"ok"', "0").replace("}", f', "{name}": {bad}}}')
                if name != "note"
                else transition.replace('"ok"', bad),
            )

    # 3. lone surrogates in every string, as JSON escapes and as raw bytes
    for path in routes[:2]:
        for name, shape in [
            ("description", "S"),
            ("category", "S"),
            ("crs", "S"),
            ("severity", "S"),
            ("reporter", {"name": "S"}),
            ("reporter", {"phone": "S"}),
            ("parties_sides", ["S"]),
            ("occurred_at", "S"),
        ]:
            for s in ("\\ud800", "\\udfff", "a\\ud83d", "\\ude00b"):
                raw = json.dumps({**GOOD, name: shape}).replace('"S"', f'"{s}"')
                yield _json("POST", path, raw)
        yield _json(
            "POST", path, good.replace('"land_dispute"', '"\xed\xa0\x80"').encode("latin-1")
        )
        yield _json("POST", path, json.dumps({**GOOD, "\\ud800": 1}).replace("\\\\", "\\"))
    for s in ("\\ud800", "x\\udfff"):
        yield _json("POST", routes[2], transition.replace('"ok"', f'"{s}"'))
        yield _json("POST", routes[2], transition.replace('"510904"', f'"{s}"'))

    # 4. depth: extents, whole bodies, parties
    for depth in (33, 100, 300, 5000):
        nested = "[" * depth + "]" * depth
        extent = json.dumps({**GOOD, "extent": {"type": "Polygon", "coordinates": "X"}})
        yield _json("POST", routes[0], extent.replace('"X"', nested))
        yield _json("POST", routes[1], extent.replace('"X"', nested))
        yield _json("POST", routes[1], nested)
        yield _json("POST", routes[1], '{"a":' * depth + "1" + "}" * depth)
    for depth in (10, 30):
        coords = "[" * depth + "105.5,30.2" + "]" * depth
        yield _json(
            "POST",
            routes[1],
            json.dumps({**GOOD, "extent": {"type": "LineString", "coordinates": "X"}}).replace(
                '"X"', coords
            ),
        )

    # 5. cursors: the case list and every OGC collection
    deep = _b64(b"[" * 5000 + b"]" * 5000)
    list_cursors = [
        deep,
        deep + ".AAAA",
        "garbage",
        "",
        "." * 50,
        "x" * 10_000,
        _b64(json.dumps(["xx", "yy"]).encode()),
        _b64(json.dumps(["2026-01-01T00:00:00+00:00", "' OR 1=1 --"]).encode()),
        _b64(b'["\\ud800", "x"]'),
        _b64(b"[1e400, 2]"),
    ]
    for c in list_cursors:
        yield "GET", "/api/v1/incidents?" + urlencode({"cursor": c}), None, {}
    numbers = [str(2**64), str(2**63), "9" * 5000, "-1", "1e999", "NaN", "0x10"]
    for cid in collections:
        for n in numbers:
            for values in (["n", n, "a"], ["p", n, "a", "b"], ["n", n]):
                c = _b64(json.dumps(values).encode())
                yield "GET", f"/ogc/collections/{cid}/items?" + urlencode({"cursor": c}), None, {}
        yield "GET", f"/ogc/collections/{cid}/items?cursor={deep}", None, {}
        yield "GET", f"/ogc/collections/{cid}/items?limit=99999999999999999999999", None, {}
        yield "GET", f"/ogc/collections/{cid}/items?bbox=nan,nan,nan,nan", None, {}
        yield "GET", f"/ogc/collections/{cid}/items?bbox=1e999,0,1,1", None, {}
        yield "GET", f"/ogc/collections/{cid}/items?datetime=99999-01-01T00:00:00Z", None, {}
        yield "GET", f"/ogc/collections/{cid}/items/{quote(chr(0xFFFF) * 3)}", None, {}

    # 6. the map's refresh and other numbers in query strings
    for v in ("nan", "NaN", "inf", "-inf", "Infinity", "1e999", "9" * 5000, "0x10", "-0"):
        yield "GET", f"/map?refresh={quote(v)}", None, {}
        yield "GET", f"/api/v1/locate?lon={quote(v)}&lat=30.2", None, {}
        yield "GET", f"/api/v1/incidents?limit={quote(v)}", None, {}
        yield "GET", f"/map/data/incidents?bbox={quote(v)},30,106,31", None, {}

    # 7. query values and paths with odd bytes
    for v in ("%ED%A0%80", "%00", "%FF%FE", "%C0%AF", "a" * 20_000):
        yield "GET", f"/api/v1/incidents?category={v}&side={v}&since={v}", None, {}
        yield "GET", f"/api/v1/incidents/{v}", None, {}
        yield "GET", f"/api/v1/incidents/{v}/events", None, {}
        yield (
            "GET",
            f"/ogc/collections/incidents/items?status={v}&filter=status%3D%27{v}%27",
            None,
            {},
        )
        yield "GET", f"/open311/v2/requests.json?service_code={v}&start_date={v}", None, {}
        yield "GET", f"/open311/v2/requests/{v}.json", None, {}
        yield "GET", f"/api/v1/locate?lon=105.6&lat=30.2&crs={v}", None, {}
    for f in (
        '{"op":"=","args":[{"property":"status"},NaN]}',
        "[" * 3000 + "]" * 3000,
        '{"op":"=","args":[{"property":"status"},"\\ud800"]}',
        '{"op":' * 500 + "1" + "}" * 500,
    ):
        yield (
            "GET",
            "/ogc/collections/incidents/items?"
            + urlencode({"filter-lang": "cql2-json", "filter": f}),
            None,
            {},
        )
    yield (
        "GET",
        "/ogc/collections/incidents/items?"
        + urlencode({"filter": "(" * 3000 + "status = 'x'" + ")" * 3000}),
        None,
        {},
    )

    # 8. sizes per route, and each face's unknown paths and methods
    big = b"x" * (1024 * 1024 + 10)
    for path in (*routes, "/open311/v2/requests.json", "/login", "/ogc/collections"):
        yield "POST", path, big, {"Content-Type": "application/json"}
    yield (
        "POST",
        routes[2],
        b'{"note": "' + b"x" * 20_000 + b'"}',
        {"Content-Type": "application/json"},
    )
    for path in (
        "/open311/v2/nosuch.json",
        "/open311/nosuch",
        "/ogc/nosuch",
        "/api/v1/nosuch",
        "/nosuch",
    ):
        yield "GET", path, None, {}
    for method in ("DELETE", "PUT", "PATCH"):
        for path in ("/open311/v2/services.json", "/ogc/collections", "/api/v1/route", routes[0]):
            yield method, path, b"{}", {"Content-Type": "application/json"}

    # 9. Open311's form, the sign-in form and headers
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (
        b"service_code=theft&lat=nan&long=inf",
        b"service_code=%ED%A0%80&lat=30.2&long=105.6",
        b"service_code=theft&lat=30.2&long=105.6&description=%00",
        b"lat=" + b"9" * 5000 + b"&long=1&service_code=theft",
    ):
        yield "POST", "/open311/v2/requests.json", body, form
    yield (
        "POST",
        "/open311/v2/requests.json",
        b'{"service_code":"theft"}',
        {"Content-Type": "application/json"},
    )
    yield "POST", "/login", b"key=%ED%A0%80&csrf_token=x", form
    yield "POST", "/login", b"key=" + b"x" * 10_000, form
    yield "POST", "/login", b'{"key": "x"}', {"Content-Type": "application/json"}
    yield (
        "POST",
        routes[0],
        good.encode(),
        {"Content-Type": "application/json", "Idempotency-Key": "k" * 5000},
    )


def _leak(text: str) -> str | None:
    m = LEAKS.search(text)
    return m.group(0) if m else None


class Prober:
    def __init__(self, base: str, key: str | None) -> None:
        url = urlparse(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}
        self.conn: http.client.HTTPConnection | None = None
        self.counts: Counter[str] = Counter()
        self.findings: list[str] = []

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=HANG_S)
        return self.conn

    def send(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        conn = self._connect()
        conn.request(method, target, body=body, headers={**self.auth, **headers})
        resp = conn.getresponse()
        data = resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
        if got.get("connection", "").lower() == "close":
            conn.close()
            self.conn = None
        return resp.status, data, got

    def probe(self, p: Probe) -> None:
        method, target, body, headers = p
        label = f"{method} {target[:120]}"
        self.counts["probes"] += 1
        t0 = time.monotonic()
        try:
            status, data, _ = self.send(method, target, body, headers)
        except TimeoutError:
            self.counts["hangs"] += 1
            self.findings.append(f"hang: {label}")
            self._reset()
            return
        except (http.client.HTTPException, ConnectionError) as exc:
            # a connection closed without saying so; the request may have been answered
            self.counts["dropped"] += 1
            self.findings.append(f"dropped ({type(exc).__name__}): {label}")
            self._reset()
            return
        if time.monotonic() - t0 > HANG_S:
            self.counts["hangs"] += 1
            self.findings.append(f"slow: {label}")
        cls = f"{status // 100}xx"
        self.counts["5xx" if status >= 500 else "4xx" if status >= 400 else "2xx/3xx"] += 1
        if status >= 500:
            self.findings.append(f"{status}: {label}: {data[:200]!r}")
        leaked = _leak(data.decode("utf-8", "replace"))
        if leaked:
            self.counts["leaked"] += 1
            self.findings.append(f"leak {leaked!r} ({cls}): {label}: {data[:200]!r}")

    def _reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", default="http://127.0.0.1:8000")
    ap.add_argument("--key", help="an admin key (jointgrid apikey create --role admin)")
    args = ap.parse_args()
    prober = Prober(args.base, args.key)
    status, data, _ = prober.send(
        "POST", "/api/v1/incidents", json.dumps(GOOD).encode(), {"Content-Type": "application/json"}
    )
    if status not in (200, 201):
        print(f"could not make a case to probe with ({status}): {data[:300]!r}", file=sys.stderr)
        return 2
    case = json.loads(data)["id"]
    status, data, _ = prober.send("GET", "/ogc/collections", None, {})
    collections = [c["id"] for c in json.loads(data)["collections"]] if status == 200 else []
    t0 = time.monotonic()
    for p in probes(case, collections):
        prober.probe(p)
    c = prober.counts
    figures = {
        "probes": c["probes"],
        "2xx/3xx": c["2xx/3xx"],
        "4xx": c["4xx"],
        "5xx": c["5xx"],
        "hangs": c["hangs"],
        "dropped_connections": c["dropped"],
        "messages_leaked": c["leaked"],
        "collections": len(collections),
        "seconds": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(figures, ensure_ascii=False))
    for line in prober.findings:
        print("  " + line)
    return 1 if c["5xx"] or c["hangs"] or c["dropped"] or c["leaked"] else 0


if __name__ == "__main__":
    sys.exit(main())
