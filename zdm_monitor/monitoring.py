"""The monitoring endpoints, one job and one server's jobs: query -> one SQL call -> checks ->
polling decision -> payload."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import ValidationError

from . import openapi, polling, repository, serializers, state
from .auth import require_token
from .envelope import encode, success
from .errors import JobIncomplete, JobNotFound, invalid_parameters
from .repository import MAX_BIGINT, JobFilters, JobSnapshot, ServerSnapshot
from .schemas import (
    MAX_NAME_LENGTH,
    MonitoringQuery,
    MonitoringQuerySchema,
    QueryParser,
    ServerQuery,
    ServerQuerySchema,
    check_text,
)

MAX_ID_DIGITS = len(str(MAX_BIGINT))


class MonitoringBlueprint(Blueprint):  # type: ignore[misc]
    ARGUMENTS_PARSER = QueryParser()


blp = MonitoringBlueprint(
    "monitoring",
    __name__,
    url_prefix="/api/backups/monitoring",
    description="Monitoring of backup jobs: one job, or every job of one server: server, "
    "partition or drive, progress and log.",
)
blp.before_request(require_token)


def not_found(identifier: str, by_id: bool) -> JobNotFound:
    subject = f"ID가 '{identifier}'인" if by_id else f"Name이 '{identifier}'인"
    return JobNotFound(f"{subject} 조건에 맞는 Backup 작업을 찾을 수 없습니다.")


def no_server(identifier: str) -> JobNotFound:
    return JobNotFound(f"서버 '{identifier}'에 등록된 Backup 작업을 찾을 수 없습니다.")


def parse_identifier(identifier: str, server: bool = False) -> tuple[int | None, str | None]:
    """All ASCII digits -> the job's (or server's) ID; anything else -> its name.

    A number longer than any bigint names nothing: that is decided here, before the database.
    """
    if identifier.isascii() and identifier.isdigit():
        digits = identifier.lstrip("0") or "0"
        if len(digits) > MAX_ID_DIGITS or int(digits) > MAX_BIGINT:
            raise no_server(identifier) if server else not_found(identifier, by_id=True)
        return int(digits), None
    try:
        return None, check_text(identifier, MAX_NAME_LENGTH)
    except ValidationError as exc:
        raise invalid_parameters({"identifier": [str(exc)]}) from None


def check_answer(job: JobSnapshot | None, identifier: str, by_id: bool) -> JobSnapshot:
    """Apply the contract's order: not found, then incomplete, then filter mismatch."""
    if job is None:
        raise not_found(identifier, by_id)
    if not job.has_definition:
        raise JobIncomplete("작업 데이터가 불완전합니다. backup 정보가 누락되었습니다.")
    if not job.has_runtime:
        raise JobIncomplete("작업 데이터가 불완전합니다. backupInfo 정보가 누락되었습니다.")
    if not job.matches:
        subject = f"ID가 '{identifier}'인" if by_id else f"Name이 '{identifier}'인"
        raise JobNotFound(
            f"{subject} Backup 작업은 존재하지만, 지정된 필터 조건과 일치하는 결과가 없습니다."
        )
    return job


@blp.route("/job/<path:identifier>", parameters=openapi.JOB_PARAMETERS)
class JobMonitoring(MethodView):
    init_every_request = False  # the view keeps no state: one instance serves every request

    @blp.doc(security=openapi.SECURITY)
    @blp.arguments(MonitoringQuerySchema(), location="query", error_status_code=400)
    @blp.alt_response(
        200,
        schema=openapi.MonitoringResponseSchema,
        headers=openapi.RESPONSE_HEADERS,
        description="The job's server, partition or drive, progress and one page of its log.",
        success=True,
    )
    @blp.doc(responses=openapi.ERROR_RESPONSES)
    def get(self, query: MonitoringQuery, identifier: str) -> Response:
        """Monitoring info of one backup job, by ID or by name."""
        job_id, name = parse_identifier(identifier)
        settings, cache = state.settings(), state.cache()
        # What the snapshot depends on; sort orders the lines of the answer only.
        key = (job_id, name, query.filters, query.page, query.limit, query.after, query.detail)
        entry = cache.lookup(key)
        if entry is None:
            generation = cache.generation()
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
            entry = cache.store(key, snapshot, generation)
        job = check_answer(entry.snapshot, identifier, by_id=job_id is not None)
        poll = polling.decide(job, query, settings, request.if_none_match, entry.memo)
        if poll.current:
            return polling.not_modified(poll.headers)
        # The payload depends on the snapshot, the order and the stall mark: encoded once each.
        descending = query.sort == "desc"
        data = entry.memo.get((descending, poll.stalled))
        if data is None:
            payload = serializers.monitoring_payload(
                job, settings.timezone, descending=descending, stalled=poll.stalled
            )
            data = entry.memo[descending, poll.stalled] = encode(payload)
        return success(encoded=data, headers=poll.headers)


