"""Placeholder: routes are added here."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Register this module's routes (and any static mounts) on the app."""
