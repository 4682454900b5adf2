"""The snapshot cache: answers at most ZDM_CACHE_MAX_AGE_MS old, never older than one seen.

Each rule of zdm_monitor/data/cache.py has a test here that fails without it. The writes are real
rows in PostgreSQL, the app reads them as the service's SELECT-only role, and the round trips
are counted on the wire (support/pgwire.py). Where the rule is about time, the cache's clock is
moved by hand, so no test depends on how fast the machine is.
"""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import JOB_URL, SECRET, add_job, bearer
from support.pgwire import CountingProxy
from support.processes import clean_env, free_port, kill_leftovers, wait_until

from zdm_devstack.stack import SERVICE_APP, spawn_gunicorn
from zdm_monitor import state
from zdm_monitor.data.cache import LEAD_SHARE, SHARE, SnapshotCache
from zdm_monitor.data.database import YOUNG_S
from zdm_monitor.data.repository import JobFilters, JobRead, get_job_snapshot

MakeApp = Callable[..., Flask]
SERVER_URL = "/api/backups/monitoring/system/"
MAX_AGE_S = 1.0
# The slots of an app started without gunicorn are its pool's size: these tests set it.
POOL_SIZE = 4


class Clock:
    """The cache's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cached(make_app: MakeApp, clock: Clock | None = None, **env: str) -> Flask:
    """An app with the cache on (max age MAX_AGE_S), on the given clock if any: then without its
    refresher, whose thread waits in real time (the refresh tests drive it by hand)."""
    env = {"ZDM_DB_POOL_SIZE": str(POOL_SIZE), **env}
    app = make_app(ZDM_CACHE_MAX_AGE_MS=str(int(MAX_AGE_S * 1000)), **env)
    if clock is not None:
        state.of(app).cache.stop()
        state.of(app).cache.clock = clock
    return app


def get(client: FlaskClient, path: str, **headers: str) -> Any:
    return client.get(path, headers={**bearer(), **headers})


def job(client: FlaskClient, identifier: str = "2", query: str = "", **headers: str) -> Any:
    response = get(client, f"{JOB_URL}{identifier}{'?' + query if query else ''}", **headers)
    assert response.status_code in (200, 304), response.get_json()
    return response


def progress(response: Any) -> dict[str, Any]:
    return response.get_json()["data"]["job"]["progressInfo"]  # type: ignore[no-any-return]


def execute(db: connection, statement: str, *params: Any) -> None:
    with db.cursor() as cur:
        cur.execute(statement, params)


@pytest.fixture
def counted(make_app: MakeApp, proxy: CountingProxy) -> Callable[..., FlaskClient]:
    """Clients of cached apps whose reads are counted on the wire, pooled connection open."""

    def build(clock: Clock | None = None, **env: str) -> FlaskClient:
        client = cached(make_app, clock, DATABASE_URL=proxy.url, **env).test_client()
        assert client.get("/readyz").status_code == 200
        proxy.take()
        return client

    return build


def test_unchanged_polls_cost_no_round_trip_and_each_answer_is_its_own(
    counted: Callable[..., FlaskClient], proxy: CountingProxy
) -> None:
    client = counted(Clock())
    first = job(client, "bulk-data", "limit=5&detail=true")
    assert len(proxy.take()) == 1
    tag = first.headers["ETag"]
    answers = [job(client, "bulk-data", "limit=5&detail=true") for _ in range(20)]
    polls = [
        job(client, "bulk-data", "limit=5&detail=true", **{"If-None-Match": tag})
        for _ in range(1000)
    ]
    assert proxy.take() == []  # 1,020 answers, no statement on the wire
    assert {p.status_code for p in polls} == {304}
    assert all(p.headers["ETag"] == tag for p in polls)
    bodies = [a.get_json() for a in answers]
    assert all(b["data"] == first.get_json()["data"] for b in bodies)
    ids = {b["requestID"] for b in bodies} | {p.headers["X-Request-ID"] for p in polls}
    assert len(ids) == 1020  # a request ID of its own for every answer
    # No token, no 304: authentication comes before the cache.
    unsigned = client.get(f"{JOB_URL}bulk-data?limit=5&detail=true", headers={"If-None-Match": tag})
    assert unsigned.status_code == 401


def test_the_timestamp_and_stalled_follow_the_clock(make_app: MakeApp, db: connection) -> None:
    """Only the snapshot is kept: what depends on the time is made for each answer."""
    execute(db, "UPDATE backup_info SET last_report_at = now() WHERE backup_id = 4")
    client = cached(make_app, Clock(), ZDM_STALL_SECONDS="1").test_client()
    first = job(client, "4", "detail=true")
    time.sleep(1.2)
    later = job(client, "4", "detail=true")
    assert progress(first)["stalled"] is False
    assert progress(later)["stalled"] is True
    assert later.headers["ETag"] != first.headers["ETag"]
    assert later.get_json()["timestamp"] != first.get_json()["timestamp"]
    assert later.get_json()["requestID"] != first.get_json()["requestID"]


JOB_WRITES = {
    "progress": ("UPDATE backup_info SET percent = 61, message = 'Sixty-one' WHERE backup_id = 2"),
    "a log line": "INSERT INTO backup_log (backup_id, line, message) VALUES (2, 3, 'Third line')",
    "the definition": "UPDATE backup SET drive = 'E:' WHERE id = 2",
    "the server": "UPDATE server SET name = 'windows-server-02' WHERE id = 2",
    "the repository": "UPDATE repository SET path = '\\\\elsewhere' WHERE id = 2",
}
WALL = f"{SERVER_URL}1?detail=true"
WALL_WRITES = {
    "a job on the page": "UPDATE backup_info SET percent = 47 WHERE backup_id = 4",
    "a job only in the summary's count": (
        "INSERT INTO backup_info (backup_id, status, percent) VALUES (6, 'processing', 10)"
    ),
    "a job created since": (
        "INSERT INTO backup (id, name, server_id, mode, partition)"
        " VALUES (70, 'new', 1, 'full', '/x')"
    ),
    "the server": "UPDATE server SET name = 'linux-server-09' WHERE id = 1",
}
CASES = [(f"{JOB_URL}2?detail=true", w) for w in JOB_WRITES.values()]
CASES += [(WALL, w) for w in WALL_WRITES.values()]


@pytest.mark.parametrize(
    ("path", "write"),
    CASES,
    ids=[f"job: {w}" for w in JOB_WRITES] + [f"wall: {w}" for w in WALL_WRITES],
)
def test_an_answer_is_at_most_the_max_age_old(
    counted: Callable[..., FlaskClient],
    proxy: CountingProxy,
    db: connection,
    path: str,
    write: str,
) -> None:
    clock = Clock()
    client = counted(clock)
    before = get(client, path).get_json()["data"]
    execute(db, write)
    clock.now += MAX_AGE_S * 0.99
    assert get(client, path).get_json()["data"] == before  # younger than the max age: kept
    assert len(proxy.take()) == 1  # the first read only
    clock.now += MAX_AGE_S * 0.02
    assert get(client, path).get_json()["data"] != before  # older: read again
    assert len(proxy.take()) == 1
    assert get(client, path).get_json()["data"] != before  # and kept from then on
    assert proxy.take() == []


def test_a_max_age_of_zero_reads_every_time(make_app: MakeApp, proxy: CountingProxy) -> None:
    client = make_app(DATABASE_URL=proxy.url, ZDM_CACHE_MAX_AGE_MS="0").test_client()
    for _ in range(3):
        assert progress(job(client))["percent"] == "60%"
    assert len(proxy.take()) == 3


def wait_together(app: Flask, identifier: str, count: int) -> tuple[list[Any], list[Any]]:
    """Start count requests for the job at once; the answers list they fill, and the threads."""
    answers: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(get(app.test_client(), f"{JOB_URL}{identifier}"))
        )
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return answers, threads


@pytest.mark.parametrize(("identifier", "answer"), [("2", 200), ("no-such-job", 404)])
def test_requests_waiting_for_the_same_key_share_one_read(
    counted: Callable[..., FlaskClient],
    proxy: CountingProxy,
    db: connection,
    identifier: str,
    answer: int,
) -> None:
    """A popular job's answer expires: the requests that arrive while it is being read again
    wait for that read instead of each sending their own, and get its answer, found or not."""
    app = counted(Clock()).application
    execute(db, "BEGIN; LOCK TABLE backup, backup_info IN ACCESS EXCLUSIVE MODE")
    try:
        # As many as the slots (the pool's size here): one reads, the others wait for it.
        answers, threads = wait_together(app, identifier, POOL_SIZE)
        time.sleep(0.5)  # every request is waiting: one on the lock, the others on that read
    finally:
        execute(db, "ROLLBACK")
    for thread in threads:
        thread.join(10)
    assert [a.status_code for a in answers] == [answer] * POOL_SIZE
    assert len(proxy.take()) == 1


def test_past_the_slots_a_request_is_a_503_at_once_and_memory_still_answers(
    counted: Callable[..., FlaskClient], proxy: CountingProxy, db: connection
) -> None:
    """Every slot held past YOUNG_S by a read that does not end and the requests waiting for
    it: one more request for the database is the 503 at once, not one more thread waiting; a
    kept answer and the probe are still answered; the waiters get theirs when the read ends."""
    client = counted(Clock())
    app = client.application
    kept = job(client, "1")
    proxy.take()
    execute(db, "BEGIN; LOCK TABLE backup, backup_info IN ACCESS EXCLUSIVE MODE")
    try:
        answers, threads = wait_together(app, "2", POOL_SIZE)
        time.sleep(YOUNG_S * 3)
        started = time.monotonic()
        refused = get(client, f"{JOB_URL}3")
        refused_after = time.monotonic() - started
        started = time.monotonic()
        from_memory = job(client, "1")
        healthz = client.get("/healthz")
        others_after = time.monotonic() - started
    finally:
        execute(db, "ROLLBACK")
    for thread in threads:
        thread.join(10)
    assert refused.status_code == 503, refused.get_json()
    assert refused.get_json()["code"] == "SERVICE-UNAVAILABLE"
    assert refused.headers["Retry-After"] == "5"
    assert refused_after < 0.1, refused_after
    assert from_memory.status_code == 200
    assert from_memory.get_json()["data"] == kept.get_json()["data"]
    assert healthz.status_code == 200 and others_after < 0.1, others_after
    assert [a.status_code for a in answers] == [200] * POOL_SIZE
    assert len(proxy.take()) == 1  # job 2, once; job 3 never reached the database


def two_workers(make_app: MakeApp, clock: Clock) -> tuple[FlaskClient, FlaskClient]:
    """Two apps on one database, each with a cache of its own: two gunicorn workers."""
    return cached(make_app, clock).test_client(), cached(make_app, clock).test_client()


def test_a_poll_that_has_seen_a_newer_answer_is_never_answered_older(
    make_app: MakeApp, db: connection
) -> None:
    clock = Clock()
    older, newer = two_workers(make_app, clock)
    assert progress(job(older))["percent"] == "60%"  # kept by the older worker
    execute(db, "UPDATE backup_info SET percent = 61 WHERE backup_id = 2")
    seen = job(newer)
    assert progress(seen)["percent"] == "61%"
    # The client's next poll lands on the worker that kept 60%, within its max age.
    poll = job(older, **{"If-None-Match": seen.headers["ETag"]})
    assert poll.status_code == 304, poll.get_json()
    assert poll.headers["ETag"] == seen.headers["ETag"]
    # A client that had only seen the older answer gets the newer one, now kept there.
    assert progress(job(older))["percent"] == "61%"


def test_a_validator_older_than_the_kept_answer_is_answered_from_memory(
    make_app: MakeApp, proxy: CountingProxy, db: connection
) -> None:
    clock = Clock()
    client = cached(make_app, clock, DATABASE_URL=proxy.url).test_client()
    old_tag = job(client).headers["ETag"]
    execute(db, "UPDATE backup_info SET percent = 61 WHERE backup_id = 2")
    clock.now += MAX_AGE_S * 2
    assert progress(job(client))["percent"] == "61%"
    proxy.take()
    again = job(client, **{"If-None-Match": old_tag})
    assert progress(again)["percent"] == "61%"
    assert proxy.take() == []  # the client is behind what is kept: no reason to read


def test_a_cursor_past_the_kept_newest_line_is_read_again_not_refused(
    make_app: MakeApp, db: connection
) -> None:
    """#16's 400 is for a cursor past the newest line in the database, not in a kept answer."""
    clock = Clock()
    older, newer = two_workers(make_app, clock)
    too_far = older.get(f"{JOB_URL}2?after=3", headers=bearer())
    assert too_far.status_code == 400  # line 3 does not exist yet: refused, and its read kept
    execute(
        db,
        "INSERT INTO backup_log (backup_id, line, message)"
        " VALUES (2, 3, 'third'), (2, 4, 'fourth')",
    )
    seen = job(newer, "2", "after=2")
    assert seen.headers["X-Log-Cursor"] == "4"
    follow = job(older, "2", "after=3")  # the kept answer ends at line 2
    assert follow.get_json()["data"]["job"]["log"] == ["fourth"]
    assert follow.headers["X-Log-Cursor"] == "4"


