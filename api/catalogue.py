"""Reading the catalogue file (the parsing and validation are pure, in ``gis.catalogue``)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gis.catalogue import Catalogue, parse_catalogue
from gis.errors import CatalogueError


def load_catalogue(path: Path) -> Catalogue:
    """Read and validate ``mechanisms.yaml``; ``CatalogueError`` says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"cannot read the catalogue {path}: {exc.strerror}", []) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CatalogueError(f"the catalogue {path} is not valid YAML{where}", []) from exc
    return parse_catalogue(data)
