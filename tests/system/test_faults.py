"""A bad day, for real, in both shipped shapes: `make run` (gunicorn alone) and `make serve-nginx`.

Short versions of the drills in tests/support/faults.py (`make drill` runs them long): every
poll answered and in time, never a 500, the probes telling the truth. Slow and pipelining
clients are nginx's to absorb, and every odd request is a 4xx in the JSON envelope there: those
drills run through nginx only. The database's faults and the probes run in both shapes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api import JOB_URL, SECRET
from support.faults import (
    closing_requests,
    fault_stack,
    frozen_database,
    half_sent_heads,
    held_sockets,
    killed_backend,
    odd_requests,
    overlong_heads,
    pipelined_requests,
    raw,
)
from support.processes import clean_env, free_port, kill_leftovers, wait_until

from zdm_devstack.stack import Stack

# Starts servers of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVELOPE_KEYS = ["requestID", "success", "error", "timestamp", "code"]
BARE, NGINX = "make run", "make serve-nginx"


class Shapes:
    """The two shapes, each started on first use, on an embedded PostgreSQL of its own."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.started: dict[str, Stack] = {}

    def get(self, shape: str) -> Stack:
        if shape not in self.started:
            folder = self.factory.mktemp("faults")
            with (folder / "stack.log").open("wb") as log:
                self.started[shape] = fault_stack(folder, shape == NGINX, log)
        return self.started[shape]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shapes]:
    started = Shapes(tmp_path_factory)
    try:
        yield started
    finally:
        for running in started.started.values():
            running.stop()


@pytest.fixture(params=[BARE, NGINX])
def stack(request: pytest.FixtureRequest, shapes: Shapes) -> Stack:
    """Either shape: the faults of the database, and the probes."""
    return shapes.get(request.param)


@pytest.fixture
def nginx(shapes: Shapes) -> Stack:
    """The production shape: nginx in front, which absorbs what clients do."""
    return shapes.get(NGINX)


def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port}"


def test_idle_and_slowloris_sockets_starve_nothing(nginx: Stack) -> None:
    """40 idle and 40 slowloris sockets: every poll answered, p99 under 0.5 s."""
    result = held_sockets(base(nginx), nginx.port, seconds=8)
    assert result["ok"], result


def test_pipelined_unfinished_requests_hold_no_thread(nginx: Stack) -> None:
    """12 connections send a whole request and the start of a second, then hold: every poll
    and /healthz within 0.5 s; each held connection gets its answer and is closed once its
    second head is overdue (5 s)."""
    result = pipelined_requests(base(nginx), nginx.port, seconds=7)
    assert result["ok"], result


def test_connections_asked_to_close_never_stall_the_loop(nginx: Stack) -> None:
    """10 connections send Connection: close and hold: every poll and /healthz within 0.5 s;
    each gets its whole answer and a clean close."""
    result = closing_requests(base(nginx), nginx.port, seconds=4)
    assert result["ok"], result


def test_more_half_sent_heads_than_a_worker_takes_shut_no_one_out(nginx: Stack) -> None:
    """2,500 connections with half a head, more than make run's workers take: every poll and
    /healthz within 0.5 s; the heads are closed once overdue."""
    result = half_sent_heads(base(nginx), nginx.port, seconds=7)
    assert result["ok"], result


def test_unfinished_heads_longer_than_the_limits_are_refused_at_once(nginx: Stack) -> None:
    """6 connections send 830 KB of a head and no end: every poll and /healthz within 0.5 s;
    each gets a whole 431 envelope at once."""
    result = overlong_heads(base(nginx), nginx.port, seconds=3)
    assert result["ok"], result


def test_a_killed_backend_costs_no_500_and_recovers(stack: Stack) -> None:
    """One backend SIGKILLed: only 200s and 503s, 200 again within 3 s."""
    result = killed_backend(base(stack), stack.env["DATABASE_URL"], seconds=6)
    assert result["ok"], result


def test_a_frozen_database_gets_bounded_answers(stack: Stack) -> None:
    """Frozen for 9 s while 12 clients poll job 1, more than the two workers' threads:
    requests end within a read's deadline (6 s), /healthz within 0.5 s, /readyz (503) within
    1.5 s, 200 again within 3 s of resuming."""
    assert stack.postgres is not None
    result = frozen_database(base(stack), stack.postgres.pgdata, freeze=9)
    assert result["ok"], result


