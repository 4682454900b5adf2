"""gunicorn's gthread worker, made safe to face clients directly.

gthread hands every new connection to a thread, which waits for the first byte and then reads
the request head with no deadline: a few idle or slow ("slowloris") connections take every
thread. Here the worker's own loop reads request heads without blocking, and a connection gets
a thread only once its head has arrived; one whose head is not complete within HEAD_TIMEOUT_S
is closed, as nginx's client_header_timeout does. Kept-alive connections go the same way for
their next request. A body the app did not read is drained only briefly, else the connection
closes, so a slow body cannot hold a thread either. The probes never queue behind requests:
/healthz, which touches nothing, is answered by the loop itself, and /readyz on a thread of its
own, so both answer in time even while every request thread waits on a database that does not
answer (each such wait is bounded: db.py, deadline.py).

gunicorn's own error pages (a bad request line, headers too large, an unknown transfer coding)
are answered in the JSON envelope instead of HTML, keeping gunicorn's statuses and limits.
"""

from __future__ import annotations

import errno
import json
import secrets
import selectors
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from . import state
from .envelope import error_body
from .errors import INTERNAL_MESSAGE, http_message

# As nginx's client_header_timeout in config/nginx/zdm-monitor.conf.
HEAD_TIMEOUT_S = 5.0
# How long an unread request body may take to drain before the connection closes instead.
DRAIN_S = 0.1
READ_SIZE = 65536
LIVENESS, READINESS = b"/healthz", b"/readyz"


def probe(head: bytes) -> bytes | None:
    """The probe the request line asks for (its path), or None."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
    return path if path in (LIVENESS, READINESS) else None


class HeadFirstWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with the request head read by the worker's loop, under a deadline."""

    def init_process(self) -> None:
        self.probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zdm-probe")
        super().init_process()

    def enqueue_req(self, conn: TConn) -> None:
        """Serve /healthz here, /readyz on the probe thread, anything else on a request thread."""
        asked = probe(getattr(conn, "head", b""))
        if asked == LIVENESS:
            future: Future[Any] = Future()
            try:
                future.set_result(self.handle(conn))
            except BaseException as exc:
                future.set_exception(exc)
            self.finish_request(conn, future)
            return
        pool = self.probe_pool if asked == READINESS else self.tpool
        future = pool.submit(self.handle, conn)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )

    def max_head_bytes(self) -> int:
        """The largest head gunicorn's limits allow: anything longer is refused by the parser."""
        cfg = self.cfg
        fields = cfg.limit_request_fields * (cfg.limit_request_field_size + 2)
        return int(cfg.limit_request_line + fields + 4)

    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        self.wait_for_head(conn)

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        """A kept-alive connection's next request begins: its head is read here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.sock.setblocking(False)
        self.wait_for_head(conn)
        self.read_head(conn, client)

    def wait_for_head(self, conn: TConn) -> None:
        conn.head = b""
        conn.timeout = time.monotonic() + HEAD_TIMEOUT_S
        self.pending_conns.append(conn)  # closed by murder_pending once the deadline passes
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.read_head, conn))

    def read_head(self, conn: TConn, client: Any) -> None:
        """Take what the client sent; hand the connection to a thread once the head is in."""
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            conn.head += data
            complete = b"\r\n\r\n" in conn.head or b"\n\n" in conn.head
            if not complete and len(conn.head) <= self.max_head_bytes():
                return
        self.poller.unregister(client)
        self.pending_conns.remove(conn)
        if not data:  # the client closed or failed before sending a whole head
            self.nr_conns -= 1
            conn.close()
            return
        conn.data_ready = True
        self.enqueue_req(conn)

    def handle(self, conn: TConn) -> Any:
        """Parse from the head already read, then serve as gthread does."""
        head = getattr(conn, "head", b"")
        if head:
            conn.head = b""
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(head)
        return super().handle(conn)

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        if not keepalive:
            return False
        return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_S))

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
