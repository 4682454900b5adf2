"""Raw, parameterised SQL against the ZDM tables; every function takes the connection first."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg2.extensions import connection

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


# One statement answers the whole request: which halves exist, whether every filter holds, the
# log's size and the requested page. Log lines are consecutive per job, so the size is
# last - first + 1 and page N is a primary-key range counted back from the newest line.
GET_JOB_SNAPSHOT = """
WITH job AS (
    SELECT COALESCE(%(job_id)s::bigint, (SELECT id FROM backup WHERE name = %(name)s)) AS id
)
SELECT
    b.id IS NOT NULL,
    i.backup_id IS NOT NULL,
    (    (%(mode)s::text IS NULL OR b.mode = %(mode)s)
     AND (%(partition)s::text IS NULL OR b.partition = %(partition)s)
     AND (%(drive)s::text IS NULL OR b.drive = %(drive)s)
     AND (%(server_id)s::numeric IS NULL OR s.id = %(server_id)s::numeric)
     AND (%(server_name)s::text IS NULL OR s.name = %(server_name)s)
     AND (%(repository_type)s::text IS NULL OR r.type = %(repository_type)s)
     AND (%(repository_path)s::text IS NULL OR r.path = %(repository_path)s)
     AND (%(status)s::text IS NULL OR i.status = %(status)s)
     AND (%(job_name)s::text IS NULL OR b.name = %(job_name)s)
    ) IS TRUE,
    b.name, s.name, s.os, b.partition, b.drive,
    i.status, i.percent, i.message, i.started_at, i.ended_at, i.last_report_at,
    COALESCE(bounds.last_line - bounds.first_line + 1, 0),
    COALESCE(page.lines, '{}')
FROM job
LEFT JOIN backup b ON b.id = job.id
LEFT JOIN server s ON s.id = b.server_id
LEFT JOIN repository r ON r.id = b.repository_id
LEFT JOIN backup_info i ON i.backup_id = job.id
CROSS JOIN LATERAL (
    SELECT min(line) AS first_line, max(line) AS last_line
    FROM backup_log WHERE backup_id = job.id
) bounds
CROSS JOIN LATERAL (
    SELECT array_agg(message ORDER BY line) AS lines
    FROM backup_log
    WHERE backup_id = job.id
      AND line >  bounds.last_line - %(skip)s - %(limit)s
      AND line <= bounds.last_line - %(skip)s
) page
WHERE b.id IS NOT NULL OR i.backup_id IS NOT NULL
"""


def get_job_snapshot(
    conn: connection,
    *,
    job_id: int | None = None,
    name: str | None = None,
    filters: JobFilters,
    page: int,
    limit: int,
) -> JobSnapshot | None:
    """Return the job by ID or name with one log page; None when neither half exists."""
    if job_id is not None and job_id > MAX_BIGINT:
        return None
    params: dict[str, Any] = asdict(filters)
    params.update(job_id=job_id, name=name, skip=(page - 1) * limit, limit=limit)
    with conn.cursor() as cur:
        cur.execute(GET_JOB_SNAPSHOT, params)
        row = cur.fetchone()
    return None if row is None else JobSnapshot(*row)


def ping(conn: connection, *, timeout_ms: int) -> None:
    """Raise unless the database answers within the timeout."""
    with conn.cursor() as cur:
        # One round trip: the two statements run as one implicit transaction, so SET LOCAL
        # bounds the SELECT only and nothing outlives it on a pooled connection.
        cur.execute("SET LOCAL statement_timeout = %s; SELECT 1", (timeout_ms,))
        cur.fetchone()
