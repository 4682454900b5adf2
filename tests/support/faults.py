"""The ways a bad day knocked the service over, done for real, each measured by a poller.

A poller asks for job 1 every 50 ms (each request on its own connection, so a stuck one shows)
while the fault happens: held-open and slowloris sockets, a PostgreSQL backend SIGKILLed,
PostgreSQL frozen with SIGSTOP, odd requests and tokens, unfinished requests pipelined behind
whole ones, held connections asked to close, and more half-sent heads than a server takes.
Each drill returns what it saw and, as "ok", whether the service met its targets;
tests/system/test_faults.py runs them short, `make drill` long. The clients' drills (sockets,
heads, pipelining, closing) are nginx's to absorb: they run through nginx only.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import closing, suppress
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import psycopg2

from support.api import JOB_URL, SECRET, bearer, make_token
from support.processes import clean_env, free_port, free_port_pair
from zdm_devstack.stack import Stack
from zdm_monitor.data.database import DEADLINE_GRACE_S

SITE = files("zdm_monitor.ops").joinpath("nginx-site.conf").read_text(encoding="utf-8")


def site_seconds(directive: str, default: float | None = None) -> float:
    """A timeout the nginx site sets (every server block sets it alike), else nginx's default."""
    found = set(re.findall(rf"^\s*{directive} (\d+)s;", SITE, re.MULTILINE))
    if not found and default is not None:
        return default
    (seconds,) = found
    return float(seconds)


# How long a request head may take to arrive, and how long a closing connection is read from.
HEAD_TIMEOUT_S = site_seconds("client_header_timeout")
LINGER_S = site_seconds("lingering_timeout", 5.0)
# Both shapes run make run's two workers, so that the frozen drill's polls outnumber the
# request threads (2 x GUNICORN_THREADS), as a busy node's do.
WORKERS = 2
# The snapshot cache on, with a short max age: during a freeze most polls then wait for another
# request's read of job 1 (the cache's one read a key), the rest read themselves, and a cached
# answer hides the freeze for at most this long.
CACHE_MAX_AGE_MS = 250


def fault_stack(folder: Path, nginx: bool, output: Any) -> Stack:
    """The shape `make run` (or `make serve-nginx`) starts, on an embedded PostgreSQL."""
    stack = Stack(
        folder,
        free_port_pair() if nginx else free_port(),
        nginx=nginx,
        workers=WORKERS,
        env=clean_env(
            ZDM_JWT_SECRET=SECRET,
            GUNICORN_ACCESS_LOG="/dev/null",
            ZDM_CACHE_MAX_AGE_MS=str(CACHE_MAX_AGE_MS),
        ),
        output=output,
    )
    stack.start()
    return stack


POLL_GAP_S = 0.05
CLIENT_TIMEOUT_S = 20.0


@dataclass
class Answer:
    started: float
    seconds: float
    status: int  # 0: no answer (connection error or client timeout)
    body: bytes = b""
    content_type: str = ""


def get(base: str, path: str, headers: dict[str, str] | None = None) -> Answer:
    """One GET on a new connection."""
    started = time.monotonic()
    request = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:
            body, status = response.read(), response.status
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        with exc:
            body, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    except OSError:
        body, status, kind = b"", 0, ""
    return Answer(started, time.monotonic() - started, status, body, kind)


