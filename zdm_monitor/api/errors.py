"""Every error answered in the error envelope: the API's exceptions, the handlers, the body."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ..data.database import DatabaseUnavailable
from ..data.deadlines import DeadlineExceeded
from ..data.pool import PoolExhausted
from ..runtime.logs import in_request
from .context import request_id
from .envelope import timestamp
from .messages import CATALOGUE, ENGLISH, LANGUAGES, Message, say

log = logging.getLogger(__name__)

# What the status says, for errors of the HTTP layer (Flask's, gunicorn's and nginx's own).
HTTP_MESSAGES = {
    int(name.removeprefix("http_")): say(name) for name in CATALOGUE if name.startswith("http_")
}
DB_UNAVAILABLE = say("db_unavailable")


class ApiError(Exception):
    """An answer other than 200, with its status, code and message."""

    status = 500
    code = "INTERNAL-ERROR"
    meaning = "Anything unexpected: the answer says nothing of what went wrong inside."

    def __init__(
        self,
        message: Message,
        *,
        details: dict[str, list[Message]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class JobNotFound(ApiError):
    status = 404
    code = "JOB-ERROR-01"
    meaning = (
        "No such job or server, or none the filters select; of a job that exists but a filter "
        "excludes, `details` names each filter it fails."
    )


class JobIncomplete(ApiError):
    status = 400
    code = "JOB-ERROR-20"
    meaning = "The job's data is incomplete: its definition or its progress record is missing."


class InvalidRequest(ApiError):
    status = 400
    code = "REQUEST-ERROR-01"
    meaning = "A parameter is invalid: `details` names each one and what it accepts."


class Unauthorized(ApiError):
    status = 401
    code = "AUTH-ERROR-01"
    meaning = "The bearer token is missing, malformed, badly signed, expired or not yet valid."


class ServiceUnavailable(ApiError):
    status = 503
    code = "SERVICE-UNAVAILABLE"
    meaning = (
        "The database cannot be reached or timed out, the instance is shutting down, or (from "
        "nginx) no instance answered: try again after `Retry-After` seconds."
    )

    def __init__(self, message: Message = DB_UNAVAILABLE) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


def error_codes() -> dict[str, tuple[int, str]]:
    """List every code an error answer carries, the nginx site's too, with status and meaning.

    The API's own errors first, then the HTTP layer's by status; its 500 and 503 are the API's
    INTERNAL-ERROR and SERVICE-UNAVAILABLE, in the nginx site too."""
    kinds = [ApiError]
    for kind in kinds:
        kinds.extend(kind.__subclasses__())
    own = sorted({(kind.status, kind.code, kind.meaning) for kind in kinds})
    codes = {code: (status, meaning) for status, code, meaning in own}
    taken = {status for status, _, _ in own if status >= 500}
    for status, message in sorted(HTTP_MESSAGES.items()):
        if status not in taken:
            codes[http_code(status)] = (status, message.text(ENGLISH))
    return codes


def http_code(status: int) -> str:
    """Name the HTTP layer's error of this status."""
    return f"HTTP-{status}"


def invalid_parameters(details: dict[str, list[Message]]) -> InvalidRequest:
    """Build the 400 that names each bad parameter and what it accepts."""
    return InvalidRequest(say("invalid_parameters", reasons=details), details=details)


def failure(
    status: int,
    code: str,
    message: Message,
    *,
    details: dict[str, list[Message]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Wrap an error in the error envelope, in the language the request prefers."""
    spoken = language()
    body: dict[str, Any] = {
        "requestID": request_id(),
        "success": False,
        "error": message.text(spoken),
        "timestamp": timestamp(),
        "code": code,
    }
    if details:
        body["details"] = {name: [w.text(spoken) for w in whys] for name, whys in details.items()}
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Content-Language"] = spoken
    response.vary.add("Accept-Language")
    return response


def language() -> str:
    """English when the request's Accept-Language prefers English (en, en-US, ...) to Korean,
    by quality; otherwise the contract's Korean."""
    for value, quality in request.accept_languages:  # highest quality first
        primary = value.split("-", 1)[0].lower()
        if quality > 0 and primary in LANGUAGES:
            return primary
    return LANGUAGES[0]


def handle_api_error(error: ApiError) -> Response:
    return failure(
        error.status, error.code, error.message, details=error.details, headers=error.headers
    )


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status >= 500:
        return handle_unexpected(error)
    data: dict[str, Any] = getattr(error, "data", None) or {}
    if "messages" in data:  # webargs rejected the query string
        messages = data["messages"].get("query", data["messages"])
        # The schemas' reasons are Messages; a text of marshmallow's own, which no query string
        # causes, says only "bad request".
        details = {
            str(name): [why if isinstance(why, Message) else HTTP_MESSAGES[400] for why in whys]
            for name, whys in messages.items()
        }
        return handle_api_error(invalid_parameters(details))
    headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
    # A status the catalogue does not name (none is raised today) is the plain 400, so that
    # every code answered is one of error_codes().
    status = status if status in HTTP_MESSAGES else 400
    return failure(status, http_code(status), HTTP_MESSAGES[status], headers=headers)


def handle_database_error(error: Exception) -> Response:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    log.warning("database unavailable: %s %s", type(error).__name__, reason, extra=in_request())
    return handle_api_error(ServiceUnavailable())


def handle_unexpected(error: BaseException) -> Response:
    log.error("unexpected error", exc_info=error, extra=in_request())
    return failure(ApiError.status, ApiError.code, HTTP_MESSAGES[500])


def register_error_handlers(app: Flask) -> None:
    """Answer every error, expected or not, with the envelope."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    for kind in (psycopg2.OperationalError, PoolExhausted, DatabaseUnavailable, DeadlineExceeded):
        app.register_error_handler(kind, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
