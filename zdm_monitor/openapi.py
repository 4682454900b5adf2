"""The OpenAPI description of the endpoints: parameters, headers, responses and bodies.

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


def parameters(subject: str) -> list[dict[str, Any]]:
    """The path's identifier (of a job or a server) and the validator header."""
    return [
        {
            "in": "path",
            "name": "identifier",
            "description": f"All ASCII digits: the {subject}'s ID; anything else: the {subject}'s "
            f"name (at most {MAX_NAME_LENGTH} characters).",
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


JOB_PARAMETERS = parameters("job")
SERVER_PARAMETERS = parameters("server")
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
        "itself; `0` for an empty log; for a page past the end, the line before the oldest. "
        "Pass it as `after` on the next poll.",
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
# The server view sends no log cursor: each job comes with its newest lines.
SERVER_RESPONSE_HEADERS = {
    name: doc for name, doc in RESPONSE_HEADERS.items() if not name.startswith("X-Log-")
}
SERVER_RESPONSE_HEADERS["X-Pagination"] = {
    "description": "The server's pages of jobs: total, total_pages, first_page, last_page, "
    "page, previous_page, next_page (keys that do not apply are left out).",
    "schema": {"type": "string"},
}
SERVER_RESPONSE_HEADERS["X-Poll-Interval"] = {
    "description": "Seconds to wait before the next poll: the shortest of the page's jobs'; "
    "absent when every job on the page is complete, canceled or in error.",
    "schema": {"type": "integer"},
}
COMMON_ERRORS = {
    401: "Missing or invalid bearer token (AUTH-ERROR-01).",
    405: "Wrong method (HTTP-405).",
    503: "The database cannot be reached or timed out (SERVICE-UNAVAILABLE).",
    500: "Anything unexpected (INTERNAL-ERROR).",
}
JOB_ERRORS = {
    400: "Invalid parameter (REQUEST-ERROR-01) or incomplete job data (JOB-ERROR-20).",
    404: "No such job, or a filter excludes it (JOB-ERROR-01).",
    **COMMON_ERRORS,
}
SERVER_ERRORS = {
    400: "Invalid parameter (REQUEST-ERROR-01), or a job the partition or drive filter selects "
    "has only one half (JOB-ERROR-20).",
    404: "No such server, no job on it, or the filters select none (JOB-ERROR-01).",
    **COMMON_ERRORS,
}


def error_responses(errors: dict[int, str], headers: dict[str, Any]) -> dict[int, Any]:
    """Documented with one doc() rather than an alt_response each: every alt_response wraps
    the view in one more layer that runs on every request."""
    responses: dict[int, dict[str, Any]] = {
        status: {
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        }
        for status, description in errors.items()
    }
    responses[304] = {
        "description": "Not modified: If-None-Match holds the current ETag. No body.",
        "headers": headers,
    }
    return responses


ERROR_RESPONSES = error_responses(JOB_ERRORS, RESPONSE_HEADERS)
SERVER_ERROR_RESPONSES = error_responses(SERVER_ERRORS, SERVER_RESPONSE_HEADERS)


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


class SummarySchema(ma.Schema):
    total = fields.Integer(required=True, metadata={"description": "Jobs the filters select."})
    completed = fields.Integer(required=True, metadata={"description": "complete"})
    inProgress = fields.Integer(
        required=True, metadata={"description": "preparing, processing, canceling"}
    )
    failed = fields.Integer(required=True, metadata={"description": "error, canceled"})
    pending = fields.Integer(required=True, metadata={"description": "scheduled, registered"})
    overallProgress = fields.String(
        required=True,
        metadata={"description": "Mean of their percents, to the nearest whole.", "example": "48%"},
    )
    incomplete = fields.Integer(
        required=True,
        metadata={"description": "Jobs the filters select with one half missing: not in `job`."},
    )


class PaginationSchema(ma.Schema):
    currentPage = fields.Integer(required=True)
    totalPages = fields.Integer(required=True)
    totalItems = fields.Integer(required=True)
    itemsPerPage = fields.Integer(required=True)
    hasNextPage = fields.Boolean(required=True)
    hasPreviousPage = fields.Boolean(required=True)


class ServerDataSchema(ma.Schema):
    system = fields.Nested(SystemSchema, required=True)
    summary = fields.Nested(SummarySchema, required=True)
    job = fields.List(
        fields.Nested(JobSchema),
        required=True,
        metadata={"description": "The page's jobs in ID order, each as the job endpoint's."},
    )
    pagination = fields.Nested(
        PaginationSchema, metadata={"description": "When the request gives page or limit."}
    )


class ServerResponseSchema(MonitoringResponseSchema):
    data = fields.Nested(ServerDataSchema, required=True)


class ErrorResponseSchema(ma.Schema):
    requestID = fields.String(required=True)
    success = fields.Boolean(required=True)
    error = fields.String(
        required=True,
        metadata={
            "description": "For people: the contract's Korean, or English when Accept-Language "
            "prefers it. Clients key on `code`, the same in both."
        },
    )
    timestamp = fields.String(required=True)
    code = fields.String(required=True)
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Validation errors: parameter -> reasons."},
    )