@dataclass
class Poller:
    """Polls a path every POLL_GAP_S in `clients` threads until stopped; keeps every answer."""

    base: str
    path: str = f"{JOB_URL}1"
    clients: int = 1
    token: bool = True
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Poller:
        headers = bearer() if self.token else {}

        def run() -> None:
            while not self._stop.is_set():
                self.answers.append(get(self.base, self.path, headers))
                self._stop.wait(POLL_GAP_S)

        self._threads = [threading.Thread(target=run, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_S + 5)

    def statuses(self) -> dict[int, int]:
        return dict(Counter(a.status for a in self.answers))

    def slowest(self) -> float:
        return max((a.seconds for a in self.answers), default=0.0)

    def p99(self) -> float:
        times = sorted(a.seconds for a in self.answers)
        return times[min(len(times) - 1, int(len(times) * 0.99))] if times else 0.0

    def first_ok_after(self, moment: float) -> float | None:
        """Seconds from moment to the end of the first 200 that started after it."""
        ok = [
            a.started + a.seconds for a in self.answers if a.status == 200 and a.started >= moment
        ]
        return (min(ok) - moment) if ok else None


def summary(poller: Poller) -> dict[str, Any]:
    times = [a.seconds for a in poller.answers]
    return {
        "polls": len(times),
        "statuses": poller.statuses(),
        "p50 s": round(statistics.median(times), 4) if times else None,
        "p99 s": round(poller.p99(), 4),
        "slowest s": round(poller.slowest(), 4),
    }


# --- 1. Held-open sockets: idle ones, and slowloris sending a header byte a second -----------


def hold_sockets(port: int, idle: int, slow: int, seconds: float) -> None:
    """Open idle connections that send nothing and slow ones that trickle a request head."""
    sockets: list[socket.socket] = []
    try:
        for n in range(idle + slow):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sockets.append(sock)
            if n >= idle:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for sock in sockets[idle:]:
                with suppress(OSError):  # closed by the server: as it should
                    sock.sendall(b"X")  # one more byte of an endless header
            time.sleep(1.0)
    finally:
        for sock in sockets:
            sock.close()


def held_sockets(
    base: str, port: int, seconds: float, idle: int = 40, slow: int = 40
) -> dict[str, Any]:
    """Target: every poll answered 200, p99 under 0.5 s."""
    with Poller(base) as poller:
        hold_sockets(port, idle, slow, seconds)
    result = summary(poller)
    ok = result["statuses"] == {200: result["polls"]} and result["p99 s"] < 0.5
    return {**result, "ok": ok and result["polls"] > seconds * 5}


# --- 2. A PostgreSQL backend SIGKILLed: the server drops every connection and restarts -------


def server_pids(pgdata: Path) -> list[int]:
    """The postmaster of the cluster and every process below it."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [postmaster], [postmaster]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def service_backends(url: str) -> list[int]:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'zdm-monitor'"
            " AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in cur.fetchall()]


def killed_backend(base: str, url: str, seconds: float) -> dict[str, Any]:
    """SIGKILL one of the service's backends a third of the way in. Target: no 500 (only 200
    and 503), 200 again within 3 s."""
    with Poller(base, clients=3) as poller:
        time.sleep(seconds / 3)
        backends = service_backends(url)
        assert backends, "the service holds no connection to kill"
        killed_at = time.monotonic()
        os.kill(backends[0], signal.SIGKILL)
        time.sleep(seconds * 2 / 3)
    back = poller.first_ok_after(killed_at + 0.001)
    result = summary(poller)
    ok = set(result["statuses"]) <= {200, 503} and back is not None and back < 3
    return {**result, "200 again after s": None if back is None else round(back, 3), "ok": ok}


# --- 3. PostgreSQL frozen (SIGSTOP): a hung host or a black-holed network looks the same ------


# More pollers of job 1 than the two workers have request threads: without a thread kept from
# the database, every thread of a worker ends up waiting on it and the probes queue behind.
FROZEN_CLIENTS = 12
# A read's deadline: ZDM_DB_STATEMENT_TIMEOUT_MS's default and the grace; the margin is the
# loaded machine's.
READ_DEADLINE_S = 5.0 + DEADLINE_GRACE_S
DEADLINE_MARGIN_S = 0.5


def frozen_database(
    base: str, pgdata: Path, freeze: float, before: float = 2.0, after: float = 4.0
) -> dict[str, Any]:
    """SIGSTOP every PostgreSQL process for `freeze` seconds; the probes polled meanwhile.

    Targets: every request ends within a read's deadline (6 s), with 200 or 503 (503s seen);
    /healthz 200 within 0.5 s; /readyz 503 within 1.5 s; 200 again within 3 s of resuming.
    """
    with (
        Poller(base, clients=FROZEN_CLIENTS) as jobs,
        Poller(base, "/healthz", token=False) as health,
        Poller(base, "/readyz", token=False) as ready,
    ):
        time.sleep(before)
        pids = server_pids(pgdata)
        frozen_at = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(freeze)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        time.sleep(after)

    def during(poller: Poller) -> list[Answer]:
        return [a for a in poller.answers if frozen_at <= a.started < resumed_at]

    frozen_jobs = during(jobs)
    back = jobs.first_ok_after(resumed_at)
    probes = {"jobs": jobs, "/healthz": health, "/readyz": ready}
    slowest = {name: max((a.seconds for a in during(p)), default=0) for name, p in probes.items()}
    ok = (
        set(jobs.statuses()) <= {200, 503}
        and 503 in {a.status for a in frozen_jobs}
        and jobs.slowest() < READ_DEADLINE_S + DEADLINE_MARGIN_S
        and {a.status for a in during(health)} == {200}
        and slowest["/healthz"] < 0.5
        and 503 in {a.status for a in during(ready)}
        and slowest["/readyz"] < 1.5
        and back is not None
        and back < 3
    )
    return {
        "ok": ok,
        "jobs": summary(jobs),
        **{
            f"{name} during": dict(Counter(a.status for a in during(p)))
            for name, p in probes.items()
        },
        **{f"slowest {name} during s": round(seconds, 3) for name, seconds in slowest.items()},
        "200 again after s": None if back is None else round(back, 3),
    }


# --- 4 and 5. Odd tokens and odd requests: every answer a 4xx in the envelope -----------------


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def odd_requests(port: int) -> dict[str, bytes]:
    """What the service answers to requests a parser or a router could trip on."""
    token = bearer(make_token(exp=10**400))["Authorization"]
    seed = f"{JOB_URL}1"
    host = "Host: 127.0.0.1\r\n"
    cases = {
        "exp = 10**400": f"GET {seed} HTTP/1.1\r\n{host}Authorization: {token}\r\n",
        "64 KB header": f"GET {seed} HTTP/1.1\r\n{host}X-Filler: {'a' * 65536}\r\n",
        "20 KB query string": f"GET {seed}?q={'a' * 20480} HTTP/1.1\r\n{host}",
        "// in the path": f"GET /api/backups//monitoring/job/1 HTTP/1.1\r\n{host}",
        "// at the start": f"GET //healthz HTTP/1.1\r\n{host}",
        "TRACE": f"TRACE {seed} HTTP/1.1\r\n{host}",
        "100-character method": f"{'A' * 100} {seed} HTTP/1.1\r\n{host}",
        "duplicate Host": f"GET {seed} HTTP/1.1\r\n{host}Host: evil.example\r\n",
        "%00 in the path": f"GET {seed}%00 HTTP/1.1\r\n{host}",
        "Content-Length with chunked": (
            f"GET {seed} HTTP/1.1\r\n{host}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"
        ),
    }
    return {
        name: raw(port, (text + "Connection: close\r\n\r\n").encode("latin-1"))
        for name, text in cases.items()
    }


# --- 6 and 7. Requests pipelined behind a whole one and never finished, and connections asked
# to close that the client then holds open; 8. more half-sent heads than gunicorn takes; 9.
# unfinished heads longer than any head may be ------------------------------------------------

# A whole request, then the start of a second one that never ends.
PIPELINED = (
    b"GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    b"GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
)
CLOSING = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
# More than any head may be (nginx's buffers, gunicorn's 100 fields of 8,190 bytes), no end.
OVERLONG = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 830_000
# The server's own bounds are what is measured; each gets a margin for the loaded machine and
# for nginx, which checks its timers after its events.
CLOSE_MARGIN_S = 1.5
PROMPT_S = 0.5


@dataclass
class Held:
    """A connection that sent its bytes and then only reads: what came back, how it ended."""

    sock: socket.socket
    sent: float
    answer: bytes = b""
    closed_after: float | None = None  # seconds from sending to the server's close
    reset: bool = False

    def receive(self) -> bool:
        """Read what has arrived; whether the server has closed the connection."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            self.reset, chunk = True, b""
        self.answer += chunk
        if not chunk:
            self.closed_after = time.monotonic() - self.sent
        return not chunk


