"""The monitoring endpoint: validated query -> one SQL statement -> payload -> envelope."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from flask import Request, Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict

from . import repository, serializers, state
from .auth import require_token
from .config import Settings
from .envelope import success
from .errors import JobIncomplete, JobNotFound, invalid_parameters
from .repository import MAX_BIGINT, JobSnapshot
from .schemas import (
    MAX_NAME_LENGTH,
    TEXT_PATTERN,
    MonitoringQuery,
    MonitoringQuerySchema,
    MonitoringResponseSchema,
    check_text,
)

PARSED_QUERIES = 1024


class QueryParser(FlaskParser):
    """Decode the query string strictly as UTF-8, marking undecodable bytes.

    Werkzeug keeps an undecodable escape such as %FF as the literal text "%FF"; decoding with
    errors="replace" turns it into U+FFFD, which the schema refuses by parameter name.
    """

    def __init__(self) -> None:
        super().__init__()
        self._parsed: dict[tuple[Any, ...], Any] = {}

    def load_querystring(self, req: Request, schema: Schema) -> MultiDict[str, str]:
        raw = quote(req.query_string, safe="&=%+")
        return MultiDict(parse_qsl(raw, keep_blank_values=True, errors="replace"))

    def parse(self, argmap: Any, req: Request | None = None, **kwargs: Any) -> Any:
        """Validate each distinct query string once: a dashboard repeats its own on every poll.

        Only valid queries are kept (an invalid one raises), results are immutable, and the
        cache is emptied when full, so unique query strings cannot grow it without bound.
        """
        request = req or self.get_default_request()
        key = (id(argmap), request.query_string, tuple(sorted(kwargs.items())))
        result = self._parsed.get(key)
        if result is None:
            result = super().parse(argmap, request, **kwargs)
            if len(self._parsed) >= PARSED_QUERIES:
                self._parsed.clear()
            self._parsed[key] = result
        return result


class MonitoringBlueprint(Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = QueryParser()


blp = MonitoringBlueprint(
    "monitoring",
    __name__,
    url_prefix="/api/backups/monitoring",
    description="Monitoring of one backup job: server, partition or drive, progress and log.",
)
blp.before_request(require_token)

MAX_ID_DIGITS = len(str(MAX_BIGINT))
POLLING_HEADERS = {
    "ETag": {
        "description": "Weak validator of this answer; send it back in If-None-Match.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "`private, no-cache`: revalidate on every poll.",
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
    "X-Pagination": {
        "description": "The log's pages: total, total_pages, first_page, last_page, page, "
        "previous_page, next_page (keys that do not apply are left out; no page keys with "
        "`after`).",
        "schema": {"type": "string"},
    },
    **POLLING_HEADERS,
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


def parse_identifier(identifier: str) -> tuple[int | None, str | None]:
    """All ASCII digits -> job ID; anything else -> job name."""
    if identifier.isascii() and identifier.isdigit():
        digits = identifier.lstrip("0") or "0"
        # Longer than any bigint: no such job, and int() never sees a huge digit string.
        return (int(digits) if len(digits) <= MAX_ID_DIGITS else MAX_BIGINT + 1), None
    try:
        return None, check_text(identifier, MAX_NAME_LENGTH)
    except ValidationError as exc:
        raise invalid_parameters({"identifier": [str(exc)]}) from None


def check_answer(job: JobSnapshot | None, identifier: str, by_id: bool) -> JobSnapshot:
    """Apply the contract's order: not found, then incomplete, then filter mismatch."""
    subject = f"ID가 '{identifier}'인" if by_id else f"Name이 '{identifier}'인"
    if job is None:
        raise JobNotFound(f"{subject} 조건에 맞는 Backup 작업을 찾을 수 없습니다.")
    if not job.has_definition:
        raise JobIncomplete("작업 데이터가 불완전합니다. backup 정보가 누락되었습니다.")
    if not job.has_runtime:
        raise JobIncomplete("작업 데이터가 불완전합니다. backupInfo 정보가 누락되었습니다.")
    if not job.matches:
        raise JobNotFound(
            f"{subject} Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 없습니다."
        )
    return job


