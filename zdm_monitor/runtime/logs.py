"""JSON logs: a line per request, the app's or else gunicorn's, and tracebacks, by request ID."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from flask import Response, g, request
from gunicorn.glogging import Logger as GunicornBaseLogger

from ..api.context import elapsed_seconds, request_id, route_template

request_log = logging.getLogger("zdm_monitor.request")
# Set in the WSGI environ once the app has written the request's line.
LOGGED = "zdm_monitor.logged"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's `fields` extra becomes top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging() -> None:
    """Send the app's logs to stderr as JSON, once per process."""
    logger = logging.getLogger("zdm_monitor")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # The lines carry no caller's file, thread or process: not looked up (logging HOWTO).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def in_request(**fields: Any) -> dict[str, Any]:
    """The `extra` of a record written while serving a request: it carries the request ID."""
    return {"fields": {"request_id": request_id(), **fields}}


def log_request(response: Response) -> Response:
    """Write the request's line: who asked what, the answer, how long it took."""
    environ = request.environ
    environ[LOGGED] = True
    claims = g.get("token_claims") or {}
    request_log.info(
        "request",
        extra=in_request(
            method=environ["REQUEST_METHOD"],
            route=route_template(),
            path=environ.get("PATH_INFO"),
            status=response.status_code,
            bytes=response.content_length,
            duration_ms=round(elapsed_seconds() * 1000, 2),
            client_ip=environ.get("REMOTE_ADDR"),  # after ProxyFix: the client's
            subject=claims.get("sub"),
            **peer(environ),
        ),
    )
    return response


def peer(environ: dict[str, Any]) -> dict[str, Any]:
    """The connecting peer (nginx), from before ProxyFix rewrote it, and what it forwarded."""
    return {
        "remote_addr": environ.get("werkzeug.proxy_fix.orig", environ).get("REMOTE_ADDR"),
        "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
    }


class GunicornLogger(GunicornBaseLogger):  # type: ignore[misc]
    """gunicorn's logs as JSON, the access log for the requests the app did not log itself."""

    def setup(self, cfg: Any) -> None:
        """Have gunicorn's handlers at its log targets, and the root logger's on stderr (other
        libraries' warnings), write JSON."""
        super().setup(cfg)
        logging.root.handlers = [logging.StreamHandler()]
        handlers = self.error_log.handlers + self.access_log.handlers + logging.root.handlers
        for handler in handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.cfg.accesslog or environ.get(LOGGED):
            return
        headers = {name.lower(): value for name, value in resp.headers}
        fields = {
            "request_id": headers.get("x-request-id"),
            **peer(environ),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            # An error gunicorn answers itself carries only the status line ("400 Bad Request").
            "status": getattr(resp, "status_code", None) or int(str(resp.status).split()[0]),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
        }
        self.access_log.info("access", extra={"fields": fields})
