"""Reads spread over PostgreSQL streaming replicas, skipping failed and lagging ones: a thread
asks each about once a second how far behind it is, whatever the request rate."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg2
from psycopg2.extensions import connection

from .. import metrics
from ..config import Settings
from .deadlines import STOP_WAIT_S, Deadline, DeadlineExceeded, Watchdog
from .pool import Pool, connection_lost

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECK_INTERVAL_S = 1.0
CHECK_TIMEOUT_MS = 1000
# The lag in seconds, NULL when not known (docs/scaling-out.md). After a restart the receiver
# reports the start of the segment it streams from, before what was already replayed: hence <=.
LAG_QUERY = """
SET LOCAL statement_timeout = %(timeout_ms)s;
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()
        AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
    ELSE EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())
END
"""
# "canceling statement due to conflict with recovery": another target answers the same read.
RECOVERY_CONFLICT = "40001"
# A replica's states: only "ok" takes reads.
STARTING, OK, LAGGING, UNREACHABLE = "starting", "ok", "lagging", "unreachable"


@dataclass(frozen=True)
class State:
    status: str
    lag_s: float | None


class Skipped(Exception):
    """The replica could not take the read: the next target takes it."""


class NoUsableReplica(Exception):
    """No replica could take the read: it goes to the primary."""


class Replica:
    """One replica: its pool, its last known state and the monitor's own connection to it."""

    state: State
    _monitor_conn: connection | None

    def __init__(self, name: str, url: str, settings: Settings, watchdog: Watchdog) -> None:
        self.name = name
        self.settings = settings
        self.watchdog = watchdog
        self.pool = Pool(settings, url, name)
        self.forget()

    def read(self, query: Callable[[connection], T], deadline: Deadline) -> T:
        """Run the read here; Skipped when the replica is unreachable or cancels it."""
        try:
            conn = self.pool.getconn(deadline)
        except (psycopg2.OperationalError, DeadlineExceeded) as exc:
            self.unreachable()
            raise Skipped from exc
        try:
            with self.watchdog.watch(conn, deadline):
                return query(conn)
        except psycopg2.Error as exc:
            if connection_lost(conn, exc):
                conn.close()
                self.unreachable()
                raise Skipped from exc
            if exc.pgcode == RECOVERY_CONFLICT:
                log.info("read cancelled by recovery, moving on", extra=self.fields())
                raise Skipped from exc
            raise  # it answered, e.g. a statement timeout, which another would not answer faster
        finally:
            self.pool.putconn(conn)

    def unreachable(self) -> None:
        """Mark the replica unreachable, and close its idle connections: most likely dead too."""
        self.update(State(UNREACHABLE, None))
        self.pool.close()

    def check(self) -> State:
        """Measure the lag and judge it; a replica that does not answer is unreachable."""
        try:
            return self.judge(self.measure())
        except (psycopg2.Error, DeadlineExceeded):
            self.close_monitor_connection()
            return State(UNREACHABLE, None)

    def measure(self) -> float | None:
        """The lag in seconds (None: not known), within CHECK_TIMEOUT_MS, on the monitor's own
        connection."""
        deadline = Deadline(CHECK_TIMEOUT_MS / 1000)
        if self._monitor_conn is None or self._monitor_conn.closed:
            self._monitor_conn = self.pool.connect(deadline)
        with self.watchdog.watch(self._monitor_conn, deadline), self._monitor_conn.cursor() as cur:
            cur.execute(LAG_QUERY, {"timeout_ms": CHECK_TIMEOUT_MS})
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def judge(self, lag: float | None) -> State:
        """Usable when the lag is known and within ZDM_REPLICA_MAX_LAG_S."""
        usable = lag is not None and lag <= self.settings.replica_max_lag_s
        return State(OK if usable else LAGGING, lag)

    def update(self, state: State) -> None:
        """Take the new state: logged when it changes, reported to the metrics."""
        if state.status != self.state.status:
            level = logging.INFO if state.status == OK else logging.WARNING
            log.log(level, "replica %s", state.status, extra=self.fields(state))
        self.state = state
        metrics.record_replica(self.name, state.status == OK, state.lag_s)

    def fields(self, state: State | None = None) -> dict[str, Any]:
        """The `extra` of a log record about the replica."""
        state = state or self.state
        return {"fields": {"replica": self.name, "state": state.status, "lag_s": state.lag_s}}

    def close_monitor_connection(self) -> None:
        if self._monitor_conn is not None:
            self._monitor_conn.close()
            self._monitor_conn = None

    def forget(self) -> None:
        """Start from scratch, in a new process too (Pool.forget)."""
        self.state = State(STARTING, None)
        self.pool.forget()
        self._monitor_conn = None


class Replicas:
    """This process's replicas, the order a read tries them in, and the thread watching them."""

    def __init__(self, settings: Settings, watchdog: Watchdog) -> None:
        self.replicas = [
            Replica(f"replica{number}", url, settings, watchdog)
            for number, url in enumerate(settings.database_replica_urls, start=1)
        ]
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self, query: Callable[[connection], T], deadline: Deadline) -> T:
        """Run the read on the next usable replica, moving on past those that cannot take it."""
        for replica in self._rotation():
            if deadline.expired:
                break
            try:
                result = replica.read(query, deadline)
            except Skipped:
                continue
            metrics.record_read(replica.name)
            return result
        raise NoUsableReplica

    def _rotation(self) -> list[Replica]:
        """The usable replicas, starting one further along at each read."""
        usable = [r for r in self.replicas if r.state.status == OK]
        turn = next(self._turn) % len(usable) if len(usable) > 1 else 0
        return usable[turn:] + usable[:turn]

    def describe(self) -> list[dict[str, Any]]:
        """Each replica's state and lag as this process last saw them (for /readyz)."""
        return [
            {
                "name": r.name,
                "state": r.state.status,
                "lag_s": None if r.state.lag_s is None else round(r.state.lag_s, 3),
            }
            for r in self.replicas
        ]

    def start(self) -> None:
        """Start the monitor unless it runs in this process already (after fork it does not),
        once each replica is checked, so that a new worker's first reads go to one too."""
        if self._thread is not None and self._thread.is_alive():
            return
        for replica in self.replicas:
            replica.forget()
        self._check_all()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(self._stop,), name="zdm-replica-monitor", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the monitor and close this process's replica connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            self._thread = None
        for replica in self.replicas:
            replica.pool.close()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(CHECK_INTERVAL_S):
            self._check_all()
        for replica in self.replicas:
            replica.close_monitor_connection()

    def _check_all(self) -> None:
        for replica in self.replicas:
            try:
                replica.update(replica.check())
            except Exception:  # the monitor must outlive any surprise
                log.exception("replica check failed", extra=replica.fields())
