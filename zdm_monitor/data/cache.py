"""Snapshots kept per worker for at most ZDM_CACHE_MAX_AGE_MS, bounded in bytes.

Dashboards ask about the same running jobs over and over. Each worker keeps the snapshots it
read, with the moment each read began, and answers from one younger than the max age without
the database; an older one is read again by the next request that needs it. The cache asks
nothing of ZDM's tables but reads (no trigger, no notification, no lock their writes wait on),
and the database's load grows with the distinct questions asked per max age, not with the
number of clients asking them. Its rules:

- age: a kept answer shows every write committed before its read began, at most the max age
  ago (read on a replica: plus that replica's lag, which the router keeps under
  ZDM_REPLICA_MAX_LAG_S);
- one read a key: requests of this worker that want the same key while it is being read wait
  for that read and share it, so a popular key that expires is read once; each waits holding
  one of the database's slots (database.Slots), as a read does, so that waits on a database
  that does not answer never take every thread;
- never backwards: a request that shows its client has seen a newer answer than the kept one
  is answered from a read of its own (the view decides when: monitoring.read_through,
  polling.seen_newer);
- bounded: least recently used out first, at most ZDM_CACHE_SIZE snapshots holding at most
  ZDM_CACHE_MAX_BYTES bytes with what was encoded from them; a snapshot that would take more
  than a SHARE-th of that is not kept;
- only the snapshot and what is made from it alone (validator, headers, encoded body) are kept:
  the request ID, the time, `elapsed` and `stalled` are made for each answer, and the token is
  checked before the cache is asked.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from .database import DEADLINE_GRACE_S, Slots
from .deadlines import DeadlineExceeded
from .repository import JobSnapshot, ServerSnapshot

Snapshot = JobSnapshot | ServerSnapshot
# No kept snapshot may take more than this share of ZDM_CACHE_MAX_BYTES.
SHARE = 16
# What an entry costs besides its log lines: the entry, the snapshot's other fields, the
# headers made from it. A line costs its string and its place in the list, a time its datetime.
ENTRY_BYTES = 2048
LINE_BYTES = 8
TIME_BYTES = sys.getsizeof(datetime.now(UTC)) + LINE_BYTES


@dataclass(eq=False)
class Entry:
    """A snapshot, when its read began, and what was made from it (polling.decide's memo)."""

    key: Hashable
    snapshot: Any  # JobSnapshot | ServerSnapshot | None
    read_at: float
    size: int = 0
    kept: bool = False
    memo: dict[Any, Any] = field(default_factory=dict)


class Flight:
    """A read in progress, which other requests for the same key wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None


class SnapshotCache:
    def __init__(
        self, settings: Settings, slots: Slots, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_s = settings.cache_max_age_ms / 1000
        self.max_entries = settings.cache_size
        self.max_bytes = settings.cache_max_bytes
        self.on = self.max_age_s > 0 and self.max_entries > 0 and self.max_bytes > 0
        # A shared read ends within its deadline (db.py): a request waits that long at most.
        self.wait_s = settings.db_statement_timeout_ms / 1000 + DEADLINE_GRACE_S
        self.slots = slots
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._flights: dict[Hashable, Flight] = {}
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, read: Callable[[], Snapshot | None], fresh: bool = False
    ) -> tuple[Entry, bool]:
        """The entry for key and whether this call read it: the kept one while it is younger
        than the max age, else the result of a read, this call's or one already in progress
        that it waits for (begun before this call: not this call's). fresh: a read of this
        call's own, whatever is kept or in progress."""
        if not self.on:
            return Entry(key, read(), 0.0), True
        if not fresh:
            with self._lock:
                kept = self._young(key)
            if kept is not None:
                return kept, False
        # Reading or waiting for a read, this call waits on the database: it holds a slot for
        # either, taken before it can become the read others wait for.
        with self.slots.hold():
            return self._fetch(key, read, fresh)

    def _young(self, key: Hashable) -> Entry | None:
        """The kept entry for key while it is younger than the max age (the lock held)."""
        entry = self._entries.get(key)
        if entry is None or self.clock() - entry.read_at >= self.max_age_s:
            return None
        self._entries.move_to_end(key)
        return entry

    def _fetch(
        self, key: Hashable, read: Callable[[], Snapshot | None], fresh: bool
    ) -> tuple[Entry, bool]:
        """The entry kept meanwhile, else a read in progress waited for, else this call's."""
        with self._lock:
            kept = None if fresh else self._young(key)
            if kept is not None:
                return kept, False
            flight = None if fresh else self._flights.get(key)
            if flight is None:
                leader = Flight()
                if not fresh:
                    self._flights[key] = leader
        if flight is not None:
            return self._wait(flight), False
        try:
            read_at = self.clock()
            leader.entry = self._keep(Entry(key, read(), read_at))
            return leader.entry, True
        except BaseException as exc:
            leader.error = exc
            raise
        finally:
            if not fresh:
                with self._lock:
                    del self._flights[key]
            leader.done.set()

    def remember(self, entry: Entry, key: Any, value: str) -> None:
        """Keep what was encoded from the entry's snapshot with it, counting its bytes."""
        entry.memo[key] = value
        with self._lock:
            if entry.kept:
                size = sys.getsizeof(value)
                entry.size += size
                self.bytes += size
                if entry.size > self.max_bytes // SHARE:
                    self._drop(entry.key)
                self._trim()

    def _wait(self, flight: Flight) -> Entry:
        if not flight.done.wait(self.wait_s):
            raise DeadlineExceeded("a shared read did not end in time")
        if flight.error is not None:
            raise flight.error
        assert flight.entry is not None
        return flight.entry

    def _keep(self, entry: Entry) -> Entry:
        """Keep the entry in place of its key's older one, unless it is none or too large."""
        if entry.snapshot is not None:
            entry.size = footprint(entry.snapshot)
        with self._lock:
            kept = self._entries.get(entry.key)
            if kept is not None:
                if kept.read_at > entry.read_at:  # read since this one began
                    return entry
                self._drop(entry.key)
            if entry.snapshot is None or entry.size > self.max_bytes // SHARE:
                return entry
            self._entries[entry.key] = entry
            entry.kept = True
            self.bytes += entry.size
            self._trim()
        return entry

    def _trim(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self.bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        entry.kept = False
        self.bytes -= entry.size


def footprint(snapshot: Snapshot) -> int:
    """About how many bytes a kept snapshot holds: its fields, lines and times."""
    jobs = snapshot.jobs if isinstance(snapshot, ServerSnapshot) else [snapshot]
    size = ENTRY_BYTES
    for job in jobs:
        size += ENTRY_BYTES + sum(map(sys.getsizeof, job.log_lines))
        size += LINE_BYTES * len(job.log_lines) + TIME_BYTES * len(job.log_times or ())
    return size
