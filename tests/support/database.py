"""The test database: the schema, the demo data as shipped, the SELECT-only role."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg2
from psycopg2.extensions import make_dsn

from zdm_devstack.demo import reset_demo
from zdm_devstack.stack import create_reader
from zdm_monitor.data.schema import apply_schema

# The least-privilege role of docs/deploying.md's "Database role": the app connects as it.
READER = "zdm_monitor_reader"
# make e2e: the app's connections go through PgBouncer (see reader_url).
THROUGH_PGBOUNCER = os.environ.get("ZDM_TEST_PGBOUNCER") == "1"
PGBOUNCER_POOL_SIZE = 2


def prepare_database(url: str) -> None:
    """The schema, the demo data exactly as shipped, and the service's SELECT-only role."""
    with closing(psycopg2.connect(url)) as conn:
        apply_schema(conn)
        reset_demo(conn)
    create_reader(url, READER, READER)


@contextmanager
def scratch_database(database_url: str, name: str) -> Iterator[str]:
    """A database of its own on the test server, empty, dropped afterwards: its owner's URL."""
    with closing(psycopg2.connect(database_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
        try:
            yield make_dsn(database_url, dbname=name)
        finally:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
