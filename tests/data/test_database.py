"""The connection pool and the schema/demo helpers, on the real PostgreSQL."""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from flask import Flask
from psycopg2.extensions import connection
from support.api import bearer
from support.database import READER, THROUGH_PGBOUNCER
from support.logs import records
from support.pgwire import CountingProxy
from support.processes import wait_until

from zdm_devstack.demo import load_demo
from zdm_monitor import state
from zdm_monitor.data.database import (
    TRIAL_INTERVAL_S,
    YOUNG_S,
    DatabaseUnavailable,
    Slots,
)
from zdm_monitor.data.pool import PoolExhausted
from zdm_monitor.data.repository import READ_GUARD
from zdm_monitor.data.schema import apply_schema


def test_connection_is_returned_and_reused(app: Flask) -> None:
    with app.app_context():
        first = state.database().connection()
        assert state.database().connection() is first
    with app.app_context():
        assert state.database().connection() is first


def test_broken_connection_is_discarded(app: Flask) -> None:
    with app.app_context():
        first = state.database().connection()
        first.close()
    with app.app_context():
        second = state.database().connection()
        assert second is not first
        assert not second.closed


def test_reads_are_read_only_and_carry_no_session_settings(app: Flask) -> None:
    """Nothing is set per session (PgBouncer's transaction mode); each read brings its guard."""
    with app.app_context():
        cur = state.database().connection().cursor()
        cur.execute("SHOW default_transaction_read_only")
        assert cur.fetchone() == ("off",)
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone() == ("0",)
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cur.execute(READ_GUARD + "CREATE TEMP TABLE scratch ()", {"timeout_ms": 1000})


def test_statement_timeout_bounds_the_request(
    make_app: Callable[..., Flask], db: connection
) -> None:
    """A read stuck behind a lock ends after ZDM_DB_STATEMENT_TIMEOUT_MS as a 503 envelope."""
    client = make_app(ZDM_DB_STATEMENT_TIMEOUT_MS="200").test_client()
    with db.cursor() as cur:
        cur.execute("BEGIN; LOCK TABLE backup_info IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = client.get("/api/backups/monitoring/job/1", headers=bearer())
        elapsed = time.monotonic() - started
        cur.execute("ROLLBACK")
    assert response.status_code == 503
    assert response.get_json()["code"] == "SERVICE-UNAVAILABLE"
    assert 0.2 <= elapsed < 2


def test_schema_is_idempotent_and_demo_loads_once(db: connection) -> None:
    apply_schema(db)
    assert load_demo(db) is False
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM backup")
        assert cur.fetchone() == (6,)
        cur.execute("SELECT count(*), max(line) FROM backup_log WHERE backup_id = 4")
        assert cur.fetchone() == (250, 250)


def test_pool_is_bounded_and_keeps_idle_connections(make_app: Callable[..., Flask]) -> None:
    pool = state.of(make_app(ZDM_DB_POOL_SIZE="1")).database.primary
    conn = pool.getconn()
    with pytest.raises(PoolExhausted):
        pool.getconn()
    pool.putconn(conn)
    assert pool.getconn() is conn


def test_the_app_runs_as_a_select_only_role(app: Flask) -> None:
    with app.app_context(), state.database().connection().cursor() as cur:
        cur.execute(
            "SELECT current_user, has_table_privilege('backup_log', 'SELECT'),"
            " has_table_privilege('backup_log', 'INSERT'), has_table_privilege('backup', 'UPDATE')"
        )
        assert cur.fetchone() == ("zdm_monitor_reader", True, False, False)


def server_pids(db: connection) -> list[int]:
    """The server connections the app's role holds (through PgBouncer: PgBouncer's)."""
    with db.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", (READER,))
        return [pid for (pid,) in cur.fetchall()]


def test_connections_killed_by_a_server_restart_are_replaced(app: Flask, db: connection) -> None:
    """The first requests after PostgreSQL restarts are answered, not failed with a 503."""
    client = app.test_client()
    pool = state.of(app).database.primary
    held = [pool.getconn() for _ in range(3)]
    for conn in held:
        pool.putconn(conn)
    assert client.get("/readyz").status_code == 200  # PgBouncer connects to the server
    pids = server_pids(db) if THROUGH_PGBOUNCER else [conn.info.backend_pid for conn in held]
    assert pids
    with db.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (pids,))
        for _ in range(100):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
            if cur.fetchone() == (0,):
                break
            time.sleep(0.02)
    for path in ("/api/backups/monitoring/job/1", "/readyz", "/api/backups/monitoring/job/2"):
        response = client.get(path, headers=bearer())
        assert response.status_code == 200, response.get_json()
    # Directly, the app dropped its dead connections. Through PgBouncer the pids were PgBouncer's
    # server connections, which it replaced itself: the app's connections to it never broke.
    assert all(conn.closed for conn in held) is not THROUGH_PGBOUNCER


