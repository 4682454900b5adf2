"""Domain exceptions and the handlers that turn every error into the envelope."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from .db import DatabaseUnavailable
from .deadline import DeadlineExceeded
from .envelope import failure
from .logs import in_request
from .pool import PoolExhausted

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"

# What the status says, for errors of the HTTP layer (Flask's, gunicorn's and nginx's own).
HTTP_MESSAGES = {
    400: "잘못된 HTTP 요청입니다.",
    403: "접근이 허용되지 않습니다.",
    404: "요청한 경로를 찾을 수 없습니다.",
    405: "허용되지 않는 HTTP 메서드입니다.",
    408: "요청을 제때 다 받지 못했습니다.",
    411: "Content-Length 헤더가 필요합니다.",
    413: "요청 본문이 너무 큽니다.",
    414: "요청 URI가 너무 깁니다.",
    416: "요청한 범위를 돌려줄 수 없습니다.",
    417: "Expect 헤더를 처리할 수 없습니다.",
    421: "이 서버가 답할 수 없는 요청입니다.",
    429: "요청이 너무 많습니다. 잠시 후 다시 시도하세요.",
    431: "요청 헤더가 너무 큽니다.",
    500: "서버 내부 오류가 발생했습니다.",
    501: "지원하지 않는 요청 방식입니다.",
    503: "서비스를 일시적으로 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
    505: "지원하지 않는 HTTP 버전입니다.",
}
INTERNAL_MESSAGE = HTTP_MESSAGES[500]


def http_message(status: int) -> str:
    return HTTP_MESSAGES.get(status, HTTP_MESSAGES[400] if status < 500 else INTERNAL_MESSAGE)


class ApiError(Exception):
    """An answer other than 200, with its status, code and message."""

    status = 500
    code = "INTERNAL-ERROR"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class JobNotFound(ApiError):
    status = 404
    code = "JOB-ERROR-01"


class JobIncomplete(ApiError):
    status = 400
    code = "JOB-ERROR-20"


class InvalidRequest(ApiError):
    status = 400
    code = "REQUEST-ERROR-01"


class Unauthorized(ApiError):
    status = 401
    code = "AUTH-ERROR-01"


class ServiceUnavailable(ApiError):
    status = 503
    code = "SERVICE-UNAVAILABLE"

    def __init__(
        self, message: str = "데이터베이스에 연결할 수 없습니다. 잠시 후 다시 시도하세요."
    ) -> None:
        super().__init__(message, headers={"Retry-After": RETRY_AFTER_SECONDS})


def invalid_parameters(details: dict[str, list[str]]) -> InvalidRequest:
    """Build the 400 that names each bad parameter and what it accepts."""
    reasons = " ".join(f"{name}: {' '.join(why)}" for name, why in sorted(details.items()))
    return InvalidRequest(f"요청 파라미터가 올바르지 않습니다. {reasons}", details=details)


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
        messages = data["messages"]
        return handle_api_error(invalid_parameters(_flatten(messages.get("query", messages))))
    headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
    message = HTTP_MESSAGES.get(status) or error.description or error.name
    return failure(status, f"HTTP-{status}", message, headers=headers)


def handle_database_error(error: Exception) -> Response:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    log.warning("database unavailable: %s %s", type(error).__name__, reason, extra=in_request())
    return handle_api_error(ServiceUnavailable())


def handle_unexpected(error: BaseException) -> Response:
    log.error("unexpected error", exc_info=error, extra=in_request())
    return failure(500, "INTERNAL-ERROR", INTERNAL_MESSAGE)


def _flatten(messages: Any) -> dict[str, list[str]]:
    """Turn webargs/marshmallow messages into {param: [why, ...]}."""
    if not isinstance(messages, dict):
        return {"query": [str(messages)]}
    flat: dict[str, list[str]] = {}
    for name, why in messages.items():
        flat[str(name)] = [str(w) for w in why] if isinstance(why, list) else [str(why)]
    return flat


def register_error_handlers(app: Flask) -> None:
    """Answer every error, expected or not, with the envelope."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(psycopg2.OperationalError, handle_database_error)
    app.register_error_handler(PoolExhausted, handle_database_error)
    app.register_error_handler(DatabaseUnavailable, handle_database_error)
    app.register_error_handler(DeadlineExceeded, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
