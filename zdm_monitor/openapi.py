"""The OpenAPI description of the endpoint: parameters, headers, responses and bodies.

Documentation only: the bodies are built by serializers.py and envelope.py, the headers by
polling.py, and the query is described by its own schema (schemas.py).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields

from .polling import CACHE_CONTROL, HEADERS
from .schemas import MAX_NAME_LENGTH, MODES, REPOSITORY_TYPES, STATUSES, TEXT_PATTERN

SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]
JOB_PARAMETERS = [
    {
        "in": "path",
        "name": "identifier",
        "description": "All ASCII digits: the job's ID; anything else: the job's name "
        f"(at most {MAX_NAME_LENGTH} characters).",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME_LENGTH,
            "pattern": TEXT_PATTERN,
        },
    },
    {
        "in": "header",
        "name": "If-None-Match",
        "required": False,
        "description": "The ETag of the answer the client holds: 304 while it is current.",
        "schema": {"type": "string"},
    },
]
HEADER_DOCS = {
    "X-Pagination": {
        "description": "The log's pages: total, total_pages, first_page, last_page, page, "
        "previous_page, next_page (keys that do not apply are left out; no page keys with "
        "`after`).",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "Weak validator of this answer; send it back in If-None-Match.",
        "schema": {"type": "string"},
    },
    "X-Log-Cursor": {
        "description": "The newest line number delivered; with `after` and nothing new, `after` "
        "itself; `0` for page 1 of an empty log. Pass it as `after` on the next poll.",
        "schema": {"type": "integer"},
    },
    "X-Log-Gap": {
        "description": "`true` when lines after `after` were pruned before this poll.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "X-Poll-Interval": {
        "description": "Seconds to wait before the next poll; absent once the job is complete, "
        "canceled or in error.",
        "schema": {"type": "integer"},
    },
}
RESPONSE_HEADERS = {
    "Cache-Control": {
        "description": f"`{CACHE_CONTROL}`: revalidate on every poll.",
        "schema": {"type": "string"},
    },
    **{name: HEADER_DOCS[name] for name in HEADERS},
}
ERRORS = {
    400: "Invalid parameter (REQUEST-ERROR-01) or incomplete job data (JOB-ERROR-20).",
    401: "Missing or invalid bearer token (AUTH-ERROR-01).",
    404: "No such job, or a filter excludes it (JOB-ERROR-01).",
    405: "Wrong method (HTTP-405).",
    503: "The database cannot be reached or timed out (SERVICE-UNAVAILABLE).",
    500: "Anything unexpected (INTERNAL-ERROR).",
}
# Documented with one doc() rather than an alt_response each: every alt_response wraps the view
# in one more layer that runs on every request.
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for status, description in ERRORS.items()
}
ERROR_RESPONSES[304] = {
    "description": "Not modified: If-None-Match holds the current ETag. No body.",
    "headers": RESPONSE_HEADERS,
}


DETAIL = "With detail=true only."


class JobInfoSchema(ma.Schema):
    name = fields.String(required=True)
    partition = fields.String(metadata={"description": "Linux jobs only."})
    drive = fields.String(metadata={"description": "Windows jobs only."})
    id = fields.Integer(metadata={"description": DETAIL})
    mode = fields.String(metadata={"enum": list(MODES), "description": DETAIL})


class ProgressInfoSchema(ma.Schema):
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    percent = fields.String(required=True, metadata={"example": "60%"})
    message = fields.String(required=True, metadata={"description": "`-` when none."})
    start = fields.String(required=True, metadata={"example": "2025-01-15 02:00:00"})
    elapsed = fields.String(required=True, metadata={"example": "00:20:00"})
    end = fields.String(required=True, metadata={"description": "`-` while not finished."})
    lastReport = fields.String(metadata={"description": f"Last progress report; `-`. {DETAIL}"})
    stalled = fields.Boolean(
        metadata={
            "description": "Preparing or processing with no report for ZDM_STALL_SECONDS. " + DETAIL
        }
    )


class RepositorySchema(ma.Schema):
    type = fields.String(required=True, metadata={"enum": list(REPOSITORY_TYPES)})
    path = fields.String(required=True)


class LogEntrySchema(ma.Schema):
    line = fields.Integer(required=True, metadata={"description": "1, 2, 3... within the job."})
    time = fields.String(required=True)
    message = fields.String(required=True)


class JobSchema(ma.Schema):
    info = fields.Nested(JobInfoSchema, required=True)
    progressInfo = fields.Nested(ProgressInfoSchema, required=True)
    log = fields.List(fields.String(), required=True)
    repository = fields.Nested(RepositorySchema, allow_none=True, metadata={"description": DETAIL})
    logEntries = fields.List(
        fields.Nested(LogEntrySchema), metadata={"description": "The lines of `log`. " + DETAIL}
    )


class SystemSchema(ma.Schema):
    name = fields.String(required=True)
    id = fields.Integer(metadata={"description": DETAIL})
    os = fields.String(metadata={"enum": ["linux", "windows"], "description": DETAIL})


class MonitoringDataSchema(ma.Schema):
    system = fields.Nested(SystemSchema, required=True)
    job = fields.Nested(JobSchema, required=True)


class MonitoringResponseSchema(ma.Schema):
    success = fields.Boolean(required=True)
    requestID = fields.String(required=True)
    data = fields.Nested(MonitoringDataSchema, required=True)
    message = fields.String(required=True)
    timestamp = fields.String(required=True)


class ErrorResponseSchema(ma.Schema):
    requestID = fields.String(required=True)
    success = fields.Boolean(required=True)
    error = fields.String(required=True)
    timestamp = fields.String(required=True)
    code = fields.String(required=True)
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Validation errors: parameter -> reasons."},
    )
