"""The ``jointgrid`` command line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from api import settings
from api.catalogue import load_catalogue
from api.cli_common import _autocommit, _conn, _Group, _out, _state
from api.cli_push import deliver_cmd, notify, webhook
from gis.crs import SUPPORTED_CRS
from layers.db import Conn, connect, migrate


@click.group(cls=_Group)
def main() -> None:
    """JointGrid: grid governance across the Anju - Tongnan border."""


def _server_login(conn: Conn) -> None:
    """As the migrator: create or update the server's login role (unless one is given by URL).

    Exits with status 2 and the statements to run when the migrator may not.
    """
    from layers.roles import RoleSetupRefused, ensure_login_role

    db = settings.database()
    if db.server_url:
        return
    try:
        ensure_login_role(conn, user=db.server_user, password=db.server_password())
    except RoleSetupRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"server login: {db.server_user} (member of jointgrid_app only)", err=True)


def _check_server_login() -> None:
    """Refuse to serve as a login with more rights than the server needs."""
    from layers.roles import excess, privileges

    db = settings.database()
    with connect(db.server_conninfo(), connect_timeout=max(1, int(db.connect_timeout_s))) as c:
        privs = privileges(c)
    too_much = excess(privs)
    if too_much:
        click.echo(
            f'error: the server\'s login role "{privs["login"]}" holds more than the server '
            f"needs ({', '.join(too_much)}). Give it only membership in jointgrid_app "
            "(see `jointgrid migrate`), or unset JOINTGRID_DB_SERVER_URL to let JointGrid make it.",
            err=True,
        )
        sys.exit(2)


@main.command("migrate")
def migrate_cmd() -> None:
    """Apply the database migrations not yet applied, and make the server's login role."""
    with _conn() as conn:
        conn.autocommit = True
        applied = migrate(conn)
        _server_login(conn)
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@main.command("setup")
def setup_cmd() -> None:
    """Migrate, make the server's login role, and load boundary_data/: ``migrate`` then ``seed``."""
    from api.usecases.loading import migrate_and_seed

    with _conn() as conn:
        applied = migrate_and_seed(conn, login=_server_login)
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    click.echo("boundary_data/ loaded")


@main.command("seed")
def seed_cmd() -> None:
    """Load boundary_data/ (real districts and the synthetic demo). Re-running changes nothing."""
    from api.usecases.loading import seed_configured

    with _conn() as conn:
        reports = seed_configured(conn)
    for r in reports:
        c = r.counts
        click.echo(
            f"{Path(r.path).name:22} -> {r.layer:13} {r.loaded:5} rows: {c['inserted']} new, "
            f"{c['updated']} updated, {c['unchanged']} unchanged"
            + (f", {len(r.repaired)} repaired" if r.repaired else "")
        )


@main.command("load")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--layer", required=True, help="areas, grids, police_grids, teams or chiefs")
@click.option("--crs", default="wgs84", type=click.Choice(SUPPORTED_CRS), show_default=True)
@click.option("--side", default=None, help="every row must be on this side (district code)")
@click.option("--skip-invalid", is_flag=True, help="load the good rows and report the bad ones")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def load_cmd(
    path: Path, layer: str, crs: str, side: str | None, skip_invalid: bool, as_json: bool
) -> None:
    """Import a GeoJSON, GeoPackage or Shapefile into a layer (upsert by code)."""
    from api.usecases.loading import load_file

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        report = load_file(
            conn, path, layer=layer, crs=crs, side=side, skip_invalid=skip_invalid, catalogue=cat
        )
    if as_json:
        _out(report.as_dict())
        return
    c = report.counts
    click.echo(
        f"{report.layer}: {report.loaded} of {report.rows} rows loaded "
        f"({c['inserted']} new, {c['updated']} updated, {c['unchanged']} unchanged)"
    )
    for r in report.repaired:
        click.echo(f"  row {r['row']} ({r['code']}): {r['repair']}")
    for r in report.rejected:
        click.echo(f"  skipped row {r['row']} ({r['code'] or 'no code'}): {r['reason']}")
    if report.border:
        click.echo("border re-derived: " + ", ".join(b["id"] for b in report.border))


