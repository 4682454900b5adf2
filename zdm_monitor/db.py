"""Connections: a pool per worker process, one connection per request, schema and demo data."""

from __future__ import annotations

import os
import threading
from importlib.resources import files

import psycopg2
import psycopg2.extensions
import psycopg2.pool
from flask import current_app, g
from psycopg2.extensions import connection

from .config import Settings

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


def connect_kwargs(settings: Settings) -> dict[str, object]:
    """Connection options: bounded connect and statement time, read-only transactions."""
    options = (
        f"-c statement_timeout={settings.db_statement_timeout_ms} "
        "-c default_transaction_read_only=on"
    )
    return {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": "zdm-monitor",
        "options": options,
    }


class Database:
    """A connection pool created lazily in the process that uses it, never across fork."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _current_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    0,
                    self.settings.db_pool_size,
                    self.settings.database_url,
                    **connect_kwargs(self.settings),
                )
                self._pid = os.getpid()
            return self._pool

    def getconn(self) -> connection:
        conn: connection = self._current_pool().getconn()
        # One statement per request needs no transaction block around it.
        conn.autocommit = True
        return conn

    def putconn(self, conn: connection) -> None:
        """Return a connection; one that broke or was left mid-transaction is closed instead."""
        broken = bool(conn.closed) or conn.info.transaction_status != IDLE
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            conn.close()
            return
        pool.putconn(conn, close=broken)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.closeall()
            self._pool = None


def get_db() -> connection:
    """Return this request's connection, checked out on first use."""
    if "db" not in g:
        g.db = current_app.extensions["zdm_db"].getconn()
    conn: connection = g.db
    return conn


def close_db(_exc: BaseException | None = None) -> None:
    """Give this request's connection back to the pool."""
    conn = g.pop("db", None)
    if conn is not None:
        current_app.extensions["zdm_db"].putconn(conn)


def read_sql(name: str) -> str:
    return files("zdm_monitor").joinpath("sql", name).read_text(encoding="utf-8")


def apply_schema(conn: connection) -> None:
    """Create the ZDM tables and indexes that are missing."""
    with conn, conn.cursor() as cur:
        cur.execute(read_sql("schema.sql"))


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
        cur.execute(read_sql("demo.sql"))
    return True
