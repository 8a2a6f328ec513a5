"""The audit trail against the database's own superuser, on real PostGIS.

Each test tampers as a hostile administrator would (the suite connects as the cluster's
superuser, in the throwaway test database; every change is rolled back), then runs
``verify``. Each is parametrised with the check it names switched off, and then the tampering
must go unnoticed: so the check is what catches it, and the test can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.usecases import trail
from gis import checkpoint as cp
from gis.workflow import ladder_of
from tests.geo import ANJU, TONGNAN, point_inside

ROOT = Path(__file__).resolve().parents[1]


def new_case(client: Any, fraction: float, side: str = ANJU, metres: float = 300) -> dict:  # type: ignore[type-arg]
    lon, lat = point_inside(side, metres, fraction)
    r = client.post("/api/v1/incidents", json={"lon": lon, "lat": lat, "category": "land_dispute"})
    assert r.status_code == 201, r.text
    return r.json()


def move(client: Any, case: dict, action: str, side: str, **extra: Any) -> Any:  # type: ignore[type-arg]
    r = client.post(
        f"/api/v1/incidents/{case['id']}/transitions",
        json={"action": action, "side": side, **extra},
    )
    return r


def walk(client: Any, case: dict, steps: list[tuple[str, str, str | None]]) -> None:  # type: ignore[type-arg]
    for action, side, note in steps:
        r = move(client, case, action, side, note=note)
        assert r.status_code == 200, r.text


TO_IN_PROGRESS = [("accept", ANJU, None), ("dispatch", ANJU, None), ("start", ANJU, None)]
TO_CLOSED = [
    *TO_IN_PROGRESS,
    ("resolve", ANJU, "boundary stones reset"),
    ("verify", ANJU, None),
    ("verify", TONGNAN, None),
    ("close", TONGNAN, None),
]


@pytest.fixture()
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return trail.load_key(tmp_path / "audit" / "checkpoint.key")


@pytest.fixture()
def pem(key: Ed25519PrivateKey) -> bytes:
    return cp.public_pem(key.public_key()).encode()


@pytest.fixture()
def cases(client: Any, conn: Any, catalogue: Any, key: Ed25519PrivateKey, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    """Four cases, walked through the workflow, and a signed checkpoint over them."""
    out = {
        "closed": new_case(client, 0.31),
        "in_progress": new_case(client, 0.37),
        "resolved": new_case(client, 0.43),
        "reported": new_case(client, 0.49),
    }
    walk(client, out["closed"], TO_CLOSED)
    walk(client, out["in_progress"], TO_IN_PROGRESS)
    walk(client, out["resolved"], [*TO_IN_PROGRESS, ("resolve", ANJU, "done")])
    made = trail.make_checkpoint(conn, key, folder=tmp_path / "checkpoints")
    assert made is not None and made.cases >= 4
    return out


def verify(conn: Any, catalogue: Any, pem: bytes, off: tuple[str, ...] = (), **kw: Any) -> Any:
    return trail.verify(
        conn,
        ladder=ladder_of(catalogue.escalation),
        public_pem=pem,
        checks=[c for c in trail.CHECKS if c not in off],
        **kw,
    )


def kinds(rep: Any, code: str) -> set[str]:
    return {f["kind"] for f in rep.findings if f["case"] == code}


def as_replica(conn: Any) -> None:
    """What a superuser does to get round the trail's triggers."""
    conn.execute("SET LOCAL session_replication_role = replica")


def recompute_chain(conn: Any, case_id: str) -> None:
    """The superuser's rewrite: every hash of the case recomputed with incident_event_digest."""
    conn.execute(
        "DO $$ DECLARE r incident_events; prev bytea; BEGIN"
        " FOR r IN SELECT * FROM incident_events WHERE incident_id = '" + case_id + "'"
        "  ORDER BY seq LOOP"
        "  UPDATE incident_events SET prev_hash = prev, hash = incident_event_digest(prev, r)"
        "   WHERE id = r.id;"
        "  prev := incident_event_digest(prev, r);"
        " END LOOP; END $$"
    )


def test_an_untouched_trail_verifies(conn: Any, catalogue: Any, pem: bytes, cases: dict) -> None:  # type: ignore[type-arg]
    rep = verify(conn, catalogue, pem)
    named = rep.cases_named()
    assert not {c["code"] for c in cases.values()} & named, rep.findings
    assert rep.checkpoint is not None and rep.checkpoint["seq"] == 1
    assert rep.covered >= 4 and not rep.checkpoint_problems


