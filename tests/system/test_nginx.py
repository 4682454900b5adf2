"""End to end behind nginx: the real stack (embedded PostgreSQL, gunicorn, nginx) over real HTTP.

One stack serves the whole module. The order matters: the PostgreSQL outage comes second to
last and the SIGTERM test, which ends gunicorn, comes last.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.api import (
    JOB_URL,
    LINUX_EXAMPLE,
    SECRET,
    TIMESTAMP,
    bearer,
    make_token,
    success_body,
)
from support.processes import (
    alive,
    children_of,
    clean_env,
    free_port_pair,
    json_lines,
    kill_leftovers,
    wait_until,
)

from zdm_devstack.stack import Stack

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

WORKERS = 3
JOB_ROUTE = "/api/backups/monitoring/job/<path:identifier>"
SEED_PATH = f"{JOB_URL}1"
NGINX_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
# gunicorn's graceful_timeout in config/gunicorn.conf.py.
GRACEFUL_TIMEOUT = 15.0
# How long the burst goes on once gunicorn has exited.
AFTER_EXIT_S = 0.5
LOG_WAIT = 5.0
# ZDM_CACHE_MAX_AGE_MS's default.
CACHE_MAX_AGE_S = 1.0
# What the live page offers, as make serve-nginx's would.
DEV_TOKEN = make_token()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-ID")


@dataclass
class Service:
    stack: Stack
    data_dir: Path
    port: int
    output_path: Path

    @property
    def access_log(self) -> Path:
        return self.stack.nginx_dir / "access.log"

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        source: str | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """One request on a new connection to nginx, optionally from another local address."""
        conn = http.client.HTTPConnection(
            "127.0.0.1",
            self.port,
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get_job(self, **headers: str) -> Reply:
        return self.send("GET", SEED_PATH, headers={**bearer(make_token()), **headers})

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def output_records(self) -> list[dict[str, Any]]:
        """The JSON lines gunicorn and the app wrote (stdout and stderr share the file)."""
        return json_lines(self.output())

    def access_records(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return json_lines(self.access_log.read_text(encoding="utf-8", errors="replace"))

    def app_lines(self, rid: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.output_records()
            if r.get("logger") == "zdm_monitor.request" and r.get("request_id") == rid
        ]

    def gunicorn_lines(self, rid: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.output_records()
            if r.get("logger") == "gunicorn.access" and r.get("request_id") == rid
        ]

    def nginx_lines(self, rid: str) -> list[dict[str, Any]]:
        return [r for r in self.access_records() if r.get("request_id") == rid]

    def wait_for(
        self, what: str, find: Callable[[str], list[dict[str, Any]]], rid: str
    ) -> dict[str, Any]:
        """The one line `find` returns for rid, waiting a little for it to be written."""
        lines = wait_until(lambda: find(rid), LOG_WAIT, 0.05)
        assert len(lines) == 1, (
            f"expected one {what} line for {rid}, got {lines}\n--- output tail:\n"
            + self.output()[-4000:]
        )
        return lines[0]


def assert_envelope(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """The error envelope, in JSON, with the request ID of the X-Request-ID header."""
    assert reply.status == status, (reply.status, reply.body[:500])
    assert reply.headers.get_content_type() == "application/json", reply.headers
    body: dict[str, Any] = reply.json()
    assert set(body) == {"requestID", "success", "error", "timestamp", "code"}, body
    assert body["success"] is False
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"]
    assert TIMESTAMP.fullmatch(body["timestamp"]), body
    assert body["requestID"] == reply.request_id, (body, reply.headers)
    return body


def assert_seed_body(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, (reply.status, reply.body[:500])
    body: dict[str, Any] = reply.json()
    rid = body.pop("requestID")
    assert rid == reply.request_id
    assert TIMESTAMP.fullmatch(body.pop("timestamp")), body
    assert body == success_body(LINUX_EXAMPLE)
    return body


def trace_id() -> str:
    return f"e2e.{uuid.uuid4().hex}:x-1"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("nginx-e2e")
    output_path = data_dir / "stack-output.log"
    port = free_port_pair()
    with output_path.open("wb") as output:
        stack = Stack(
            data_dir,
            port,
            nginx=True,
            workers=WORKERS,
            env=clean_env(ZDM_JWT_SECRET=SECRET, ZDM_DEV_TOKEN=DEV_TOKEN),
            output=output,
        )
        try:
            stack.start()
            yield Service(stack, data_dir, port, output_path)
        finally:
            try:
                stack.stop()
            finally:
                # Should stop() itself fail, end what this fixture started, and only that.
                kill_leftovers(p for p in (stack.nginx, stack.gunicorn) if p is not None)
                if stack.postgres is not None:
                    stack.postgres.stop()


def test_seed_request_through_nginx(service: Service) -> None:
    reply = service.get_job()
    assert_seed_body(reply)
    assert reply.headers.get_content_type() == "application/json"
    assert reply.request_id is not None and NGINX_REQUEST_ID.fullmatch(reply.request_id)


def test_request_id_is_nginx_s_and_follows_the_request_everywhere(service: Service) -> None:
    reply = service.get_job()
    assert_seed_body(reply)
    rid = reply.request_id
    assert rid is not None and NGINX_REQUEST_ID.fullmatch(rid), rid
    assert reply.json()["requestID"] == rid

    nginx = service.wait_for("nginx access", service.nginx_lines, rid)
    assert nginx["status"] == 200 and nginx["uri"] == SEED_PATH and nginx["method"] == "GET"
    app = service.wait_for("app request", service.app_lines, rid)
    assert app["method"] == "GET" and app["route"] == JOB_ROUTE and app["status"] == 200
    assert app["path"] == SEED_PATH and app["subject"] == "tester"
    assert isinstance(app["duration_ms"], int | float) and app["duration_ms"] >= 0
    # One line per request: gunicorn's access log leaves the requests the app logged to it.
    assert len(service.app_lines(rid)) == 1 and service.gunicorn_lines(rid) == []

    # A well-formed ID from a trusted hop (127.0.0.1) is kept end to end.
    mine = trace_id()
    reply = service.get_job(**{"X-Request-ID": mine})
    assert_seed_body(reply)
    assert reply.request_id == mine
    assert reply.json()["requestID"] == mine
    assert service.wait_for("nginx access", service.nginx_lines, mine)["status"] == 200
    assert service.wait_for("app request", service.app_lines, mine)["status"] == 200

    # A malformed one is replaced by nginx's own.
    reply = service.get_job(**{"X-Request-ID": "not a valid id!"})
    assert_seed_body(reply)
    assert reply.request_id is not None and NGINX_REQUEST_ID.fullmatch(reply.request_id)


def test_client_ip_is_the_peer_of_nginx_not_a_spoofed_header(service: Service) -> None:
    untrusted_id = trace_id()
    reply = service.send(
        "GET",
        SEED_PATH,
        headers={**bearer(make_token()), "X-Request-ID": untrusted_id},
        source="127.0.0.2",
    )
    assert_seed_body(reply)
    rid = reply.request_id
    # 127.0.0.2 is not a trusted hop: its X-Request-ID is replaced by nginx's own.
    assert rid is not None and rid != untrusted_id and NGINX_REQUEST_ID.fullmatch(rid), rid
    assert service.wait_for("nginx access", service.nginx_lines, rid)["remote_addr"] == (
        "127.0.0.2"
    )
    app = service.wait_for("app request", service.app_lines, rid)
    assert app["client_ip"] == "127.0.0.2"
    assert app["remote_addr"] == "127.0.0.1"  # the peer: nginx
    assert app["forwarded_for"] == "127.0.0.2"

    # A forged X-Forwarded-For does not become the client's address.
    for source in ("127.0.0.2", None):
        reply = service.send(
            "GET",
            SEED_PATH,
            headers={**bearer(make_token()), "X-Forwarded-For": "6.6.6.6"},
            source=source,
        )
        assert_seed_body(reply)
        rid = reply.request_id
        assert rid is not None
        app = service.wait_for("app request", service.app_lines, rid)
        assert app["client_ip"] == (source or "127.0.0.1"), app
        assert app["remote_addr"] == "127.0.0.1"


def assert_never_reached_the_app(service: Service, *request_ids: str) -> None:
    """A later request's log lines are there; those of the given requests are not."""
    marker = trace_id()
    assert_seed_body(service.get_job(**{"X-Request-ID": marker}))
    service.wait_for("app request", service.app_lines, marker)
    for rid in request_ids:
        assert service.app_lines(rid) == [], rid
        assert service.gunicorn_lines(rid) == [], rid


