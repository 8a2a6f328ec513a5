"""The ``jointgrid`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import psycopg

from api import settings
from api.catalogue import load_catalogue
from gis.crs import SUPPORTED_CRS
from gis.errors import DomainError
from layers.db import connect, migrate


def _out(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _fail(exc: DomainError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    if exc.detail:
        detail = exc.detail
        if isinstance(detail, dict) and "rejected" in detail:
            for r in detail["rejected"]:
                click.echo(f"  row {r['row']} ({r['code'] or 'no code'}): {r['reason']}", err=True)
        else:
            click.echo(json.dumps(detail, ensure_ascii=False, indent=2, default=str), err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns domain errors into a clear message and exit status 2: never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DomainError as exc:
            _fail(exc)
        except psycopg.Error as exc:
            click.echo(f"database error: {str(exc).strip().splitlines()[0]}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
def main() -> None:
    """JointGrid: grid governance across the Anju - Tongnan border."""


def _conn():
    return connect(settings.database().require_url())


@main.command("migrate")
def migrate_cmd() -> None:
    """Apply the database migrations that are not yet applied."""
    with _conn() as conn:
        conn.autocommit = True
        applied = migrate(conn)
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@main.command("seed")
def seed_cmd() -> None:
    """Load boundary_data/ (real districts and the synthetic demo). Re-running changes nothing."""
    from api.loading import seed

    cat = load_catalogue(settings.data().catalogue)
    with _conn() as conn:
        reports = seed(conn, settings.data().boundary_dir, catalogue=cat)
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
    from api.loading import load_file

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
    from api.loading import audit
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
    from api.cases import escalate_overdue

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
    from api.reroute import reroute

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
            state = f"revoked {k['revoked_at']:%Y-%m-%d}" if k["revoked_at"] else "live"
            click.echo(
                f"{k['id']}  {k['role']:12} {k['side'] or '-':7} {k['team'] or '-':6} "
                f"{state:18} {k['name']}"
            )


@apikey.command("revoke")
@click.argument("key_id")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after jg_ and before the next underscore)."""
    from layers import keys

    with _conn() as conn:
        conn.autocommit = True
        keys.revoke(conn, key_id.removeprefix("jg_").split("_")[0])
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
                "(with DATABASE_URL set to this database; `scripts/pgcluster.sh url` prints the "
                "private cluster's)"
            )


@main.group("audit-trail")
def audit_trail() -> None:
    """The append-only case audit trail."""


@audit_trail.command("verify")
def audit_trail_verify() -> None:
    """Check the hash chain over every case's events and report any break."""
    from layers.incidents import verify_chain

    with _conn() as conn:
        result = verify_chain(conn)
    for b in result["breaks"]:
        click.echo(f"BREAK case {b['code']} event {b['seq']}: {b['problem']}")
    click.echo(
        f"checked {result['events']} event(s) of {result['cases']} case(s); "
        f"{len(result['breaks'])} break(s)"
    )
    if result["breaks"]:
        sys.exit(1)


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
    from api import demo

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

    settings.database().require_url()
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


if __name__ == "__main__":
    main()