@main.command("derive-border")
@click.option("--width-m", type=float, default=None, help="zone width (default: catalogue)")
def derive_border_cmd(width_m: float | None) -> None:
    """Re-derive the border line and border zones from the districts."""
    from layers import border

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        rows = border.derive(conn, width_m=width_m or cat.border_zone_m)
    for r in rows:
        size = f"{r['length_m']} m long" if r["kind"] == "line" else f"{r['area_m2']} m²"
        click.echo(f"{r['id']:28} {r['kind']:5} {','.join(r['sides'])}  {size}")


@main.command("audit")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "geojson"]), default="text")
@click.option(
    "--min-area-m2",
    type=float,
    default=1.0,
    show_default=True,
    help="ignore pieces smaller than this (float noise)",
)
def audit_cmd(fmt: str, min_area_m2: float) -> None:
    """Coverage audit: gaps, overlaps, grids leaving their village, police-grid mismatches."""
    from api.usecases.loading import audit
    from gis.coverage import metric_transformer, to_feature_collection

    with _conn() as conn:
        report = audit(conn, min_area_m2=min_area_m2)
    if fmt == "geojson":
        _out(to_feature_collection(report, metric_transformer()[1]))
    elif fmt == "json":
        _out(
            {
                "clean": report.clean,
                "summary": report.summary(),
                "findings": [
                    {
                        "kind": f.kind,
                        "codes": list(f.codes),
                        "area_m2": round(f.area_m2, 1),
                        "detail": dict(f.detail),
                    }
                    for f in report.findings
                ],
            }
        )
    else:
        for kind, s in report.summary().items():
            click.echo(f"{kind:24} {int(s['count']):5} finding(s), {s['area_m2']:14,.1f} m²")
        for f in report.findings:
            click.echo(
                f"  {f.kind:24} {', '.join(f.codes):40} {f.area_m2:12,.1f} m²  {dict(f.detail)}"
            )
        click.echo("clean" if report.clean else f"{len(report.findings)} finding(s)")


@main.command("escalate-overdue")
def escalate_overdue_cmd() -> None:
    """Escalate every overdue open case one rung (for cron; the server also does it)."""
    from api.usecases.cases import escalate_overdue

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        conn.autocommit = True
        n = escalate_overdue(conn, cat)
    click.echo(f"escalated {n} overdue case(s)")


@main.command("reroute")
@click.option("--open-only/--all", default=True, show_default=True, help="only open cases")
@click.option("--dry-run", is_flag=True, help="report what would change; write nothing")
@click.option(
    "--full",
    is_flag=True,
    help="decide every case, not only those the changes since the last re-route can reach",
)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def reroute_cmd(open_only: bool, dry_run: bool, full: bool, as_json: bool) -> None:
    """Recompute routing after boundaries, teams or the catalogue change.

    By default only the cases that the layer changes logged since the last re-route can
    reach; a full pass the first time, after the catalogue changes, after a layer is
    truncated or most of it changed, or with --full."""
    from api.usecases.reroute import reroute

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        conn.autocommit = True
        s = reroute(conn, cat, open_only=open_only, dry_run=dry_run, full=full)
    if as_json:
        _out(s.as_dict())
        return
    verb = "would change" if dry_run else "changed"
    click.echo(f"{s.mode} re-route: {s.why}")
    click.echo(f"examined {s.examined} case(s); {verb} {s.changed}; failed {s.failed}")
    for k, v in sorted(s.by_change.items()):
        click.echo(f"  {k}: {v}")
    for e in s.examples:
        click.echo(f"  e.g. {e}")


@main.group("apikey")
def apikey() -> None:
    """Create, list and revoke API keys."""


@apikey.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["grid_worker", "team_member", "operator", "admin", "feed"]),
)
@click.option("--side", default=None, help="the district code the key acts for")
@click.option("--team", default=None, help="the team code, for team_member keys")
@click.option("--name", default="", help="who holds the key")
def apikey_create(role: str, side: str | None, team: str | None, name: str) -> None:
    """Create a key and print it once: only its hash is stored."""
    from layers import keys

    with _conn() as conn:
        conn.autocommit = True
        token, rec = keys.create(conn, role=role, side=side, team=team, name=name)
    click.echo(token)
    click.echo(
        f"(key id {rec['id']}, role {role}{', side ' + side if side else ''}; "
        "keep it safe: it cannot be shown again)",
        err=True,
    )


