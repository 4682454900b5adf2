"""The monitoring endpoints, one job and one server's jobs: query -> one SQL call -> checks ->
polling decision -> payload."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from .. import state
from ..data import repository
from ..data.cache import Entry, Snapshot
from ..data.repository import JobFilters, JobRead, JobSnapshot, ServerRead, ServerSnapshot
from . import bodies, openapi, payloads, polling, schemas
from .auth import require_token
from .envelope import encode, success
from .errors import JobIncomplete, JobNotFound, invalid_parameters
from .fields import MAX_NAME_LENGTH, text_refusal
from .messages import say
from .schemas import MonitoringQuery, QueryParser, ServerQuery

MAX_ID_DIGITS = len(str(repository.MAX_BIGINT))
SERVER_MESSAGE = "Server backup monitoring info"

blp = Blueprint(
    "monitoring",
    __name__,
    url_prefix="/api/backups/monitoring",
    description="Monitoring of backup jobs: one job, or every job of one server: server, "
    "partition or drive, progress and log.",
)
blp.ARGUMENTS_PARSER = QueryParser()
blp.before_request(require_token)


def not_found(identifier: str, by_id: bool) -> JobNotFound:
    return JobNotFound(
        say("job_not_found_id" if by_id else "job_not_found_name", identifier=identifier)
    )


def no_server(identifier: str) -> JobNotFound:
    return JobNotFound(say("server_without_jobs", identifier=identifier))


def parse_identifier(identifier: str, server: bool = False) -> tuple[int | None, str | None]:
    """All ASCII digits -> the job's (or server's) ID; anything else -> its name.

    A number larger than any bigint names nothing: that is decided here, before the database
    (by its length first, which keeps int() away from huge digit strings).
    """
    if identifier.isascii() and identifier.isdigit():
        digits = identifier.lstrip("0") or "0"
        if len(digits) > MAX_ID_DIGITS or int(digits) > repository.MAX_BIGINT:
            raise no_server(identifier) if server else not_found(identifier, by_id=True)
        return int(digits), None
    refusal = text_refusal(identifier, MAX_NAME_LENGTH)
    if refusal is not None:
        raise invalid_parameters({"identifier": [refusal]})
    return None, identifier


def read_through(
    read: JobRead | ServerRead,
    fetch: Callable[..., Snapshot | None],
    client: polling.Seen,
    after: int | None = None,
) -> Entry:
    """The snapshot cache's entry for the read, which is its key, from the database when the
    cache has none young enough, or when the client has seen a newer answer than it kept."""
    timeout_ms = state.settings().db_statement_timeout_ms

    def from_database() -> Snapshot | None:
        return state.database().read(lambda conn: fetch(conn, read, timeout_ms=timeout_ms))

    cache = state.cache()
    entry, read_now = cache.get(read, from_database)
    if not read_now and entry.snapshot is not None and client.newer_than(entry.snapshot, after):
        entry, _ = cache.get(read, from_database, fresh=True)
    return entry


def check_answer(job: JobSnapshot | None, identifier: str, by_id: bool) -> JobSnapshot:
    """Apply the contract's order: not found, then incomplete, then filter mismatch."""
    if job is None:
        raise not_found(identifier, by_id)
    if not job.has_definition:
        raise JobIncomplete(say("job_without_definition"))
    if not job.has_runtime:
        raise JobIncomplete(say("job_without_runtime"))
    if job.mismatched:
        name = "job_filtered_id" if by_id else "job_filtered_name"
        details = {filter: [say("filter_mismatch")] for filter in job.mismatched}
        raise JobNotFound(say(name, identifier=identifier), details=details)
    return job


def check_cursor(job: JobSnapshot, after: int | None) -> None:
    """A cursor past the newest line of a non-empty log is the client's mistake: lines are never
    renumbered and pruning removes only the oldest. On a replica the newest lines may not have
    arrived yet, so there the answer is the empty page it has."""
    past = after is not None and job.log_last is not None and after > job.log_last
    if past and not job.on_replica:
        raise invalid_parameters({"after": [say("after_past_newest", newest=job.log_last)]})


