"""Settings, one class per concern, read from the environment (prefix ``JOINTGRID_``).

``DATABASE_URL`` keeps its conventional name, as the contract promises.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
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
