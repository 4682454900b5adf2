"""Cross-origin access for dashboards served from other origins (ZDM_CORS_ORIGINS)."""

from __future__ import annotations

from flask import Flask, Response, request

from .. import state
from . import polling

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "Authorization, If-None-Match, X-Request-ID",
    "Access-Control-Max-Age": "600",
}
EXPOSED_HEADERS = ", ".join(("X-Request-ID", *polling.HEADERS))


def register_cors(app: Flask) -> None:
    """Answer preflights and label responses, only when some origin is allowed."""
    if state.of(app).settings.cors_origins:
        app.before_request(answer_preflight)
        app.after_request(label_response)


def allowed_origin() -> str | None:
    """The Access-Control-Allow-Origin value for this request's Origin, or None."""
    origin = request.headers.get("Origin")
    origins = state.settings().cors_origins
    if origin is None:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def answer_preflight() -> Response | None:
    """Answer a CORS preflight before authentication: browsers send it without the token."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    response = Response(status=204)
    del response.headers["Content-Type"]  # no body, so no text/html label either
    if allowed_origin() is not None:
        response.headers.update(PREFLIGHT_HEADERS)
    return response


def label_response(response: Response) -> Response:
    """Let an allowed origin read the answer and the polling headers."""
    origin = allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method != "OPTIONS":
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if "*" not in state.settings().cors_origins:
        # The answer differs by Origin: caches must keep one per origin.
        response.vary.add("Origin")
    return response
