"""A large, deterministic ZDM data set for performance work, loaded with COPY.

Every table is streamed: rows are formatted in chunks as PostgreSQL reads them, so memory
stays bounded whatever the size. The job stream is replayed from its seed for each table
(definitions, runtime halves, log lines) instead of being kept in memory.

Loading runs in one transaction: TRUNCATE, drop the big tables' keys, unique constraints,
foreign keys and indexes, COPY ... FREEZE, re-create them exactly as they were (from their
own catalog definitions, under the same names), set the identity sequences; then ANALYZE.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from psycopg2 import sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, connection, cursor

from zdm_monitor.api.schemas import MODES, STATUSES

TABLES = ("server", "repository", "backup", "backup_info", "backup_log")
# Tables whose constraints and indexes are dropped during the load and re-created after it.
BULK_TABLES = ("backup", "backup_info", "backup_log")

PARTITIONS = ("/", "/var", "/data", "/home", "/opt", "/srv", "/var/log")
DRIVES = ("C:", "D:", "E:")
REPOSITORIES = (
    ("nfs", "/backup/nfs-01"),
    ("nfs", "/backup/nfs-02"),
    ("smb", "\\\\backup-01\\backups"),
    ("smb", "\\\\backup-02\\backups"),
)
NFS_REPOSITORIES = (1, 2)
SMB_REPOSITORIES = (3, 4)
ERRORS = ("Network error", "Repository full", "Snapshot failed", "Agent lost")
MESSAGES: dict[str, str | None] = {
    "preparing": "Preparing snapshot",
    "processing": "Processing files...",
    "complete": "Backup completed successfully",
    "scheduled": None,
    "registered": "Waiting for the agent",
    "canceling": "Canceling...",
    "canceled": "Canceled by user",
}

BASE_TIME = 1_735_689_600  # 2025-01-01 00:00:00 UTC
SPREAD = 180 * 86_400  # jobs start within 180 days of BASE_TIME
MAX_STEP = 30  # seconds between two log lines of a job, at most
CHUNK_ROWS = 2_000  # rows formatted per chunk handed to COPY
READ_SIZE = 1 << 16


class Job(NamedTuple):
    """One job, both halves, as the seed makes it; times are Unix seconds."""

    id: int
    name: str
    server_id: int
    mode: str
    partition: str | None
    drive: str | None
    repository_id: int | None
    status: str
    percent: int
    message: str | None
    first_log: int
    step: int
    lines: int


def escape(value: str) -> str:
    """Escape a value for COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


class _Days(dict[int, str]):
    """Day number since the epoch -> 'YYYY-MM-DD', computed on first use."""

    def __missing__(self, day: int) -> str:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        self[day] = text
        return text


_DAYS = _Days()
_CLOCK = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]


def timestamp(unix: int) -> str:
    """A timestamptz literal for COPY, in UTC."""
    return f"{_DAYS[unix // 86_400]} {_CLOCK[unix % 86_400]}+00"


def _optional(value: str | None) -> str:
    return "\\N" if value is None else escape(value)


def _optional_time(unix: int | None) -> str:
    return "\\N" if unix is None else timestamp(unix)