@pytest.mark.parametrize(
    ("path", "write"),
    [
        ("linux-server-01", "UPDATE backup_info SET percent = 47 WHERE backup_id = 4"),
        # The job leaves the wall: its new row is on no page and in no count, yet counts.
        ("1?status=processing", "UPDATE backup_info SET status = 'complete' WHERE backup_id = 4"),
        ("1?partition=/data", "UPDATE backup SET partition = '/elsewhere' WHERE id = 4"),
    ],
    ids=["progress", "a job leaving a status filter", "a job leaving a partition filter"],
)
def test_a_wall_that_has_seen_newer_is_never_answered_older(
    make_app: MakeApp, db: connection, path: str, write: str
) -> None:
    add_job(db, 60, "stays-on-the-wall", partition="/data", log={1: "first"})
    clock = Clock()
    older, newer = two_workers(make_app, clock)
    path = f"{SERVER_URL}{path}"
    before = get(older, path).get_json()["data"]
    execute(db, write)
    seen = get(newer, path)
    assert seen.get_json()["data"] != before
    poll = get(older, path, **{"If-None-Match": seen.headers["ETag"]})
    assert poll.status_code == 304
    assert get(older, path).get_json()["data"] == seen.get_json()["data"]


def test_the_validator_is_the_same_on_every_worker_and_says_how_new(
    make_app: MakeApp, db: connection
) -> None:
    clock = Clock()
    one, other = two_workers(make_app, clock)
    tag = job(one).headers["ETag"]
    assert job(other).headers["ETag"] == tag
    execute(db, "UPDATE backup_info SET percent = 61 WHERE backup_id = 2")
    newer = job(make_app().test_client()).headers["ETag"]
    version = int(tag.removeprefix('W/"').split(".")[0])
    assert int(newer.removeprefix('W/"').split(".")[0]) > version