@blp.route("/job/<path:identifier>", parameters=openapi.JOB_PARAMETERS)
class JobMonitoring(MethodView):
    init_every_request = False  # the view keeps no state: one instance serves every request

    @blp.arguments(schemas.MonitoringQuerySchema(), location="query", error_status_code=400)
    @blp.alt_response(
        200,
        schema=bodies.MonitoringResponseSchema,
        headers=openapi.RESPONSE_HEADERS,
        description="The job's server, partition or drive, progress and one page of its log.",
        success=True,
    )
    @blp.doc(
        operationId="getJobMonitoring",
        security=openapi.SECURITY,
        responses=openapi.ERROR_RESPONSES,
    )
    def get(self, query: MonitoringQuery, identifier: str) -> Response:
        """Monitoring info of one backup job, by ID or by name.

        Polling: send the last answer's `ETag` in `If-None-Match` (a 304 while nothing changed)
        and wait `X-Poll-Interval` seconds between polls; no `X-Poll-Interval` means the job can
        change no more. To follow the log, pass each answer's `X-Log-Cursor` as `after`: the
        lines after it come oldest first, and `X-Log-Gap: true` says lines after it were pruned.
        Each query parameter comes at most once, as one value (twice, or `partition[]=/`, is a
        400); unknown ones are ignored. Errors come in one envelope; key on `code`, not on the
        text of `error` (Korean, or English when Accept-Language prefers it).
        """
        job_id, name = parse_identifier(identifier)
        settings = state.settings()
        client = polling.seen(request.if_none_match)
        # sort orders the lines of the answer only: not part of the read.
        read = JobRead(
            job_id, name, query.filters, query.page, query.limit, query.after, query.detail
        )
        entry = read_through(read, repository.get_job_snapshot, client, query.after)
        job = check_answer(entry.snapshot, identifier, by_id=job_id is not None)
        check_cursor(job, query.after)
        poll = polling.decide(job, query, settings, client, entry.memo)
        if poll.current:
            return polling.not_modified(poll.headers)
        # The payload depends on the snapshot, the order and the stall mark: encoded once each.
        descending = query.sort == "desc"
        data = entry.memo.get((descending, poll.stalled))
        if data is None:
            payload = payloads.monitoring_payload(
                job, settings.timezone, descending=descending, stalled=poll.stalled
            )
            data = encode(payload)
            state.cache().remember(entry, (descending, poll.stalled), data)
        return success(encoded=data, headers=poll.headers)


def check_server(
    server: ServerSnapshot | None, identifier: str, filters: JobFilters
) -> ServerSnapshot:
    """The server view's errors, in API.md's order: no server, a half-written job under a
    partition or drive filter, then filters that select nothing."""
    if server is None:
        raise no_server(identifier)
    summary = server.summary
    # The partition or drive filter, if any (the partition when both are given).
    kind = "drive" if filters.partition is None else "partition"
    place = getattr(filters, kind)
    if place is not None and summary.incomplete_on_place:
        raise JobIncomplete(say(f"server_incomplete_{kind}", **{kind: place}))
    if summary.total or summary.incomplete:
        return server
    if place is not None and not summary.on_place:
        raise JobNotFound(say(f"server_no_{kind}", identifier=identifier, **{kind: place}))
    if filters == JobFilters():
        raise no_server(identifier)
    raise JobNotFound(say("server_filtered", identifier=identifier))


@blp.route("/system/<path:identifier>", parameters=openapi.SERVER_PARAMETERS)
class ServerMonitoring(MethodView):
    init_every_request = False  # the view keeps no state: one instance serves every request

    @blp.arguments(schemas.ServerQuerySchema(), location="query", error_status_code=400)
    @blp.alt_response(
        200,
        schema=bodies.ServerResponseSchema,
        headers=openapi.SERVER_RESPONSE_HEADERS,
        description="The server, the summary of its jobs the filters select, and one page of "
        "them with their newest log lines.",
        success=True,
    )
    @blp.doc(
        operationId="getServerMonitoring",
        security=openapi.SECURITY,
        responses=openapi.SERVER_ERROR_RESPONSES,
    )
    def get(self, query: ServerQuery, identifier: str) -> Response:
        """Monitoring info of every backup job of one server, by ID or by name.

        One answer for a wall of jobs: the summary over every job the filters select, one page
        of them in ID order, each with its newest `logLimit` log lines. Poll it as the job
        endpoint: `If-None-Match` with the last `ETag` (a 304 while nothing changed), every
        `X-Poll-Interval` seconds. Query parameters and errors as for the job endpoint: each
        parameter at most once; key on `code`.
        """
        server_id, name = parse_identifier(identifier, server=True)
        settings = state.settings()
        client = polling.seen(request.if_none_match)
        read = ServerRead(
            server_id, name, query.filters, query.page, query.limit, query.log_limit, query.detail
        )
        entry = read_through(read, repository.get_server_snapshot, client)
        server = check_server(entry.snapshot, identifier, query.filters)
        poll = polling.decide_server(server, query, settings, client)
        if poll.current:
            return polling.not_modified(poll.headers)
        # The payload depends on the snapshot, whether pages were asked for and the stall marks.
        marks = (query.paged, None if poll.stalled is None else tuple(poll.stalled))
        data = entry.memo.get(marks)
        if data is None:
            payload = payloads.server_payload(
                server,
                settings.timezone,
                paged=query.paged,
                page=query.page,
                limit=query.limit,
                stalled=poll.stalled,
            )
            data = encode(payload)
            state.cache().remember(entry, marks, data)
        return success(encoded=data, message=SERVER_MESSAGE, headers=poll.headers)
