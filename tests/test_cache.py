"""The snapshot cache: no round trip for an unchanged job, never an answer older than a read.

Each rule of zdm_monitor/cache.py has a test here that fails without it. The writes are real
(the triggers of sql/changes.sql), the notifications come from PostgreSQL, and the round trips
are counted on the wire (support/pgwire.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg2.extensions import connection, make_dsn
from support.api import JOB_URL, bearer
from support.database import READER
from support.pgwire import CountingProxy
from support.processes import wait_until

from zdm_monitor import repository, state
from zdm_monitor.cache import RECONNECT_S
from zdm_monitor.repository import JobFilters

MakeApp = Callable[..., Flask]
# The promise: a write is in every answer that starts this long after its commit.
FRESH_S = 0.2
LISTENING_S = 5.0


@pytest.fixture
def direct_url(database_url: str) -> str:
    """The service's role straight to PostgreSQL (LISTEN does not work through PgBouncer)."""
    return make_dsn(database_url, user=READER, password=READER)


def cached(make_app: MakeApp, direct_url: str, **env: str) -> Flask:
    """An app with the cache on, its listener connected."""
    app = make_app(**{"ZDM_CACHE_SIZE": "64", "DATABASE_LISTEN_URL": direct_url, **env})
    cache = state.of(app).cache
    cache.lookup(("start",))
    assert wait_until(lambda: cache.listening, LISTENING_S), "the listener did not connect"
    return app


def job(client: FlaskClient, identifier: str = "2", query: str = "") -> Any:
    response = client.get(f"{JOB_URL}{identifier}{'?' + query if query else ''}", headers=bearer())
    assert response.status_code == 200, response.get_json()
    return response


def progress(response: Any) -> dict[str, Any]:
    return response.get_json()["data"]["job"]["progressInfo"]  # type: ignore[no-any-return]


def execute(db: connection, statement: str, *params: Any) -> None:
    with db.cursor() as cur:
        cur.execute(statement, params)