def test_the_cache_keeps_at_most_its_size_least_recently_used_out(make_app: MakeApp) -> None:
    app = cached(make_app, Clock(), ZDM_CACHE_SIZE="3")
    client = app.test_client()
    for query in ("limit=1", "limit=2", "limit=3", "limit=1", "limit=4"):
        job(client, "bulk-data", query)
    kept = [read.limit for read in state.of(app).cache._entries]
    assert kept == [3, 1, 4]  # limit=2 was the least recently used


def test_the_cache_keeps_at_most_its_bytes_and_no_answer_above_its_share(
    make_app: MakeApp,
) -> None:
    budget = 200_000
    app = cached(make_app, Clock(), ZDM_CACHE_MAX_BYTES=str(budget))
    cache = state.of(app).cache
    client = app.test_client()
    for limit in range(1, 30):
        job(client, "bulk-data", f"limit={limit}&detail=true")
        assert 0 < cache.bytes <= budget
    assert sum(entry.size for entry in cache._entries.values()) == cache.bytes
    assert 1 < len(cache._entries) < 29
    assert [read.limit for read in cache._entries][-1] == 29  # the newest stays
    # 250 lines: more than a share, even as a 304 that encodes nothing.
    tag = job(make_app().test_client(), "bulk-data", "limit=1000&detail=true").headers["ETag"]
    poll = job(client, "bulk-data", "limit=1000&detail=true", **{"If-None-Match": tag})
    assert poll.status_code == 304
    assert all(read.limit != 1000 for read in cache._entries)
    assert max(entry.size for entry in cache._entries.values()) <= budget // SHARE


