"""Settings, one class per concern, read from the environment (prefix ``JOINTGRID_``).

``DATABASE_URL`` keeps its conventional name, as the contract promises.
"""

from __future__ import annotations

import os
import re
import secrets
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gis.routing import FRESH_FIX_S
from layers.roles import conninfo_as

ROOT = Path(__file__).resolve().parents[1]


# The private cluster's record (scripts/pgcluster.sh): the owner's URL, re-written on every
# start. Relative to the project, not the working directory, so commands find it from anywhere.
PRIVATE_CLUSTER_URL = ROOT / "var" / "pg" / "url"
# The generated password of the server's login role (mode 0600), made on first use.
SERVER_PASSWORD_FILE = ROOT / "var" / "db-server-password"


class DatabaseSettings(BaseSettings):
    """Where the database is, who logs in, and how many connections to keep.

    Two logins: ``DATABASE_URL`` (or the private cluster's owner) migrates and owns the tables;
    the server logs in as ``server_user``, a role with no superuser, no table of its own and
    no CREATE, which ``jointgrid migrate`` / ``serve`` create with a generated password.
    ``JOINTGRID_DB_SERVER_URL`` names a login made by hand instead (see docs/reliability.md).
    """

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_DB_", extra="ignore")

    url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    server_url: str | None = None
    server_user: str = Field(default="jointgrid_server", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pool_min: int = Field(default=2, ge=1)
    pool_max: int = Field(default=20, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    # A replicated cluster (a URL naming several hosts): a standby further behind the primary
    # than this leaves the read pool until it catches up; the hosts are checked this often.
    read_max_lag_s: float = Field(default=5.0, gt=0)
    read_max_lag_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    read_check_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _pool_order(self) -> DatabaseSettings:
        if self.pool_min > self.pool_max:
            raise ValueError("JOINTGRID_DB_POOL_MIN must not exceed JOINTGRID_DB_POOL_MAX")
        return self

    def owner_url(self) -> str | None:
        """The migrator's URL: DATABASE_URL, else the private cluster's as recorded right now."""
        if self.url:
            return self.url
        try:
            return PRIVATE_CLUSTER_URL.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def require_url(self) -> str:
        """The migrator's URL, or a message saying how to get one."""
        url = self.owner_url()
        if not url:
            raise SystemExit(
                "DATABASE_URL is not set and no private cluster is recorded in "
                f"{PRIVATE_CLUSTER_URL}. Run `make run` (or `scripts/pgcluster.sh start`), "
                "which starts a private PostGIS, "
                "or export DATABASE_URL=postgresql://user:password@host:port/db"
            )
        return url

    def server_password(self) -> str:
        """The server login's password: generated once into var/ (mode 0600)."""
        return server_password()

    def server_conninfo(self) -> str:
        """The server's login URL as of now (read again on every new connection).

        The owner's host, port and database with the server role's name and password, so a
        private cluster that comes back on another port is found again without a restart.
        """
        if self.server_url:
            return self.server_url

        return conninfo_as(self.require_url(), self.server_user, self.server_password())


def server_password() -> str:
    """Read, or make once, the server login's password in ``var/`` (mode 0600)."""

    path = SERVER_PASSWORD_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(24) + "\n")
    try:
        os.link(tmp, path)  # atomic: two first starts at once agree on one password
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text(encoding="utf-8").strip()


class DataSettings(BaseSettings):
    """Where the catalogue and the boundary data live."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    catalogue: Path = ROOT / "boundary_data" / "mechanisms.yaml"
    boundary_dir: Path = ROOT / "boundary_data"


class BodyLimitRule(BaseModel):
    """Bodies of ``methods`` (empty: any) on paths matching ``path`` (a regex, matched whole)
    take up to ``max_bytes``."""

    methods: list[str] = Field(default_factory=list)
    path: str
    max_bytes: int = Field(gt=0)

    @field_validator("path")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]


class ServiceSettings(BaseSettings):
    """Behaviour of the running server."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    # the body limit of a route no rule names (bytes)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    # rules before those of api/limits.py, as JSON, e.g.
    # JOINTGRID_BODY_LIMITS='[{"methods": ["POST"], "path": "/api/v1/route", "max_bytes": 65536}]'
    body_limits: list[BodyLimitRule] = Field(default_factory=list)
    escalation_interval_s: float = Field(default=60.0, ge=0)
    public_feeds: bool = False


class AuditSettings(BaseSettings):
    """Signed checkpoints of the audit trail (``jointgrid audit-trail``).

    The signing key must live where the database's OS user cannot read it: a file owned by
    the server's user, mode 0600, outside the cluster's data folder (README, "Audit trail").
    """

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_AUDIT_", extra="ignore")

    checkpoint_interval_s: float = Field(default=3600.0, ge=0)  # 0: only on demand
    key_file: Path = ROOT / "var" / "audit" / "checkpoint.key"
    checkpoint_dir: Path = ROOT / "var" / "audit" / "checkpoints"
    side: str | None = Field(default=None, pattern=r"^[0-9]{6}$")  # the signer's side, if one


class AccessSettings(BaseSettings):
    """Where this server is reached, for the absolute links it writes (OGC, the API document).

    ``JOINTGRID_PUBLIC_BASE_URL`` (e.g. ``https://grid.example.org``): every link is built from
    it, whatever Host a request names. Without it, links follow the request's Host only when that
    host is in ``JOINTGRID_TRUSTED_HOSTS`` (names or addresses, comma-separated; a port is
    ignored); any other Host is refused (400 ``untrusted_host``).
    """

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    public_base_url: str | None = None
    trusted_hosts: str = "localhost,127.0.0.1,::1"

    @model_validator(mode="after")
    def _absolute_base(self) -> AccessSettings:

        if self.public_base_url:
            parts = urlsplit(self.public_base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ValueError(
                    "JOINTGRID_PUBLIC_BASE_URL must be an absolute http(s) URL such as "
                    "https://grid.example.org (no query)"
                )
        return self

    def trusted(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower().strip("[]") for h in self.trusted_hosts.split(",") if h.strip()
        )


class MapSettings(BaseSettings):
    """Base tiles for the command-centre map: off by default (no outside requests)."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    tiles_url: str | None = None
    tiles_attribution: str = ""
    tiles_crs: Literal["wgs84", "gcj02"] = "wgs84"


@cache
def database() -> DatabaseSettings:
    return DatabaseSettings()


@cache
def data() -> DataSettings:
    return DataSettings()


class MediaSettings(BaseSettings):
    """Photos on cases: where the originals are kept, and the limits a client can read."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_MEDIA_", extra="ignore")

    dir: Path = ROOT / "var" / "media"
    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)  # per photo
    max_pixels: int = Field(default=40_000_000, gt=0)  # width x height, read from the header
    max_count: int = Field(default=9, ge=1)  # per case
    far_m: float = Field(default=3000.0, gt=0)  # a photo taken farther from the point is flagged
    thumb_px: int = Field(default=320, ge=16)  # long edge of the thumbnail
    screen_px: int = Field(default=1600, ge=64)  # long edge of the screen copy
    # Threads that decode photos after their upload is answered (0: one per core), and how
    # often they look for photos still pending (after a crash, or another process's).
    finish_threads: int = Field(default=0, ge=0)
    sweep_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _sizes(self) -> MediaSettings:
        if self.thumb_px > self.screen_px:
            raise ValueError("JOINTGRID_MEDIA_THUMB_PX must not exceed JOINTGRID_MEDIA_SCREEN_PX")
        return self

    def limits(self) -> dict[str, object]:
        """What a client may check before sending (``GET /api/v1/catalogue``)."""
        return {
            "max_bytes": self.max_bytes,
            "max_pixels": self.max_pixels,
            "max_count": self.max_count,
            "types": ["image/jpeg", "image/png", "image/webp", "image/heic"],
        }


