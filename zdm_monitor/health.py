"""Public probes: /healthz (the process answers) and /readyz (the database answers)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from . import repository
from .db import read
from .envelope import success
from .errors import ServiceUnavailable

READY_TIMEOUT_MS = 1000

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Answer without touching any dependency."""
    return success({"status": "ok"}, message="Service is running")


@bp.get("/readyz")
def readyz() -> Response:
    """Answer 200 when the database answers within a second and no shutdown has begun."""
    if current_app.config.get("ZDM_DRAINING"):
        raise ServiceUnavailable("종료 중입니다. 새 요청은 다른 인스턴스로 보내세요.")
    read(lambda conn: repository.ping(conn, timeout_ms=READY_TIMEOUT_MS))
    return success({"status": "ready"}, message="Database is reachable")
