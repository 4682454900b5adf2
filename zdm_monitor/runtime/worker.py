"""gunicorn's gthread worker, made safe to face clients directly.

gthread hands every new connection to a thread, which waits for the first byte and then reads
the request head with no deadline: a few idle or slow ("slowloris") connections take every
thread. Here the worker's own loop reads request heads without blocking, and a connection gets
a thread only once its head has arrived; one whose head is not complete within HEAD_TIMEOUT_S
is closed, as nginx's client_header_timeout does. So goes every request on a connection: the
first, a kept-alive one's next, and one pipelined behind the last. A body the app did not read
is drained only briefly, else the connection closes, so a slow body cannot hold a thread either.

The loop never waits on a client: a connection closes as gunicorn's close_graceful closes it
(write side first, then the client's input drained, so it reads its answer rather than a reset),
but drained by the loop's poller; at the connection limit, the connection that has waited
longest without a request in progress is closed to make room. The probes never queue behind
requests: /healthz, which touches nothing, is answered by the loop itself, without blocking,
and /readyz on a thread of its own, so both answer in time even while every request thread
waits on a database that does not answer (each such wait is bounded: db.py, deadline.py).

gunicorn's own error pages (a bad request line, headers too large, an unknown transfer coding)
are answered in the JSON envelope instead of HTML, keeping gunicorn's statuses and limits.
This reaches into gthread's internals: setup.cfg pins the gunicorn release they were read from,
and tests/runtime/test_worker.py fails when the names used here change.
"""

from __future__ import annotations

import errno
import json
import secrets
import selectors
import socket
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from .. import state
from ..api.envelope import error_body
from ..api.errors import INTERNAL_MESSAGE, http_message

# As nginx's client_header_timeout in the site (ops/nginx-site.conf).
HEAD_TIMEOUT_S = 5.0
# How long an unread request body may take to drain before the connection closes instead.
DRAIN_S = 0.1
# As gunicorn's close_graceful: how long, and how much, a closing connection's input is drained.
LINGER_S = 2.0
LINGER_BYTES = 65536
READ_SIZE = 65536
LIVENESS, READINESS = b"/healthz", b"/readyz"