# --- Refresh ahead: the hot keys read again before they expire, off the request path --------

DUE_S = MAX_AGE_S * (1 - 1 / LEAD_SHARE)


def by_hand(app: Flask) -> SnapshotCache:
    """The app's cache, planning refreshes that only the test runs (refresh_due, on its clock)."""
    cache = state.of(app).cache
    cache._context = app.app_context
    return cache


def test_a_hot_key_is_read_again_before_it_expires_and_its_requests_never_read(
    counted: Callable[..., FlaskClient], proxy: CountingProxy, db: connection
) -> None:
    """The refresh reads within the app's context: with one connection in the pool, a request
    for another key reads after it, so the refresh gave its connection back."""
    clock = Clock()
    client = counted(clock, ZDM_DB_POOL_SIZE="1")
    cache = by_hand(client.application)
    job(client)
    clock.now += MAX_AGE_S / 2
    job(client)  # asked for from memory: the key is hot
    assert len(proxy.take()) == 1
    execute(db, "UPDATE backup_info SET percent = 61 WHERE backup_id = 2")
    clock.now += DUE_S - MAX_AGE_S / 2 - 0.001
    assert cache.refresh_due() == 0  # not due yet
    clock.now += 0.002
    assert cache.refresh_due() == 1
    assert len(proxy.take()) == 1
    clock.now += MAX_AGE_S / 2  # past the first read's max age
    assert progress(job(client))["percent"] == "61%"
    assert proxy.take() == []  # answered from the refresh's read
    assert progress(job(client, "1"))["percent"] == "100%"
    assert len(proxy.take()) == 1


