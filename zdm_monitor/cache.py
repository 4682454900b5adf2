"""Job snapshots kept per worker, forgotten as soon as PostgreSQL says their job changed.

Dashboards ask about the same running jobs over and over, and almost every answer is "nothing
changed". Each worker keeps the snapshots it read (at most ZDM_CACHE_SIZE, least recently used
out first) and answers from them without a database round trip. A thread per worker listens
on its own connection (DATABASE_LISTEN_URL: PostgreSQL itself, as LISTEN works neither through
PgBouncer's transaction pooling nor on a streaming replica) to the notifications that
sql/changes.sql's triggers send at each commit, naming the jobs a statement touched, and drops
those jobs' snapshots. The rules that keep an answer from being older than a read would give:

- a snapshot read while any change arrived is not kept (the generation moved during the read);
- while the listener is not connected, nothing is kept or served, and what was kept is dropped
  (a change it missed cannot be told apart from one it never saw);
- with replicas, a snapshot read on a replica is kept only if that replica had replayed every
  change of the job the listener has heard of: a notification comes from the primary at commit,
  possibly before a replica replays it;
- only the snapshot is kept: the request ID, the time, `stalled` and the envelope are made for
  each answer, and authentication still comes first.

A server view's answer depends on every job of the server, including jobs created since, and a
notification names jobs, not servers: any change to any job drops every kept server answer
(and, with replicas, one is kept only if its replica had replayed every change heard of).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg2
from psycopg2.extensions import connection

from .config import Settings
from .deadline import Deadline, connect_within
from .pool import connect_kwargs
from .repository import JobSnapshot, ServerSnapshot

log = logging.getLogger(__name__)

CHANNEL = "zdm_monitor_changes"
EVERYTHING = "*"
RECONNECT_S = 1.0
WAIT_S = 1.0
# With replicas: how long the primary's position at a job's change is kept for the rule above.
# A replica further behind than ZDM_REPLICA_MAX_LAG_S takes no reads at all.
REMEMBER_FACTOR = 10
PRIMARY_LSN = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"

Key = tuple[Any, ...]
Snapshot = JobSnapshot | ServerSnapshot
# Where server answers are indexed: under every job at once.
ANY_JOB = -1


@dataclass
class Entry:
    """A snapshot and what was worked out from it for the answers (polling.decide's memo)."""

    snapshot: Any  # JobSnapshot | ServerSnapshot | None
    memo: dict[Any, Any] = field(default_factory=dict)


class SnapshotCache:
    def __init__(self, settings: Settings) -> None:
        self.capacity = settings.cache_size
        self.url = settings.database_listen_url
        self.settings = settings
        self.with_replicas = bool(settings.database_replica_urls)
        self.remember_s = REMEMBER_FACTOR * settings.replica_max_lag_s
        self.listening = False
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._by_job: dict[int, set[Key]] = {}
        self._changed_at: dict[int, tuple[Decimal, float]] = {}  # job -> (primary LSN, when)
        self._everything_at = Decimal(0)
        self._latest_at = Decimal(0)  # the primary's LSN at the last change heard of
        self._generation = 0
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def lookup(self, key: Key) -> Entry | None:
        """The kept entry, if the listener is connected and holds one."""
        if not self.listening:
            self._start()
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def generation(self) -> int:
        """Call before a read; hand the value to store() after it."""
        return self._generation

    def store(self, key: Key, snapshot: Snapshot | None, generation: int) -> Entry:
        """The entry for this answer, kept when the rules allow it."""
        entry = Entry(snapshot)
        if snapshot is None or not self.listening:
            return entry
        with self._lock:
            if generation != self._generation or not self._replayed(snapshot):
                return entry
            self._entries[key] = entry
            self._by_job.setdefault(indexed_under(snapshot), set()).add(key)
            while len(self._entries) > self.capacity:
                old_key, old = self._entries.popitem(last=False)
                self._unindex(indexed_under(old.snapshot), old_key)
        return entry

    def close(self) -> None:
        self._stop.set()
        self._pid = None

    def _replayed(self, snapshot: Snapshot) -> bool:
        """Whether the snapshot was read where every change it depends on already showed."""
        if isinstance(snapshot, ServerSnapshot):
            read_at = snapshot.summary.replay_lsn
            needed = self._latest_at
        else:
            read_at = snapshot.replay_lsn
            changed = self._changed_at.get(snapshot.job_id)
            needed = max(self._everything_at, changed[0] if changed else Decimal(0))
        return read_at is None or read_at >= needed  # None: read on the primary

    def _unindex(self, job: int, key: Key) -> None:
        keys = self._by_job.get(job)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_job[job]

    def _forget(self, payload: str, primary_lsn: Decimal | None) -> None:
        with self._lock:
            self._generation += 1
            if primary_lsn is not None:
                self._latest_at = max(self._latest_at, primary_lsn)
            if payload == EVERYTHING:
                self._entries.clear()
                self._by_job.clear()
                if primary_lsn is not None:
                    self._everything_at = primary_lsn
                return
            now = time.monotonic()
            for key in self._by_job.pop(ANY_JOB, ()):
                self._entries.pop(key, None)
            for job in map(int, payload.split(",")):
                for key in self._by_job.pop(job, ()):
                    self._entries.pop(key, None)
                if primary_lsn is not None:
                    self._changed_at[job] = (primary_lsn, now)
            if primary_lsn is not None and len(self._changed_at) > self.capacity:
                old = now - self.remember_s
                self._changed_at = {j: c for j, c in self._changed_at.items() if c[1] > old}

    def _start(self) -> None:
        """Start this process's listener on first use: never at import, never across fork."""
        if self._pid == os.getpid() or self.capacity == 0:
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self.listening = False
            self._entries.clear()
            self._by_job.clear()
            self._stop = threading.Event()
            threading.Thread(
                target=self._listen, args=(self._stop,), name="zdm-cache-listener", daemon=True
            ).start()
            self._pid = os.getpid()

    def _listen(self, stop: threading.Event) -> None:
        while not stop.is_set():
            conn: connection | None = None
            try:
                conn = connect_within(self.url, connect_kwargs(self.settings), Deadline(5.0))
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                self._forget(EVERYTHING, None)  # what changed before now is unknown
                self.listening = True
                log.info("snapshot cache listening")
                self._receive(conn, stop)
            except Exception as exc:  # the listener must outlive any surprise
                if self.listening:
                    log.warning("snapshot cache not listening: %s", type(exc).__name__)
            finally:
                self.listening = False
                self._forget(EVERYTHING, None)
                if conn is not None:
                    conn.close()
            stop.wait(RECONNECT_S)

    def _receive(self, conn: connection, stop: threading.Event) -> None:
        while not stop.is_set():
            if select.select([conn], [], [], WAIT_S)[0]:
                conn.poll()
            elif conn.closed:
                raise psycopg2.InterfaceError("listener connection closed")
            if not conn.notifies:
                continue
            payloads = {n.payload for n in conn.notifies}
            conn.notifies.clear()
            primary_lsn = self._primary_lsn(conn) if self.with_replicas else None
            for payload in payloads:
                self._forget(payload, primary_lsn)

    def _primary_lsn(self, conn: connection) -> Decimal:
        """Where the primary's WAL is now: at or past every change just heard of."""
        with conn.cursor() as cur:
            cur.execute(PRIMARY_LSN)
            row = cur.fetchone()
        assert row is not None
        return Decimal(row[0])


def indexed_under(snapshot: Snapshot) -> int:
    """The job whose changes drop this snapshot: its own, or any for a server's answer."""
    return ANY_JOB if isinstance(snapshot, ServerSnapshot) else snapshot.job_id