def test_oversized_body_is_refused_by_nginx(service: Service) -> None:
    rid = trace_id()
    reply = service.send(
        "POST",
        SEED_PATH,
        headers={
            **bearer(make_token()),
            "X-Request-ID": rid,
            "Content-Type": "application/octet-stream",
        },
        body=b"x" * 4096,
    )
    body = assert_envelope(reply, 413, "HTTP-413")
    assert body["requestID"] == rid
    assert service.wait_for("nginx access", service.nginx_lines, rid)["status"] == 413
    assert_never_reached_the_app(service, rid)


def test_overlong_header_is_refused_by_nginx(service: Service) -> None:
    # A 20 KB header: larger than nginx's largest header buffer (8 KB).
    rid = trace_id()
    reply = service.send(
        "GET",
        SEED_PATH,
        headers={**bearer(make_token()), "X-Request-ID": rid, "X-Filler": "a" * 20_000},
    )
    assert 400 <= reply.status < 500, (reply.status, reply.body[:500])
    # Headers too large are 431 (nginx's own 494), as gunicorn answers them; the envelope's
    # code names the status the client got, as everywhere else.
    body = assert_envelope(reply, 431, "HTTP-431")
    assert_never_reached_the_app(service, rid, body["requestID"])


def test_overlong_url_is_refused_by_nginx(service: Service) -> None:
    # A 10 KB URL: longer than nginx's request line buffer (8 KB).
    reply = service.send("GET", SEED_PATH + "a" * 10_000, headers=bearer(make_token()))
    assert 400 <= reply.status < 500, (reply.status, reply.body[:500])
    body = assert_envelope(reply, 414, "HTTP-414")
    assert_never_reached_the_app(service, body["requestID"])