@blp.route(
    "/job/<path:identifier>",
    parameters=[
        {
            "in": "path",
            "name": "identifier",
            "description": "All ASCII digits: the job's ID; anything else: the job's name "
            f"(at most {MAX_NAME_LENGTH} characters).",
            "schema": {"type": "string", "maxLength": MAX_NAME_LENGTH, "pattern": TEXT_PATTERN},
        },
        {
            "in": "header",
            "name": "If-None-Match",
            "required": False,
            "description": "The ETag of the answer the client holds: 304 while it is current.",
            "schema": {"type": "string"},
        },
    ],
)
class JobMonitoring(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(MonitoringQuerySchema(), location="query", error_status_code=400)
    @blp.alt_response(
        200,
        schema=MonitoringResponseSchema,
        headers=RESPONSE_HEADERS,
        description="The job's server, partition or drive, progress and one page of its log.",
        success=True,
    )
    @blp.doc(responses=ERROR_RESPONSES)
    def get(self, query: MonitoringQuery, identifier: str) -> Response:
        """Monitoring info of one backup job, by ID or by name."""
        job_id, name = parse_identifier(identifier)
        settings = state.settings()
        snapshot = state.database().read(
            lambda conn: repository.get_job_snapshot(
                conn,
                job_id=job_id,
                name=name,
                filters=query.filters,
                page=query.page,
                limit=query.limit,
                after=query.after,
                detail=query.detail,
                timeout_ms=settings.db_statement_timeout_ms,
            )
        )
        job = check_answer(snapshot, identifier, by_id=job_id is not None)
        zone = settings.timezone
        stalled = (
            serializers.is_stalled(job, datetime.now(UTC), settings.stall_seconds)
            if query.detail
            else None
        )
        cursor, gap = serializers.log_cursor(job, query.after)
        tag = entity_tag(job, query, cursor, zone, stalled)
        headers = polling_headers(job, query, settings, tag, cursor, gap)
        if request.if_none_match.contains_weak(tag):
            return not_modified(headers)
        payload = serializers.monitoring_payload(
            job, zone, descending=query.sort == "desc", stalled=stalled
        )
        return success(payload, headers=headers)


TAGGED_FIELDS = attrgetter(
    *(f.name for f in fields(JobSnapshot) if f.name not in ("log_lines", "log_times", "first_line"))
)


def entity_tag(
    job: JobSnapshot,
    query: MonitoringQuery,
    cursor: int | None,
    zone: ZoneInfo,
    stalled: bool | None,
) -> str:
    """Name this answer's content: the job's halves, its log's ends, the query, the zone.

    Log lines never change once written, so the log's first and last numbers stand for the
    lines; the lines themselves are left out of the hash. With after, the tag names where the
    answer leaves the client (its X-Log-Cursor), not where it started: the poll after a batch
    of new lines, finding nothing newer, matches the tag of that batch's answer and is a 304.
    """
    if query.after is not None:
        query = replace(query, after=cursor)
    state = (TAGGED_FIELDS(job), query, zone.key, stalled)
    return hashlib.blake2b(repr(state).encode(), digest_size=12).hexdigest()


def polling_headers(
    job: JobSnapshot,
    query: MonitoringQuery,
    settings: Settings,
    tag: str,
    cursor: int | None,
    gap: bool,
) -> dict[str, str]:
    """The headers of a 200 and of its 304: validator, caching, pagination, cursor, pace."""
    total = job.log_total
    meta = serializers.pagination(
        None if query.after is not None else query.page, query.limit, total
    )
    headers = {
        "ETag": f'W/"{tag}"',
        # Proxies and browsers must revalidate: progress changes between polls.
        "Cache-Control": "private, no-cache",
        "X-Pagination": json.dumps(meta),
    }
    if cursor is not None:
        headers["X-Log-Cursor"] = str(cursor)
    if gap:
        headers["X-Log-Gap"] = "true"
    interval = serializers.poll_interval(
        job.status, settings.poll_active_seconds, settings.poll_waiting_seconds
    )
    if interval is not None:
        headers["X-Poll-Interval"] = str(interval)
    return headers


def not_modified(headers: dict[str, str]) -> Response:
    """A 304: the client's copy is current; no body is built or sent."""
    response = Response(status=304, headers=headers)
    del response.headers["Content-Type"]
    return response
