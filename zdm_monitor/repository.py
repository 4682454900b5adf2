"""Raw, parameterised SQL against the ZDM tables; every function takes the connection first."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg2.extensions import connection

# backup.id and server.id are bigint.
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True)
class JobFilters:
    """Filters a request puts on the identified job; None means not given."""

    mode: str | None = None
    partition: str | None = None
    drive: str | None = None
    server_id: int | None = None
    server_name: str | None = None
    repository_type: str | None = None
    repository_path: str | None = None
    status: str | None = None
    job_name: str | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """Both halves of one job as far as they exist, whether the filters hold, one log page."""

    has_definition: bool
    has_runtime: bool
    matches: bool
    name: str | None
    server_name: str | None
    os: str | None
    partition: str | None
    drive: str | None
    status: str | None
    percent: int | None
    message: str | None
    started_at: datetime | None
    ended_at: datetime | None
    last_report_at: datetime | None
    log_total: int
    log_lines: list[str]
    server_id: int | None
    mode: str | None
    repository_type: str | None
    repository_path: str | None
    log_first: int | None  # the oldest kept line's number; None for an empty log
    log_last: int | None
    first_line: int | None  # the number of log_lines[0]
    log_times: list[datetime] | None  # with detail only
    job_id: int
    replay_lsn: Decimal | None  # read on a replica: the WAL position it had replayed


# The time bound and read-only mode travel with each read, in the same message (still one round
# trip), not as connection settings: a transaction-pooling PgBouncer gives every transaction
# whichever server connection is free and refuses session options at connect.
READ_GUARD = "SET LOCAL statement_timeout = %(timeout_ms)s; SET TRANSACTION READ ONLY;"

# One round trip answers the whole request: which halves exist, whether every filter holds, the
# log's size and the requested page. The statements live in sql/job_snapshot.sql. The call names
# each argument (p_<name> => %(name)s) and selects JobSnapshot's fields by column name, so a new
# argument or column is one edit in the SQL and one here (JobFilters, JobSnapshot), and the row
# arrives in the dataclass's order.
SNAPSHOT_ARGUMENTS = (
    "job_id",
    "name",
    *(f.name for f in fields(JobFilters)),
    "skip",
    "limit",
    "after",
    "detail",
)
# Where the row was read: on a streaming replica the WAL position it had replayed, on the
# primary NULL (the snapshot cache's replica rule, cache.py).
READ_AT = "pg_last_wal_replay_lsn() - '0/0'::pg_lsn"


def call(function: str, arguments: tuple[str, ...], *records: type) -> str:
    """The guarded call of a read function by named arguments, selecting the records' fields
    by column name (replay_lsn: where the row was read)."""
    columns = (
        READ_AT if f.name == "replay_lsn" else f.name for record in records for f in fields(record)
    )
    named = ", ".join(f"p_{name} => %({name})s" for name in arguments)
    return f"{READ_GUARD} SELECT {', '.join(columns)} FROM {function}({named})"


def parameters(filters: JobFilters, page: int, limit: int, **values: Any) -> dict[str, Any]:
    """A read's parameters: the filters, the page as rows to skip, and the rest as given."""
    # vars(), not dataclasses.asdict: asdict deep-copies every field.
    params: dict[str, Any] = dict(vars(filters))
    params.update(skip=(page - 1) * limit, limit=limit, **values)
    return params


GET_JOB_SNAPSHOT = call("zdm_monitor_job_snapshot", SNAPSHOT_ARGUMENTS, JobSnapshot)


def get_job_snapshot(
    conn: connection,
    *,
    job_id: int | None = None,
    name: str | None = None,
    filters: JobFilters,
    page: int,
    limit: int,
    after: int | None = None,
    detail: bool = False,
    timeout_ms: int,
) -> JobSnapshot | None:
    """Return the job by ID or name with one log page; None when neither half exists.

    With after, the page is the first limit lines after that line number instead.
    """
    params = parameters(
        filters,
        page,
        limit,
        job_id=job_id,
        name=name,
        after=after,
        detail=detail,
        timeout_ms=timeout_ms,
    )
    with conn.cursor() as cur:
        cur.execute(GET_JOB_SNAPSHOT, params)
        row = cur.fetchone()
    return None if row is None else JobSnapshot(*row)


@dataclass(frozen=True)
class ServerSummary:
    """The server and every job of it the filters select (zdm_monitor_server_snapshot)."""

    system_id: int
    system_name: str
    system_os: str
    total: int  # both halves present
    completed: int
    in_progress: int
    failed: int
    pending: int
    percent_sum: int
    incomplete: int  # the definition half only
    on_place: int  # with a partition or drive filter: the server's jobs on it
    incomplete_on_place: int  # of those, selected by the other filters but lacking a half
    replay_lsn: Decimal | None  # read on a replica: the WAL position it had replayed


@dataclass(frozen=True)
class ServerSnapshot:
    summary: ServerSummary
    jobs: list[JobSnapshot]  # the page, in job ID order


SERVER_ARGUMENTS = (
    "system_id",
    "system_name",
    *(f.name for f in fields(JobFilters)),
    "skip",
    "limit",
    "log_limit",
    "detail",
)
SUMMARY_FIELDS = len(fields(ServerSummary))
GET_SERVER_SNAPSHOT = call(
    "zdm_monitor_server_snapshot", SERVER_ARGUMENTS, ServerSummary, JobSnapshot
)


def get_server_snapshot(
    conn: connection,
    *,
    system_id: int | None = None,
    system_name: str | None = None,
    filters: JobFilters,
    page: int,
    limit: int,
    log_limit: int,
    detail: bool = False,
    timeout_ms: int,
) -> ServerSnapshot | None:
    """Return the server, the summary of its selected jobs and one page of them with their
    newest log_limit lines; None when there is no such server."""
    params = parameters(
        filters,
        page,
        limit,
        system_id=system_id,
        system_name=system_name,
        log_limit=log_limit,
        detail=detail,
        timeout_ms=timeout_ms,
    )
    with conn.cursor() as cur:
        cur.execute(GET_SERVER_SNAPSHOT, params)
        rows = cur.fetchall()
    if not rows:
        return None
    summary = ServerSummary(*rows[0][:SUMMARY_FIELDS])
    jobs = [JobSnapshot(*row[SUMMARY_FIELDS:]) for row in rows if row[-2] is not None]
    return ServerSnapshot(summary, jobs)


def ping(conn: connection, *, timeout_ms: int) -> None:
    """Raise unless the database answers within the timeout."""
    with conn.cursor() as cur:
        # One round trip: the statements run as one implicit transaction, so SET LOCAL bounds
        # the SELECT only and nothing outlives it on a pooled connection.
        cur.execute(f"{READ_GUARD} SELECT 1", {"timeout_ms": timeout_ms})
        cur.fetchone()
