"""The request's one call stays on indexes on a large data set, whatever the lookup.

EXPLAIN cannot see inside a PL/pgSQL function, so these tests count what a call really did:
PostgreSQL's per-transaction access statistics name every sequential scan and every index
entry its statements read. Each lookup shape is measured on its first call (custom plans) and
again after many calls, when PL/pgSQL may have switched to generic plans.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg2
import pytest
from psycopg2.extensions import connection
from support.database import reset_demo

from zdm_devstack.generate import generate
from zdm_monitor.data.repository import (
    JobFilters,
    JobRead,
    JobSnapshot,
    ServerRead,
    get_job_snapshot,
    get_server_snapshot,
)

JOBS, SERVERS, LINES, DEEP_LINES = 50_000, 200, 2, 20_000
JOB_TABLES = ("backup", "backup_info", "backup_log")
LOG_INDEX = "backup_log_pkey"
WARM_CALLS = 12
TIMEOUT_MS = 5000
COUNTERS = """
SELECT c.relname, pg_stat_get_xact_numscans(c.oid), pg_stat_get_xact_tuples_returned(c.oid)
FROM pg_class c
WHERE c.relname = ANY(%s)
"""


@pytest.fixture(scope="module")
def big(database_url: str) -> Iterator[str]:
    """The test database replaced by a generated set large enough for index plans to pay."""
    with closing(psycopg2.connect(database_url)) as conn:
        generate(conn, jobs=JOBS, servers=SERVERS, lines=LINES, deep_lines=DEEP_LINES, seed=3)
        yield database_url
        reset_demo(conn)


def counters(conn: connection) -> dict[str, tuple[int, int]]:
    """(scans, rows or index entries read) so far in this transaction, per table and index."""
    with conn.cursor() as cur:
        cur.execute(COUNTERS, ([*JOB_TABLES, LOG_INDEX],))
        return {name: (scans, read) for name, scans, read in cur.fetchall()}


def measured(conn: connection, read: JobRead) -> tuple[JobSnapshot | None, dict[str, Any]]:
    """Run one lookup and return its answer and what it read."""
    before = counters(conn)
    snapshot = get_job_snapshot(conn, read, timeout_ms=TIMEOUT_MS)
    after = counters(conn)
    reads = {
        name: (after[name][0] - before[name][0], after[name][1] - before[name][1]) for name in after
    }
    return snapshot, reads


def lookup(
    job_id: int | None = None,
    name: str | None = None,
    filters: JobFilters | None = None,
    page: int = 1,
    limit: int = 20,
    after: int | None = None,
    detail: bool = False,
) -> JobRead:
    return JobRead(job_id, name, filters or JobFilters(), page, limit, after, detail)


def job_42_filters(url: str) -> JobFilters:
    """Every filter, set to what job 42 holds, so that they all match."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT b.mode, b.partition, b.drive, s.id, s.name, r.type, r.path, i.status, b.name
            FROM backup b JOIN server s ON s.id = b.server_id
            LEFT JOIN repository r ON r.id = b.repository_id
            JOIN backup_info i ON i.backup_id = b.id
            WHERE b.id = 42
            """
        )
        row = cur.fetchone()
    assert row is not None
    return JobFilters(*row)


SHAPES = {
    "by id": lambda url: lookup(job_id=42),
    "by name": lambda url: lookup(name="job-0000042"),
    "by id with filters": lambda url: lookup(job_id=42, filters=job_42_filters(url)),
    "by name with filters": lambda url: lookup(name="job-0000042", filters=job_42_filters(url)),
    "filters exclude": lambda url: lookup(job_id=42, filters=JobFilters(server_name="nope")),
    "not found by id": lambda url: lookup(job_id=JOBS + 1),
    "not found by name": lambda url: lookup(name="job-9999999"),
    "deep job page 1": lambda url: lookup(job_id=1, limit=100),
    "deep job page 200": lambda url: lookup(job_id=1, page=200, limit=100),
    "deep job page 200 by name": lambda url: lookup(name="job-0000001", page=200, limit=100),
    "deep job after near the start": lambda url: lookup(job_id=1, after=3, limit=100),
    "deep job after in the middle": lambda url: lookup(job_id=1, after=10_000, limit=100),
    "deep job after by name": lambda url: lookup(name="job-0000001", after=10_000, limit=100),
    "deep job after past the end": lambda url: lookup(job_id=1, after=DEEP_LINES, limit=100),
    "deep job detail": lambda url: lookup(job_id=1, page=200, limit=100, detail=True),
    "deep job after with detail": lambda url: lookup(job_id=1, after=10_000, detail=True),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_no_sequential_scan_and_log_read_by_key_range(big: str, shape: str) -> None:
    request = SHAPES[shape](big)
    with closing(psycopg2.connect(big)) as conn:
        first = measured(conn, request)[1]
        for _ in range(WARM_CALLS):
            get_job_snapshot(conn, request, timeout_ms=TIMEOUT_MS)
        warm = measured(conn, request)[1]
    for reads in (first, warm):
        for table in JOB_TABLES:
            assert reads[table][0] == 0, (table, reads)  # a table's scans are sequential scans
        # The log's two ends and at most one page, whatever the job's size.
        assert reads[LOG_INDEX][1] <= request.limit + 2, reads


@pytest.mark.parametrize("page", [1, 200])
def test_a_page_of_a_long_log_reads_its_lines_and_the_two_ends(big: str, page: int) -> None:
    with closing(psycopg2.connect(big)) as conn:
        for _ in range(WARM_CALLS):
            snapshot, reads = measured(conn, lookup(job_id=1, page=page, limit=100))
            assert reads[LOG_INDEX] == (3, 102), reads
    assert snapshot is not None
    assert snapshot.log_total == DEEP_LINES
    assert len(snapshot.log_lines) == 100
    if page == 200:
        assert snapshot.log_lines[0].startswith("Starting ")


def test_a_log_that_grew_since_analyze_is_still_read_by_its_ends(big: str) -> None:
    """Statistics that think job 2's log is short must not turn the size lookup into a scan."""
    with closing(psycopg2.connect(big)) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO backup_log (backup_id, line, message)"
                " SELECT 2, n, 'more' FROM generate_series(%s, 20000) AS n",
                (LINES + 1,),
            )
        for _ in range(WARM_CALLS):
            snapshot, reads = measured(conn, lookup(job_id=2, page=5, limit=50))
            assert reads[LOG_INDEX][1] <= 52, reads
        conn.rollback()
    assert snapshot is not None
    assert snapshot.log_total == 20000


