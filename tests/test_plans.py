"""The request's one statement stays on indexes on a large data set, whatever the lookup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from psycopg2.extensions import connection

from zdm_monitor.generate import generate
from zdm_monitor.repository import GET_JOB_SNAPSHOT, JobFilters
from zdm_monitor.schemas import DEFAULT_LIMIT

JOBS, SERVERS, LINES, DEEP_LINES = 50_000, 200, 2, 20_000
BIG_TABLES = {"backup", "backup_info", "backup_log"}
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Index Scan Backward"}
NO_FILTERS = JobFilters()


def params(
    *,
    job_id: int | None = None,
    name: str | None = None,
    filters: JobFilters = NO_FILTERS,
    page: int = 1,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The parameters repository.get_job_snapshot binds."""
    bound: dict[str, Any] = asdict(filters)
    bound.update(job_id=job_id, name=name, skip=(page - 1) * limit, limit=limit)
    return bound


def explain(db: connection, bound: dict[str, Any]) -> dict[str, Any]:
    """Run the statement under EXPLAIN ANALYZE and return the top plan node."""
    with db.cursor() as cur:
        statement = cur.mogrify(GET_JOB_SNAPSHOT, bound).decode()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement)
        row = cur.fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of the plan tree, init plans and subplans included."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def log_reads(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in nodes(plan) if node.get("Relation Name") == "backup_log"]


def rows_read(node: dict[str, Any]) -> int:
    """Rows a scan node returned over all its loops, plus those its filter threw away."""
    loops = int(node.get("Actual Loops", 1))
    return int(node["Actual Rows"]) * loops + int(node.get("Rows Removed by Filter", 0))


@pytest.fixture
def big(db: connection) -> connection:
    """The test database replaced by a generated set large enough for index plans to pay."""
    generate(db, jobs=JOBS, servers=SERVERS, lines=LINES, deep_lines=DEEP_LINES, seed=3)
    with db.cursor() as cur:
        cur.execute("ANALYZE server, repository, backup, backup_info, backup_log")
    return db


def job_42_filters(db: connection) -> JobFilters:
    """Every filter, set to what job 42 holds, so that they all match."""
    with db.cursor() as cur:
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
    "by id": lambda db: params(job_id=42),
    "by name": lambda db: params(name="job-0000042"),
    "by id with filters": lambda db: params(job_id=42, filters=job_42_filters(db)),
    "by name with filters": lambda db: params(name="job-0000042", filters=job_42_filters(db)),
    "not found by id": lambda db: params(job_id=JOBS + 1),
    "not found by name": lambda db: params(name="job-9999999"),
    "deep job page 1": lambda db: params(job_id=1, limit=100),
    "deep job page 200": lambda db: params(job_id=1, page=200, limit=100),
    "deep job page 200 by name": lambda db: params(name="job-0000001", page=200, limit=100),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_no_sequential_scan_of_the_job_tables(big: connection, shape: str) -> None:
    plan = explain(big, SHAPES[shape](big))
    seq_scans = [n["Relation Name"] for n in nodes(plan) if n["Node Type"] == "Seq Scan"]
    assert not BIG_TABLES & set(seq_scans), seq_scans
    for node in nodes(plan):
        if node.get("Relation Name") in BIG_TABLES:
            assert node["Node Type"] in INDEX_SCANS, node
            assert "Index Cond" in node, node
    # However the job is found, the log is read by index: the bounds and one page at most.
    limit = SHAPES[shape](big)["limit"]
    assert sum(rows_read(node) for node in log_reads(plan)) <= limit + 2


@pytest.mark.parametrize("page", [1, 200])
def test_a_log_page_reads_limit_rows_by_key_range(big: connection, page: int) -> None:
    plan = explain(big, params(job_id=1, page=page, limit=100))
    reads = log_reads(plan)
    ranges = [node for node in reads if "line >" in node.get("Index Cond", "")]
    assert len(ranges) == 1, reads
    page_scan = ranges[0]
    assert page_scan["Node Type"] in {"Index Scan", "Index Only Scan"}
    assert page_scan["Index Name"] == "backup_log_pkey"
    assert "line <=" in page_scan["Index Cond"]
    assert rows_read(page_scan) == 100
    # The log's size comes from its first and last line: one row each, not a count.
    bounds = [node for node in reads if node is not page_scan]
    assert bounds, reads
    assert sum(rows_read(node) for node in bounds) == 2
    assert plan["Actual Rows"] == 1
    # A deep page touches about as many buffers as page 1, nowhere near the log's size.
    assert sum(int(node.get("Shared Hit Blocks", 0)) for node in reads) < 50


def test_the_deep_page_is_the_oldest_lines(big: connection) -> None:
    with big.cursor() as cur:
        cur.execute(GET_JOB_SNAPSHOT, params(job_id=1, page=200, limit=100))
        row = cur.fetchone()
    assert row is not None
    assert row[14] == DEEP_LINES
    assert len(row[15]) == 100
    assert row[15][0].startswith("Starting ")
