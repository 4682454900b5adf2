"""A small connection pool per worker process, opened lazily, never carried across fork."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2.extensions import connection

from . import metrics
from .config import Settings

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


def connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options: a bounded connect; nothing session-level (see repository.READ_GUARD)."""
    return {"connect_timeout": settings.db_connect_timeout, "application_name": "zdm-monitor"}


class PoolExhausted(Exception):
    """Every connection of this process's pool is in use."""


class Pool:
    """At most db_pool_size connections to one server, idle ones kept for the next request.

    psycopg2's own pools close any idle connection above their minimum, which would mean a new
    connection per request. The pool reports its counts to the metrics under its target's name.
    """

    def __init__(self, settings: Settings, url: str, target: str) -> None:
        self.settings = settings
        self.url = url
        self.target = target
        self._idle: list[connection] = []
        self._in_use = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _forget_parent(self) -> None:
        """After fork, drop the parent's connections without closing its sockets."""
        if self._pid != os.getpid():
            self._idle, self._in_use, self._pid = [], 0, os.getpid()

    def _report(self) -> None:
        metrics.record_pool(self.target, len(self._idle), self._in_use)

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
