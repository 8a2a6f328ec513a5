"""Fuzz the whole API from its own OpenAPI document (schemathesis) against a live server.

Every operation in ``/openapi.json``, in all of schemathesis's phases (examples, coverage,
fuzzing, stateful) and both generation modes (positive: schema-valid requests; negative:
schema-breaking ones), three times: as admin, as an operator of one side, and with no key.
The operations that take a case id get a real case, so the fuzzing reaches past the 404.

No answer may be a 5xx (``not_a_server_error``), none may take 5 s or more
(``max_response_time``), and every 4xx has its face's error body (``tests/fuzz_hooks.py``).

Bounded and reproducible: a few examples per operation and phase, deterministic generation
(the same requests on every run), and a wall-clock budget. The run is schemathesis's own
engine (its ``run`` command), which is the one place that drives all four phases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import scratch_cluster as sc
from tests.geo import ANJU, point_inside

pytestmark = pytest.mark.postgis

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("examples", "coverage", "fuzzing", "stateful")
MAX_EXAMPLES = 4  # per operation and phase (and mode)
SLOW_S = 5.0  # an answer this slow counts as a hang
BUDGET_S = 60.0  # one caller's whole run; the three together stay near 90 s on a quiet machine
CHECKS = "not_a_server_error,error_body_of_the_face"  # and --max-response-time


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server on a database of its own, keys for each caller, and a real case."""
    server_url = sc.require_server_url()
    name = f"jointgrid_fuzz_{uuid.uuid4().hex[:8]}"
    url = sc.fresh_database(server_url, name)
    try:
        admin, _ = sc.make_key(url, role="admin", name="fuzz admin")
        operator, _ = sc.make_key(url, role="operator", side=ANJU, name="fuzz operator")
        folder = tmp_path_factory.mktemp("fuzz")
        with sc.ServerProcess(url, folder / "server.log") as server:
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
                "keys": {"admin": admin, "operator": operator, "anonymous": None},
                "case_id": made.json()["id"],
                "folder": folder,
                "server": server,
            }
    finally:
        sc.drop_database(server_url, name)


def _summarise(report: Path) -> dict[str, Any]:
    """Requests, statuses, modes, phases and the slowest answer, from the NDJSON report."""
    statuses: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    phases: dict[str, bool] = {}
    operations: set[str] = set()
    slowest = 0.0
    failures: list[str] = []
    for line in report.read_text().splitlines():
        event = json.loads(line)
        ((kind, data),) = event.items()
        if kind == "PhaseFinished":
            phases[data["phase"]["name"]] = data["phase"]["is_enabled"]
        if kind != "ScenarioFinished":
            continue
        recorder = data["recorder"]
        operations.add(recorder["label"])
        for case in recorder.get("cases", {}).values():
            mode = case["value"]["meta"].get("generation", {}).get("mode")
            if mode:
                modes[mode] += 1
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response") or {}
            if "status_code" in response:
                statuses[str(response["status_code"])] += 1
                slowest = max(slowest, response.get("elapsed") or 0.0)
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"] == "failure":
                    value = recorder["cases"].get(case_id, {}).get("value", {})
                    failures.append(f"{recorder['label']}: {check['name']} {value.get('path')}")
    return {
        "operations": len(operations),
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "modes": dict(modes),
        "phases": phases,
        "slowest_s": round(slowest, 3),
        "failures": failures,
    }


@pytest.mark.parametrize("caller", ["admin", "operator", "anonymous"])
def test_fuzz_every_operation_in_every_phase(fuzz_target: dict[str, Any], caller: str) -> None:
    base = fuzz_target["base"]
    folder: Path = fuzz_target["folder"]
    report = folder / f"{caller}.ndjson"
    config = folder / f"{caller}.toml"
    # A real case for {case_id}, so that transitions, events and popups are reached.
    config.write_text(f'[parameters]\ncase_id = "{fuzz_target["case_id"]}"\n')
    key = fuzz_target["keys"][caller]
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{base}/openapi.json",
        "--phases", ",".join(PHASES),
        "--mode", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--checks", CHECKS,
        "--max-response-time", str(SLOW_S),
        "--request-timeout", "10",
        "--continue-on-failure",
        "--workers", "1",
        "--report", "ndjson",
        "--report-ndjson-path", str(report),
    ]  # fmt: skip
    if key:
        command += ["--header", f"Authorization: Bearer {key}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks"}
    t0 = time.monotonic()
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUDGET_S * 3
    )
    elapsed = time.monotonic() - t0
    output = done.stdout[-6000:] + done.stderr[-2000:]
    assert report.exists(), output
    figures = _summarise(report)
    health = httpx.get(f"{base}/healthz", timeout=5)
    sc.record_figures(
        f"fuzz_{caller}",
        {
            **{k: v for k, v in figures.items() if k != "failures"},
            "problems": len(figures["failures"]),
            "elapsed_s": round(elapsed, 1),
            "max_examples": MAX_EXAMPLES,
        },
    )
    print(f"\n[reliability] fuzz_{caller}: {json.dumps(figures, sort_keys=True)[:2000]}")
    assert done.returncode == 0, "\n".join(figures["failures"][:20]) + "\n" + output
    assert not [s for s in figures["statuses"] if s.startswith("5")], figures["statuses"]
    assert figures["slowest_s"] < SLOW_S
    ran = {p for p in PHASES if figures["phases"].get(p)}
    # With no key every operation but a few public ones answers 401, and the stateful phase
    # then has no link to follow: schemathesis leaves it out by itself.
    assert ran == set(PHASES) - ({"stateful"} if key is None else set()), figures["phases"]
    assert {"positive", "negative"} <= set(figures["modes"]), figures["modes"]
    assert figures["operations"] >= 20 and figures["requests"] >= 10 * figures["operations"]
    assert health.status_code == 200, "the server is unwell after the fuzzing"
    assert elapsed < BUDGET_S, f"the {caller} run took {elapsed:.0f} s (budget {BUDGET_S:.0f} s)"
