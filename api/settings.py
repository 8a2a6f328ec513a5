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
        from urllib.parse import urlsplit

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