def test_a_statement_timeout_is_not_retried(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    calls = []

    def slow(conn: connection) -> None:
        calls.append(conn)
        with conn.cursor() as cur:
            cur.execute(READ_GUARD + "SELECT pg_sleep(0.2)", {"timeout_ms": 1})

    with app.test_request_context(), pytest.raises(psycopg2.errors.QueryCanceled):
        state.database().read(slow)
    assert len(calls) == 1


SNAPSHOT_SIGNATURES = """
SELECT pg_get_function_identity_arguments(oid) FROM pg_proc
WHERE proname = 'zdm_monitor_job_snapshot'
"""


def test_init_db_upgrades_the_read_function_of_an_older_release(db: connection) -> None:
    """upgrade.sql removes the 13-argument function 0.1.0 installed; one function remains."""
    with db.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION zdm_monitor_job_snapshot(bigint, text, text, text, text, numeric,"
            " text, text, text, text, text, integer, integer) RETURNS SETOF record"
            " LANGUAGE sql AS 'SELECT NULL::record WHERE false'"
        )
        cur.execute(SNAPSHOT_SIGNATURES)
        assert len(cur.fetchall()) == 2
    apply_schema(db)
    with db.cursor() as cur:
        cur.execute(SNAPSHOT_SIGNATURES)
        (signature,) = cur.fetchall()
    assert signature[0].startswith("p_job_id bigint, p_name text,")
    assert signature[0].endswith("p_after integer, p_detail boolean")


def test_init_db_replaces_a_read_function_whose_columns_changed(db: connection) -> None:
    """0.1.0 with the log cursor took today's arguments but returned no version column:
    CREATE OR REPLACE cannot change the columns, so upgrade.sql drops it first."""
    with db.cursor() as cur:
        cur.execute(f"SELECT {SNAPSHOT_SIGNATURES.split('SELECT', 1)[1]}")
        (arguments,) = cur.fetchone()  # type: ignore[misc]
        cur.execute(f"DROP FUNCTION zdm_monitor_job_snapshot({arguments})")
        cur.execute(
            f"CREATE FUNCTION zdm_monitor_job_snapshot({arguments}) RETURNS TABLE (job_id bigint)"
            " LANGUAGE sql AS 'SELECT 1::bigint WHERE false'"
        )
    apply_schema(db)
    with db.cursor() as cur:
        cur.execute("SELECT proargnames FROM pg_proc WHERE proname = 'zdm_monitor_job_snapshot'")
        (names,) = cur.fetchall()
    assert "version" in names[0]


@pytest.mark.parametrize("function", ["zdm_monitor_job_snapshot", "zdm_monitor_server_snapshot"])
def test_init_db_replaces_a_read_function_that_said_only_whether_the_filters_matched(
    db: connection, function: str
) -> None:
    """0.2.0's read functions returned `matches`, not the filters a job fails (`mismatched`)."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc WHERE proname = %s",
            (function,),
        )
        (arguments,) = cur.fetchone()  # type: ignore[misc]
        cur.execute(f"DROP FUNCTION {function}({arguments})")
        cur.execute(
            f"CREATE FUNCTION {function}({arguments})"
            " RETURNS TABLE (matches boolean, version bigint)"
            " LANGUAGE sql AS 'SELECT true, 1::bigint WHERE false'"
        )
    apply_schema(db)
    with db.cursor() as cur:
        cur.execute("SELECT proargnames FROM pg_proc WHERE proname = %s", (function,))
        (names,) = cur.fetchall()
    assert "mismatched" in names[0] and "matches" not in names[0]


# What a database holds of zdm-monitor's own: triggers on any table, and its functions.
TRIGGERS = "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
FUNCTIONS = """
SELECT proname, provolatile FROM pg_proc WHERE proname LIKE 'zdm\\_monitor\\_%' ORDER BY 1
"""
READ_FUNCTIONS = [
    ("zdm_monitor_job_snapshot", "s"),
    ("zdm_monitor_release", "i"),
    ("zdm_monitor_server_snapshot", "s"),
    ("zdm_monitor_written", "i"),
]
RELEASE_0_1_0 = Path(__file__).parents[1] / "support" / "release-0.1.0.sql"


def rows(db: connection, query: str) -> list[tuple[Any, ...]]:
    with db.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def test_init_db_installs_read_functions_and_nothing_in_zdm_s_tables(db: connection) -> None:
    apply_schema(db)
    assert rows(db, TRIGGERS) == []
    assert rows(db, FUNCTIONS) == READ_FUNCTIONS  # stable or immutable: they only read


def install_release_0_1_0(db: connection) -> None:
    with db.cursor() as cur:
        cur.execute(RELEASE_0_1_0.read_text())
    assert len(rows(db, TRIGGERS)) == 14


def test_init_db_removes_the_change_triggers_of_release_0_1_0(db: connection) -> None:
    install_release_0_1_0(db)
    try:
        apply_schema(db)
        assert rows(db, TRIGGERS) == []
        assert rows(db, FUNCTIONS) == READ_FUNCTIONS
    finally:
        apply_schema(db)


def test_init_db_waits_for_a_writer_mid_transaction_without_holding_up_the_others(
    database_url: str, db: connection
) -> None:
    """Dropping a trigger locks its table: init-db waits for the writer's open transaction,
    which commits unharmed, and meanwhile lets the other writers through."""
    install_release_0_1_0(db)
    writer = psycopg2.connect(database_url)
    upgrader = psycopg2.connect(database_url)
    done = threading.Event()
    try:
        with writer.cursor() as cur:
            cur.execute("UPDATE backup_info SET percent = 61 WHERE backup_id = 2")  # fires one
        upgrade = threading.Thread(target=lambda: (apply_schema(upgrader), done.set()))
        upgrade.start()
        time.sleep(1.0)
        assert not done.is_set()  # still waiting for the writer
        other = time.monotonic()
        with db.cursor() as cur:
            cur.execute("SET lock_timeout = '5s'")  # queued behind init-db for good: fail
            cur.execute("UPDATE backup_info SET message = 'another writer' WHERE backup_id = 4")
        assert time.monotonic() - other < 1.0  # held up by one lock attempt at most
        writer.commit()
        upgrade.join(10)
        assert done.is_set()
        assert rows(db, TRIGGERS) == []
        assert rows(db, "SELECT percent FROM backup_info WHERE backup_id = 2") == [(61,)]
    finally:
        writer.close()
        upgrader.close()
        apply_schema(db)


def timed(client: Any, path: str) -> tuple[int, float]:
    started = time.monotonic()
    response = client.get(path, headers=bearer())
    return response.status_code, time.monotonic() - started


def test_a_database_that_stops_answering_is_a_503_at_the_read_s_deadline(
    make_app: Callable[..., Flask], proxy: CountingProxy
) -> None:
    """No answer at all (a frozen server, a black hole): cut off on the client's side, then
    the next reads fail at once but for one trial a second, and a real answer ends it."""
    client = make_app(DATABASE_URL=proxy.url, ZDM_DB_STATEMENT_TIMEOUT_MS="300").test_client()
    assert client.get("/api/backups/monitoring/job/1", headers=bearer()).status_code == 200
    proxy.silent.set()
    try:
        status, seconds = timed(client, "/api/backups/monitoring/job/1")
        assert status == 503
        assert 1.3 <= seconds < 1.6, seconds  # 300 ms + DEADLINE_GRACE_S, within a tick
        status, seconds = timed(client, "/readyz")
        assert status == 503 and seconds < 0.2, seconds  # no second wait on a silent server
    finally:
        proxy.silent.clear()
    assert wait_until(lambda: client.get("/readyz").status_code == 200, TRIAL_INTERVAL_S + 2)
    assert client.get("/api/backups/monitoring/job/1", headers=bearer()).status_code == 200


def test_readyz_answers_within_a_second_even_when_connecting_hangs(
    make_app: Callable[..., Flask], proxy: CountingProxy
) -> None:
    """A new connection to a server that accepts and never answers: libpq would wait its
    connect_timeout (3 s); the read's deadline stops waiting at one second."""
    client = make_app(DATABASE_URL=proxy.url).test_client()
    proxy.silent.set()
    try:
        status, seconds = timed(client, "/readyz")
    finally:
        proxy.silent.clear()
    assert status == 503
    assert 1.0 <= seconds < 1.3, seconds


def hold_for(slots: Slots, seconds: float, taken: threading.Event) -> threading.Thread:
    """A thread that holds a slot for the given time."""

    def run() -> None:
        with slots.hold():
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    assert taken.wait(5)
    return thread


def test_a_full_slot_is_waited_for_while_its_holder_is_young() -> None:
    """A healthy database answers in milliseconds: a request queues behind such a read."""
    slots, taken = Slots(1), threading.Event()
    holder = hold_for(slots, YOUNG_S / 2, taken)
    started = time.monotonic()
    with slots.hold():
        waited = time.monotonic() - started
    holder.join()
    assert YOUNG_S / 4 < waited < YOUNG_S * 2, waited


def test_when_every_holder_is_old_a_request_is_refused_at_once() -> None:
    """Every slot held longer than YOUNG_S: the database is not answering; no wait behind it."""
    slots, taken = Slots(2), threading.Event()
    holders = [hold_for(slots, 1.0, taken)]
    taken.clear()
    holders.append(hold_for(slots, 1.0, taken))
    time.sleep(YOUNG_S * 1.5)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable), slots.hold():
        pass
    assert time.monotonic() - started < 0.02
    for holder in holders:
        holder.join()
    with slots.hold(), slots.hold():  # freed; and a holder's own read takes no second slot
        assert len(slots._held) == 1