@pytest.mark.parametrize(
    ("header", "language", "text"),
    [
        (None, "ko", "요청 본문이 너무 큽니다."),
        ("en-US,en;q=0.9", "en", "The request body is too large."),
        ("ko-KR,ko;q=0.9,en;q=0.8", "ko", "요청 본문이 너무 큽니다."),
    ],
)
def test_nginx_errors_speak_english_on_request(
    service: Service, header: str | None, language: str, text: str
) -> None:
    """As the app's own errors do (a request line too long to read has no headers: Korean)."""
    headers = {**bearer(make_token()), "Content-Type": "application/octet-stream"}
    if header is not None:
        headers["Accept-Language"] = header
    reply = service.send("POST", SEED_PATH, headers=headers, body=b"x" * 4096)
    body = assert_envelope(reply, 413, "HTTP-413")
    assert body["error"] == text
    assert reply.headers["Content-Language"] == language


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("en-US,en;q=0.9", "en"),
        # Crafted to make a backtracking regex try every split of the spaces: 0.17 s each.
        ("en-" + " " * 7990 + ";x", "ko"),
        ("en-" + "\t" * 7990 + ";x", "ko"),
        ("en;q=" + " " * 7990 + "x", "ko"),
        ("fr ;x," * 1330, "ko"),
    ],
    ids=["plain", "en- and spaces", "en- and tabs", "q= and spaces", "many entries"],
)
def test_nginx_reads_any_accept_language_in_time(
    service: Service, header: str, language: str
) -> None:
    """nginx's own 413 picks its language from the header: a crafted 8 KB one costs it no more
    than a plain one, well under 5 ms (the median of nine, through real sockets)."""
    headers = {"Accept-Language": header, "Content-Type": "application/octet-stream"}
    times = []
    for _ in range(9):
        started = time.monotonic()
        reply = service.send("POST", SEED_PATH, headers=headers, body=b"x" * 2000)
        times.append(time.monotonic() - started)
        assert_envelope(reply, 413, "HTTP-413")
        assert reply.headers["Content-Language"] == language
    assert statistics.median(times) < 0.005, times


def test_unknown_host_gets_no_answer(service: Service) -> None:
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        service.send("GET", SEED_PATH, headers={**bearer(make_token()), "Host": "evil.example"})
    # The known names still answer.
    for host in ("localhost", "127.0.0.1", f"127.0.0.1:{service.port}"):
        assert_seed_body(
            service.send("GET", SEED_PATH, headers={**bearer(make_token()), "Host": host})
        )