SERVER_MESSAGE = "Server backup monitoring info"


def check_server(
    server: ServerSnapshot | None, identifier: str, filters: JobFilters
) -> ServerSnapshot:
    """The server view's errors, in API.md's order: no server, a half-written job under a
    partition or drive filter, then filters that select nothing."""
    if server is None:
        raise no_server(identifier)
    summary = server.summary
    place = (
        ("파티션", filters.partition)
        if filters.partition is not None
        else ("드라이브", filters.drive)
        if filters.drive is not None
        else None
    )
    if place is not None and summary.incomplete_on_place:
        raise JobIncomplete(
            f"작업 데이터가 불완전합니다. {place[0]} '{place[1]}' 에 대한 backup 또는 "
            "backupInfo 작업 정보를 찾을 수 없습니다."
        )
    if summary.total or summary.incomplete:
        return server
    if place is not None and not summary.on_place:
        raise JobNotFound(
            f"서버 '{identifier}'에 {place[0]} '{place[1]}'에 해당하는 Backup 작업을 찾을 수 "
            "없습니다."
        )
    if filters == JobFilters():
        raise no_server(identifier)
    raise JobNotFound(f"서버 '{identifier}'에 조건에 맞는 Backup 작업을 찾을 수 없습니다.")


@blp.route("/system/<path:identifier>", parameters=openapi.SERVER_PARAMETERS)
class ServerMonitoring(MethodView):
    init_every_request = False  # the view keeps no state: one instance serves every request

    @blp.doc(security=openapi.SECURITY)
    @blp.arguments(ServerQuerySchema(), location="query", error_status_code=400)
    @blp.alt_response(
        200,
        schema=openapi.ServerResponseSchema,
        headers=openapi.SERVER_RESPONSE_HEADERS,
        description="The server, the summary of its jobs the filters select, and one page of "
        "them with their newest log lines.",
        success=True,
    )
    @blp.doc(responses=openapi.SERVER_ERROR_RESPONSES)
    def get(self, query: ServerQuery, identifier: str) -> Response:
        """Monitoring info of every backup job of one server, by ID or by name."""
        system_id, system_name = parse_identifier(identifier, server=True)
        settings, cache = state.settings(), state.cache()
        key = ("server", system_id, system_name, query)
        entry = cache.lookup(key)
        if entry is None:
            generation = cache.generation()
            snapshot = state.database().read(
                lambda conn: repository.get_server_snapshot(
                    conn,
                    system_id=system_id,
                    system_name=system_name,
                    filters=query.filters,
                    page=query.page,
                    limit=query.limit,
                    log_limit=query.log_limit,
                    detail=query.detail,
                    timeout_ms=settings.db_statement_timeout_ms,
                )
            )
            entry = cache.store(key, snapshot, generation)
        server = check_server(entry.snapshot, identifier, query.filters)
        poll = polling.decide_server(server, query, settings, request.if_none_match)
        if poll.current:
            return polling.not_modified(poll.headers)
        marks = None if poll.stalled is None else tuple(poll.stalled)
        data = entry.memo.get(marks)
        if data is None:
            payload = serializers.server_payload(
                server,
                settings.timezone,
                paged=query.paged,
                page=query.page,
                limit=query.limit,
                stalled=poll.stalled,
            )
            data = entry.memo[marks] = encode(payload)
        return success(encoded=data, message=SERVER_MESSAGE, headers=poll.headers)