def hold_requests(port: int, payload: bytes, count: int, seconds: float) -> list[Held]:
    """Open `count` connections that each send payload, then read for `seconds`, then close."""
    held: list[Held] = []
    with selectors.DefaultSelector() as selector:
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(payload)
                sock.setblocking(False)
                held.append(Held(sock, time.monotonic()))
                selector.register(sock, selectors.EVENT_READ, held[-1])
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    if key.data.receive():
                        selector.unregister(key.fileobj)
        finally:
            for h in held:
                h.sock.close()
    return held


def whole(answer: bytes, status: int = 200) -> bool:
    """Whether the bytes are one whole answer of that status: as long as its Content-Length."""
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)\r\n", head, re.IGNORECASE)
    started = head.startswith(b"HTTP/1.1 %d " % status)
    return started and length is not None and int(length[1]) == len(body)


def held_requests(
    base: str, port: int, payload: bytes, count: int, seconds: float, status: int = 200
) -> tuple[dict[str, Any], list[Held]]:
    """Hold the connections while job 1 and /healthz are polled; count the whole answers of the
    status the held ones should get. Target: every poll 200 within PROMPT_S."""
    with Poller(base) as jobs, Poller(base, "/healthz", token=False) as health:
        held = hold_requests(port, payload, count, seconds)
    polls = {"jobs": summary(jobs), "/healthz": summary(health)}
    ok = all(
        p["statuses"] == {200: p["polls"]}
        and p["polls"] > seconds * 5
        and p["slowest s"] < PROMPT_S
        for p in polls.values()
    )
    closed = [h.closed_after for h in held if h.closed_after is not None]
    return {
        "ok": ok,
        **polls,
        f"answered {status} in whole": sum(whole(h.answer, status) for h in held),
        "closed by the server": len(closed),
        "reset": sum(h.reset for h in held),
        "closed after s": [round(min(closed), 3), round(max(closed), 3)] if closed else None,
    }, held