@apikey.command("list")
def apikey_list() -> None:
    """List keys (never their secrets)."""
    from layers import keys

    with _conn() as conn:
        for k in keys.list_keys(conn):
            click.echo(
                f"{k['id']}  {k['role']:12} {k['side'] or '-':7} {k['team'] or '-':6} "
                f"{_state(k):18} {k['name']}"
            )


@apikey.command("revoke")
@click.argument("key_id")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after jg_ and before the next underscore)."""
    from layers import keys

    _autocommit(lambda conn: keys.revoke(conn, key_id.removeprefix("jg_").split("_")[0]))
    click.echo(f"revoked {key_id}")


@main.command("first-admin-hint", hidden=True)
def first_admin_hint() -> None:
    """Say how to make the first admin key, if there is none yet (make run calls this)."""
    from layers import keys

    with _conn() as conn:
        if not keys.any_admin(conn):
            click.echo(
                "No admin key exists yet. Create the first one with:\n"
                "  .venv/bin/jointgrid apikey create --role admin --name 'your name'\n"
                "(from this checkout it finds the private cluster by itself; with your own "
                "database, set DATABASE_URL as for `make run`)"
            )


@main.group("audit-trail")
def audit_trail() -> None:
    """The append-only case audit trail: verify it, sign checkpoints, hold the other side's."""


def _ladder() -> Any:
    from gis.workflow import ladder_of

    return ladder_of(load_catalogue(settings.data().catalogue).escalation)


def _when(value: str | None) -> Any:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give an ISO 8601 time, e.g. 2026-12-01T09:30+08:00"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


@audit_trail.command("verify")
@click.option(
    "--against",
    default="local",
    show_default=True,
    help="whose checkpoints to check against: local, or a side code (imported)",
)
@click.option(
    "--public-key",
    "public_key",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="count only checkpoints signed by this key (PEM)",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def audit_trail_verify(against: str, public_key: Path | None, as_json: bool) -> None:
    """Check the hash chain, every case against its trail, and every case against the latest
    checkpoint covering it; exit 1 when anything is found."""
    from api.usecases.trail import CANNOT_PROVE, verify

    with _conn() as conn:
        rep = verify(
            conn,
            ladder=_ladder(),
            against=against,
            public_pem=public_key.read_bytes() if public_key else None,
            folder=settings.AuditSettings().checkpoint_dir,
        )
    if as_json:
        _out(rep.as_dict())
    else:
        for f in rep.findings:
            click.echo(f"{f['kind'].upper():10} case {f['case']}: {f['problem']}")
        for p in rep.checkpoint_problems:
            click.echo(f"CHECKPOINT {p}")
        for n in rep.notes:
            click.echo(f"NOTE       {n}")
        c = rep.checkpoint
        if c:
            click.echo(
                f"checkpoint {c['origin']}#{c['seq']} (key {c['key_id']}, {c['made_at']}): "
                f"{c['cases']} case(s), {c['events']} event(s); {rep.covered} case(s) match it"
            )
        click.echo(
            f"checked {rep.events} event(s) of {rep.cases} case(s): "
            f"{len(rep.findings)} finding(s) in {len(rep.cases_named())} case(s)"
        )
        click.echo("What a checkpoint cannot prove:")
        for line in CANNOT_PROVE:
            click.echo(f"  - {line}")
    # The stored photos are evidence too: each file must still have its recorded hash.
    bad_files = _verify_media_files(to_stderr=as_json)
    if not rep.clean or bad_files:
        sys.exit(1)


@audit_trail.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="print the checkpoint as JSON")
def audit_trail_checkpoint(as_json: bool) -> None:
    """Sign a checkpoint now: the Merkle root over every case's chain head."""
    from api.usecases.trail import load_key, make_checkpoint

    a = settings.AuditSettings()
    key = load_key(a.key_file)
    with _conn() as conn:
        made = make_checkpoint(conn, key, folder=a.checkpoint_dir, side=a.side)
    if made is None:
        click.echo("another checkpoint is being made right now; try again shortly", err=True)
        sys.exit(2)
    if as_json:
        _out(made.as_dict())
        return
    click.echo(
        f"checkpoint #{made.seq} (key {made.key_id}): {made.cases} case(s), {made.events} "
        f"event(s), root {made.root}; {made.changed_heads} head(s) changed; written to {made.path}"
    )