def envelope(answer: bytes) -> tuple[int, dict[str, Any]]:
    """The status and the JSON body of a raw HTTP answer, which must be the error envelope."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.decode("latin-1").lower()
    assert "content-type: application/json" in headers, answer[:300]
    assert "location:" not in headers, answer[:300]
    parsed = json.loads(body)
    assert list(parsed)[:5] == ENVELOPE_KEYS, parsed
    assert parsed["success"] is False
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", parsed["timestamp"])
    return status, parsed


def test_every_odd_request_is_a_4xx_and_the_app_s_own_the_envelope(stack: Stack) -> None:
    """In either shape, never a 5xx; what the app answers is its envelope (gunicorn alone
    answers what it refuses with its own page: the development shape)."""
    answers = odd_requests(stack.port)
    statuses = {name: int(answer.split(b" ", 2)[1]) for name, answer in answers.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    assert envelope(answers["exp = 10**400"])[1]["code"] == "AUTH-ERROR-01"
    assert envelope(answers["// in the path"])[1]["code"] == "HTTP-404"
    assert envelope(answers["// at the start"])[1]["code"] == "HTTP-404"


def test_behind_nginx_every_odd_request_is_a_4xx_in_the_envelope(nginx: Stack) -> None:
    answers = odd_requests(nginx.port)
    seen = {}
    for name, answer in answers.items():
        status, body = envelope(answer)
        assert 400 <= status < 500, (name, answer[:300])
        seen[name] = (status, body["code"])
    assert seen["exp = 10**400"] == (401, "AUTH-ERROR-01"), seen
    assert seen["// in the path"] == (404, "HTTP-404"), seen
    assert seen["// at the start"] == (404, "HTTP-404"), seen


def request(line: str, headers: str = "", body: str = "") -> bytes:
    return f"{line}\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n{body}".encode(
        "latin-1"
    )


def line_of(length: int, method: str = "GET") -> str:
    """A request line of the given length, for a path the app does not have (its 404)."""
    return f"{method} /nope?q={'a' * (length - len(method) - len(' /nope?q= HTTP/1.1'))} HTTP/1.1"


def header_of(length: int) -> str:
    """An Authorization line of the given length, ending included (as gunicorn counts it)."""
    return f"Authorization: Bearer {'a' * (length - len('Authorization: Bearer ') - 2)}\r\n"


def job_line(method: str) -> str:
    """A request line for job 1 with the given method: the app has the route, not the method."""
    return f"{method} {JOB_URL}1 HTTP/1.1"


JOB_1 = job_line("GET")
# Each thing gunicorn refuses with an HTML page of its own, at and past nginx's limit for it:
# the request, and the status it must get (the app's own where nginx passes it on).
GUNICORN_REFUSES = {
    "a request line of 8,190 bytes": (request(line_of(8190)), 404),
    "a request line of 8,191 bytes": (request(line_of(8191)), 414),
    "a header line of 8,190 bytes": (request(JOB_1, header_of(8190)), 401),
    "a header line of 8,192 bytes": (request(JOB_1, header_of(8192)), 401),
    "a header line of 8,193 bytes": (request(JOB_1, header_of(8193)), 431),
    "101 header fields": (request(JOB_1, "".join(f"a{n}:\r\n" for n in range(101))), 401),
    "2,000 header fields": (request(JOB_1, "".join(f"a{n}:\r\n" for n in range(2000))), 431),
    "a 2-letter method": (request(job_line("AB")), 405),
    "a 21-letter method": (request(job_line("A" * 21)), 405),
    "a method with - and _": (request(job_line("M-_")), 405),
    "a lowercase method": (request(job_line("get")), 400),
    "a method with #": (request(job_line("G#T")), 400),
    "Transfer-Encoding: gzip": (request(JOB_1, "Transfer-Encoding: gzip\r\n"), 501),
    "Transfer-Encoding: chunked, gzip": (
        request(JOB_1, "Transfer-Encoding: chunked, gzip\r\n"),
        501,
    ),
    "Transfer-Encoding: identity": (request(JOB_1, "Transfer-Encoding: identity\r\n"), 501),
    "Content-Length twice": (
        request(JOB_1, "Content-Length: 1\r\nContent-Length: 1\r\n", "a"),
        400,
    ),
    "a folded header line": (request(JOB_1, "X-A: b\r\n c\r\n"), 400),
    "a folded Authorization": (request(JOB_1, "Authorization: Bearer\r\n\tx\r\n"), 400),
    "conflicting scheme headers": (request(JOB_1, "X-Forwarded-Ssl: on\r\n"), 401),
    "a byte above 0x7e in the target": (request("GET /heal\x80thz HTTP/1.1"), 400),
    **{
        f"byte {byte:#04x} in a header value": (
            request(JOB_1, f"Authorization: Bearer a{chr(byte)}b\r\n"),
            400,
        )
        for byte in (0x01, 0x08, 0x0B, 0x0C, 0x1F, 0x7F)
    },
    "byte 0x1b in Accept-Language": (request(JOB_1, "Accept-Language: en\x1b\r\n"), 400),
    "byte 0x1b in X-Forwarded-For": (request(JOB_1, "X-Forwarded-For: 1.2.3.4\x1b\r\n"), 400),
    "byte 0x01 in another header": (request(JOB_1, "X-Other: a\x01b\r\n"), 401),
}


@pytest.mark.parametrize("case", GUNICORN_REFUSES)
def test_behind_nginx_no_page_of_gunicorn_s_reaches_a_client(nginx: Stack, case: str) -> None:
    """What gunicorn would refuse nginx refuses first, or never passes on: a 4xx (or 501) in
    the envelope, never text/html, never a 500."""
    data, expected = GUNICORN_REFUSES[case]
    answer = raw(nginx.port, data)
    status, body = envelope(answer)
    assert status == expected, (case, answer[:300])
    assert body["code"] == ("AUTH-ERROR-01" if status == 401 else f"HTTP-{status}"), body
    assert b"text/html" not in answer.partition(b"\r\n\r\n")[0].lower(), answer[:300]


def test_no_server_header_names_a_version(stack: Stack) -> None:
    """Neither nginx nor gunicorn tells which release it runs, in any kind of answer."""
    host = "Host: 127.0.0.1\r\nConnection: close\r\n"
    answers = {
        **odd_requests(stack.port),
        "/healthz": raw(stack.port, f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode()),
        "a 4 KB body": raw(
            stack.port,
            f"POST /healthz HTTP/1.1\r\n{host}Content-Length: 4096\r\n\r\n".encode() + b"x" * 4096,
        ),
    }
    servers = {
        name: re.findall(r"\r\nserver: *([^\r]*)", answer.split(b"\r\n\r\n")[0].decode(), re.I)
        for name, answer in answers.items()
    }
    assert any(servers.values()), servers  # some answers name their server at all
    named = {name: names for name, names in servers.items() if names}
    assert all(re.fullmatch(r"[a-z]+", n) for names in named.values() for n in names), named


def test_a_bare_gunicorn_listens_on_loopback_only(tmp_path: Path) -> None:
    """`gunicorn wsgi:app` in the checkout, no -c and no --bind, with PORT set."""
    port = free_port()
    env = clean_env(
        DATABASE_URL="postgresql://zdm@127.0.0.1:1/zdm",
        ZDM_JWT_SECRET=SECRET,
        PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    with (tmp_path / "gunicorn.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        listening = wait_until(lambda: listeners(port), 20)
        assert listening == {"127.0.0.1"}, (tmp_path / "gunicorn.log").read_text()
        assert "Using worker: gthread" in (tmp_path / "gunicorn.log").read_text()
    finally:
        kill_leftovers([process])


def listeners(port: int) -> set[str]:
    """The local addresses with a socket listening on port (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(decode_address(address))
    return found


def decode_address(hex_address: str) -> str:
    if len(hex_address) == 8:
        return ".".join(str(int(hex_address[i : i + 2], 16)) for i in range(6, -1, -2))
    return "::" if int(hex_address, 16) == 0 else hex_address
