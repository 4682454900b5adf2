"""The demo data set: the seed's examples and one job for each shape the contract describes."""

from __future__ import annotations

from contextlib import closing
from importlib.resources import files

import psycopg2
from psycopg2.extensions import connection

from zdm_monitor.data.schema import apply_schema

# The demo's jobs with a definition, in ID order (sql/demo.sql).
DEMO_JOBS = (
    "daily-backup",
    "daily-backup-win",
    "weekly-smart",
    "bulk-data",
    "일일-백업",
    "orphan-definition",
)
TABLES = "server, repository, backup, backup_info, backup_log"


def reset_demo(conn: connection) -> None:
    """Put the demo data back exactly as shipped (whatever the tables hold: demo databases only)."""
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY")
    load_demo(conn)


def load_demo(conn: connection) -> bool:
    """Load the demo data into an empty database; return whether anything was loaded."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM server) OR EXISTS (SELECT 1 FROM backup)"
            " OR EXISTS (SELECT 1 FROM backup_info)"
        )
        row = cur.fetchone()
        if row is None or row[0]:
            return False
        cur.execute(files("zdm_devstack").joinpath("sql", "demo.sql").read_text(encoding="utf-8"))
    return True


def prepare_database(url: str) -> bool:
    """Apply the schema and load the demo data into an empty database."""
    with closing(psycopg2.connect(url)) as conn:
        apply_schema(conn)
        return load_demo(conn)