@cache
def media() -> MediaSettings:
    return MediaSettings()


class PushSettings(BaseSettings):
    """Webhooks and notifications: the delivery worker (``jointgrid deliver``, or the server)."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_PUSH_", extra="ignore")

    # Where links in payloads and messages point (the server as others reach it).
    public_url: str = "http://127.0.0.1:8000"
    # The server runs a delivery loop every this many seconds when idle; 0: only `jointgrid
    # deliver` delivers.
    interval_s: float = Field(default=1.0, ge=0)
    batch: int = Field(default=100, ge=1, le=10_000)
    concurrency: int = Field(default=16, ge=1, le=256)
    timeout_s: float = Field(default=10.0, gt=0)
    # After `webhook rotate-secret`, the old secret still signs for this long.
    rotation_grace_hours: float = Field(default=24.0, ge=0)
    # Delivered rows are kept this many days (the case page shows them), then deleted; 0 keeps
    # them for ever. Dead and open rows are never deleted.
    retention_days: float = Field(default=90.0, ge=0)


@cache
def push() -> PushSettings:
    return PushSettings()


class PatrolSettings(BaseSettings):
    """Positions and patrols (JOINTGRID_PATROL_…): what a fix must meet, and how tracks split."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_PATROL_", extra="ignore")

    # positions older than this leave (a partition a day)
    retention_days: int = Field(default=90, ge=1, le=3650)
    session_gap_s: float = Field(
        default=600, gt=0
    )  # a silence longer than this ends a patrol session
    gap_days: float = Field(default=7, gt=0)  # a cell unvisited this long is a gap
    max_speed_kmh: float = Field(
        default=200, gt=0
    )  # faster than this from the previous fix: flagged
    max_accuracy_m: float = Field(default=100, gt=0)  # worse than this: flagged
    future_s: float = Field(default=300, ge=0)  # further ahead than this: refused
    area_buffer_m: float = Field(default=5000, ge=0)  # the service area's box grown by this
    # routing places a team by its member's fix no older than this (s), as of the decision (README)
    fresh_fix_s: float = Field(default=FRESH_FIX_S, gt=0)
    # the patrol worker applies the sessions and the cells this often after the answers (s);
    # 0: no worker in this server (another server, or `jointgrid patrols-apply`, does it)
    apply_interval_s: float = Field(default=2.0, ge=0)


@cache
def patrol() -> PatrolSettings:
    return PatrolSettings()
