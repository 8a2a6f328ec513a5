"""The layer registry: one ``LayerSpec`` per spatial layer module.

The OGC feed, the command-centre map and the importer are generic over this registry, so adding
a layer means adding one module that calls ``register``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gis.importing import ImportRules


@dataclass(frozen=True)
class LayerSpec:
    """A spatial layer: its table, its geometry, what it shows publicly, and its map style."""

    id: str  # also the feed collection id
    title: str
    description: str
    table: str
    geometry_column: str
    geometry_type: str
    id_column: str
    public: tuple[str, ...]  # columns any feed consumer may see
    private: tuple[str, ...] = ()  # columns kept to operators and admins
    temporal: str | None = None  # the column `datetime` filters on
    side_column: str | None = "side"
    style: dict[str, Any] = field(default_factory=dict)
    import_rules: ImportRules | None = None
    extra_columns: dict[str, str] = field(default_factory=dict)  # column -> SQL type, for import
    linked: tuple[str, ...] = ()  # public properties built from other tables (never filtered)
    # never open to anonymous callers, even with JOINTGRID_PUBLIC_FEEDS=true (live positions)
    keyed: bool = False

    @property
    def importable(self) -> bool:
        return self.import_rules is not None


REGISTRY: dict[str, LayerSpec] = {}


def register(spec: LayerSpec) -> LayerSpec:
    if spec.id in REGISTRY:
        raise ValueError(f"layer {spec.id!r} is registered twice")
    REGISTRY[spec.id] = spec
    return spec


def keyed() -> frozenset[str]:
    """The layers that need credentials whatever the feed settings say."""
    return frozenset(s.id for s in REGISTRY.values() if s.keyed)


def get(layer_id: str) -> LayerSpec:
    """The spec of ``layer_id``; ``KeyError`` if there is none."""
    return REGISTRY[layer_id]
