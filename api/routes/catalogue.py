"""``GET /api/v1/catalogue``: mechanisms, categories, severities and limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import settings
from api.access import ALL_ROLES, allow
from api.deps import CatalogueDep

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


@router.get(
    "/catalogue",
    summary="The six links, the categories, severities and limits",
    dependencies=[allow(*ALL_ROLES, public_feed=True)],
)
def get_catalogue(catalogue: CatalogueDep) -> dict[str, Any]:
    return {**catalogue.model_dump(mode="json"), "media": settings.media().limits()}
