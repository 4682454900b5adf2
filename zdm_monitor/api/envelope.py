"""The response envelope shared by every answer, success or error."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Response, jsonify, request

from .. import state
from .context import request_id
from .messages import KOREAN, LANGUAGES, Message
from .payloads import clock_text

SUCCESS_MESSAGE = "Backup monitoring info"


def error_body(
    request_id: str, code: str, message: Message, now: datetime, language: str = KOREAN
) -> dict[str, Any]:
    """The error envelope, in the contract's key order (also written by worker.py)."""
    return {
        "requestID": request_id,
        "success": False,
        "error": message.text(language),
        "timestamp": clock_text(now),
        "code": code,
    }


def timestamp() -> str:
    """Return the current time in the configured zone, in the contract's format."""
    return clock_text(datetime.now(state.settings().timezone))


def encode(data: Any) -> str:
    """JSON as every answer carries it (Flask's jsonify: compact, keys in order, UTF-8)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def success(
    data: Any = None,
    *,
    message: str = SUCCESS_MESSAGE,
    headers: dict[str, str] | None = None,
    encoded: str | None = None,
) -> Response:
    """Wrap data, or its JSON already encoded (a cached answer's), in the success envelope."""
    body = (
        f'{{"success":true,"requestID":{encode(request_id())},'
        f'"data":{encode(data) if encoded is None else encoded},'
        f'"message":{encode(message)},"timestamp":{encode(timestamp())}}}\n'
    )
    return Response(body, headers=headers, mimetype="application/json")


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
    now = datetime.now(state.settings().timezone)
    body = error_body(request_id(), code, message, now, spoken)
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