def test_the_reads_of_a_hot_key_are_one_a_max_age_and_stop_with_its_requests(
    counted: Callable[..., FlaskClient], proxy: CountingProxy
) -> None:
    """While a dashboard polls, a key costs a worker one read per max age, less the lead, all
    but the first the refresher's; a max age after its last request, none: and a key asked for
    once is never read again."""
    clock = Clock()
    client = counted(clock)
    cache = by_hand(client.application)
    step = MAX_AGE_S / 40
    job(client, "1")  # asked for once: let go
    refreshed = 0
    for _ in range(400):  # ten max ages of polls
        job(client)
        clock.now += step
        refreshed += cache.refresh_due()
    polled = len(proxy.take())
    assert 10 <= refreshed <= 10 / (1 - 1 / LEAD_SHARE), refreshed
    assert polled == 2 + refreshed  # the first reads of the two keys, then only refreshes
    for _ in range(40):  # a max age without a request
        clock.now += step
        cache.refresh_due()
    assert len(proxy.take()) <= 1  # a refresh planned during the last max age, at most
    for _ in range(200):
        clock.now += step
        cache.refresh_due()
    assert proxy.take() == []
    assert cache._entries == {}  # both let go: dropped when they expired


def test_a_failed_refresh_leaves_the_key_to_expire(
    counted: Callable[..., FlaskClient], proxy: CountingProxy
) -> None:
    """The database down, the refresh fails and the kept answer is not made younger: past its
    max age the request reads, and is the 503 it was without a refresh; then the key is read
    as usual and refreshed again."""
    clock = Clock()
    client = counted(clock)
    cache = by_hand(client.application)
    job(client)
    job(client)
    proxy.refuse.set()
    proxy.drop()
    clock.now += DUE_S
    assert cache.refresh_due() == 1
    clock.now += MAX_AGE_S - DUE_S - 0.001
    assert job(client).status_code == 200  # still within its max age
    clock.now += 0.002
    down = get(client, f"{JOB_URL}2")
    assert down.status_code == 503, down.get_json()
    assert down.get_json()["code"] == "SERVICE-UNAVAILABLE"
    proxy.refuse.clear()
    proxy.take()
    assert job(client).status_code == 200
    job(client)
    clock.now += DUE_S
    assert cache.refresh_due() == 1
    assert len(proxy.take()) == 2