def probe(head: bytes) -> bytes | None:
    """The probe the request line asks for (its path), or None."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
    return path if path in (LIVENESS, READINESS) else None


def complete(head: bytes) -> bool:
    """Whether the head has ended (gunicorn's parser refuses a bare LF at once, unread)."""
    return b"\r\n\r\n" in head or b"\n\n" in head


class Conn(TConn):  # type: ignore[misc]
    """gthread's connection, with the head read so far and whether the loop serves it."""

    head = b""
    on_loop = False  # nothing done for it may wait
    drained = 0  # bytes discarded while closing

    def receive(self) -> bytes | None:
        """What the client sent, b"" at its end or on an error, None when nothing is there."""
        try:
            return bytes(self.sock.recv(READ_SIZE))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""


class HeadFirstWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with the request head read by the worker's loop, under a deadline."""

    def init_process(self) -> None:
        self.probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zdm-probe")
        self.closing: deque[Conn] = deque()  # answered, their input drained until they close
        super().init_process()

    def enqueue_req(self, conn: Conn) -> None:
        """Serve /healthz here, /readyz on the probe thread, anything else on a request thread."""
        asked = probe(conn.head) if complete(conn.head) else None
        if asked == LIVENESS:
            future: Future[Any] = Future()
            conn.on_loop = True
            try:
                future.set_result(self.handle(conn))
            except BaseException as exc:
                future.set_exception(exc)
            conn.on_loop = False
            # Queued, not called: probes a client pipelines take turns with everything else.
            self.method_queue.defer(self.finish_request, conn, future)
            return
        pool = self.probe_pool if asked == READINESS else self.tpool
        future = pool.submit(self.handle, conn)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )

    def arrived(self, head: bytes) -> bool:
        """Whether a thread may take the head: it is complete, or longer than gunicorn's limits
        allow (the parser refuses it)."""
        cfg = self.cfg
        most = cfg.limit_request_line + cfg.limit_request_fields * (
            cfg.limit_request_field_size + 2
        )
        return complete(head) or len(head) > most + 4

    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.wait_for_head(Conn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: Conn, client: Any) -> None:
        """A kept-alive connection's next request begins: its head is read here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.sock.setblocking(False)
        self.wait_for_head(conn)
        self.read_head(conn, client)

    def wait_for_head(self, conn: Conn, head: bytes = b"") -> None:
        """Read the rest of the head on the loop, under the deadline, or serve it if it is in."""
        conn.head = head
        if head and self.arrived(head):
            self.enqueue_req(conn)
            return
        conn.timeout = time.monotonic() + HEAD_TIMEOUT_S
        self.pending_conns.append(conn)  # closed by murder_pending once the deadline passes
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.read_head, conn))

    def read_head(self, conn: Conn, client: Any) -> None:
        """Take what the client sent; hand the connection to a thread once the head is in."""
        data = conn.receive()
        if data is None:
            return
        conn.head += data
        if data and not self.arrived(conn.head):
            return
        self.pending_conns.remove(conn)
        if not data:  # the client closed or failed before sending a whole head
            self.drop(conn)
            return
        self.poller.unregister(client)
        conn.data_ready = True
        self.enqueue_req(conn)

    def handle(self, conn: Conn) -> Any:
        """Parse from the head already read, then serve as gthread does."""
        head, conn.head = conn.head, b""
        if head and not complete(head):
            # Longer than the limits allow, unfinished: ended here, so the parser refuses it for
            # the limit it breaks (414 or 431) rather than wait, with no deadline, for more.
            head += b"\r\n\r\n"
        if head:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(head)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Conn) -> Any:
        if not conn.on_loop:
            return super().handle_request(req, conn)
        conn.sock.setblocking(False)
        try:
            return super().handle_request(req, conn)
        except BlockingIOError:  # the client's window is full: it is not reading its answers
            return False

    def _keepalive_after(self, conn: Conn, keepalive: bool) -> bool:
        if not keepalive:
            return False
        if not conn.on_loop:
            return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_S))
        try:  # only what has arrived: a deadline would make the socket block until then
            return bool(conn.parser.finish_body(max_bytes=LINGER_BYTES))
        except BlockingIOError:
            return False

    def finish_request(self, conn: Conn, fs: Future[Any]) -> None:
        """As gthread's, but a request pipelined behind the last one has its head read under
        the deadline too, and a connection closes without the loop waiting on it."""
        if fs.cancelled() or fs.exception() is not None or fs.result() is not True:
            self.close_gracefully(conn)
        elif pipelined := conn.parser.unreader.take_buffered():
            conn.sock.setblocking(False)
            self.wait_for_head(conn, pipelined)
        else:
            super().finish_request(conn, fs)  # back to the poller, kept alive

    def close_gracefully(self, conn: Conn) -> None:
        """gunicorn's close_graceful, with the client's input drained by the loop's poller."""
        conn.timeout = time.monotonic() + LINGER_S
        self.closing.append(conn)
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.drain, conn))
        except (OSError, ValueError):
            self.closing.remove(conn)
            self.drop(conn)

    def drain(self, conn: Conn, client: Any) -> None:
        """Discard what a closing connection still sends; close at its end or at the cap."""
        data = conn.receive()
        conn.drained += len(data or b"")
        if data == b"" or conn.drained >= LINGER_BYTES:
            self.closing.remove(conn)
            self.drop(conn)

    def drop(self, conn: Conn) -> None:
        """Close a connection now."""
        with suppress(OSError, KeyError, ValueError):  # not (or no longer) watched by the loop
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Close the heads past their deadline, the closing connections past theirs, and make
        room at the connection limit: after the loop's events, not among them, which could
        hand a callback still to come a closed socket."""
        super().murder_pending()
        while self.closing and self.closing[0].timeout <= time.monotonic():
            self.drop(self.closing.popleft())
        while self.nr_conns >= self.worker_connections and self.make_room():
            pass

    def make_room(self) -> bool:
        """Close the connection that has waited longest without a request in progress: one
        closing, else one still sending its head, else an idle kept-alive one."""
        waiting = self.closing or self.pending_conns or self.keepalived_conns
        if waiting:
            self.drop(waiting.popleft())
        return bool(waiting)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's status and access log for a request it could not hand to the app; the
        answer in the JSON envelope."""
        page = CapturedPage(client)
        super().handle_error(req, page, addr, exc)
        if page.status is None:
            return
        try:
            util.write_nonblock(client, self.envelope(page.status, page.reason))
        except Exception:
            self.log.debug("Failed to send error message.")

    def envelope(self, status: int, reason: str) -> bytes:
        settings = state.of(self.wsgi).settings
        request_id = f"req-{secrets.token_hex(6)}"
        if status >= 500 and status != 501:
            code, message = "INTERNAL-ERROR", INTERNAL_MESSAGE
        else:
            code, message = f"HTTP-{status}", http_message(status)
        now = datetime.now(settings.timezone)
        body = json.dumps(
            error_body(request_id, code, message, now), ensure_ascii=False, separators=(",", ":")
        ).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Request-ID: {request_id}\r\n\r\n"
        )
        return head.encode("latin-1") + body


class CapturedPage:
    """The client's socket, but for the HTML page gunicorn writes: only its status line is kept."""

    status: int | None = None
    reason = ""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        _, status, reason = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        self.status, self.reason = int(status), reason
