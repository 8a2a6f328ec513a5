"""Storage: one module per spatial layer, PostGIS via psycopg 3.

Importing the package registers every layer in ``layers.registry.REGISTRY``.
"""

from layers import areas, border, chiefs, grids, incidents, police_grids, teams  # noqa: F401
