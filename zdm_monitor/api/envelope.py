"""The success envelope, and JSON as every answer carries it (errors.py writes the error one)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Response

from .. import state
from .context import request_id
from .payloads import clock_text

SUCCESS_MESSAGE = "Backup monitoring info"


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