def test_the_slots_are_gunicorn_s_threads_but_one_else_the_pool_s_size(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(ZDM_DB_POOL_SIZE="6")
    assert state.of(app).database.slots.size == 6  # no gunicorn: the pool's size
    state.start(app, 4)  # what post_worker_init passes: gunicorn's threads
    assert state.of(app).database.slots.size == 3


def test_an_app_never_started_refuses_to_read_and_says_why(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(started=False).test_client()
    with records() as said:
        response = client.get("/api/backups/monitoring/job/1", headers=bearer())
    assert response.status_code == 500
    assert response.get_json()["code"] == "INTERNAL-ERROR"
    assert client.get("/healthz").status_code == 200  # what touches no database still answers
    (record,) = [r for r in said if r.exc_info]
    assert record.exc_info is not None
    assert "state.start(app)" in str(record.exc_info[1])


def test_a_worker_that_cannot_start_its_watchdog_says_so_in_one_line(
    make_app: Callable[..., Flask],
) -> None:
    """After fork, in a process that may start no thread (its user at RLIMIT_NPROC)."""
    app = make_app()
    said_from, said_to = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports through the pipe and leaves without any clean-up
        lines = []
        try:
            handler = logging.Handler()
            handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("zdm_monitor.data.database").addHandler(handler)
            os.setuid(54321)  # a user with no other process, and without root's exemption
            resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
            state.start(app, 4)
        finally:
            os.write(said_to, "\n".join(lines).encode())
            os._exit(0)
    os.waitpid(pid, 0)
    said = os.read(said_from, 4096).decode()
    os.close(said_from)
    os.close(said_to)
    assert said == "could not start the deadline watchdog: can't start new thread", said
