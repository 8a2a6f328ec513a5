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
