"""Storage: one module per spatial layer, PostGIS via psycopg 3.

Importing the package registers every layer in ``layers.registry.REGISTRY``.
"""

from layers import (  # noqa: F401
    areas,
    border,
    chiefs,
    grids,
    incidents,
    patrols,
    police_grids,
    positions,
    teams,
)
