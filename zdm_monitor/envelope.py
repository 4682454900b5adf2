"""The response envelope shared by every answer, success or error."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from flask import Response, current_app, g, jsonify, request

SUCCESS_MESSAGE = "Backup monitoring info"
# nginx's $request_id (32 hex digits) and the usual tracing formats fit this.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def request_id() -> str:
    """Return this request's ID: the caller's when well formed, else a new one."""
    rid: str | None = g.get("request_id")
    if rid is None:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else f"req-{secrets.token_hex(6)}"
        g.request_id = rid
    return rid


def assign_request_id() -> None:
    """Fix the request ID before anything else can fail."""
    request_id()


def timestamp() -> str:
    """Return the current time in the configured zone, in the contract's format."""
    return datetime.now(current_app.config["ZDM_SETTINGS"].timezone).strftime(TIME_FORMAT)


def success(
    data: Any, *, message: str = SUCCESS_MESSAGE, headers: dict[str, str] | None = None
) -> Response:
    """Wrap data in the success envelope."""
    body = {
        "success": True,
        "requestID": request_id(),
        "data": data,
        "message": message,
        "timestamp": timestamp(),
    }
    response = jsonify(body)
    response.headers.update(headers or {})
    return response


def failure(
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Wrap an error in the error envelope."""
    body: dict[str, Any] = {
        "requestID": request_id(),
        "success": False,
        "error": message,
        "timestamp": timestamp(),
        "code": code,
    }
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def echo_request_id(response: Response) -> Response:
    """Send the request ID back in a header on every response."""
    response.headers["X-Request-ID"] = request_id()
    return response
