"""The generated data set: sizes, determinism, shape, constraints, and the API over it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner
from psycopg2.extensions import connection

from zdm_devstack.cli import main
from zdm_devstack.generate import ChunkReader, escape, generate
from zdm_monitor.api.schemas import STATUSES

GetJob = Callable[..., Any]

JOBS, SERVERS, LINES, DEEP_LINES = 500, 7, 5, 300
LOG_LINES = (JOBS - 1) * LINES + DEEP_LINES

# Every column of every table, in a fixed order: equal digests mean equal contents.
DIGEST = """
SELECT md5(string_agg(t, E'\\n' ORDER BY k)) FROM (
    SELECT 1 AS k, s::text AS t FROM server s
    UNION ALL SELECT 2, r::text FROM repository r
    UNION ALL SELECT 3, b::text FROM backup b
    UNION ALL SELECT 4, i::text FROM backup_info i
    UNION ALL SELECT 5, l::text FROM backup_log l
) rows
"""
SCHEMA_OBJECTS = """
SELECT 'index', tablename || '.' || indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema()
  AND tablename IN ('server', 'repository', 'backup', 'backup_info', 'backup_log')
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint
WHERE conrelid IN ('server'::regclass, 'repository'::regclass, 'backup'::regclass,
                   'backup_info'::regclass, 'backup_log'::regclass)