def read_in_background(call: Callable[[], Any]) -> tuple[list[Any], threading.Thread]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    return results, thread


def test_requests_for_a_key_being_refreshed_wait_for_the_refresh(
    counted: Callable[..., FlaskClient], proxy: CountingProxy, db: connection
) -> None:
    """A refresh that is late (the tables locked): until the kept answer expires it is answered
    at once; then the requests wait for the refresh, the key's read in progress, and share it."""
    clock = Clock()
    client = counted(clock)
    app = client.application
    cache = by_hand(app)
    job(client)
    job(client)
    proxy.take()
    clock.now += DUE_S
    execute(db, "BEGIN; LOCK TABLE backup, backup_info IN ACCESS EXCLUSIVE MODE")
    try:
        refreshed, refresher = read_in_background(cache.refresh_due)
        assert wait_until(lambda: len(proxy.queries) == 1, 10)
        started = time.monotonic()
        assert job(client).status_code == 200  # young still: from memory
        assert time.monotonic() - started < 0.5
        clock.now += MAX_AGE_S
        waiters = POOL_SIZE - 1  # with the refresh, every slot
        answers, threads = wait_together(app, "2", waiters)
        assert wait_until(lambda: len(cache.slots._held) == 1 + waiters, 10)
    finally:
        execute(db, "ROLLBACK")
    for thread in [refresher, *threads]:
        thread.join(10)
    assert refreshed == [1]
    assert [a.status_code for a in answers] == [200] * waiters
    assert len(proxy.take()) == 1  # the refresh's read, and no other


def test_a_refresh_that_began_before_a_newer_read_does_not_replace_it(
    make_app: MakeApp, db: connection
) -> None:
    """The refresh reads 60% and is held; meanwhile a request that has seen newer reads 61%.
    The refresh ends last, and what is kept, and answered, stays 61%."""
    clock = Clock()
    app = cached(make_app, clock)
    cache = by_hand(app)
    key = JobRead(2, None, JobFilters(), 1, 50, None, False)
    hold, held, go = threading.Event(), threading.Event(), threading.Event()

    def read() -> Any:
        """Read the job; the one read made while hold is set waits, once read, for go."""
        snapshot = state.database().read(lambda c: get_job_snapshot(c, key, timeout_ms=5000))
        if hold.is_set():
            hold.clear()
            held.set()
            assert go.wait(10)
        return snapshot

    with app.app_context():
        cache.get(key, read)
        cache.get(key, read)
        clock.now += DUE_S
        hold.set()
        _, refresher = read_in_background(cache.refresh_due)
        assert held.wait(10)  # the refresh has read 60% and is held
        execute(db, "UPDATE backup_info SET percent = 61 WHERE backup_id = 2")
        clock.now += 0.001
        newer, read_now = cache.get(key, read, fresh=True)
        go.set()
        refresher.join(10)
        assert read_now and newer.snapshot.percent == 61
        kept, read_now = cache.get(key, read)
    assert not read_now and kept is newer
    assert progress(job(app.test_client()))["percent"] == "61%"


