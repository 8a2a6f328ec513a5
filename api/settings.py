"""Settings, one class per concern, read from the environment (prefix ``JOINTGRID_``).

``DATABASE_URL`` keeps its conventional name, as the contract promises.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class DatabaseSettings(BaseSettings):
    """Where the database is and how many connections to keep."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_DB_", extra="ignore")

    url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    pool_min: int = Field(default=2, ge=1)
    pool_max: int = Field(default=20, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=30_000, ge=0)

    @model_validator(mode="after")
    def _pool_order(self) -> DatabaseSettings:
        if self.pool_min > self.pool_max:
            raise ValueError("JOINTGRID_DB_POOL_MIN must not exceed JOINTGRID_DB_POOL_MAX")
        return self

    def require_url(self) -> str:
        if not self.url:
            raise SystemExit(
                "DATABASE_URL is not set. Use `make run`, which starts a private PostGIS, "
                "or export DATABASE_URL=postgresql://user:password@host:port/db"
            )
        return self.url


class DataSettings(BaseSettings):
    """Where the catalogue and the boundary data live."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    catalogue: Path = ROOT / "boundary_data" / "mechanisms.yaml"
    boundary_dir: Path = ROOT / "boundary_data"


class ServiceSettings(BaseSettings):
    """Behaviour of the running server."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    max_body_bytes: int = Field(default=1_048_576, gt=0)
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