ORDER BY 1, 2
"""


def fetch(db: connection, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def one(db: connection, query: str, params: Any = None) -> Any:
    return fetch(db, query, params)[0][0]


def load(db: connection, seed: int = 1) -> dict[str, Any]:
    return generate(db, jobs=JOBS, servers=SERVERS, lines=LINES, deep_lines=DEEP_LINES, seed=seed)


def test_row_counts_and_report(db: connection) -> None:
    loaded = load(db)
    counts = {
        table: one(db, f"SELECT count(*) FROM {table}")
        for table in ("server", "repository", "backup", "backup_info", "backup_log")
    }
    assert counts == {
        "server": SERVERS,
        "repository": 4,
        "backup": JOBS,
        "backup_info": JOBS,
        "backup_log": LOG_LINES,
    }
    assert loaded["jobs"] == loaded["runtimes"] == JOBS
    assert loaded["servers"] == SERVERS
    assert loaded["log_lines"] == LOG_LINES
    assert loaded["rows"] == sum(counts.values())
    assert loaded["seconds"] > 0
    assert set(loaded["timings"]) >= {"copy_backup", "copy_backup_log", "constraints"}


def test_same_seed_same_rows_other_seed_other_rows(db: connection) -> None:
    load(db, seed=7)
    first = one(db, DIGEST)
    load(db, seed=7)
    assert one(db, DIGEST) == first
    load(db, seed=8)
    assert one(db, DIGEST) != first


def test_names_ids_and_both_halves(db: connection) -> None:
    load(db)
    assert fetch(db, "SELECT min(id), max(id), count(DISTINCT id) FROM backup") == [(1, JOBS, JOBS)]
    assert (
        one(
            db, "SELECT count(*) FROM backup WHERE name <> format('job-%s', lpad(id::text, 7, '0'))"
        )
        == 0
    )
    assert one(db, "SELECT name FROM backup WHERE id = 42") == "job-0000042"
    assert [r[0] for r in fetch(db, "SELECT name FROM server ORDER BY id")] == [
        f"server-{n:04d}" for n in range(1, SERVERS + 1)
    ]
    orphans = """
        SELECT count(*) FROM backup b FULL JOIN backup_info i ON i.backup_id = b.id
        WHERE b.id IS NULL OR i.backup_id IS NULL
    """
    assert one(db, orphans) == 0
    assert (
        one(db, "SELECT count(*) FROM backup_log WHERE backup_id NOT IN (SELECT id FROM backup)")
        == 0
    )


def test_linux_jobs_have_partitions_windows_jobs_drives(db: connection) -> None:
    load(db)
    rows = fetch(
        db,
        """
        SELECT s.os, b.partition IS NOT NULL, b.drive IS NOT NULL, r.type, count(*)
        FROM backup b JOIN server s ON s.id = b.server_id
        LEFT JOIN repository r ON r.id = b.repository_id
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        """,
    )
    shapes = {(os, partition, drive, kind) for os, partition, drive, kind, _ in rows}
    assert shapes <= {
        ("linux", True, False, "nfs"),
        ("linux", True, False, None),
        ("windows", False, True, "smb"),
        ("windows", False, True, None),
    }
    assert {os for os, *_ in shapes} == {"linux", "windows"}
    assert fetch(db, "SELECT type, path FROM repository ORDER BY id") == [
        ("nfs", "/backup/nfs-01"),
        ("nfs", "/backup/nfs-02"),
        ("smb", "\\\\backup-01\\backups"),
        ("smb", "\\\\backup-02\\backups"),
    ]
    assert one(db, "SELECT count(DISTINCT partition) FROM backup") > 1
    assert one(db, "SELECT count(DISTINCT drive) FROM backup") > 1
    assert fetch(db, "SELECT DISTINCT mode FROM backup ORDER BY 1") == [
        ("full",),
        ("increment",),
        ("smart",),
    ]


def test_runtime_halves_are_consistent_with_their_status(db: connection) -> None:
    load(db)
    statuses = [r[0] for r in fetch(db, "SELECT DISTINCT status FROM backup_info ORDER BY 1")]
    assert statuses == sorted(STATUSES)
    wrong = """
        SELECT backup_id, status, percent, started_at, ended_at, last_report_at FROM backup_info
        WHERE NOT CASE
            WHEN status IN ('scheduled', 'registered') THEN
                percent = 0 AND started_at IS NULL AND ended_at IS NULL
                AND last_report_at IS NULL
            WHEN status IN ('preparing', 'processing', 'canceling') THEN
                started_at IS NOT NULL AND ended_at IS NULL
                AND last_report_at >= started_at AND percent < 100
                AND (status <> 'preparing' OR percent = 0)
            WHEN status = 'complete' THEN
                percent = 100 AND ended_at >= started_at AND last_report_at = ended_at
            ELSE
                percent < 100 AND ended_at >= started_at AND last_report_at = ended_at
                AND message IS NOT NULL
        END
    """
    assert fetch(db, wrong) == []
    # The last report is the newest log line.
    stale = """
        SELECT i.backup_id FROM backup_info i
        JOIN (SELECT backup_id, max(logged_at) AS newest FROM backup_log GROUP BY 1) l
          ON l.backup_id = i.backup_id
        WHERE i.last_report_at IS NOT NULL AND i.last_report_at <> l.newest
    """
    assert fetch(db, stale) == []


def test_log_lines_are_numbered_without_holes(db: connection) -> None:
    load(db)
    rows = fetch(
        db,
        """
        SELECT backup_id, count(*), min(line), max(line),
               bool_and(logged_at >= started) AS ordered
        FROM (SELECT backup_id, line, logged_at,
                     lag(logged_at, 1, logged_at) OVER w AS started
              FROM backup_log WINDOW w AS (PARTITION BY backup_id ORDER BY line)) l
        GROUP BY backup_id ORDER BY backup_id
        """,
    )
    assert len(rows) == JOBS
    assert rows[0] == (1, DEEP_LINES, 1, DEEP_LINES, True)
    assert all(row[1:] == (LINES, 1, LINES, True) for row in rows[1:])
    assert one(db, "SELECT count(*) FROM backup_log WHERE message LIKE 'Starting %'") == JOBS


def test_identity_sequences_follow_the_loaded_ids(db: connection) -> None:
    load(db)
    assert one(db, "INSERT INTO server (name, os) VALUES ('new', 'linux') RETURNING id") == (
        SERVERS + 1
    )
    assert one(db, "INSERT INTO repository (type, path) VALUES ('nfs', '/x') RETURNING id") == 5
    new_job = "INSERT INTO backup (name, server_id, mode, drive) VALUES ('new', 1, 'full', 'C:')"
    assert one(db, new_job + " RETURNING id") == JOBS + 1


def test_constraints_and_indexes_come_back_as_the_schema_defines_them(db: connection) -> None:
    before = fetch(db, SCHEMA_OBJECTS)
    names = {name for _, name, _ in before}
    # What schema.sql declares, by the names PostgreSQL gives it.
    assert {
        "backup.backup_pkey",
        "backup.backup_name_key",
        "backup.backup_server_id_fkey",
        "backup.backup_repository_id_fkey",
        "backup.backup_server_id_idx",
        "backup_info.backup_info_pkey",
        "backup_log.backup_log_pkey",
        "server.server_name_key",
        "repository.repository_type_path_key",
    } <= names
    load(db)
    assert fetch(db, SCHEMA_OBJECTS) == before
    invalid = "SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready"
    assert one(db, invalid) == 0
    assert one(db, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated") == 0


def test_the_api_answers_for_generated_jobs(db: connection, get_job: GetJob) -> None:
    load(db)
    expected = fetch(
        db,
        """
        SELECT s.name, s.os, b.partition, b.drive, i.status, i.percent
        FROM backup b JOIN server s ON s.id = b.server_id JOIN backup_info i ON i.backup_id = b.id
        WHERE b.id = 42
        """,
    )[0]
    server, os, partition, drive, status, percent = expected
    for identifier in ("job-0000042", "42"):
        response = get_job(identifier, "limit=2")
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        assert data["system"] == {"name": server}
        info = {"name": "job-0000042"}
        info.update({"partition": partition} if os == "linux" else {"drive": drive})
        assert data["job"]["info"] == info
        assert data["job"]["progressInfo"]["status"] == status
        assert data["job"]["progressInfo"]["percent"] == f"{percent}%"
        assert len(data["job"]["log"]) == 2
        assert json.loads(response.headers["X-Pagination"])["total"] == LINES
    # The deep job's last page holds its first lines.
    response = get_job("1", f"page={DEEP_LINES // 100}&limit=100")
    assert response.status_code == 200, response.get_json()
    log = response.get_json()["data"]["job"]["log"]
    assert len(log) == 100
    assert log[0].startswith("Starting ")
    assert get_job(f"job-{JOBS + 1:07d}").status_code == 404


def test_cli_generate(database_url: str, db: connection) -> None:
    runner = CliRunner(env={"DATABASE_URL": database_url})
    result = runner.invoke(
        main,
        ["generate", "--jobs", "50", "--servers", "3", "--lines", "2", "--deep-lines", "9"],
    )
    assert result.exit_code == 0, result.output
    assert "Loaded 3 servers, 4 repositories, 50 jobs" in result.output
    assert "107 log lines" in result.output
    assert one(db, "SELECT count(*) FROM backup_log WHERE backup_id = 1") == 9
    result = runner.invoke(main, ["generate", "--jobs", "5", "--servers", "0", "--lines", "1"])
    assert result.exit_code == 2


def test_copy_text_escaping_and_the_reader() -> None:
    assert escape("\\\\srv\\share\tx\ny") == "\\\\\\\\srv\\\\share\\tx\\ny"
    reader = ChunkReader(["a\nb\n", "c\n"])
    assert reader.readline() == b"a\n"
    assert reader.read(1) == b"b\n"
    assert reader.read(1) == b"c\n"
    assert reader.read(1) == b""
    assert reader.readline() == b""