@pytest.mark.parametrize("off", [(), ("checkpoint",)], ids=["checked", "checkpoint-off"])
def test_an_edited_event_with_its_chain_recomputed(conn, catalogue, pem, cases, off) -> None:  # type: ignore[no-untyped-def]
    case = cases["closed"]
    as_replica(conn)
    conn.execute(
        "UPDATE incident_events SET note = 'nothing was found' WHERE incident_id = %s AND seq = 3",
        (case["id"],),
    )
    recompute_chain(conn, case["id"])
    rep = verify(conn, catalogue, pem, off)
    if off:  # the chain holds and the state agrees: only the checkpoint can tell
        assert case["code"] not in rep.cases_named()
    else:
        assert kinds(rep, case["code"]) == {"checkpoint"}
        f = next(f for f in rep.findings if f["case"] == case["code"])
        assert f["problem"].startswith("changed") and "event 8" in f["problem"]


@pytest.mark.parametrize("off", [(), ("checkpoint",), ("state",), ("checkpoint", "state")], ids=str)
def test_the_last_event_deleted_as_replica(conn, catalogue, pem, cases, off) -> None:  # type: ignore[no-untyped-def]
    case = cases["closed"]
    as_replica(conn)
    n = conn.execute("SELECT count(*) AS n FROM incident_events").fetchone()["n"]
    conn.execute(
        "DELETE FROM incident_events WHERE incident_id = %s AND action = 'close'", (case["id"],)
    )
    assert conn.execute("SELECT count(*) AS n FROM incident_events").fetchone()["n"] == n - 1
    rep = verify(conn, catalogue, pem, off)
    # the checkpoint sees the trail shortened; the replay sees 'closed' with no close event
    assert kinds(rep, case["code"]) == {"checkpoint", "state"} - set(off)
    if "checkpoint" not in off:
        assert any("truncated: its trail now ends at event 7" in f["problem"] for f in rep.findings)


@pytest.mark.parametrize("off", [(), ("checkpoint",), ("state",), ("checkpoint", "state")], ids=str)
def test_one_cases_events_truncated(conn, catalogue, pem, cases, off) -> None:  # type: ignore[no-untyped-def]
    case = cases["in_progress"]
    as_replica(conn)
    conn.execute("DELETE FROM incident_events WHERE incident_id = %s", (case["id"],))
    rep = verify(conn, catalogue, pem, off)
    assert kinds(rep, case["code"]) == {"checkpoint", "state"} - set(off)
    msgs = [f["problem"] for f in rep.findings if f["case"] == case["code"]]
    if "state" not in off:
        assert "its trail has no events" in msgs
    if "checkpoint" not in off:
        assert any(m.startswith("truncated: all its events are gone") for m in msgs)


@pytest.mark.parametrize("off", [(), ("checkpoint",), ("state",), ("checkpoint", "state")], ids=str)
def test_a_case_deleted_with_or_without_its_trail(conn, catalogue, pem, cases, off) -> None:  # type: ignore[no-untyped-def]
    row_only, whole = cases["resolved"], cases["reported"]
    as_replica(conn)
    conn.execute("DELETE FROM incidents WHERE id = %s", (row_only["id"],))
    conn.execute("DELETE FROM incident_events WHERE incident_id = %s", (whole["id"],))
    conn.execute("DELETE FROM incidents WHERE id = %s", (whole["id"],))
    rep = verify(conn, catalogue, pem, off)
    # the case row gone, its events left: named by its id (its code went with the row)
    assert kinds(rep, row_only["id"]) == {"state"} - set(off)
    assert kinds(rep, whole["id"]) == {"checkpoint"} - set(off)
    if "checkpoint" not in off:
        assert any(
            f["problem"].startswith("deleted") for f in rep.findings if f["case"] == whole["id"]
        )


@pytest.mark.parametrize("off", [(), ("state",)], ids=["checked", "state-off"])
def test_a_status_changed_with_no_event(conn, catalogue, pem, cases, off) -> None:  # type: ignore[no-untyped-def]
    case = cases["in_progress"]
    conn.execute("SET LOCAL ROLE jointgrid_app")  # the server's own role may do this
    conn.execute("UPDATE incidents SET status = 'closed' WHERE id = %s", (case["id"],))
    conn.execute("RESET ROLE")
    rep = verify(conn, catalogue, pem, off)
    if off:
        assert case["code"] not in rep.cases_named()
    else:
        assert kinds(rep, case["code"]) == {"state"}
        f = next(f for f in rep.findings if f["case"] == case["code"])
        assert f["problem"] == "status is closed but its trail says in_progress"