def test_the_development_token_is_offered_to_this_machine_only(service: Service) -> None:
    def offered(**kwargs: Any) -> str:
        reply = service.send("GET", "/", **kwargs)
        assert reply.status == 200
        found = re.search(rb'<meta name="zdm-dev-token" content="([^"]*)">', reply.body)
        assert found is not None, reply.body[:500]
        return found.group(1).decode()

    for host in ("localhost", f"localhost:{service.port}", f"127.0.0.1:{service.port}"):
        assert offered(headers={"Host": host}) == DEV_TOKEN
    # Another local address is another client, whatever it says it forwards for.
    assert offered(source="127.0.0.2") == ""
    assert offered(source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"}) == ""
    # A forged forwarded host is nginx's $host by the time it reaches the service.
    assert offered(headers={"X-Forwarded-Host": "rebind.attacker.example"}) == DEV_TOKEN


def job_counter(service: Service) -> float:
    reply = service.send("GET", "/metrics")
    assert reply.status == 200, (reply.status, reply.body[:500])
    total = 0.0
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            if (
                sample.name == "zdm_http_requests_total"
                and sample.labels.get("method") == "GET"
                and sample.labels.get("route") == JOB_ROUTE
                and sample.labels.get("status") == "200"
            ):
                total += sample.value
    return total


def test_metrics_count_every_request_across_workers(service: Service) -> None:
    before = job_counter(service)
    requests = 30

    def one(_: int) -> int:
        return service.get_job().status

    # Concurrent new connections, so nginx spreads them over gunicorn's workers.
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(one, range(requests)))
    assert statuses == [200] * requests
    after = job_counter(service)
    assert after - before == requests, (before, after)
    assert after >= before + requests

    reply = service.send("GET", "/metrics", source="127.0.0.2")
    assert reply.status == 403, (reply.status, reply.body[:500])
    assert b"zdm_http_requests_total" not in reply.body
    assert json.loads(reply.body)["code"] == "HTTP-403"


def test_polling_headers_and_304_pass_through_nginx(service: Service) -> None:
    path = f"{JOB_URL}bulk-data?after=240&limit=5"
    first = service.send("GET", path, headers=bearer(make_token()))
    assert first.status == 200, (first.status, first.body[:500])
    assert first.json()["data"]["job"]["log"] == [f"line {n}" for n in range(241, 246)]
    tag = first.headers["ETag"]
    assert re.fullmatch(r'W/"[0-9]+\.[0-9a-f]{24}"', tag), tag
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert first.headers["X-Log-Cursor"] == "245"
    assert first.headers["X-Poll-Interval"] == "5"

    again = service.send("GET", path, headers={**bearer(make_token()), "If-None-Match": tag})
    assert again.status == 304, (again.status, again.body[:500])
    assert again.body == b""
    assert again.headers["ETag"] == tag
    assert again.headers["X-Log-Cursor"] == "245"
    assert again.headers["X-Poll-Interval"] == "5"
    assert again.request_id is not None and NGINX_REQUEST_ID.fullmatch(again.request_id)
    assert service.wait_for("nginx access", service.nginx_lines, again.request_id)["status"] == 304


def test_readyz_follows_the_database(service: Service) -> None:
    postgres = service.stack.postgres
    assert postgres is not None, "the stack should run an embedded PostgreSQL"
    reply = service.send("GET", "/readyz")
    assert reply.status == 200, (reply.status, reply.body[:500])
    assert reply.json()["success"] is True

    postgres.stop()
    try:
        started = time.monotonic()
        reply = service.send("GET", "/readyz")
        took = time.monotonic() - started
        assert_envelope(reply, 503, "SERVICE-UNAVAILABLE")
        assert took < 2.5, took
        assert (reply.headers.get("Retry-After") or "").isdigit(), reply.headers

        # A worker may still answer the job from what it read up to the cache's max age ago.
        time.sleep(max(0.0, CACHE_MAX_AGE_S - took))
        reply = service.get_job()
        assert_envelope(reply, 503, "SERVICE-UNAVAILABLE")
        assert (reply.headers.get("Retry-After") or "").isdigit(), reply.headers
        rid = reply.request_id
        assert rid is not None
        app = service.wait_for("app request", service.app_lines, rid)
        assert app["status"] == 503
    finally:
        postgres.start()

    deadline = time.monotonic() + 10
    statuses: list[int] = []
    while time.monotonic() < deadline:
        reply = service.send("GET", "/readyz")
        statuses.append(reply.status)
        if reply.status == 200:
            break
        assert_envelope(reply, 503, "SERVICE-UNAVAILABLE")
        time.sleep(0.2)
    assert statuses[-1] == 200, statuses
    assert_seed_body(service.get_job())


