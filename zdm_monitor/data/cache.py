"""Snapshots kept per worker for at most ZDM_CACHE_MAX_AGE_MS, bounded in entries and bytes, the
hot ones read again before they expire; rules in docs/performance.md (The snapshot cache)."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from .database import Slots, read_deadline_s
from .deadlines import DeadlineExceeded
from .repository import JobSnapshot, ServerSnapshot

log = logging.getLogger(__name__)
Snapshot = JobSnapshot | ServerSnapshot
Read = Callable[[], Snapshot | None]
# No kept snapshot may take more than this share of ZDM_CACHE_MAX_BYTES.
SHARE = 16
# An entry's cost besides its log lines (itself, the snapshot's other fields, its headers); a
# line's besides its string (its place in the list); a time's.
ENTRY_BYTES = 2048
LINE_BYTES = 8
TIME_BYTES = sys.getsizeof(datetime.now(UTC)) + LINE_BYTES
# A hot entry is read again this share of the max age before it expires: time for the thread to
# wake on a busy worker (the GIL's switch interval is 5 ms) and for the read, at the cost of a
# hot key's reads being 1 / (1 - 1/20), 5.3%, more than one a max age.
LEAD_SHARE = 20


@dataclass(eq=False)
class Entry:
    """A snapshot, when its read began, and what was made from it (polling.decide's memo)."""

    key: Hashable
    snapshot: Any  # JobSnapshot | ServerSnapshot | None
    read_at: float
    read: Read | None = None  # how its key is read: again, by a refresh
    size: int = 0
    kept: bool = False
    asked: bool = False  # by a request, since it was read: then it is read again before expiry
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
        # When each kept entry is due for a refresh or expires: (when, order, key, read_at).
        self._due: list[tuple[float, int, Hashable, float]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(self._lock)
        # What a refresh reads within (the app's context), set while the refresher runs.
        self._context: Callable[[], AbstractContextManager[Any]] | None = None
        self._thread: threading.Thread | None = None

    def get(self, key: Hashable, read: Read, fresh: bool = False) -> tuple[Entry, bool]:
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
        """The kept entry for key while it is younger than the max age, marked asked (the lock
        held)."""
        entry = self._entries.get(key)
        if entry is None or self.clock() - entry.read_at >= self.max_age_s:
            return None
        self._entries.move_to_end(key)
        entry.asked = True
        return entry

    def _fetch(self, key: Hashable, read: Read, fresh: bool) -> tuple[Entry, bool]:
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
                    entry = flight.result(self.wait_s)
                except TimeoutError:
                    raise DeadlineExceeded("a shared read did not end in time") from None
                entry.asked = True
                return entry, False
        return self._lead(key, read, leader if not fresh else None), True

    def _lead(self, key: Hashable, read: Read, flight: Future[Entry] | None) -> Entry:
        """Read the key and keep its entry, handing it to those waiting on the flight, if any
        (the key's read in progress, which this read then ends)."""
        try:
            read_at = self.clock()
            entry = self._keep(Entry(key, read(), read_at, read))
        except BaseException as exc:
            if flight is not None:
                flight.set_exception(exc)
            raise
        finally:
            if flight is not None:
                with self._lock:
                    del self._flights[key]
        if flight is not None:
            flight.set_result(entry)
        return entry

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
            if self._context is not None:
                self._plan(entry.read_at + self.max_age_s * (1 - 1 / LEAD_SHARE), entry)
            self._trim()
        return entry

    def _plan(self, when: float, entry: Entry) -> None:
        """Have the refresher look at the entry then, woken if that is sooner than it thought
        (the lock held)."""
        order = next(self._order)
        heapq.heappush(self._due, (when, order, entry.key, entry.read_at))
        if self._due[0][1] == order:
            self._wake.notify()

    def _trim(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self.bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        entry.kept = False
        self.bytes -= entry.size

    def start(self, context: Callable[[], AbstractContextManager[Any]]) -> None:
        """Start the refresher, which reads each hot key again within context (the app's, which
        gives the read's connection back), in a thread of this process (after fork)."""
        if not self.on or self._thread is not None:
            return
        self._context = context
        self._thread = threading.Thread(target=self._run, name="zdm-cache-refresher", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as exc:  # the worker serves on, reading on expiry as without one
            log.error("could not start the cache's refresher: %s", exc)
            self.stop()

    def stop(self) -> None:
        """Stop the refresher, once the refresh it is reading, if any, has ended."""
        with self._lock:
            self._context = None
            self._due.clear()
            self._wake.notify()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(self.wait_s)
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._context is not None and (wait := self._until_due()) > 0:
                    self._wake.wait(None if wait == math.inf else wait)
                if self._context is None:
                    return
            try:
                self.refresh_due()
            except Exception:  # a surprise must not end the refresher
                log.exception("the cache's refresher failed")

    def _until_due(self) -> float:
        """Seconds until the next entry is due, inf when none is (the lock held)."""
        return self._due[0][0] - self.clock() if self._due else math.inf

    def refresh_due(self) -> int:
        """Read again each kept entry that is due and was asked for since its read, as its key's
        read in progress, unless its key is being read already; return how many were read."""
        with self._lock:
            due = self._take_due()
        read = 0
        for entry in due:
            flight: Future[Entry] = Future()
            with self._lock:
                context = self._context
                if (
                    context is None
                    or self._entries.get(entry.key) is not entry  # read again, or let go, since
                    or self._flights.setdefault(entry.key, flight) is not flight
                ):
                    continue
            assert entry.read is not None
            read += 1
            try:
                with context():
                    self._lead(entry.key, entry.read, flight)
            except Exception as exc:  # the entry expires; requests then read as without refresh
                log.warning("a refresh failed, its answer is left to expire: %r", exc)
        return read

    def _take_due(self) -> list[Entry]:
        """The kept entries due and asked for, each dropped when it expires unless read again by
        then (the lock held)."""
        now = self.clock()
        due = []
        while self._due and self._due[0][0] <= now:
            _, _, key, read_at = heapq.heappop(self._due)
            entry = self._entries.get(key)
            if entry is None or entry.read_at != read_at:  # dropped, or read again since
                continue
            if now - read_at >= self.max_age_s:
                self._drop(key)
                continue
            self._plan(read_at + self.max_age_s, entry)
            if entry.asked:
                due.append(entry)
        return due


def footprint(snapshot: Snapshot) -> int:
    """About how many bytes a kept snapshot holds: its fields, lines and times."""
    jobs = snapshot.jobs if isinstance(snapshot, ServerSnapshot) else [snapshot]
    size = ENTRY_BYTES
    for job in jobs:
        size += ENTRY_BYTES + sum(map(sys.getsizeof, job.log_lines))
        size += LINE_BYTES * len(job.log_lines) + TIME_BYTES * len(job.log_times or ())
    return size
