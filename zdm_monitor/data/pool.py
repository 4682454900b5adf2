"""A small connection pool per worker process and server, its connections opened on demand."""

from __future__ import annotations

import threading
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2.extensions import connection

from .. import metrics
from ..config import Settings
from . import timestamps
from .deadlines import Deadline, connect_within

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
# Errors that say the server is going away or not there, though the connection may still look
# open (PgBouncer relays them): connection exceptions, shutdowns, "the database is starting up".
GONE = ("08", "57P")
# Without a SQLSTATE these are libpq's own: "server closed the connection unexpectedly" is a
# plain DatabaseError, raised before psycopg2 marks the connection closed.
CONNECTION_FAILURES = (psycopg2.DatabaseError, psycopg2.OperationalError, psycopg2.InterfaceError)


def connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options, nothing session-level (repository.READ_GUARD): keepalives find a
    silent peer, tcp_user_timeout bounds data not acknowledged (on TCP; else the watchdog)."""
    return {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": "zdm-monitor",
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": settings.db_statement_timeout_ms + 1000,
    }


def connection_lost(conn: connection, error: psycopg2.Error) -> bool:
    """Whether the error means the connection is gone, rather than an answer of the server's."""
    if conn.closed:
        return True
    code = error.pgcode or ""
    return code.startswith(GONE) or (not code and type(error) in CONNECTION_FAILURES)


class PoolExhausted(Exception):
    """Every connection of this process's pool is in use."""


class Pool:
    """At most db_pool_size connections to one server, idle ones kept for the next request
    (psycopg2's pools close those above their minimum), counted in the metrics."""

    def __init__(self, settings: Settings, url: str, target: str) -> None:
        self.settings = settings
        self.url = url
        self.target = target
        self.forget()

    def forget(self) -> None:
        """Drop what a parent process opened, unclosed: closing would end the parent's sessions
        on the sockets both processes share. The lock too: a parent's thread may have held it."""
        self._lock = threading.Lock()
        self._idle: list[connection] = []
        self._in_use = 0

    def _report(self) -> None:
        metrics.record_pool(self.target, len(self._idle), self._in_use)

    def getconn(self, deadline: Deadline | None = None) -> connection:
        """An idle connection, else a new one (connected before the deadline, if one is given)."""
        with self._lock:
            if not self._idle and self._in_use >= self.settings.db_pool_size:
                raise PoolExhausted
            self._in_use += 1
            idle = self._idle.pop() if self._idle else None
            self._report()
        if idle is not None:
            return idle
        try:
            return self.connect(deadline)
        except BaseException:
            with self._lock:
                self._in_use -= 1
                self._report()
            raise

    def connect(self, deadline: Deadline | None = None) -> connection:
        """A new connection to the pool's server, outside the pool (before the deadline, if any)."""
        conn = connect_within(self.url, connect_kwargs(self.settings), deadline)
        # One statement per request needs no transaction block around it.
        conn.autocommit = True
        timestamps.register(conn)
        return conn

    def putconn(self, conn: connection) -> None:
        """Return a connection; one that broke or was left mid-transaction is closed instead."""
        with self._lock:
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
            idle, self._idle = self._idle, []
            self._report()
        for conn in idle:
            conn.close()
