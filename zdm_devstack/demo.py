"""The demo data set: the seed's examples and one job for each shape the contract describes."""

from __future__ import annotations

from contextlib import closing
from importlib.resources import files

import psycopg2
from psycopg2.extensions import connection

from zdm_monitor.db import apply_schema


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