def test_unchanged_polls_cost_no_round_trip_and_each_answer_is_its_own(
    make_app: MakeApp, direct_url: str, proxy: CountingProxy
) -> None:
    client = cached(make_app, direct_url, DATABASE_URL=proxy.url).test_client()
    first = job(client, "bulk-data", "limit=5&detail=true")
    assert len(proxy.take()) == 1
    tag = first.headers["ETag"]
    answers = [job(client, "bulk-data", "limit=5&detail=true") for _ in range(20)]
    polls = [
        client.get(
            f"{JOB_URL}bulk-data?limit=5&detail=true", headers={**bearer(), "If-None-Match": tag}
        )
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
    assert (
        client.get(
            f"{JOB_URL}bulk-data?limit=5&detail=true", headers={"If-None-Match": tag}
        ).status_code
        == 401
    )


def test_the_timestamp_and_stalled_follow_the_clock(
    make_app: MakeApp, direct_url: str, db: connection
) -> None:
    """Only the snapshot is kept: what depends on the time is made for each answer."""
    execute(db, "UPDATE backup_info SET last_report_at = now() WHERE backup_id = 4")
    client = cached(make_app, direct_url, ZDM_STALL_SECONDS="1").test_client()
    first = job(client, "4", "detail=true")
    time.sleep(1.2)
    later = job(client, "4", "detail=true")
    assert progress(first)["stalled"] is False
    assert progress(later)["stalled"] is True
    assert later.headers["ETag"] != first.headers["ETag"]
    assert later.get_json()["timestamp"] != first.get_json()["timestamp"]


WRITES = {
    "progress": (
        "UPDATE backup_info SET percent = 61, message = 'Sixty-one' WHERE backup_id = 2",
        "61%",
    ),
    "a log line": (
        "INSERT INTO backup_log (backup_id, line, message) VALUES (2, 3, 'Third line')",
        "60%",
    ),
    "the definition": ("UPDATE backup SET drive = 'E:' WHERE id = 2", "60%"),
    "the server": ("UPDATE server SET name = 'windows-server-02' WHERE id = 2", "60%"),
    "the repository": ("UPDATE repository SET path = '\\\\elsewhere' WHERE id = 2", "60%"),
}


@pytest.mark.parametrize("what", WRITES)
def test_a_write_is_in_every_answer_started_after_it_plus_200_ms(
    make_app: MakeApp, direct_url: str, db: connection, what: str
) -> None:
    client = cached(make_app, direct_url).test_client()
    before = job(client, "2", "detail=true").get_json()["data"]
    statement, percent = WRITES[what]
    execute(db, statement)
    time.sleep(FRESH_S)
    after = job(client, "2", "detail=true").get_json()["data"]
    assert after != before, what
    assert after["job"]["progressInfo"]["percent"] == percent


@pytest.mark.slow  # 100 x 200 ms
def test_one_hundred_writes_polled_right_after_each_are_never_stale(
    make_app: MakeApp, direct_url: str, db: connection
) -> None:
    client = cached(make_app, direct_url).test_client()
    stale = 0
    for n in range(100):
        job(client)
        execute(db, "UPDATE backup_info SET message = %s WHERE backup_id = 2", f"write {n}")
        time.sleep(FRESH_S)
        stale += progress(job(client))["message"] != f"write {n}"
    assert stale == 0


def test_a_snapshot_read_while_a_change_arrived_is_not_kept(
    make_app: MakeApp, direct_url: str, db: connection
) -> None:
    """The read began before a change's notification came in: keeping it would keep it over
    the change for good, since that notification was the last word on the job."""
    app = cached(make_app, direct_url)
    cache = state.of(app).cache
    key = ("a key",)
    with app.app_context():
        generation = cache.generation()
        snapshot = state.database().read(
            lambda conn: repository.get_job_snapshot(
                conn, job_id=2, filters=JobFilters(), page=1, limit=20, timeout_ms=1000
            )
        )
    execute(db, "UPDATE backup_info SET percent = 62 WHERE backup_id = 2")
    assert wait_until(lambda: cache.generation() != generation, LISTENING_S)
    cache.store(key, snapshot, generation)
    assert cache.lookup(key) is None
    cache.store(key, snapshot, cache.generation())  # read after the change: kept
    assert cache.lookup(key) is not None


def test_without_its_listener_the_cache_keeps_and_serves_nothing_until_it_listens_again(
    make_app: MakeApp, database_url: str, db: connection, proxy: CountingProxy
) -> None:
    """A change made while nobody listens would never be heard of: while the listener is not
    connected, every answer is read, and it starts again from nothing."""
    listen = CountingProxy(database_url)
    try:
        listen_url = make_dsn(listen.url, user=READER, password=READER)
        app = cached(make_app, listen_url, DATABASE_URL=proxy.url)
        cache = state.of(app).cache
        client = app.test_client()
        assert progress(job(client))["percent"] == "60%"
        listen.refuse.set()
        listen.drop()
        assert wait_until(lambda: not cache.listening, LISTENING_S)
        proxy.take()
        execute(db, "UPDATE backup_info SET percent = 63 WHERE backup_id = 2")
        assert progress(job(client))["percent"] == "63%"
        assert progress(job(client))["percent"] == "63%"
        assert len(proxy.take()) == 2  # read each time, kept never
        assert cache.lookup(("anything",)) is None and not cache._entries
        listen.refuse.clear()
        assert wait_until(lambda: cache.listening, RECONNECT_S + LISTENING_S)
        job(client)
        job(client)
        assert len(proxy.take()) == 1  # kept again
    finally:
        listen.close()


def test_a_worker_that_cannot_listen_reads_every_time(
    make_app: MakeApp, proxy: CountingProxy
) -> None:
    client = make_app(
        ZDM_CACHE_SIZE="64",
        DATABASE_URL=proxy.url,
        DATABASE_LISTEN_URL="postgresql://nobody@127.0.0.1:1/none",
    ).test_client()
    for _ in range(3):
        assert progress(job(client))["percent"] == "60%"
    assert len(proxy.take()) == 3


def test_the_cache_keeps_at_most_its_size(make_app: MakeApp, direct_url: str) -> None:
    app = cached(make_app, direct_url, ZDM_CACHE_SIZE="3")
    client = app.test_client()
    for query in ("limit=1", "limit=2", "limit=3", "limit=4", "limit=5"):
        job(client, "bulk-data", query)
    cache = state.of(app).cache
    assert len(cache._entries) == 3
    assert sum(len(keys) for keys in cache._by_job.values()) == 3


SERVER_URL = "/api/backups/monitoring/system/"


def wall(client: FlaskClient, identifier: str = "linux-server-01", **headers: str) -> Any:
    return client.get(f"{SERVER_URL}{identifier}?detail=true", headers={**bearer(), **headers})


def test_an_unchanged_server_view_costs_no_round_trip(
    make_app: MakeApp, direct_url: str, proxy: CountingProxy
) -> None:
    client = cached(make_app, direct_url, DATABASE_URL=proxy.url).test_client()
    first = wall(client)
    assert first.status_code == 200 and len(proxy.take()) == 1
    tag = first.headers["ETag"]
    again = [wall(client) for _ in range(10)]
    polls = [wall(client, **{"If-None-Match": tag}) for _ in range(100)]
    assert proxy.take() == []
    assert {p.status_code for p in polls} == {304}
    bodies = [a.get_json() for a in again]
    assert all(b["data"] == first.get_json()["data"] for b in bodies)
    assert len({b["requestID"] for b in bodies}) == len(bodies)  # each answer its own


@pytest.mark.parametrize(
    "write",
    [
        # A job on the page, a job only in the summary's count, a job created since.
        "UPDATE backup_info SET percent = 47 WHERE backup_id = 4",
        "INSERT INTO backup_info (backup_id, status, percent) VALUES (6, 'processing', 10)",
        "INSERT INTO backup (id, name, server_id, mode, partition)"
        " VALUES (70, 'new', 1, 'full', '/x')",
    ],
)
def test_a_change_to_any_job_of_the_server_is_in_its_next_view(
    make_app: MakeApp, direct_url: str, db: connection, write: str
) -> None:
    client = cached(make_app, direct_url).test_client()
    before = wall(client).get_json()["data"]
    assert wall(client).get_json()["data"] == before  # kept
    execute(db, write)
    time.sleep(FRESH_S)
    assert wall(client).get_json()["data"] != before