@dataclass
class Outcome:
    started: float
    finished: float
    status: int | None
    body: bytes
    retry_after: str | None
    request_id: str | None
    error: str | None


def test_sigterm_during_a_burst_loses_no_request(service: Service) -> None:
    """Run last: it ends gunicorn."""
    gunicorn = service.stack.gunicorn
    assert gunicorn is not None and gunicorn.poll() is None
    pid = int((service.data_dir / "gunicorn.pid").read_text().strip())
    assert pid == gunicorn.pid
    workers = children_of(pid)
    assert len(workers) == WORKERS, workers

    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                reply = service.get_job()
                outcome = Outcome(
                    started,
                    time.monotonic(),
                    reply.status,
                    reply.body,
                    reply.headers.get("Retry-After"),
                    reply.request_id,
                    None,
                )
            except Exception as exc:
                outcome = Outcome(started, time.monotonic(), None, b"", None, None, repr(exc))
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=burst, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    exited_at: float | None = None
    try:
        time.sleep(0.5)
        sigterm_at = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        # The burst goes on while gunicorn drains, however long that takes within its graceful
        # timeout, and for a moment after it exits: those requests must get nginx's 503.
        while time.monotonic() < sigterm_at + GRACEFUL_TIMEOUT:
            if exited_at is None and gunicorn.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() > exited_at + AFTER_EXIT_S:
                break
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    try:
        returncode = gunicorn.wait(
            timeout=max(0.1, sigterm_at + GRACEFUL_TIMEOUT - time.monotonic())
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"gunicorn still running {GRACEFUL_TIMEOUT} s after SIGTERM")
    if exited_at is None:
        exited_at = time.monotonic()

    problems: list[str] = []
    if returncode != 0:
        problems.append(f"gunicorn master exited with {returncode}")
    if exited_at - sigterm_at > GRACEFUL_TIMEOUT:
        problems.append(f"gunicorn took {exited_at - sigterm_at:.1f} s to exit")
    if [w for w in workers if alive(w)]:
        problems.append(f"workers still alive: {[w for w in workers if alive(w)]}")
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        problems.append(f"{len(failed)} of {len(outcomes)} requests got no answer: {failed[:3]}")
    wrong: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.error is not None:
            continue
        verdict = burst_verdict(outcome)
        if verdict:
            wrong[verdict] = wrong.get(verdict, 0) + 1
    if wrong:
        problems.append(f"wrong answers (of {len(outcomes)}): {wrong}")
    if not [o for o in outcomes if o.status == 200 and o.finished > sigterm_at]:
        problems.append("no request finished with 200 after SIGTERM: nothing was drained")
    late = [o for o in outcomes if o.started > exited_at and o.error is None]
    if not late or any(o.status != 503 for o in late):
        statuses = sorted({o.status or 0 for o in late})
        problems.append(f"after gunicorn exited, {len(late)} answers with statuses {statuses}")
    assert not problems, "\n".join(problems)


def burst_verdict(outcome: Outcome) -> str | None:
    """None when the answer is the contract's 200 or nginx's 503 envelope, else what is wrong."""
    try:
        body = json.loads(outcome.body)
    except ValueError:
        return f"{outcome.status} with a body that is not JSON"
    if outcome.status == 200:
        if body.pop("requestID", None) != outcome.request_id:
            return "200 whose requestID differs from X-Request-ID"
        if not TIMESTAMP.fullmatch(str(body.pop("timestamp", ""))):
            return "200 without a timestamp"
        return None if body == success_body(LINUX_EXAMPLE) else "200 with another body"
    code = body.get("code") if isinstance(body, dict) else None
    if outcome.status != 503:
        return f"status {outcome.status} (code {code})"
    if code != "SERVICE-UNAVAILABLE" or body.get("success") is not False:
        return f"503 with code {code}"
    if body.get("requestID") != outcome.request_id:
        return "503 whose requestID differs from X-Request-ID"
    if not (outcome.retry_after or "").isdigit():
        return "503 without Retry-After"
    return None
