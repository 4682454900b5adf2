"""Public probes: /healthz (the process answers) and /readyz (the database answers)."""

from __future__ import annotations

from flask import Blueprint, Response

from . import repository
from .db import get_db
from .envelope import success

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Answer without touching any dependency."""
    return success({"status": "ok"}, message="Service is running")


@bp.get("/readyz")
def readyz() -> Response:
    """Answer 200 when the database answers; the error handlers make it a 503 otherwise."""
    repository.ping(get_db())
    return success({"status": "ready"}, message="Database is reachable")