@audit_trail.command("public-key")
def audit_trail_public_key() -> None:
    """Print this installation's checkpoint public key (PEM), for the other side."""
    from api.usecases.trail import load_key
    from gis.checkpoint import public_pem

    click.echo(public_pem(load_key(settings.AuditSettings().key_file).public_key()), nl=False)


@audit_trail.command("export-checkpoints")
@click.option("--since", default=None, help="only checkpoints made at or after this time")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="folder to write to (default: JOINTGRID_AUDIT_CHECKPOINT_DIR)",
)
def audit_trail_export(since: str | None, out: Path | None) -> None:
    """Write this installation's checkpoints as signed files, for the other side to hold."""
    from api.usecases.trail import export_checkpoints

    folder = out or settings.AuditSettings().checkpoint_dir
    with _conn() as conn:
        paths = export_checkpoints(conn, since=_when(since), folder=folder)
    for p in paths:
        click.echo(str(p))
    click.echo(f"{len(paths)} checkpoint file(s) written to {folder}", err=True)


@audit_trail.command("prove")
@click.argument("case")
@click.option("--against", default="local", show_default=True, help="local, or a side code")
def audit_trail_prove(case: str, against: str) -> None:
    """Print one case's Merkle inclusion proof in the latest checkpoint (JSON)."""
    from api.usecases.trail import prove

    with _conn() as conn:
        _out(prove(conn, case, against=against))


def _public_key(help_text: str) -> Callable[[Any], Any]:
    """The ``--public-key`` option of the commands that check signatures: a PEM file."""
    return click.option(
        "--public-key", "public_key", required=True,
        type=click.Path(exists=True, path_type=Path), help=help_text,
    )  # fmt: skip


@audit_trail.command("check-proof")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@_public_key("the signer's public key (PEM)")
def audit_trail_check_proof(file: Path, public_key: Path) -> None:
    """Check an inclusion proof offline: the signature, and the case's head under the root."""
    from api.usecases.trail import check_proof

    doc = json.loads(file.read_text(encoding="utf-8"))
    problems = check_proof(doc, public_key.read_bytes())
    for p in problems:
        click.echo(f"REFUSED: {p}")
    if problems:
        sys.exit(1)
    click.echo(
        f"case {doc['case']} at event {doc['seq']} is in checkpoint "
        f"#{doc['statement']['seq']} of key {doc['statement']['key_id']} ({doc['statement']['made_at']})"
    )


@audit_trail.command("import-checkpoints")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--side", required=True, help="the side whose checkpoints these are (district code)")
@_public_key("that side's public key (PEM)")
def audit_trail_import(files: tuple[Path, ...], side: str, public_key: Path) -> None:
    """Store another side's checkpoints after checking their signatures; refuse forged ones
    and ones signed by another key."""
    from api.usecases.trail import import_checkpoints

    with _conn() as conn:
        done = import_checkpoints(conn, files, side=side, public_pem=public_key.read_bytes())
    for d in done:
        click.echo(
            f"{d['file']}: checkpoint {side}#{d['seq']} "
            + ("stored" if d["stored"] else "already held")
        )


def _verify_media_files(*, to_stderr: bool = False) -> int:
    """Every photo on record must still be stored with its SHA-256; return how many are not.
    (``to_stderr``: beside a JSON report on standard output.)"""
    from api.usecases.media import stores
    from layers.media import verify_files

    with _conn() as conn:
        result = verify_files(conn, stores(settings.media().dir).originals)
    for p in result["problems"]:
        click.echo(f"BAD FILE {p['sha256']}: {p['problem']}", err=to_stderr)
    click.echo(
        f"checked {result['checked']} photo file(s); {len(result['problems'])} problem(s)",
        err=to_stderr,
    )
    return len(result["problems"])