@pytest.mark.parametrize(
    ("after", "first", "count"),
    [(0, 1, 100), (3, 4, 100), (10_000, 10_001, 100), (DEEP_LINES - 30, DEEP_LINES - 29, 30)],
)
def test_a_cursor_reads_its_lines_and_the_two_ends(
    big: str, after: int, first: int, count: int
) -> None:
    with closing(psycopg2.connect(big)) as conn:
        for _ in range(WARM_CALLS):
            snapshot, reads = measured(conn, lookup(job_id=1, after=after, limit=100, detail=True))
            assert reads[LOG_INDEX] == (3, count + 2), reads
    assert snapshot is not None
    assert snapshot.first_line == first
    assert len(snapshot.log_lines) == len(snapshot.log_times or []) == count


SERVER_SHAPES = {
    "server by id": {"system_id": 7},
    "server by name": {"system_name": "server-0007"},
    "server page 10": {"system_id": 7, "page": 10},
    "server with a status filter": {"system_id": 7, "filters": JobFilters(status="processing")},
    "server with detail": {"system_id": 7, "detail": True, "log_limit": 100},
    "no such server": {"system_id": SERVERS + 1},
}


@pytest.mark.parametrize("shape", SERVER_SHAPES)
def test_the_server_view_reads_its_jobs_by_index(big: str, shape: str) -> None:
    defaults: dict[str, Any] = {
        "system_id": None,
        "system_name": None,
        "filters": JobFilters(),
        "page": 1,
        "limit": 20,
        "log_limit": 10,
        "detail": False,
    }
    request = ServerRead(**{**defaults, **SERVER_SHAPES[shape]})
    with closing(psycopg2.connect(big)) as conn:
        for _ in range(WARM_CALLS):
            before = counters(conn)
            server = get_server_snapshot(conn, request, timeout_ms=TIMEOUT_MS)
            after = counters(conn)
            reads = {
                name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
                for name in after
            }
            for table in JOB_TABLES:
                assert reads[table][0] == 0, (table, reads)
            # Per job of the page: its log's two ends and its newest lines.
            assert reads[LOG_INDEX][1] <= request.limit * (request.log_limit + 2), reads
    if shape == "no such server":
        assert server is None
    else:
        assert server is not None and server.summary.total > 0
        assert len(server.jobs) == min(request.limit, server.summary.total)
