"""Public probes: /healthz (the process answers) and /readyz (the database answers)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from .. import state
from ..data import repository
from .envelope import success
from .errors import ServiceUnavailable
from .messages import say

# /readyz answers within this, whatever the database does: a frozen one is the 503 in time.
READY_TIMEOUT_S = 1.0

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Answer without touching any dependency."""
    return success({"status": "ok"}, message="Service is running")


@bp.get("/readyz")
def readyz() -> Response:
    """Answer 200 when the database reads go to (a replica, else the primary) answers within a
    second and no shutdown has begun; with replicas, list each one's state and lag."""
    current = state.of()
    if current.draining:
        raise ServiceUnavailable(say("draining"))
    current.database.read(
        lambda conn: repository.ping(conn, timeout_ms=int(READY_TIMEOUT_S * 1000)),
        seconds=READY_TIMEOUT_S,
    )
    data: dict[str, Any] = {"status": "ready"}
    replicas = current.database.describe_replicas()
    if replicas is not None:
        # What this process's monitor last saw: no query of its own.
        data["replicas"] = replicas
    return success(data, message="Database is reachable")