@main.command("demo")
@click.option(
    "--scale",
    type=click.Choice(["demo", "province"]),
    default="demo",
    show_default=True,
    help="demo: the two districts (the seed); province: plus a SYNTHETIC province around them",
)
@click.option("--cases", type=int, default=None, help="province cases (default 2,000,000)")
@click.option("--open-cases", type=int, default=None, help="of which open (default 200,000)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def demo_cmd(scale: str, cases: int | None, open_cases: int | None, as_json: bool) -> None:
    """Load demo data at a scale; COPY-based, and re-running loads nothing twice."""
    from api.usecases import demo

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        report = demo.run(
            conn,
            scale=scale,
            catalogue=cat,
            boundary_dir=settings.data().boundary_dir,
            cases=cases,
            open_cases=open_cases,
            say=lambda m: click.echo(m, err=True),
        )
    if as_json:
        _out(report.as_dict())
        return
    r = report.as_dict()
    for k, v in r["counts"].items():
        click.echo(f"{k:14} {v:>10,}")
    for s in r["skipped"]:
        click.echo(f"skipped: {s}")
    click.echo(f"loaded in {r['total_seconds']:.0f} s")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=1, type=int, show_default=True)
def serve_cmd(host: str, port: int, workers: int) -> None:
    """Serve the API, the map and the report page."""
    import uvicorn

    from api.server import GuardedHttpToolsProtocol
    from layers.errors import Unavailable

    # The owner makes (or updates) the server's login, and the server then logs in as it; a
    # database that is down now only delays this to the next start (the role persists).
    db = settings.database()
    if not db.server_url:
        db.require_url()  # a clear message, not a traceback, when there is no database at all
    try:
        if db.owner_url():  # with only JOINTGRID_DB_SERVER_URL, the login was made by hand
            with _conn() as conn:
                conn.autocommit = True
                _server_login(conn)
        _check_server_login()
    except Unavailable as exc:
        click.echo(
            f"warning: the database is not reachable yet ({exc.message}); serving anyway", err=True
        )
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # uvicorn with head and body timeouts (minimum data rates), a send timeout and a cap
        # on connections per client address: see api.server
        http=GuardedHttpToolsProtocol,
        proxy_headers=False,
        log_level="info",
        # One log line per request costs a tenth of the server's time under load; errors and
        # domain events are still logged. JOINTGRID_ACCESS_LOG=true turns it back on.
        access_log=os.environ.get("JOINTGRID_ACCESS_LOG", "").lower() in ("1", "true", "yes"),
        timeout_graceful_shutdown=10,
    )


# -- push: webhooks, notification channels, the delivery worker (api/cli_push.py) -------------

main.add_command(webhook)
main.add_command(notify)
main.add_command(deliver_cmd)


# -- patrols: devices, partitions, coverage -------------------------------------------------


@main.group("device")
def device() -> None:
    """Tracker devices of team members (Traccar Client, OwnTracks, the batch API)."""


@device.command("add")
@click.option("--team", required=True, help="the team code")
@click.option("--member", required=True, help="the member's name or id (created if new)")
@click.option("--id", "device_id", default=None, help="the device id (default: 8 random digits)")
@click.option("--crs", default="wgs84", type=click.Choice(list(SUPPORTED_CRS)))
@click.option("--phone", default="", help="a new member's phone")
@click.option("--role", default="member", help="a new member's role in the team")
@click.option("--side", default=None, help="a new member's side (default: the team's)")
def device_add(
    team: str,
    member: str,
    device_id: str | None,
    crs: str,
    phone: str,
    role: str,
    side: str | None,
) -> None:
    """Bind a device to a member: prints the device id and, on its own line, its key."""
    from layers import devices

    with _conn() as conn:
        conn.autocommit = True
        key, rec = devices.add_device(
            conn,
            team=team,
            member_name=member,
            device_id=device_id,
            crs=crs,
            phone=phone,
            role=role,
            side=side,
        )
    click.echo(rec["id"])
    click.echo(key)
    click.echo(
        f"(member {rec['member']} of team {rec['team']}; the key may only post positions "
        "and cannot be shown again. Traccar Client: server URL "
        f"https://<host>/osmand?key={key}, device identifier {rec['id']})",
        err=True,
    )


