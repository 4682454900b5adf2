"""What init-db installs in ZDM's database: the package's SQL files, in one transaction."""

from __future__ import annotations

import time
from importlib.resources import files

import psycopg2.errors
from psycopg2.extensions import connection


def read_sql(name: str) -> str:
    return files("zdm_monitor.data").joinpath("sql", name).read_text(encoding="utf-8")


# In this order, in one transaction: tables, then the upgrade steps, then the functions.
SCHEMA_FILES = ("schema.sql", "upgrade.sql", "job_snapshot.sql", "server_snapshot.sql")
# A step that must lock one of ZDM's tables (dropping an old release's trigger, creating a
# missing index) waits for the writers' open transactions on it, and while it waits every new
# writer of that table queues behind it. So each attempt gives up after LOCK_TIMEOUT_MS, rolls
# back and tries again: ZDM's writers wait that long at most.
LOCK_TIMEOUT_MS = 200
RETRY_PAUSE_S = 0.5


def apply_schema(conn: connection, wait_s: float = 60.0) -> None:
    """Create the missing tables and indexes, upgrade older objects, (re)create the functions."""
    give_up = time.monotonic() + wait_s
    while True:
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                for name in SCHEMA_FILES:
                    cur.execute(read_sql(name))
            return
        except psycopg2.errors.LockNotAvailable:
            if time.monotonic() + RETRY_PAUSE_S > give_up:
                raise
            time.sleep(RETRY_PAUSE_S)