@pytest.mark.parametrize("check_on", [True, False], ids=["checked", "check-off"])
def test_the_server_refuses_a_transition_on_a_drifted_case(  # type: ignore[no-untyped-def]
    client, conn, cases, monkeypatch, caplog, check_on
):
    case = cases["in_progress"]
    conn.execute(
        "UPDATE incidents SET status = 'resolved', due_at = due_at + interval '30 days'"
        " WHERE id = %s",
        (case["id"],),
    )
    if not check_on:
        monkeypatch.setattr(trail, "refuse_drift", lambda *a, **k: None)
    r = move(client, case, "verify", ANJU)
    if check_on:
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["code"] == "case_trail_drift"
        assert "status is resolved but its trail says in_progress" in body["detail"]["problems"]
        assert any("differs from its audit trail" in m for m in caplog.messages)
        assert client.get(f"/api/v1/incidents/{case['id']}").json()["status"] == "resolved"
    else:  # without the check the forged state is acted on
        assert r.status_code == 200


@pytest.mark.parametrize("sig_on", [True, False], ids=["checked", "signature-off"])
def test_a_forged_checkpoint_in_the_database_is_not_used(  # type: ignore[no-untyped-def]
    conn, catalogue, pem, cases, monkeypatch, sig_on
):
    last = conn.execute(
        "SELECT * FROM audit_checkpoints WHERE origin = 'local' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    st = json.loads(last["statement"])
    forged = {**st, "seq": st["seq"] + 1, "prev_root": st["root"], "root": "ab" * 32}
    conn.execute(
        "INSERT INTO audit_checkpoints (origin, key_id, public_key, seq, made_at, cases, events,"
        " root, statement, signature) VALUES ('local', %s, %s, %s, now(), %s, %s, %s, %s, %s)",
        (
            last["key_id"], last["public_key"], forged["seq"], st["cases"], st["events"],
            bytes.fromhex(forged["root"]), cp.statement_bytes(forged).decode(), last["signature"],
        ),
    )  # fmt: skip
    if not sig_on:
        monkeypatch.setattr(cp, "verify_signature", lambda *a: True)
    rep = verify(conn, catalogue, pem)
    if sig_on:
        assert rep.checkpoint["seq"] == st["seq"]  # the good one before it
        assert any("forged or altered" in p for p in rep.checkpoint_problems)
    else:
        assert not any("forged" in p for p in rep.checkpoint_problems)


def test_forged_files_and_files_of_another_key_are_refused(  # type: ignore[no-untyped-def]
    conn, catalogue, pem, cases, tmp_path, monkeypatch
):
    files = trail.export_checkpoints(conn, since=None, folder=tmp_path / "out")
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**doc, "statement": {**doc["statement"], "cases": 1}}))
    with pytest.raises(cp.CheckpointRefused, match="forged or altered"):
        trail.import_checkpoints(conn, [forged], side=TONGNAN, public_pem=pem)
    stranger = Ed25519PrivateKey.generate()
    theirs = tmp_path / "stranger.json"
    st = {**doc["statement"], "key_id": cp.key_id(cp.raw_public(stranger.public_key()))}
    theirs.write_text(json.dumps(cp.to_file(st, cp.sign(st, stranger), [])))
    with pytest.raises(cp.CheckpointRefused, match="not by the given public key"):
        trail.import_checkpoints(conn, [theirs], side=TONGNAN, public_pem=pem)
    n = conn.execute("SELECT count(*) AS n FROM audit_checkpoints WHERE origin = %s", (TONGNAN,))
    assert n.fetchone()["n"] == 0  # nothing of a refused batch is stored
    # the signature check is what refuses the forged file
    monkeypatch.setattr(cp, "verify_signature", lambda *a: True)
    assert trail.import_checkpoints(conn, [forged], side=TONGNAN, public_pem=pem)[0]["stored"]


