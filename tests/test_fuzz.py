"""Fuzz the whole API from its own OpenAPI document (schemathesis) against a live server.

Every operation in ``/openapi.json`` gets schema-valid and schema-breaking requests, once with an
admin key and once with no key; the operations that take a case id run again on a real case, and
``/api/v1/locate`` again on a real point, so that the fuzzing reaches past the 404 and 422
answers. No answer may be a 5xx, none may take longer than a few seconds, and every 4xx outside
``/ogc`` and ``/open311`` (which answer with their own standards' error bodies) has the
contract's body ``{"code", "message", "detail"}``; the pages for people (``/login``, ``/map``,
…) may instead answer an HTML page, but ``/api/`` and ``/healthz`` never.

Bounded: a fixed number of examples per operation and mode, derandomized (the same requests on
every run), no shrinking, a per-request timeout and a wall-clock budget for the whole run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests import scratch_cluster as sc
from tests.geo import ANJU, point_inside

pytestmark = pytest.mark.postgis

MAX_EXAMPLES = 20  # per operation, per generation mode (positive, negative), per caller
REQUEST_TIMEOUT_S = 10.0
SLOW_S = 5.0  # an answer slower than this counts as a hang
BUDGET_S = 150.0  # the whole fuzz run, both callers
OWN_ERROR_BODIES = ("/ogc", "/open311")  # OGC exceptions and Open311 error arrays
JSON_ONLY = ("/api/", "/healthz")  # never an HTML error page, unlike the pages for people


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server on a database of its own, an admin key, and a real case and point."""
    server_url = sc.require_server_url()
    name = f"jointgrid_fuzz_{uuid.uuid4().hex[:8]}"
    url = sc.fresh_database(server_url, name)
    try:
        admin, _ = sc.make_key(url, role="admin", name="fuzz admin")
        log = tmp_path_factory.mktemp("fuzz") / "server.log"
        with sc.ServerProcess(url, log) as server:
            server.start()
            lon, lat = point_inside(ANJU, 600, 0.5)
            made = httpx.post(
                f"{server.base}/api/v1/incidents",
                json={"lon": lon, "lat": lat, "category": "land_dispute"},
                headers=sc.bearer(admin),
                timeout=30,
            )
            assert made.status_code == 201, made.text
            yield {
                "base": server.base,
                "admin": admin,
                "case_id": made.json()["id"],
                "point": (lon, lat),
                "server": server,
            }
    finally:
        sc.drop_database(server_url, name)


@dataclass
class Findings:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)
    unsatisfiable: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    skipped_for_time: int = 0


def _check(path: str, resp: schemathesis.Response, elapsed: float) -> str:
    """What is wrong with one answer, or an empty string."""
    status = resp.status_code
    if status >= 500:
        return f"{status} {resp.text[:300]}"
    if elapsed > SLOW_S:
        return f"took {elapsed:.1f} s"
    if status >= 400 and not path.startswith(OWN_ERROR_BODIES):
        media = (resp.headers.get("content-type") or [""])[0]  # schemathesis: lists of values
        html = media.startswith("text/html")
        if html and not path.startswith(JSON_ONLY):
            return ""  # a page for people (e.g. the sign-in form shown again with the reason)
        try:
            body = resp.json()
        except ValueError:
            return f"{status} body is not JSON: {resp.text[:200]}"
        if not (
            isinstance(body, dict)
            and {"code", "message", "detail"} <= set(body)
            and isinstance(body["code"], str)
            and isinstance(body["message"], str)
        ):
            return f"{status} body off contract: {resp.text[:300]}"
    return ""


def _run(
    op: Any,
    mode: GenerationMode,
    call: Callable[[Any], tuple[schemathesis.Response, float]],
    f: Findings,
    deadline: float,
    **fixed: Any,
) -> None:
    """Up to MAX_EXAMPLES requests for one operation in one mode; failures are collected."""

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,  # timing is checked per request instead, without re-runs
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are listed instead
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=op.as_strategy(generation_mode=mode, **fixed))
    def test(case: Any) -> None:
        if time.monotonic() > deadline:
            f.skipped_for_time += 1
            return
        resp, elapsed = call(case)
        f.requests += 1
        f.statuses[str(resp.status_code)] += 1
        f.slowest_s = max(f.slowest_s, elapsed)
        problem = _check(op.path, resp, elapsed)
        if problem:
            f.problems.append(f"{op.label} [{mode.value}]: {problem}\n  {case.as_curl_command()}")

    try:
        test()
    except Unsatisfiable:  # e.g. no way to break the schema of an operation without inputs
        f.unsatisfiable.append(f"{op.label} [{mode.value}]")
    f.operations.add(op.label)


@pytest.mark.parametrize("caller", ["admin", "anonymous"])
def test_fuzz_the_openapi_document(fuzz_target: dict[str, Any], caller: str) -> None:
    base = fuzz_target["base"]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", timeout=30)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 9, [op.label for op in operations]
    headers = sc.bearer(fuzz_target["admin"]) if caller == "admin" else {}
    session = requests.Session()

    def call(case: Any) -> tuple[schemathesis.Response, float]:
        t0 = time.monotonic()
        resp = case.call(base_url=base, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S)
        return resp, time.monotonic() - t0

    f = Findings()
    t0 = time.monotonic()
    deadline = t0 + BUDGET_S / 2
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(op, mode, call, f, deadline)
            params = {p.name for p in op.path_parameters}
            if "case_id" in params:
                _run(
                    op, mode, call, f, deadline, path_parameters={"case_id": fuzz_target["case_id"]}
                )
            if op.path == "/api/v1/locate" and mode is GenerationMode.POSITIVE:
                lon, lat = fuzz_target["point"]
                _run(op, mode, call, f, deadline, query={"lon": lon, "lat": lat})
    elapsed = time.monotonic() - t0
    health = httpx.get(f"{base}/healthz", timeout=5)

    figures = {
        "caller": caller,
        "operations": len(f.operations),
        "max_examples_per_operation_and_mode": MAX_EXAMPLES,
        "requests": f.requests,
        "statuses": dict(sorted(f.statuses.items())),
        "no_negative_form": len(f.unsatisfiable),
        "slowest_s": round(f.slowest_s, 3),
        "elapsed_s": round(elapsed, 1),
        "problems": len(f.problems),
        "schemathesis": schemathesis.SCHEMATHESIS_VERSION,
    }
    sc.record_figures(f"fuzz_{caller}", figures)
    print(f"\n[reliability] fuzz_{caller}: {json.dumps(figures, sort_keys=True)}")
    problems_file = sc.ARTIFACT.parent / f"fuzz-{caller}-problems.txt"
    if f.problems:
        problems_file.write_text("\n".join(f.problems) + "\n")
    else:
        problems_file.unlink(missing_ok=True)
    assert not f.skipped_for_time, f"the fuzz run overran its {BUDGET_S / 2} s budget"
    assert health.status_code == 200, "the server is unwell after the fuzzing"
    assert not f.problems, f"{len(f.problems)} problem(s):\n" + "\n".join(f.problems[:15])
    assert f.requests >= 10 * len(f.operations), "too few requests reached the server"
