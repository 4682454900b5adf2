"""What init-db installs: ZDM's tables, this release's functions and the stamp of its SQL files;
and read functions that take every argument and have every column the repository names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2.extensions import connection
from support.database import scratch_database

import zdm_monitor.data
from zdm_monitor.data.repository import (
    ON_REPLICA,
    READ_FUNCTIONS,
    ZDM_TABLES,
    JobFilters,
    JobRead,
    ServerRead,
    argument_names,
    get_job_snapshot,
    get_server_snapshot,
    selected,
)
from zdm_monitor.data.schema import FUNCTIONS, RELEASE_FUNCTION, SCHEMA_FILES, apply_schema

SCRATCH = "zdm_schema_scratch"
SQL = Path(zdm_monitor.data.__file__).parent / "sql"


def rows(conn: connection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


@pytest.fixture(scope="module")
def installed(database_url: str) -> Iterator[connection]:
    """A database of its own on the test server, after init-db and nothing else."""
    with scratch_database(database_url, SCRATCH) as url, closing(psycopg2.connect(url)) as conn:
        apply_schema(conn)
        conn.autocommit = True
        yield conn


def test_init_db_creates_exactly_zdm_s_tables(installed: connection) -> None:
    """ZDM_TABLES, which the role check reads, names what schema.sql creates."""
    tables = rows(installed, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert sorted(name for (name,) in tables) == sorted(ZDM_TABLES)


def test_init_db_installs_this_release_s_functions_and_the_stamp_of_its_files(
    installed: connection,
) -> None:
    functions = rows(
        installed, "SELECT proname FROM pg_proc WHERE proname LIKE 'zdm\\_monitor\\_%%'"
    )
    assert sorted(name for (name,) in functions) == sorted([*FUNCTIONS, RELEASE_FUNCTION])
    shipped = hashlib.sha256(b"".join((SQL / name).read_bytes() for name in SCHEMA_FILES))
    assert rows(installed, f"SELECT {RELEASE_FUNCTION}()") == [(shipped.hexdigest(),)]


def test_init_db_puts_back_the_stamp_of_another_release(installed: connection) -> None:
    stamp = f"SELECT {RELEASE_FUNCTION}()"
    (ours,) = rows(installed, stamp)
    with installed.cursor() as cur:
        cur.execute(
            f"CREATE OR REPLACE FUNCTION {RELEASE_FUNCTION}() RETURNS text LANGUAGE sql"
            " IMMUTABLE AS $$SELECT 'another release'::text$$"
        )
    assert rows(installed, stamp) == [("another release",)]
    apply_schema(installed)
    assert rows(installed, stamp) == [ours]


def test_the_read_functions_take_what_the_repository_passes(reader_url: str) -> None:
    """A real call of each, as the service makes it: an argument or a column the SQL does not
    declare is an error."""
    job_read = JobRead(1, None, JobFilters(), page=1, limit=2, after=None, detail=True)
    server_read = ServerRead(
        None, "linux-server-01", JobFilters(), page=1, limit=2, log_limit=1, detail=False
    )
    with closing(psycopg2.connect(reader_url)) as conn:
        job = get_job_snapshot(conn, job_read, timeout_ms=5000)
        server = get_server_snapshot(conn, server_read, timeout_ms=5000)
    assert job is not None and server is not None
    assert (job.job_id, job.name, job.server_name, job.status) == (
        1,
        "daily-backup",
        "linux-server-01",
        "complete",
    )
    assert (job.log_total, job.log_lines) == (3, ["Processing files...", "Backup completed"])
    assert job.log_times is not None and len(job.log_times) == 2
    assert job.version > 0 and job.on_replica is False
    assert (server.summary.system_name, server.summary.total) == ("linux-server-01", 3)
    assert [j.name for j in server.jobs] == ["daily-backup", "weekly-smart"]
    assert server.jobs[0].log_lines == ["Backup completed"]


DECLARED = """
SELECT a.mode, a.name
FROM pg_proc p, unnest(p.proargmodes::text[], p.proargnames) AS a(mode, name)
WHERE p.proname = %s
"""


@pytest.mark.parametrize("function", list(READ_FUNCTIONS))
def test_the_read_functions_declare_nothing_the_repository_leaves_unused(
    installed: connection, function: str
) -> None:
    read, *records = READ_FUNCTIONS[function]
    declared = rows(installed, DECLARED, function)
    assert {name for mode, name in declared if mode == "i"} == {
        f"p_{name}" for name in argument_names(read)
    }
    assert {name for mode, name in declared if mode == "t"} == {
        name for name in selected(*records) if name != ON_REPLICA
    }
    assert {mode for mode, _ in declared} == {"i", "t"}
