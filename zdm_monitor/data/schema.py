"""What init-db installs in ZDM's database: the package's SQL files, and the stamp of them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from importlib.resources import files

import psycopg2.errors
from psycopg2.extensions import connection

from .repository import READ_FUNCTIONS

# In this order, in one transaction: tables, then the upgrade steps, then the functions.
SCHEMA_FILES = ("schema.sql", "upgrade.sql", "job_snapshot.sql", "server_snapshot.sql")
# The functions the SQL files create; any other zdm_monitor_* function is an older release's.
FUNCTIONS = (*READ_FUNCTIONS, "zdm_monitor_written")
# After them, the stamp: a function that answers the digest of their bytes, so that
# zdm-monitor check compares one value with what this package would install.
RELEASE_FUNCTION = "zdm_monitor_release"
STAMP = f"CREATE OR REPLACE FUNCTION {RELEASE_FUNCTION}() RETURNS text LANGUAGE sql IMMUTABLE AS "
# A step that locks one of ZDM's tables waits for its writers' open transactions, and every new
# writer queues behind it: so each attempt gives up after LOCK_TIMEOUT_MS, rolls back and tries
# again, and ZDM's writers wait that long at most.
LOCK_TIMEOUT_MS = 200
RETRY_PAUSE_S = 0.5


def read_sql() -> list[bytes]:
    """The SQL files init-db runs, in order, as this package holds them."""
    return [files("zdm_monitor.data").joinpath("sql", name).read_bytes() for name in SCHEMA_FILES]


def release(scripts: Sequence[bytes]) -> str:
    """The stamp of these SQL files: the digest of their bytes."""
    return hashlib.sha256(b"".join(scripts)).hexdigest()


def apply_schema(conn: connection, wait_s: float = 60.0) -> None:
    """Create the missing tables and indexes, upgrade older objects, (re)create the functions
    and the stamp of the files that did it."""
    scripts = read_sql()
    give_up = time.monotonic() + wait_s
    while True:
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                for script in scripts:
                    cur.execute(script)
                # A hex digest: nothing in it to quote.
                cur.execute(STAMP + "%s", (f"SELECT '{release(scripts)}'::text",))
            return
        except psycopg2.errors.LockNotAvailable:
            if time.monotonic() + RETRY_PAUSE_S > give_up:
                raise
            time.sleep(RETRY_PAUSE_S)
