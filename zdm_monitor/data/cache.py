"""Snapshots kept per worker for at most ZDM_CACHE_MAX_AGE_MS, bounded in entries and bytes;
its rules are in docs/performance.md (The snapshot cache)."""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from .database import Slots, read_deadline_s
from .deadlines import DeadlineExceeded
from .repository import JobSnapshot, ServerSnapshot

Snapshot = JobSnapshot | ServerSnapshot
# No kept snapshot may take more than this share of ZDM_CACHE_MAX_BYTES.
SHARE = 16
# An entry's cost besides its log lines (itself, the snapshot's other fields, its headers); a
# line's besides its string (its place in the list); a time's.
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


class SnapshotCache:
    def __init__(
        self, settings: Settings, slots: Slots, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_s = settings.cache_max_age_ms / 1000
        self.max_entries = settings.cache_size
        self.max_bytes = settings.cache_max_bytes
        self.on = self.max_age_s > 0 and self.max_entries > 0 and self.max_bytes > 0
        # A shared read ends within its deadline: a request waits for it that long at most.
        self.wait_s = read_deadline_s(settings)
        self.slots = slots
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._flights: dict[Hashable, Future[Entry]] = {}  # the reads in progress
        self._lock = threading.Lock()

    def get(
        self, key: Hashable, read: Callable[[], Snapshot | None], fresh: bool = False
    ) -> tuple[Entry, bool]:
        """The entry for key, kept, read by a read in progress or by this call (fresh: by this
        call, whatever is kept or in progress), and whether this call read it."""
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
        leader: Future[Entry] = Future()
        if not fresh:
            with self._lock:
                kept = self._young(key)
                if kept is not None:
                    return kept, False
                flight = self._flights.setdefault(key, leader)
            if flight is not leader:
                try:
                    return flight.result(self.wait_s), False
                except TimeoutError:
                    raise DeadlineExceeded("a shared read did not end in time") from None
        try:
            read_at = self.clock()
            entry = self._keep(Entry(key, read(), read_at))
        except BaseException as exc:
            leader.set_exception(exc)
            raise
        finally:
            if not fresh:
                with self._lock:
                    del self._flights[key]
        leader.set_result(entry)
        return entry, True

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
