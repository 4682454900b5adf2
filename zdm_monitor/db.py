"""Connections: a pool per worker process, one connection per request, and the schema."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg2
import psycopg2.extensions
from flask import current_app, g
from psycopg2.extensions import connection

from .config import Settings

if TYPE_CHECKING:
    from .replicas import Replicas

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
T = TypeVar("T")


def connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options: a bounded connect; nothing session-level (see repository.READ_GUARD)."""
    return {"connect_timeout": settings.db_connect_timeout, "application_name": "zdm-monitor"}


class PoolExhausted(Exception):
    """Every connection of this process's pool is in use."""


class Database:
    """A small connection pool, opened lazily in the process that uses it, never across fork.

    Idle connections are kept (psycopg2's own pools close any above their minimum, which
    would mean a new connection per request); at most pool_size are open at once.
    """

    def __init__(
        self,
        settings: Settings,
        on_change: Callable[[int, int], None] | None = None,
        url: str | None = None,
    ) -> None:
        self.settings = settings
        self.url = url or settings.database_url
        self._on_change = on_change
        self._idle: list[connection] = []
        self._in_use = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _forget_parent(self) -> None:
        """After fork, drop the parent's connections without closing its sockets."""
        if self._pid != os.getpid():
            self._idle, self._in_use, self._pid = [], 0, os.getpid()

    def _report(self) -> None:
        """Tell the listener (the metrics) how many connections are idle and in use."""
        if self._on_change is not None:
            self._on_change(len(self._idle), self._in_use)

    def getconn(self) -> connection:
        with self._lock:
            self._forget_parent()
            if self._idle:
                self._in_use += 1
                idle = self._idle.pop()
                self._report()
                return idle
            if self._in_use >= self.settings.db_pool_size:
                raise PoolExhausted
            self._in_use += 1
            self._report()
        try:
            conn: connection = psycopg2.connect(self.url, **connect_kwargs(self.settings))
        except BaseException:
            with self._lock:
                self._in_use -= 1
                self._report()
            raise
        # One statement per request needs no transaction block around it.
        conn.autocommit = True
        return conn

    def putconn(self, conn: connection) -> None:
        """Return a connection; one that broke or was left mid-transaction is closed instead."""
        with self._lock:
            if self._pid != os.getpid():
                return
            self._in_use -= 1
            keep = not conn.closed and conn.info.transaction_status == IDLE
            if keep:
                self._idle.append(conn)
            self._report()
        if not keep:
            conn.close()

    def close(self) -> None:
        """Close the idle connections of this process."""
        with self._lock:
            self._forget_parent()
            idle, self._idle = self._idle, []
            self._report()
        for conn in idle:
            conn.close()


def get_db() -> connection:
    """Return this request's connection, checked out on first use."""
    if "db" not in g:
        g.db = current_app.extensions["zdm_db"].getconn()
    conn: connection = g.db
    return conn


def read(query: Callable[[connection], T]) -> T:
    """Run a read on a healthy replica when there are any (replicas.py), else on the primary."""
    replicas: Replicas | None = current_app.extensions.get("zdm_replicas")
    if replicas is not None:
        return replicas.read(query, read_primary)
    return read_primary(query)


def read_primary(query: Callable[[connection], T]) -> T:
    """Run a read on this request's primary connection, replacing it once if it was found dead.

    After PostgreSQL restarts, every pooled connection is dead; the first request on each would
    fail. Instead the dead one and its idle siblings are dropped and the read is retried on a new
    connection, which fails fast (a 503) only if the server is really down.
    """
    conn = get_db()
    try:
        return query(conn)
    except psycopg2.OperationalError:
        if not conn.closed:  # the server answered, e.g. a statement timeout: not retried
            raise
        database: Database = current_app.extensions["zdm_db"]
        database.putconn(g.pop("db"))
        database.close()
        return query(get_db())


def close_db(_exc: BaseException | None = None) -> None:
    """Give this request's connection back to the pool."""
    conn = g.pop("db", None)
    if conn is not None:
        current_app.extensions["zdm_db"].putconn(conn)


def read_sql(name: str) -> str:
    return files("zdm_monitor").joinpath("sql", name).read_text(encoding="utf-8")


def apply_schema(conn: connection) -> None:
    """Create the ZDM tables and indexes that are missing, and (re)create the read function."""
    with conn, conn.cursor() as cur:
        cur.execute(read_sql("schema.sql"))
        cur.execute(read_sql("job_snapshot.sql"))