@device.command("list")
@click.option("--team", default=None)
def device_list(team: str | None) -> None:
    """List devices with their member and last fix (never their keys)."""
    from layers import devices

    with _conn() as conn:
        for d in devices.list_devices(conn, team=team):
            click.echo(
                f"{d['id']}  {d['team']:6} {d['side']} {_state(d):18} {d['member']}"
                f"  last fix {d['last_fix'] or '-'}"
            )


@device.command("revoke")
@click.argument("device_id")
def device_revoke(device_id: str) -> None:
    """Revoke a device: its key stops working at once."""
    from layers import devices

    _autocommit(lambda conn: devices.revoke(conn, device_id))
    click.echo(f"revoked {device_id}")


@main.command("positions-maintain")
@click.option(
    "--retention-days", type=int, default=None, help="default: JOINTGRID_PATROL_RETENTION_DAYS"
)
def positions_maintain(retention_days: int | None) -> None:
    """Make the day partitions of positions ahead, and drop those past the retention."""
    from layers import positions

    days = retention_days or settings.patrol().retention_days
    with _conn() as conn:
        conn.autocommit = True
        _out(positions.maintain(conn, retention_days=days))


@main.command("patrols-apply")
def patrols_apply() -> None:
    """Bring the patrol sessions and the cells up to date with the fixes stored since (what the
    server's patrol worker does after the answers); prints what it applied."""
    from layers import patrols

    with _conn() as conn:
        conn.autocommit = True
        _out(patrols.apply_all(conn, gap_s=settings.patrol().session_gap_s))


def _shanghai(value: str | None, default: Any) -> Any:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if value is None:
        return default
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


@main.command("coverage")
@click.option(
    "--since",
    default=None,
    help="ISO date or time (Asia/Shanghai unless given); default: this week",
)
@click.option("--until", default=None, help="ISO date or time; default: now")
@click.option("--gap-days", type=float, default=None, help="default: JOINTGRID_PATROL_GAP_DAYS")
@click.option("--json", "as_json", is_flag=True, help="print JSON rows instead of the table")
def coverage(since: str | None, until: str | None, gap_days: float | None, as_json: bool) -> None:
    """Border patrol coverage per cell: minutes patrolled in the window (per patrolling side),
    when last patrolled and by whom, and the gaps (cells unvisited for --gap-days)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from layers import patrols

    tz = ZoneInfo("Asia/Shanghai")
    now = datetime.now(tz)
    p = settings.patrol()
    t0 = _shanghai(since, patrols.week_start(now))
    t1 = _shanghai(until, now)
    with _conn() as conn:
        conn.autocommit = True
        patrols.ensure_cells(conn)
        # the cells' "last patrolled" as of every fix stored, not of the worker's last pass
        patrols.apply_all(conn, gap_s=p.session_gap_s)
        rows = patrols.coverage_table(
            conn,
            since=t0,
            until=t1,
            gap_s=p.session_gap_s,
            gap_days=gap_days or p.gap_days,
            now=now,
        )
    if as_json:
        _out(rows)
        return
    click.echo(f"coverage {t0:%Y-%m-%d %H:%M} .. {t1:%Y-%m-%d %H:%M} (Asia/Shanghai)")
    click.echo(
        f"{'cell':18} {'side':6} {'grid':15} {'minutes':>8}  {'by side':24} {'last patrolled':16} {'team':6} gap"
    )
    gaps: dict[str, int] = {}
    for r in rows:
        last = (
            r["last_patrolled_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M")
            if r["last_patrolled_at"]
            else "never"
        )
        by_side = " ".join(f"{k}:{v}" for k, v in sorted(r["minutes_by_side"].items()))
        click.echo(
            f"{r['id']:18} {r['side']:6} {r['grid'] or '-':15} {r['minutes']:8.1f}  {by_side:24} "
            f"{last:16} {r['last_team'] or '-':6} {'GAP' if r['gap'] else ''}"
        )
        if r["gap"]:
            gaps[r["side"]] = gaps.get(r["side"], 0) + 1
    for side in sorted({r["side"] for r in rows}):
        n = sum(1 for r in rows if r["side"] == side)
        click.echo(f"side {side}: {gaps.get(side, 0)} of {n} cells are gaps")


if __name__ == "__main__":
    main()
