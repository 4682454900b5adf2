"""A bad day, for real, in both shipped shapes: `make run` (gunicorn alone) and `make serve-nginx`.

Short versions of the drills in tests/support/faults.py (`make drill` runs them long): every
poll answered and in time, never a 500, the probes telling the truth, every odd request a 4xx
in the JSON envelope.
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
from support.api import SECRET
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


@pytest.fixture(scope="module", params=["make run", "make serve-nginx"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The shape `make run` or `make serve-nginx` starts, on an embedded PostgreSQL."""
    nginx = request.param == "make serve-nginx"
    folder = tmp_path_factory.mktemp("faults")
    with (folder / "stack.log").open("wb") as log:
        running = fault_stack(folder, nginx, log)
    try:
        yield running
    finally:
        running.stop()


def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port}"


def test_idle_and_slowloris_sockets_starve_nothing(stack: Stack) -> None:
    """40 idle and 40 slowloris sockets: every poll answered, p99 under 0.5 s."""
    result = held_sockets(base(stack), stack.port, seconds=8)
    assert result["ok"], result


def test_pipelined_unfinished_requests_hold_no_thread(stack: Stack) -> None:
    """12 connections send a whole request and the start of a second, then hold: every poll
    and /healthz within 0.5 s; each held connection gets its answer and is closed once its
    second head is overdue (5 s)."""
    result = pipelined_requests(base(stack), stack.port, seconds=7)
    assert result["ok"], result


def test_connections_asked_to_close_never_stall_the_loop(stack: Stack) -> None:
    """10 connections send Connection: close and hold: every poll and /healthz within 0.5 s;
    each gets its whole answer and a clean close."""
    result = closing_requests(base(stack), stack.port, seconds=4)
    assert result["ok"], result


def test_more_half_sent_heads_than_a_worker_takes_shut_no_one_out(stack: Stack) -> None:
    """2,500 connections with half a head, more than make run's workers take: every poll and
    /healthz within 0.5 s; the heads are closed once overdue."""
    result = half_sent_heads(base(stack), stack.port, seconds=7)
    assert result["ok"], result


def test_unfinished_heads_longer_than_the_limits_are_refused_at_once(stack: Stack) -> None:
    """6 connections send 830 KB of a head and no end: every poll and /healthz within 0.5 s;
    each gets a whole 431 envelope at once."""
    result = overlong_heads(base(stack), stack.port, seconds=3)
    assert result["ok"], result


def test_a_killed_backend_costs_no_500_and_recovers(stack: Stack) -> None:
    """One backend SIGKILLed: only 200s and 503s, 200 again within 3 s."""
    result = killed_backend(base(stack), stack.env["DATABASE_URL"], seconds=6)
    assert result["ok"], result


def test_a_frozen_database_gets_bounded_answers(stack: Stack) -> None:
    """Frozen for 9 s: requests end within 7 s, /healthz within 0.5 s, /readyz (503) within
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


def test_every_odd_request_is_a_4xx_in_the_envelope(stack: Stack) -> None:
    answers = odd_requests(stack.port)
    seen = {}
    for name, answer in answers.items():
        status, body = envelope(answer)
        assert 400 <= status < 500, (name, answer[:300])
        seen[name] = (status, body["code"])
    assert seen["exp = 10**400"] == (401, "AUTH-ERROR-01"), seen
    assert seen["// in the path"] == (404, "HTTP-404"), seen
    assert seen["// at the start"] == (404, "HTTP-404"), seen


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
        assert "HeadFirstWorker" in (tmp_path / "gunicorn.log").read_text()
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