def pipelined_requests(base: str, port: int, seconds: float, count: int = 12) -> dict[str, Any]:
    """Connections that send a whole request and the start of another, then hold. Targets: the
    polls as held_requests; each held connection gets its first answer, and is closed once the
    second head is overdue (HEAD_TIMEOUT_S), not before."""
    result, held = held_requests(base, port, PIPELINED, count, seconds)
    ok = all(
        whole(h.answer)
        and h.closed_after is not None
        and HEAD_TIMEOUT_S - 0.1 < h.closed_after < HEAD_TIMEOUT_S + CLOSE_MARGIN_S
        for h in held
    )
    return {**result, "ok": result["ok"] and ok}


def closing_requests(base: str, port: int, seconds: float, count: int = 10) -> dict[str, Any]:
    """Connections that send one request with Connection: close, then hold. Targets: the polls
    as held_requests; each gets its whole answer and a clean close (no reset) within LINGER_S."""
    result, held = held_requests(base, port, CLOSING, count, seconds)
    ok = all(
        whole(h.answer)
        and not h.reset
        and h.closed_after is not None
        and h.closed_after < LINGER_S + CLOSE_MARGIN_S
        for h in held
    )
    return {**result, "ok": result["ok"] and ok}


def half_sent_heads(base: str, port: int, seconds: float, count: int = 2500) -> dict[str, Any]:
    """More connections with half a head than gunicorn's two workers would take (1,000 each).
    Target: the polls as held_requests; the heads are closed when overdue."""
    result, held = held_requests(base, port, HALF_SENT, count, seconds)
    late = [h for h in held if h.closed_after is None or h.closed_after > HEAD_TIMEOUT_S + 2]
    return {**result, "ok": result["ok"] and not late}


def overlong_heads(base: str, port: int, seconds: float, count: int = 6) -> dict[str, Any]:
    """Connections that send more of a head than the limits allow, never ending it, then hold.
    Targets: the polls as held_requests; each gets a whole 431 at once."""
    result, held = held_requests(base, port, OVERLONG, count, seconds, 431)
    ok = all(whole(h.answer, 431) and h.closed_after is not None for h in held)
    return {**result, "ok": result["ok"] and ok}
