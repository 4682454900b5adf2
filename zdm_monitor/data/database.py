"""The database the service reads: the primary's pool and the replicas, within deadlines."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
from flask import g
from psycopg2.extensions import connection

from .. import metrics
from ..config import Settings
from .deadlines import Deadline, DeadlineExceeded, Watchdog
from .pool import Pool, connection_lost
from .replicas import NoUsableReplica, Replicas

log = logging.getLogger(__name__)
T = TypeVar("T")
PRIMARY = "primary"
# Past its statement_timeout a read gets this much longer to come back, then it is cut off.
DEADLINE_GRACE_S = 1.0
# While the primary is known not to answer, one read this often tries it; the others are 503s.
TRIAL_INTERVAL_S = 1.0
# A database that answers, however loaded, frees a slot now and then: while every slot has been
# held longer than this, none did, and no request queues behind them (the 503 at once). At
# 0.1 s, cold reads on a loaded machine (make bench's case A, 2 cores) were refused 4% of the
# time; a request waiting this long still leaves /healthz its 0.5 s.
YOUNG_S = 0.25


def read_deadline_s(settings: Settings) -> float:
    """How long a read may take, connecting included: statement_timeout and the grace."""
    return settings.db_statement_timeout_ms / 1000 + DEADLINE_GRACE_S


class DatabaseUnavailable(Exception):
    """The database could not be reached, lost the connection, or did not answer in time."""


class NotStarted(RuntimeError):
    """A read before state.start: the process has no deadline watchdog and no slots."""


class Slots:
    """How many threads may wait on the database at once, a read or a wait for one (cache.py):
    fewer than gunicorn's, so one is always free for the probes (docs/reliability.md)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: dict[int, float] = {}  # the holding threads, each with when it took its slot
        self._freed = threading.Condition()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold a slot while the block runs, one a thread; DatabaseUnavailable when every slot is
        held longer than YOUNG_S: then the database is not answering."""
        me = threading.get_ident()
        if me in self._held:  # only this thread adds or removes its own
            yield
            return
        with self._freed:
            while len(self._held) >= self.size:
                wait = max(self._held.values()) + YOUNG_S - time.monotonic()
                if wait <= 0:
                    raise DatabaseUnavailable("every slot waits on a database that does not answer")
                self._freed.wait(wait)
            self._held[me] = time.monotonic()
        try:
            yield
        finally:
            with self._freed:
                del self._held[me]
                self._freed.notify()


class CircuitBreaker:
    """Open from a read of the primary that missed its deadline until one that succeeds: while
    open, reads fail at once but for one trial a second, so a frozen server holds at most one
    more thread a second per process."""

    def __init__(self) -> None:
        self.is_open = False
        self._next_trial = 0.0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Whether a read may go ahead: the breaker is closed, or this is the trial."""
        if not self.is_open:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next_trial:
                return False
            self._next_trial = now + TRIAL_INTERVAL_S
            return True

    def trip(self) -> None:
        """Open, and wait a trial interval before the next try."""
        with self._lock:
            self.is_open = True
            self._next_trial = max(self._next_trial, time.monotonic() + TRIAL_INTERVAL_S)

    def close(self) -> None:
        self.is_open = False


class Database:
    """This process's reads, on a usable replica if any, else the primary; each holds a slot
    and has a deadline kept on the client's side (deadlines.py), so a frozen server is a 503 too."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.primary = Pool(settings, settings.database_url, PRIMARY)
        self.watchdog = Watchdog()
        self.breaker = CircuitBreaker()
        self.slots = Slots(settings.db_pool_size)
        self.replicas = (
            Replicas(settings, self.watchdog) if settings.database_replica_urls else None
        )
        self.started = False

    def start(self, threads: int | None) -> None:
        """Size the slots, one less than gunicorn's threads (else the pool's size), drop what a
        parent process opened and start the watchdog and the replica monitor, after fork."""
        self.slots.size = self.settings.db_pool_size if threads is None else max(1, threads - 1)
        self.primary.forget()
        parts = [("the deadline watchdog", self.watchdog.start)]
        if self.replicas is not None:
            parts.append(("the replica monitor", self.replicas.start))
        for name, begin in parts:
            try:
                begin()
            except Exception as exc:  # the worker serves on; the log says what it lacks
                log.error("could not start %s: %s", name, exc)
        self.started = True

    def read(self, query: Callable[[connection], T], *, seconds: float | None = None) -> T:
        if not self.started:
            raise NotStarted("the database's reads need state.start(app) in this process first")
        deadline = Deadline(read_deadline_s(self.settings) if seconds is None else seconds)
        with self.slots.hold():
            if self.replicas is not None:
                try:
                    return self.replicas.read(query, deadline)
                except NoUsableReplica:
                    metrics.record_read(PRIMARY)
            if not self.breaker.admit():
                raise DatabaseUnavailable("the breaker is open: one read a second tries")
            try:
                result = self._read_primary(query, deadline)
            except DeadlineExceeded:
                self.breaker.trip()
                raise
            self.breaker.close()
            return result

    def _read_primary(self, query: Callable[[connection], T], deadline: Deadline) -> T:
        """Run the read on the request's connection; one lost (a restart, a killed backend) is
        retried once on a new one, the idle ones dropped as most likely dead too."""
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
        """Close the connections and stop the threads: no read after this until start()."""
        self.started = False
        self.primary.close()
        if self.replicas is not None:
            self.replicas.close()
        self.watchdog.stop()