class ChunkReader:
    """A file-like object over text chunks for cursor.copy_expert: read() returns the next
    chunk whatever the size asked (psycopg2 sends what it gets), b"" at the end."""

    def __init__(self, chunks: Iterable[str]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return next(self._chunks, "").encode()

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self._pending:
            chunk = next(self._chunks, "").encode()
            if not chunk:
                break
            self._pending += chunk
        line, newline, self._pending = self._pending.partition(b"\n")
        return line + newline


def _chunked(rows: Iterable[str]) -> Iterator[str]:
    """Join rows (each ending with a newline) into chunks of about CHUNK_ROWS rows."""
    batch: list[str] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def make_servers(seed: int, servers: int) -> list[tuple[int, str, str]]:
    """(id, name, os) of every server; the OS is random."""
    rng = random.Random(seed)
    return [
        (n, f"server-{n:04d}", "windows" if rng.getrandbits(1) else "linux")
        for n in range(1, servers + 1)
    ]


def iter_jobs(
    seed: int, os_by_server: list[str], jobs: int, lines: int, deep_lines: int
) -> Iterator[Job]:
    """The jobs 1..jobs; the same seed gives the same jobs every time it is replayed."""
    rng = random.Random(seed)
    bits = rng.getrandbits
    servers = len(os_by_server)
    for job_id in range(1, jobs + 1):
        a = bits(64)
        b = bits(64)
        server = a % servers
        a //= servers
        mode = MODES[a % 3]
        a //= 3
        if os_by_server[server] == "linux":
            partition: str | None = PARTITIONS[a % len(PARTITIONS)]
            drive: str | None = None
            repositories = NFS_REPOSITORIES
        else:
            partition, drive = None, DRIVES[a % len(DRIVES)]
            repositories = SMB_REPOSITORIES
        a //= 8
        # One job in 50 has no repository.
        repository = None if a % 50 == 0 else repositories[a // 50 % 2]
        a //= 100
        status = STATUSES[a % 8]
        a //= 8
        first_log = BASE_TIME + b % SPREAD
        b //= SPREAD
        step = 1 + b % MAX_STEP
        b //= MAX_STEP
        if status in ("scheduled", "registered", "preparing"):
            percent = 0
        elif status == "complete":
            percent = 100
        elif status in ("processing", "canceling"):
            percent = 1 + b % 99
        else:
            percent = b % 100
        message = ERRORS[a % len(ERRORS)] if status == "error" else MESSAGES[status]
        yield Job(
            job_id,
            f"job-{job_id:07d}",
            server + 1,
            mode,
            partition,
            drive,
            repository,
            status,
            percent,
            message,
            first_log,
            step,
            deep_lines if job_id == 1 else lines,
        )


def runtime_times(job: Job) -> tuple[int | None, int | None, int | None]:
    """started_at, ended_at, last_report_at as the status allows: none before the start,
    no end while running; the last report is the last log line."""
    last = job.first_log + max(job.lines - 1, 0) * job.step
    if job.status in ("scheduled", "registered"):
        return None, None, None
    if job.status in ("preparing", "processing", "canceling"):
        return job.first_log, None, last
    return job.first_log, last, last


def _server_rows(servers: list[tuple[int, str, str]]) -> Iterator[str]:
    for server_id, name, os in servers:
        yield f"{server_id}\t{name}\t{os}\n"


def _repository_rows() -> Iterator[str]:
    for repository_id, (kind, path) in enumerate(REPOSITORIES, start=1):
        yield f"{repository_id}\t{kind}\t{escape(path)}\n"


def _backup_rows(jobs: Iterable[Job]) -> Iterator[str]:
    for job in jobs:
        repository = "\\N" if job.repository_id is None else job.repository_id
        yield (
            f"{job.id}\t{job.name}\t{job.server_id}\t{job.mode}\t{_optional(job.partition)}\t"
            f"{_optional(job.drive)}\t{repository}\n"
        )


def _runtime_rows(jobs: Iterable[Job]) -> Iterator[str]:
    for job in jobs:
        started, ended, reported = runtime_times(job)
        yield (
            f"{job.id}\t{job.status}\t{job.percent}\t{_optional(job.message)}\t"
            f"{_optional_time(started)}\t{_optional_time(ended)}\t{_optional_time(reported)}\n"
        )


def _log_chunks(jobs: Iterable[Job]) -> Iterator[str]:
    """The log lines of every job, 1..n, one second-resolution step apart."""
    days, clock = _DAYS, _CLOCK
    batch: list[str] = []
    for job in jobs:
        n = job.lines
        if n == 0:
            continue
        jid, t0, step = job.id, job.first_log, job.step
        where = job.partition or job.drive or ""
        repository = "" if job.repository_id is None else REPOSITORIES[job.repository_id - 1][1]
        templates = (
            f"Verifying {where}: block ",
            f"Copying {where}: file ",
            "Compressing: chunk ",
            f"Writing to {escape(repository) or 'local spool'}: chunk ",
        )
        batch.append(f"{jid}\t1\t{timestamp(t0)}\tStarting {job.mode} backup of {where}\n")
        batch += [
            f"{jid}\t{i}\t{days[(t := t0 + (i - 1) * step) // 86_400]} {clock[t % 86_400]}+00"
            f"\t{templates[i & 3]}{i}\n"
            for i in range(2, n)
        ]
        if n > 1:
            last = job.message if job.message and job.status != "scheduled" else "Heartbeat"
            t = t0 + (n - 1) * step
            batch.append(f"{jid}\t{n}\t{timestamp(t)}\t{escape(last)}\n")
        if len(batch) >= CHUNK_ROWS:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def _copy(cur: cursor, table: str, columns: str, chunks: Iterable[str]) -> None:
    statement = f"COPY {table} ({columns}) FROM STDIN WITH (FREEZE)"
    cur.copy_expert(statement, ChunkReader(chunks), size=READ_SIZE)


def _detach(cur: cursor) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Drop the bulk tables' keys, unique constraints, foreign keys and other indexes.

    Return (table, name, definition) of each constraint in re-creation order (keys before
    the foreign keys) and the CREATE INDEX statement of each other index.
    """
    cur.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype
        FROM pg_constraint c
        WHERE c.conrelid = ANY (%(tables)s::regclass[]) AND c.contype IN ('p', 'u', 'f')
        ORDER BY c.contype = 'f', c.conrelid::regclass::text, c.conname
        """,
        {"tables": list(BULK_TABLES)},
    )
    constraints = [(table, name, definition) for table, name, definition, _ in cur.fetchall()]
    cur.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY (%(tables)s::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                          WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
        ORDER BY 1
        """,
        {"tables": list(BULK_TABLES)},
    )
    indexes = cur.fetchall()
    for table, name, _ in reversed(constraints):
        cur.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return constraints, [definition for _, definition in indexes]


def _reattach(cur: cursor, constraints: list[tuple[str, str, str]], indexes: list[str]) -> None:
    """Re-create what _detach dropped, under the same names and definitions."""
    for table, name, definition in constraints:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                sql.Identifier(table), sql.Identifier(name)
            )
            + sql.SQL(definition)
        )
    for definition in indexes:
        cur.execute(definition)


def generate(
    conn: connection,
    *,
    jobs: int,
    servers: int,
    lines: int,
    deep_lines: int = 20_000,
    seed: int = 1,
) -> dict[str, Any]:
    """Replace the ZDM tables' contents with a generated data set and return what was loaded.

    Job IDs are 1..jobs, named job-0000001...; every job has both halves and `lines` log
    lines (job 1: `deep_lines`). The same seed gives the same rows. The work is committed;
    the connection's autocommit setting is restored afterwards.
    """
    if min(jobs, servers, lines, deep_lines) < 0 or (jobs > 0 and servers < 1):
        raise ValueError("sizes must be >= 0, with at least one server when there are jobs")
    if conn.info.transaction_status != TRANSACTION_STATUS_IDLE:
        raise ValueError("generate runs its own transaction; commit or roll back first")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    master = random.Random(seed)
    server_seed, job_seed = master.getrandbits(64), master.getrandbits(64)
    server_list = make_servers(server_seed, servers)
    os_by_server = [os for _, _, os in server_list]

    def replay() -> Iterator[Job]:
        return iter_jobs(job_seed, os_by_server, jobs, lines, deep_lines)

    def lap(phase: str, since: float) -> float:
        now = time.perf_counter()
        timings[phase] = round(now - since, 3)
        return now

    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn, conn.cursor() as cur:
            mark = time.perf_counter()
            cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
            cur.execute("SET LOCAL synchronous_commit = off")
            cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
            constraints, indexes = _detach(cur)
            mark = lap("prepare", mark)
            _copy(cur, "server", "id, name, os", _chunked(_server_rows(server_list)))
            _copy(cur, "repository", "id, type, path", _chunked(_repository_rows()))
            columns = "id, name, server_id, mode, partition, drive, repository_id"
            _copy(cur, "backup", columns, _chunked(_backup_rows(replay())))
            mark = lap("copy_backup", mark)
            columns = "backup_id, status, percent, message, started_at, ended_at, last_report_at"
            _copy(cur, "backup_info", columns, _chunked(_runtime_rows(replay())))
            mark = lap("copy_backup_info", mark)
            _copy(cur, "backup_log", "backup_id, line, logged_at, message", _log_chunks(replay()))
            mark = lap("copy_backup_log", mark)
            _reattach(cur, constraints, indexes)
            mark = lap("constraints", mark)
            for table in ("server", "repository", "backup"):
                cur.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, 'id'),"
                        " COALESCE(max(id), 0) + 1, false) FROM {}"
                    ).format(sql.Identifier(table)),
                    (table,),
                )
        with conn, conn.cursor() as cur:
            cur.execute(f"ANALYZE {', '.join(TABLES)}")
        lap("analyze", mark)
    finally:
        conn.autocommit = autocommit
    log_lines = (max(jobs - 1, 0) * lines + deep_lines) if jobs else 0
    seconds = time.perf_counter() - started
    return {
        "servers": servers,
        "repositories": len(REPOSITORIES),
        "jobs": jobs,
        "runtimes": jobs,
        "log_lines": log_lines,
        "rows": servers + len(REPOSITORIES) + 2 * jobs + log_lines,
        "seconds": round(seconds, 3),
        "timings": timings,
    }