def test_verify_against_the_other_sides_copies(conn, catalogue, pem, cases, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = trail.export_checkpoints(conn, since=None, folder=tmp_path / "out")
    done = trail.import_checkpoints(conn, files, side=TONGNAN, public_pem=pem)
    assert [d["stored"] for d in done] == [True]
    assert not trail.import_checkpoints(conn, files, side=TONGNAN, public_pem=pem)[0]["stored"]
    case = cases["resolved"]
    as_replica(conn)
    conn.execute(
        "UPDATE incident_events SET note = 'rewritten' WHERE incident_id = %s AND seq = 5",
        (case["id"],),
    )
    recompute_chain(conn, case["id"])
    # the local copies are removed too (still as replica): the other side's are not
    conn.execute("DELETE FROM audit_checkpoint_heads WHERE checkpoint_id IN"
                 " (SELECT id FROM audit_checkpoints WHERE origin = 'local')")  # fmt: skip
    local = verify(conn, catalogue, pem)
    assert any("do not give its signed root" in p for p in local.checkpoint_problems)
    rep = verify(conn, catalogue, pem, against=TONGNAN)
    assert rep.checkpoint["origin"] == TONGNAN and not rep.checkpoint_problems
    assert kinds(rep, case["code"]) == {"checkpoint"}
    assert case["code"] not in verify(conn, catalogue, pem, ("checkpoint",)).cases_named()


def test_the_cli_checkpoints_verifies_and_exits_1_on_a_finding(db_url: str, tmp_path: Path) -> None:
    """The commands on committed data: checkpoint, verify --json (exit 0 for these cases),
    a status changed with no event, verify again (exit 1, the case named)."""
    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings
    from layers import keys
    from layers.db import connect

    with connect(db_url, autocommit=True) as c:
        token, _ = keys.create(c, role="admin", side=None, name="audit cli test")
    pool = make_pool(DatabaseSettings(DATABASE_URL=db_url, pool_min=1, pool_max=2))  # type: ignore[call-arg]
    try:
        with TestClient(create_app(pool=pool), headers={"Authorization": f"Bearer {token}"}) as cl:
            case = new_case(cl, 0.61)
            walk(cl, case, TO_IN_PROGRESS)
    finally:
        pool.close()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "JOINTGRID_AUDIT_KEY_FILE": str(tmp_path / "k" / "checkpoint.key"),
        "JOINTGRID_AUDIT_CHECKPOINT_DIR": str(tmp_path / "files"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", "audit-trail", *args],
            env=env, capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip

    made = cli("checkpoint", "--json")
    assert made.returncode == 0, made.stderr
    path = Path(json.loads(made.stdout)["path"])
    assert path.exists() and json.loads(path.read_text())["signature"]
    mode = (tmp_path / "k" / "checkpoint.key").stat().st_mode & 0o777
    assert mode == 0o600
    first = json.loads(cli("verify", "--json").stdout)
    assert case["code"] not in {f["case"] for f in first["findings"]}
    assert first["cannot_prove"] and first["checkpoint"]["seq"] >= 1
    with connect(db_url, autocommit=True) as c:
        c.execute("UPDATE incidents SET status = 'closed' WHERE id = %s", (case["id"],))
    out = cli("verify")
    assert out.returncode == 1
    assert f"STATE      case {case['code']}: status is closed" in out.stdout
    assert "What a checkpoint cannot prove" in out.stdout


def test_the_synthetic_provinces_trails_replay_to_its_cases(conn: Any, catalogue: Any) -> None:
    """`jointgrid demo --scale province` writes each case's trail as the workflow's own moves,
    so verify finds nothing in it; a status changed with no event there is still found."""
    from datetime import UTC, datetime

    from api.usecases.reroute import bulk_decisions
    from boundary_data import province as prov
    from layers.demo import load_cases, load_province_layers
    from tests.test_scale import SMALL, _real_sides

    real = _real_sides()
    p = prov.build(SMALL, real)
    load_province_layers(conn, p)
    c = prov.cases(
        300,
        n_open=120,
        cell_bounds=p.cell_bounds,
        real_sides=real,
        real_share=0.05,
        end_epoch=datetime(2026, 11, 27, tzinfo=UTC).timestamp(),
        seed=4,
    )
    out = load_cases(
        conn,
        c,
        bulk_decisions(conn, c, catalogue=catalogue),
        catalogue=catalogue,
        say=lambda _m: None,
    )
    assert out["events"] > 3 * out["cases"]  # whole trails, not a report and a jump
    synthetic = {
        r["code"]: r["status"]
        for r in conn.execute(
            "SELECT code, status FROM incidents WHERE input->>'synthetic' = 'province'"
        )
    }
    assert set(synthetic.values()) == set(prov.OPEN_STATUSES) | set(prov.CLOSED_STATUSES)
    ladder = ladder_of(catalogue.escalation)
    rep = trail.verify(conn, ladder=ladder, checks=["chain", "state"])
    assert not set(synthetic) & rep.cases_named(), [
        f for f in rep.findings if f["case"] in synthetic
    ][:3]
    code = next(k for k, v in synthetic.items() if v == "dispatched")
    conn.execute("UPDATE incidents SET escalation_level = 2 WHERE code = %s", (code,))
    rep = trail.verify(conn, ladder=ladder, checks=["state"])
    assert set(synthetic) & rep.cases_named() == {code}


def test_one_cases_inclusion_proof(conn, cases, pem) -> None:  # type: ignore[no-untyped-def]
    case = cases["resolved"]
    proof = trail.prove(conn, case["code"])
    assert proof["trail_holds_it"] and proof["size"] >= 4
    assert trail.check_proof(json.loads(json.dumps(proof)), pem) == []
    other = {**proof, "seq": proof["seq"] - 1}  # an older head is not what was signed
    assert trail.check_proof(other, pem) == ["the case's head is not in the signed tree"]
    forged = {**proof, "statement": {**proof["statement"], "events": 1}}
    assert "forged or altered" in trail.check_proof(forged, pem)[0]


def test_the_server_signs_checkpoints_on_its_interval_as_its_own_role(  # type: ignore[no-untyped-def]
    db_url, tmp_path, monkeypatch
):
    """The background task, on the server's pool (which works as jointgrid_app): a signed
    file in the folder, the same checkpoint in the database, and the hook called."""
    import time

    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings
    from layers.db import connect

    monkeypatch.setenv("JOINTGRID_AUDIT_CHECKPOINT_INTERVAL_S", "0.2")
    monkeypatch.setenv("JOINTGRID_AUDIT_KEY_FILE", str(tmp_path / "key" / "checkpoint.key"))
    monkeypatch.setenv("JOINTGRID_AUDIT_CHECKPOINT_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("JOINTGRID_ESCALATION_INTERVAL_S", "0")
    seen: list[Any] = []
    monkeypatch.setattr(trail, "_hooks", [lambda doc, path: seen.append((doc, path))])
    pool = make_pool(DatabaseSettings(DATABASE_URL=db_url, pool_min=1, pool_max=2))  # type: ignore[call-arg]
    try:
        with TestClient(create_app(pool=pool)):
            deadline = time.monotonic() + 30
            while not seen and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        pool.close()
    assert seen, "no checkpoint within 30 s"
    doc, path = seen[0]
    assert path is not None and path.exists() and path.parent == tmp_path / "files"
    key = trail.load_key(tmp_path / "key" / "checkpoint.key", create=False)
    checked = cp.check_file(json.loads(path.read_text()), key.public_key())
    with connect(db_url) as c:
        row = c.execute(
            "SELECT statement, signature FROM audit_checkpoints WHERE origin = 'local'"
            " AND key_id = %s AND seq = %s",
            (checked.key_id, checked.seq),
        ).fetchone()
    assert row is not None and bytes(row["signature"]) == checked.signature
    assert json.loads(row["statement"]) == doc["statement"]


def test_the_key_is_refused_inside_the_cluster_folder_or_when_others_may_read_it(
    tmp_path: Path,
) -> None:
    from gis.errors import InvalidInput

    with pytest.raises(InvalidInput, match="inside the database's folder"):
        trail.load_key(ROOT / "var" / "pg" / "checkpoint.key")
    path = tmp_path / "checkpoint.key"
    trail.load_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o640)
    with pytest.raises(InvalidInput, match="mode 0600"):
        trail.load_key(path)


@pytest.mark.parametrize("with_files", [True, False], ids=["files", "no-files"])
def test_checkpoints_removed_from_the_database_are_named_by_their_files(  # type: ignore[no-untyped-def]
    conn, catalogue, pem, cases, tmp_path, with_files
):
    as_replica(conn)
    conn.execute("DELETE FROM audit_checkpoint_heads")
    conn.execute("DELETE FROM audit_checkpoints WHERE origin = 'local'")
    folder = tmp_path / "checkpoints" if with_files else None
    rep = verify(conn, catalogue, pem, folder=folder)
    if with_files:  # the files outside the database still hold what was signed
        assert any("is not in the database as signed" in p for p in rep.checkpoint_problems)
        assert not rep.clean
    else:  # without them, it looks like an installation that never signed one
        assert rep.checkpoint_problems == [] and rep.notes and rep.checkpoint is None
