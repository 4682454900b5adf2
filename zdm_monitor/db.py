"""The database the service reads: the primary's pool, the replicas, and the schema."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Any, TypeVar

import psycopg2
from flask import g
from psycopg2.extensions import connection

from . import metrics
from .config import Settings
from .pool import Pool
from .replicas import NoUsableReplica, Replicas

T = TypeVar("T")
PRIMARY = "primary"


class Database:
    """This process's reads: on a usable replica when there are any, else on the primary.

    On the primary a read uses the request's connection, checked out on first use and given
    back at teardown (release). After PostgreSQL restarts every pooled connection is dead and
    the first request on each would fail; instead the dead one and its idle siblings are
    dropped and the read is retried once on a new connection, which fails fast (a 503) only
    if the server is really down.
    """

    def __init__(self, settings: Settings) -> None:
        self.primary = Pool(settings, settings.database_url, PRIMARY)
        self.replicas = Replicas(settings) if settings.database_replica_urls else None

    def read(self, query: Callable[[connection], T]) -> T:
        if self.replicas is not None:
            try:
                return self.replicas.read(query)
            except NoUsableReplica:
                metrics.record_read(PRIMARY)
        conn = self.connection()
        try:
            return query(conn)
        except psycopg2.OperationalError:
            if not conn.closed:  # the server answered, e.g. a statement timeout: not retried
                raise
            self.release()
            self.primary.close()
            return query(self.connection())

    def connection(self) -> connection:
        """This request's primary connection, checked out on first use."""
        if "db" not in g:
            g.db = self.primary.getconn()
        conn: connection = g.db
        return conn

    def release(self, _exc: BaseException | None = None) -> None:
        """Give this request's connection back to the pool (the app's teardown)."""
        conn = g.pop("db", None)
        if conn is not None:
            self.primary.putconn(conn)

    def describe_replicas(self) -> list[dict[str, Any]] | None:
        """Each replica's state and lag as this process last saw them; None without replicas."""
        return None if self.replicas is None else self.replicas.describe()

    def close(self) -> None:
        """Close this process's connections and stop the replica monitor."""
        self.primary.close()
        if self.replicas is not None:
            self.replicas.close()


def read_sql(name: str) -> str:
    return files("zdm_monitor").joinpath("sql", name).read_text(encoding="utf-8")


# In this order, in one transaction: tables, then the upgrade steps, then the functions.
SCHEMA_FILES = ("schema.sql", "upgrade.sql", "job_snapshot.sql")


def apply_schema(conn: connection) -> None:
    """Create the missing tables and indexes, upgrade older objects, (re)create the functions."""
    with conn, conn.cursor() as cur:
        for name in SCHEMA_FILES:
            cur.execute(read_sql(name))
