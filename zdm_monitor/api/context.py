"""What is known of the request being served: its ID, when it started, the route it matched."""

from __future__ import annotations

import re
import secrets
import time

from flask import Response, g, request
from werkzeug.exceptions import NotFound

# nginx's $request_id (32 hex digits) and the usual tracing formats fit this.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str:
    """Return this request's ID: the caller's when well formed, else a new one."""
    rid: str | None = g.get("request_id")
    if rid is None:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else f"req-{secrets.token_hex(6)}"
        g.request_id = rid
    return rid


def begin_request() -> None:
    """Fix the request ID and start the clock before anything else can fail; refuse a path with
    //, which Werkzeug would match as / (//healthz as /healthz) or redirect elsewhere."""
    request_id()
    g.started = time.perf_counter()
    if "//" in request.environ.get("PATH_INFO", ""):
        raise NotFound


def elapsed_seconds() -> float:
    started: float = g.get("started", time.perf_counter())
    return time.perf_counter() - started


def route_template() -> str:
    """The matched route's template (bounded cardinality), not the raw path."""
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


def echo_request_id(response: Response) -> Response:
    """Send the request ID back in a header on every response."""
    response.headers["X-Request-ID"] = request_id()
    return response
