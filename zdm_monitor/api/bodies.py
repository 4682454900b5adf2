"""The documented response bodies: the envelopes and their data, as the OpenAPI document shows
them (payloads.py, envelope.py and errors.py build the real ones)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from .errors import error_codes
from .schemas import MODES, REPOSITORY_TYPES, STATUSES

DETAIL = "With detail=true only."
TIME = "In ZDM_TIMEZONE; also `20000-01-01 00:00:00`, `0044-03-15 00:00:00 BC`, `infinity`."
# A time as payloads.format_time writes it, or its `-` placeholder; elapsed as format_elapsed.
TIME_OR_NONE = r"^(-|-?infinity|[0-9]{4,}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}( BC)?)$"
ELAPSED_OR_NONE = r"^(-|[0-9]{2,}:[0-9]{2}:[0-9]{2})$"
CODES = error_codes()
CODE_DESCRIPTION = (
    "What went wrong, the same in both languages: key on it. The API's own codes, then the HTTP "
    "layer's (the routing's, or nginx's in front) as `HTTP-<status>`; each with its status:\n\n"
    + "\n".join(f"- `{code}` ({status}): {why}" for code, (status, why) in CODES.items())
)


class JobInfoSchema(ma.Schema):
    name = fields.String(required=True)
    partition = fields.String(metadata={"description": "Linux jobs only."})
    drive = fields.String(metadata={"description": "Windows jobs only."})
    id = fields.Integer(metadata={"description": DETAIL})
    mode = fields.String(metadata={"enum": list(MODES), "description": DETAIL})


class ProgressInfoSchema(ma.Schema):
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    percent = fields.String(required=True, metadata={"example": "60%"})
    message = fields.String(
        required=True,
        metadata={
            "description": "The last progress message; `-` when there is none.",
            "example": "Processing files...",
        },
    )
    start = fields.String(
        required=True,
        metadata={
            "description": f"When the job started; `-` until it starts. {TIME}",
            "pattern": TIME_OR_NONE,
            "example": "2025-01-15 02:00:00",
        },
    )
    elapsed = fields.String(
        required=True,
        metadata={
            "description": "HH:MM:SS (hours may pass 99) from the start to the end once the job "
            "ended, else to the last progress report; `-` until it starts, and from or to "
            "`infinity`.",
            "pattern": ELAPSED_OR_NONE,
            "example": "00:20:00",
        },
    )
    end = fields.String(
        required=True,
        metadata={
            "description": f"When the job ended; `-` until it ends. {TIME}",
            "pattern": TIME_OR_NONE,
            "example": "-",
        },
    )
    lastReport = fields.String(
        metadata={
            "description": f"The last progress report; `-` until the first. {TIME} {DETAIL}",
            "pattern": TIME_OR_NONE,
            "example": "2025-01-15 02:20:00",
        }
    )
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
    time = fields.String(required=True, metadata={"description": TIME})
    message = fields.String(required=True)


class JobSchema(ma.Schema):
    info = fields.Nested(JobInfoSchema, required=True)
    progressInfo = fields.Nested(ProgressInfoSchema, required=True)
    log = fields.List(fields.String(), required=True)
    # Nullable as OpenAPI 3.0 writes a nullable reference (allOf with nullable), which generators
    # read as `Repository | null`; allow_none would add an empty object to it (anyOf).
    repository = fields.Nested(
        RepositorySchema,
        metadata={"description": f"`null` when the job has none. {DETAIL}", "nullable": True},
    )
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
    # A literal, as the error body's `false`: generated types tell an answer from an error by it.
    success = fields.Boolean(required=True, metadata={"enum": [True]})
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
    success = fields.Boolean(required=True, metadata={"enum": [False]})
    error = fields.String(
        required=True,
        metadata={
            "description": "For people: the contract's Korean, or English when Accept-Language "
            "prefers it. Clients key on `code`, the same in both."
        },
    )
    timestamp = fields.String(required=True)
    code = fields.String(
        required=True,
        metadata={
            "description": CODE_DESCRIPTION,
            "enum": list(CODES),
            "x-enum-descriptions": [f"{status}: {why}" for status, why in CODES.values()],
        },
    )
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={
            "description": "REQUEST-ERROR-01: each bad parameter -> what it accepts. "
            "JOB-ERROR-01 of a job that exists but fails a filter: each filter it fails -> why."
        },
    )