def test_a_refresh_revives_no_key_the_cache_let_go_and_keeps_its_bytes(
    counted: Callable[..., FlaskClient], proxy: CountingProxy
) -> None:
    clock = Clock()
    client = counted(clock, ZDM_CACHE_SIZE="2")
    app = client.application
    cache = by_hand(app)
    for query in ("limit=1", "limit=2", "limit=1", "limit=2", "limit=3"):
        job(client, "bulk-data", query)  # limit=1 and 2 hot, then 1 pushed out by 3
    proxy.take()
    clock.now += DUE_S
    assert cache.refresh_due() == 1  # limit=2: limit=1 is gone, limit=3 asked for by none
    assert len(proxy.take()) == 1
    assert [read.limit for read in cache._entries] == [3, 2]
    assert sum(entry.size for entry in cache._entries.values()) == cache.bytes


def test_the_refresher_runs_while_the_app_is_started_and_survives_a_failing_read(
    make_app: MakeApp, proxy: CountingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """In real time (max age 300 ms): a hot key is read again by the worker's own thread, which
    outlives a database that refuses it; state.close stops it; a cache that is off has none."""
    assert state.of(make_app()).cache._thread is None  # the tests' apps: the cache off
    app = make_app(DATABASE_URL=proxy.url, ZDM_CACHE_MAX_AGE_MS="300")
    cache = state.of(app).cache
    thread = cache._thread
    assert thread is not None and thread.is_alive() and thread.name == "zdm-cache-refresher"
    client = app.test_client()
    job(client)
    job(client)
    proxy.refuse.set()
    proxy.drop()
    assert wait_until(lambda: cache._entries == {}, 10)  # not read again: dropped at expiry
    assert "a refresh failed, its answer is left to expire" in caplog.text
    assert thread.is_alive()
    proxy.refuse.clear()
    job(client)
    job(client)
    proxy.take()
    assert wait_until(proxy.take, 10)  # read again by the thread, with no request
    state.close(app)
    assert not thread.is_alive() and cache._thread is None


# --- Through real gunicorn with two workers, each with its own cache -----------------------

WORKERS = "2"


@pytest.fixture
def served(tmp_path: Path, proxy: CountingProxy) -> Iterator[Callable[..., str]]:
    """Start gunicorn (two workers, reads counted on the wire) and return its base URL."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def serve(**env: str) -> str:
        port = free_port()
        settings = clean_env(
            DATABASE_URL=proxy.url,
            ZDM_JWT_SECRET=SECRET,
            GUNICORN_WORKERS=WORKERS,
            GUNICORN_ACCESS_LOG="/dev/null",
            **env,
        )
        log = (tmp_path / f"gunicorn-{port}.log").open("wb")
        logs.append(log)
        started.append(spawn_gunicorn(settings, port, tmp_path / str(port), log, SERVICE_APP))
        return f"http://127.0.0.1:{port}"

    yield serve
    for process in started:
        process.terminate()
    kill_leftovers(started)
    for log in logs:
        log.close()


def fetch(base: str, path: str, etag: str | None = None) -> tuple[int, dict[str, str], Any]:
    """One GET on a connection of its own, so that consecutive polls land on either worker."""
    headers = bearer() | ({"If-None-Match": etag} if etag else {})
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, dict(response.headers), json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


class Poller:
    """Follows job 2 as a dashboard does: the newest validator and cursor it has seen."""

    def __init__(self, base: str) -> None:
        self.base, self.tag, self.cursor = base, None, 2
        self.percents: list[int] = []
        self.lines: list[str] = []

    def poll(self) -> int:
        status, headers, body = fetch(self.base, f"{JOB_URL}2?after={self.cursor}", self.tag)
        assert status in (200, 304), body  # never #16's 400 for a cursor past the newest line
        self.tag, self.cursor = headers["ETag"], int(headers["X-Log-Cursor"])
        if status == 200:
            self.percents.append(int(body["data"]["job"]["progressInfo"]["percent"][:-1]))
            self.lines += body["data"]["job"]["log"]
        return status


WRITES = 40


@pytest.mark.slow
def test_a_poller_across_two_workers_never_goes_backwards(
    served: Callable[..., str], db: connection
) -> None:
    """Each write (progress, and every third one a log line too) is polled every 20 ms right
    after it: never an older percent, never a refused cursor, never a line lost or repeated."""
    poller = Poller(served())
    poller.poll()
    written = []
    for n in range(1, WRITES + 1):
        execute(db, "UPDATE backup_info SET percent = %s WHERE backup_id = 2", 60 + n)
        if n % 3 == 0:
            written.append(f"line {3 + len(written)}")
            execute(
                db,
                "INSERT INTO backup_log (backup_id, line, message) VALUES (2, %s, %s)",
                2 + len(written),
                written[-1],
            )
        for _ in range(5):
            poller.poll()
            time.sleep(0.02)
    assert wait_until(lambda: poller.poll() and poller.percents[-1] == 60 + WRITES, 5)
    assert poller.percents == sorted(poller.percents), poller.percents
    assert poller.lines == written


@pytest.mark.slow
def test_with_a_max_age_of_500_ms_every_write_shows_within_650_ms(
    served: Callable[..., str], db: connection
) -> None:
    base = served(ZDM_CACHE_MAX_AGE_MS="500")
    path = f"{JOB_URL}2"
    delays = []
    for n in range(1, 21):
        status, headers, _ = fetch(base, path)
        time.sleep(random.uniform(0, 0.5))  # a write at any moment of the kept answers' ages
        execute(db, "UPDATE backup_info SET message = %s WHERE backup_id = 2", f"write {n}")
        written = time.monotonic()
        tag = headers["ETag"]
        while True:
            status, headers, body = fetch(base, path, tag)
            if status == 200 and body["data"]["job"]["progressInfo"]["message"] == f"write {n}":
                break
            tag = headers["ETag"]
            time.sleep(0.02)
        delays.append(time.monotonic() - written)
    assert max(delays) <= 0.65, sorted(delays)


@pytest.mark.slow
def test_a_thousand_polls_of_two_unchanged_jobs_in_two_seconds_cost_at_most_20_reads(
    served: Callable[..., str], proxy: CountingProxy
) -> None:
    base = served()
    tags = {job: fetch(base, f"{JOB_URL}{job}")[1]["ETag"] for job in (1, 2)}
    proxy.take()
    answers: list[int] = []

    def poll(job: int) -> None:
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        for _ in range(250):
            connection.request(
                "GET", f"{JOB_URL}{job}", headers={**bearer(), "If-None-Match": tags[job]}
            )
            response = connection.getresponse()
            response.read()
            answers.append(response.status)
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=poll, args=(job,)) for job in (1, 2, 1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    seconds = time.monotonic() - started
    assert answers == [304] * 1000
    assert seconds < 2.5, seconds
    assert len(proxy.take()) <= 20


@pytest.mark.slow
def test_polled_keys_cost_a_read_a_worker_and_max_age_and_none_once_the_polls_stop(
    served: Callable[..., str], proxy: CountingProxy
) -> None:
    """Four jobs polled without pause across two workers (max age 500 ms): at most workers x
    keys reads a max age, less the lead; within two max ages of the last poll, none."""
    max_age_s, keys = 0.5, (1, 2, 3, 4)
    base = served(ZDM_CACHE_MAX_AGE_MS=str(int(max_age_s * 1000)))
    polling = threading.Event()
    polling.set()

    def poll() -> None:
        while polling.is_set():
            for key in keys:
                assert fetch(base, f"{JOB_URL}{key}")[0] == 200

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    time.sleep(1)  # every key read and asked for on both workers
    proxy.take()
    window_s = 2.0
    time.sleep(window_s)
    reads = len(proxy.take())
    polling.clear()
    for poller in pollers:
        poller.join(10)
    bound = int(WORKERS) * len(keys) * (window_s / (max_age_s * (1 - 1 / LEAD_SHARE)) + 1)
    assert 0 < reads <= bound, (reads, bound)
    time.sleep(2 * max_age_s)
    proxy.take()
    time.sleep(2 * max_age_s)
    assert proxy.take() == []
