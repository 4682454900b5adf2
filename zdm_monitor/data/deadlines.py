"""Client-side deadlines for database work: a frozen server, which never applies its own
statement_timeout, cannot hold a thread (docs/reliability.md)."""

from __future__ import annotations

import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
from psycopg2.extensions import connection

# How long stopping a thread waits for it (it wakes at once).
STOP_WAIT_S = 5.0


class DeadlineExceeded(Exception):
    """The database did not answer before the read's deadline."""


class Deadline:
    """A point on the monotonic clock by which a read must be done."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


class Watchdog:
    """Shuts the sockets of reads past their deadline, so libpq's wait returns at once; its
    thread sleeps until the earliest deadline it knows of, not on a tick."""

    def __init__(self) -> None:
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self.forget()

    def forget(self) -> None:
        """Start from scratch, in a new process too: a parent's thread may have held the lock
        at fork, and what the parent watched is not this process's to shut."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._watched: dict[int, tuple[float, connection]] = {}
        self._next = math.inf  # when the thread wakes next
        self._stopping = False

    @contextmanager
    def watch(self, conn: connection, deadline: Deadline) -> Iterator[None]:
        """Watch the connection while the block runs: past the deadline, its socket is shut."""
        token = next(self._tokens)
        with self._lock:
            self._watched[token] = (deadline.at, conn)
            if deadline.at < self._next:
                self._wake.notify()
        try:
            yield
        finally:
            with self._lock:
                self._watched.pop(token, None)

    def start(self) -> None:
        """Start the thread unless it runs in this process already (after fork it does not)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.forget()
        self._thread = threading.Thread(target=self._run, name="zdm-db-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (the process is done reading)."""
        thread = self._thread
        with self._lock:
            self._stopping = True
            self._wake.notify()
        if thread is not None:
            thread.join(STOP_WAIT_S)

    def _run(self) -> None:
        # Holding the lock while shutting: the read's own block waits for it on leaving, so its
        # connection is still its own.
        with self._lock:
            while not self._stopping:
                now = time.monotonic()
                for token, (at, conn) in list(self._watched.items()):
                    if at <= now:
                        del self._watched[token]
                        shut(conn)
                self._next = min((at for at, _ in self._watched.values()), default=math.inf)
                self._wake.wait(None if self._next == math.inf else self._next - now)


def shut(conn: connection) -> None:
    """Shut the connection's socket down under libpq: its pending wait returns at once."""
    try:
        fd = conn.fileno()
    except psycopg2.Error:
        return
    with suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def connect_within(url: str, kwargs: dict[str, Any], deadline: Deadline | None) -> connection:
    """psycopg2.connect, given up (DeadlineExceeded) when the deadline, if any, passes first: a
    thread connects, since libpq counts connect_timeout in whole seconds, two at the least."""
    if deadline is None:
        conn: connection = psycopg2.connect(url, **kwargs)
        return conn
    attempt: Future[connection] = Future()

    def connect() -> None:
        try:
            conn = psycopg2.connect(url, **kwargs)
        except BaseException as exc:  # handed to the caller, who raises it
            if attempt.set_running_or_notify_cancel():
                attempt.set_exception(exc)
            return
        if attempt.set_running_or_notify_cancel():
            attempt.set_result(conn)
        else:  # the caller has given up
            conn.close()

    threading.Thread(target=connect, name="zdm-db-connect", daemon=True).start()
    try:
        return attempt.result(max(0.0, deadline.remaining()))
    except TimeoutError:
        if attempt.cancel():
            raise DeadlineExceeded from None
        return attempt.result()  # it came as the deadline passed
