"""The database the service reads: the primary's pool and the replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
from flask import g
from psycopg2.extensions import connection

from .. import metrics
from ..config import Settings
from .deadlines import Deadline, DeadlineExceeded, Watchdog
from .pool import Pool, connection_lost
from .replicas import NoUsableReplica, Replicas

T = TypeVar("T")
PRIMARY = "primary"


# Past its statement_timeout a read gets this much longer to come back, then it is cut off.
DEADLINE_GRACE_S = 1.0
# While the primary is known not to answer, one read this often tries it; the others are 503s.
TRIAL_INTERVAL_S = 1.0


def read_deadline_s(settings: Settings) -> float:
    """How long a read may take, connecting included: statement_timeout and the grace."""
    return settings.db_statement_timeout_ms / 1000 + DEADLINE_GRACE_S


class DatabaseUnavailable(Exception):
    """The database could not be reached, lost the connection, or did not answer in time."""


class Silence:
    """Whether the primary stopped answering: from a read that missed its deadline until one
    that succeeds. Meanwhile reads fail at once, but for one trial a second, so a frozen server
    holds at most one thread per process and the others keep answering (503) in time."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._next_trial = 0.0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        if self._since is None:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next_trial:
                return False
            self._next_trial = now + TRIAL_INTERVAL_S
            return True

    def missed(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._since is None:
                self._since = now
            self._next_trial = max(self._next_trial, now + TRIAL_INTERVAL_S)

    def answered(self) -> None:
        self._since = None


class Database:
    """This process's reads: on a usable replica when there are any, else on the primary.

    Every read has a deadline (statement_timeout plus DEADLINE_GRACE_S unless given): connect,
    send and receive included, enforced on the client side (deadline.py), so a frozen server is
    a 503 too, and then Silence keeps the next reads from waiting on it.

    On the primary a read uses the request's connection, checked out on first use and given
    back at teardown (release). A read whose connection was lost (a server restart, a killed
    backend) is retried once on a new connection, after dropping the idle ones, which most
    likely died too; if that fails as well, the server is really down: the 503.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.primary = Pool(settings, settings.database_url, PRIMARY)
        self.watchdog = Watchdog()
        self.silence = Silence()
        self.replicas = (
            Replicas(settings, self.watchdog) if settings.database_replica_urls else None
        )

    def read(self, query: Callable[[connection], T], *, seconds: float | None = None) -> T:
        deadline = Deadline(read_deadline_s(self.settings) if seconds is None else seconds)
        if self.replicas is not None:
            try:
                return self.replicas.read(query, deadline)
            except NoUsableReplica:
                metrics.record_read(PRIMARY)
        if not self.silence.admit():
            raise DatabaseUnavailable("the primary has not answered; one read a second tries it")
        try:
            result = self._read_primary(query, deadline)
        except DeadlineExceeded:
            self.silence.missed()
            raise
        self.silence.answered()
        return result

    def _read_primary(self, query: Callable[[connection], T], deadline: Deadline) -> T:
        for retry in (False, True):
            conn = self.connection(deadline)
            try:
                with self.watchdog.watch(conn, deadline):
                    return query(conn)
            except psycopg2.Error as exc:
                if not connection_lost(conn, exc):  # an answer, e.g. a statement timeout
                    raise
                conn.close()
                self.release()
                self.primary.close()
                if deadline.expired:
                    raise DeadlineExceeded from exc
                if retry:
                    raise DatabaseUnavailable("the connection was lost twice") from exc
        raise AssertionError("unreachable")

    def connection(self, deadline: Deadline | None = None) -> connection:
        """This request's primary connection, checked out on first use."""
        if "db" not in g:
            g.db = self.primary.getconn(deadline)
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
