"""Raw, parameterised SQL against the ZDM tables; every function takes the connection first."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg2.extensions import connection

# backup.id and server.id are bigint.
MAX_BIGINT = 2**63 - 1
# ZDM's tables, all that the read functions read (schema.sql creates them in a new database).
ZDM_TABLES = ("server", "repository", "backup", "backup_info", "backup_log")


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
    """Both halves of one job as far as they exist, the filters it fails, one log page."""

    has_definition: bool
    has_runtime: bool
    mismatched: list[str]  # the query parameters of the filters the job does not match
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
    # How new the rows of the answer are: the newest transaction that wrote one of them
    # (sql/job_snapshot.sql, zdm_monitor_written); the same wherever they are read.
    version: int
    on_replica: bool  # read on a streaming replica, which may not have every commit yet


@dataclass(frozen=True)
class JobRead:
    """One job read's arguments: what get_job_snapshot takes, and so the snapshot cache's key."""

    job_id: int | None
    name: str | None
    filters: JobFilters
    page: int
    limit: int
    after: int | None  # the lines after this line number instead of the page
    detail: bool


# The time bound and read-only mode travel with each read, in the same message (still one round
# trip), not as connection settings, which a transaction-pooling PgBouncer refuses.
READ_GUARD = "SET LOCAL statement_timeout = %(timeout_ms)s; SET TRANSACTION READ ONLY;"
# Where the row was read: a streaming replica is in recovery.
ON_REPLICA = "pg_is_in_recovery()"


def argument_names(read: type) -> list[str]:
    """The parameters of a read (the read function's arguments without their p_ prefix)."""
    names = [f.name for f in fields(read) if f.name not in ("filters", "page")]
    return names + [f.name for f in fields(JobFilters)] + ["skip"]


def selected(*records: type) -> list[str]:
    """What a call selects for the records' fields, in order: each field's column, but for
    on_replica, where the row was read."""
    return [
        ON_REPLICA if f.name == "on_replica" else f.name
        for record in records
        for f in fields(record)
    ]


def call(function: str, read: type, *records: type) -> str:
    """The guarded call of a read function: its arguments by name (p_<name> => %(name)s), its
    columns by the records' field names, so that a new one is an edit here and in the SQL."""
    named = ", ".join(f"p_{name} => %({name})s" for name in argument_names(read))
    return f"{READ_GUARD} SELECT {', '.join(selected(*records))} FROM {function}({named})"


def parameters(read: JobRead | ServerRead, timeout_ms: int) -> dict[str, Any]:
    """A read's parameters, named as call() names them."""
    # vars(), not dataclasses.asdict: asdict deep-copies every field.
    params: dict[str, Any] = {**vars(read), **vars(read.filters)}
    del params["filters"], params["page"]
    params.update(skip=(read.page - 1) * read.limit, timeout_ms=timeout_ms)
    return params


def get_job_snapshot(conn: connection, read: JobRead, *, timeout_ms: int) -> JobSnapshot | None:
    """Return the job by ID or name with one log page (with after: the first limit lines after
    that line number); None when neither half exists."""
    with conn.cursor() as cur:
        cur.execute(GET_JOB_SNAPSHOT, parameters(read, timeout_ms))
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
    written: int  # how new the server's row and the counted jobs' rows are


@dataclass(frozen=True)
class ServerSnapshot:
    summary: ServerSummary
    jobs: list[JobSnapshot]  # the page, in job ID order
    on_replica: bool

    @property
    def version(self) -> int:
        """How new the rows of the whole answer are: the summary's and the page's."""
        return max([self.summary.written, *(job.version for job in self.jobs)])


@dataclass(frozen=True)
class ServerRead:
    """One server read's arguments: what get_server_snapshot takes, and so the cache's key."""

    system_id: int | None
    system_name: str | None
    filters: JobFilters
    page: int
    limit: int
    log_limit: int  # each job's newest lines
    detail: bool


SUMMARY_FIELDS = len(fields(ServerSummary))
# The read functions this release calls, each with the read whose arguments it takes and the
# records its row is made of (zdm-monitor check compares them with what the database holds).
READ_FUNCTIONS: dict[str, tuple[type, ...]] = {
    "zdm_monitor_job_snapshot": (JobRead, JobSnapshot),
    "zdm_monitor_server_snapshot": (ServerRead, ServerSummary, JobSnapshot),
}
GET_JOB_SNAPSHOT, GET_SERVER_SNAPSHOT = (call(f, *parts) for f, parts in READ_FUNCTIONS.items())


def get_server_snapshot(
    conn: connection, read: ServerRead, *, timeout_ms: int
) -> ServerSnapshot | None:
    """Return the server, the summary of its selected jobs and one page of them with their
    newest log_limit lines; None when there is no such server."""
    with conn.cursor() as cur:
        cur.execute(GET_SERVER_SNAPSHOT, parameters(read, timeout_ms))
        rows = cur.fetchall()
    if not rows:
        return None
    summary = ServerSummary(*rows[0][:SUMMARY_FIELDS])
    jobs = [JobSnapshot(*row[SUMMARY_FIELDS:]) for row in rows]
    page = [job for job in jobs if job.has_definition]  # a page past the end: no job's columns
    return ServerSnapshot(summary, page, jobs[0].on_replica)


def ping(conn: connection, *, timeout_ms: int) -> None:
    """Raise unless the database answers within the timeout."""
    with conn.cursor() as cur:
        # One implicit transaction: SET LOCAL bounds the SELECT and nothing outlives it.
        cur.execute(f"{READ_GUARD} SELECT 1", {"timeout_ms": timeout_ms})
        cur.fetchone()
