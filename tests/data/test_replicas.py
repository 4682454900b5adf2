"""Reads on streaming replicas: spread, skipped when lagging or unreachable, primary last.

A real primary and two real streaming replicas made with pg_basebackup -R serve the module.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from support.api import JOB_URL, LINUX_EXAMPLE, SECRET, bearer, sample
from support.database import READER, prepare_database
from support.processes import wait_until

from zdm_devstack.postgres import EmbeddedPostgres
from zdm_monitor import state
from zdm_monitor.data.replicas import CHECK_INTERVAL_S
from zdm_monitor.ops.cli import main

# Starts servers (or a browser) of its own: left out of make test-fast.
pytestmark = pytest.mark.slow

MAX_LAG_S = 1.0
CACHE_MAX_AGE_S = 1.0
# The monitor looks once a second; a change shows within two checks.
NOTICE_S = 5.0
MONITOR = "zdm-replica-monitor"
NEW_LINE = "written on the primary"
INSERT_LINE = """
INSERT INTO backup_log (backup_id, line, logged_at, message)
SELECT 1, max(line) + 1, now(), %s FROM backup_log WHERE backup_id = 1
"""


@dataclass
class Servers:
    primary: EmbeddedPostgres
    replicas: list[EmbeddedPostgres]

    def write(self, statement: str, *params: Any) -> None:
        with closing(psycopg2.connect(self.primary.url())) as conn, conn, conn.cursor() as cur:
            cur.execute(statement, params)

    def fall_behind(self, number: int) -> None:
        """Have the replica stop replaying and receive a line it does not replay: the lag is
        counted from the last transaction replayed, so it has one first."""
        self.write(INSERT_LINE, NEW_LINE)
        self.write("DELETE FROM backup_log WHERE message = %s", NEW_LINE)
        replayed = "SELECT pg_last_xact_replay_timestamp() IS NOT NULL"
        assert wait_until(lambda: self.on_replica(number, replayed), NOTICE_S)
        self.on_replica(number, "SELECT pg_wal_replay_pause()")
        self.write(INSERT_LINE, NEW_LINE)

    def on_replica(self, number: int, statement: str) -> Any:
        """Run a statement as the superuser on replica 1 or 2; its first value."""
        with closing(psycopg2.connect(self.replicas[number - 1].url())) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
                row = cur.fetchone()
        return None if row is None else row[0]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("replication")
    primary = EmbeddedPostgres(root / "primary")
    replicas = [EmbeddedPostgres(root / f"replica{n}") for n in (1, 2)]
    try:
        prepare_database(primary.start())
        for number, replica in enumerate(replicas, start=1):
            replica.replicate(primary, f"replica{number}")
        yield Servers(primary, replicas)
    finally:
        for server in (*replicas, primary):
            server.stop()


@pytest.fixture
def replicated(servers: Servers, make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """An app reading from both replicas (as the SELECT-only role), each seen usable."""
    for replica in servers.replicas:
        replica.start()
    for number in (1, 2):
        servers.on_replica(number, "SELECT pg_wal_replay_resume()")
    app = make_app(
        DATABASE_URL=reader(servers.primary),
        DATABASE_REPLICA_URLS=" ".join(reader(r) for r in servers.replicas),
        ZDM_REPLICA_MAX_LAG_S=str(MAX_LAG_S),
    )
    assert wait_until(lambda: states(app) == ["ok", "ok"], NOTICE_S), describe(app)
    yield app
    servers.write("DELETE FROM backup_log WHERE message = %s", NEW_LINE)


def reader(server: EmbeddedPostgres) -> str:
    """The server's URL for the SELECT-only role."""
    return server.url().replace("postgresql://postgres@", f"postgresql://{READER}:{READER}@", 1)


def describe(app: Flask) -> list[dict[str, Any]]:
    replicas = state.of(app).database.describe_replicas()
    assert replicas is not None
    return replicas


def states(app: Flask) -> list[str]:
    return [r["state"] for r in describe(app)]


def reads(client: FlaskClient) -> dict[str, float]:
    return {
        target: sample(client, "zdm_db_reads_total", target=target)
        for target in ("primary", "replica1", "replica2")
    }


def get_seed(client: FlaskClient) -> dict[str, Any]:
    response = client.get(f"{JOB_URL}1?limit=100", headers=bearer())
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()["data"]
    return data


def read_many(client: FlaskClient, count: int) -> dict[str, float]:
    """Read the seed job count times; how many reads each target answered meanwhile."""
    before = reads(client)
    for _ in range(count):
        get_seed(client)
    after = reads(client)
    return {target: after[target] - before[target] for target in after}


def monitor_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == MONITOR)


def test_reads_go_to_the_replicas_in_turn(servers: Servers, replicated: Flask) -> None:
    client = replicated.test_client()
    assert get_seed(client) == LINUX_EXAMPLE
    assert read_many(client, 20) == {"primary": 0, "replica1": 10, "replica2": 10}
    # Each replica's own statistics show the service's role calling the read function there.
    for number in (1, 2):
        last = servers.on_replica(
            number,
            f"SELECT query FROM pg_stat_activity WHERE usename = '{READER}'"
            " AND query LIKE '%zdm_monitor_job_snapshot%' LIMIT 1",
        )
        assert last is not None, number


def test_readyz_and_metrics_show_each_replica_s_lag(replicated: Flask) -> None:
    client = replicated.test_client()
    body = client.get("/readyz").get_json()
    assert body["data"]["status"] == "ready"
    assert [(r["name"], r["state"]) for r in body["data"]["replicas"]] == [
        ("replica1", "ok"),
        ("replica2", "ok"),
    ]
    for replica in body["data"]["replicas"]:
        assert 0 <= replica["lag_s"] <= MAX_LAG_S
        assert sample(client, "zdm_db_replica_usable", replica=replica["name"]) == 1
        assert 0 <= sample(client, "zdm_db_replica_lag_seconds", replica=replica["name"]) <= 1


def test_a_lagging_replica_is_skipped_until_it_catches_up(
    servers: Servers, replicated: Flask
) -> None:
    client = replicated.test_client()
    servers.fall_behind(1)
    # Replica 1 received the line but does not replay it: its lag grows past the bound.
    assert wait_until(lambda: states(replicated) == ["lagging", "ok"], NOTICE_S), describe(
        replicated
    )
    assert describe(replicated)[0]["lag_s"] > MAX_LAG_S
    assert sample(client, "zdm_db_replica_usable", replica="replica1") == 0
    assert read_many(client, 6) == {"primary": 0, "replica1": 0, "replica2": 6}
    assert get_seed(client)["job"]["log"][-1] == NEW_LINE

    # Both behind: the primary answers, with the new line.
    servers.on_replica(2, "SELECT pg_wal_replay_pause()")
    servers.write(INSERT_LINE, NEW_LINE)
    assert wait_until(lambda: states(replicated) == ["lagging", "lagging"], NOTICE_S), describe(
        replicated
    )
    assert read_many(client, 4) == {"primary": 4, "replica1": 0, "replica2": 0}
    assert get_seed(client)["job"]["log"][-2:] == [NEW_LINE, NEW_LINE]

    for number in (1, 2):
        servers.on_replica(number, "SELECT pg_wal_replay_resume()")
    assert wait_until(lambda: states(replicated) == ["ok", "ok"], NOTICE_S)
    assert read_many(client, 4) == {"primary": 0, "replica1": 2, "replica2": 2}
    assert get_seed(client)["job"]["log"][-2:] == [NEW_LINE, NEW_LINE]


def test_check_names_the_replica_past_the_lag_bound(servers: Servers, replicated: Flask) -> None:
    """zdm-monitor check measures each replica as the monitor does, on real replicas."""
    env = {
        "DATABASE_URL": reader(servers.primary),
        "DATABASE_REPLICA_URLS": " ".join(reader(r) for r in servers.replicas),
        "ZDM_REPLICA_MAX_LAG_S": str(MAX_LAG_S),
        "ZDM_JWT_SECRET": SECRET,
    }

    def check() -> Any:
        return CliRunner(env=env).invoke(main, ["check"])

    current = check()
    assert current.exit_code == 0, current.output
    assert "ok   replica1: " in current.output and "ok   replica2: " in current.output
    servers.fall_behind(1)
    seen: list[Any] = []

    def failed() -> bool:
        seen.append(check())
        return bool(seen[-1].exit_code == 1)

    try:
        assert wait_until(failed, NOTICE_S)
    finally:
        servers.on_replica(1, "SELECT pg_wal_replay_resume()")
    lines = seen[-1].output.splitlines()
    behind = next(line for line in lines if line.startswith("FAIL replica1: "))
    assert re.search(r" is \d+\.\d s behind, more than ZDM_REPLICA_MAX_LAG_S 1: reads skip", behind)
    assert [line[:5] for line in lines if "replica" in line[:13]] == ["FAIL ", "ok   "]


def test_an_unreachable_replica_is_skipped_at_once(servers: Servers, replicated: Flask) -> None:
    client = replicated.test_client()
    get_seed(client)  # both pools hold a connection now
    servers.replicas[0].stop()
    # No wait for the monitor: a read that finds replica 1 gone marks it and moves on.
    assert sum(read_many(client, 4).values()) == 4
    assert states(replicated)[0] == "unreachable"
    assert sample(client, "zdm_db_replica_lag_seconds", replica="replica1") == float("inf")
    assert read_many(client, 4) == {"primary": 0, "replica1": 0, "replica2": 4}

    servers.replicas[1].stop()
    assert read_many(client, 4) == {"primary": 4, "replica1": 0, "replica2": 0}
    assert states(replicated) == ["unreachable", "unreachable"]
    body = client.get("/readyz").get_json()
    assert body["success"] is True
    assert [r["lag_s"] for r in body["data"]["replicas"]] == [None, None]

    for replica in servers.replicas:
        replica.start()
    assert wait_until(lambda: states(replicated) == ["ok", "ok"], NOTICE_S), describe(replicated)
    assert read_many(client, 4) == {"primary": 0, "replica1": 2, "replica2": 2}


def test_the_monitor_starts_with_the_worker_and_stops_on_close(
    servers: Servers, make_app: Callable[..., Flask]
) -> None:
    before = monitor_threads()
    app = make_app(DATABASE_REPLICA_URLS=reader(servers.replicas[0]), started=False)
    assert monitor_threads() == before  # not at import or app creation: gunicorn forks later
    assert states(app) == ["starting"]
    state.start(app)
    assert monitor_threads() == before + 1
    assert states(app) == ["ok"]  # start waited for the first check
    assert app.test_client().get("/readyz").status_code == 200
    state.start(app)  # a second start in the same process starts nothing more
    assert monitor_threads() == before + 1
    state.close(app)
    assert monitor_threads() == before


def test_without_replicas_nothing_changes(make_app: Callable[..., Flask]) -> None:
    before = monitor_threads()
    app = make_app()
    assert state.of(app).database.replicas is None
    client = app.test_client()
    assert get_seed(client) == LINUX_EXAMPLE
    assert client.get("/readyz").get_json()["data"] == {"status": "ready"}
    assert monitor_threads() == before
    assert read_many(client, 3) == {"primary": 0, "replica1": 0, "replica2": 0}


def test_a_forked_worker_watches_on_its_own_and_leaves_the_parent_s_connection(
    servers: Servers, make_app: Callable[..., Flask]
) -> None:
    """What gunicorn's fork and the worker's start do to an app whose monitor already runs in
    the parent."""
    app = make_app(DATABASE_REPLICA_URLS=reader(servers.replicas[0]))
    assert app.test_client().get("/readyz").status_code == 200
    replicas = state.of(app).database.replicas
    assert replicas is not None
    replica = replicas.replicas[0]
    assert replica._monitor_conn is not None
    # Only its server's process ID: a reference here would keep the child from dropping it.
    session = replica._monitor_conn.info.backend_pid
    answer_from, answer_to = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports through the pipe and leaves without any clean-up
        verdict = b"0"
        try:
            before = monitor_threads()
            state.start(app)  # what gunicorn's post_worker_init does in each worker
            served = app.test_client().get("/readyz").status_code == 200
            ok = served and states(app) == ["ok"] and monitor_threads() == before + 1
            own = replica._monitor_conn is not None
            if ok and own and replica._monitor_conn.info.backend_pid != session:
                verdict = b"1"
        finally:
            os.write(answer_to, verdict)
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(answer_from, 1) == b"1"
    os.close(answer_from)
    os.close(answer_to)
    # The parent's session still works: the child neither used nor closed it.
    assert replica.check().status == "ok"
    assert replica._monitor_conn is not None
    assert replica._monitor_conn.info.backend_pid == session


# Raised by the replica itself, with the SQLSTATE and words PostgreSQL uses when its replay
# cancels a read; the primary answers.
CANCELLED_ON_REPLICAS = """
DO $$ BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION USING ERRCODE = '40001',
            MESSAGE = 'canceling statement due to conflict with recovery';
    END IF;
END $$;
SELECT pg_is_in_recovery()
"""


def test_a_read_cancelled_by_recovery_moves_on_and_leaves_the_replica_usable(
    replicated: Flask,
) -> None:
    def query(conn: Any) -> Any:
        with conn.cursor() as cur:
            cur.execute(CANCELLED_ON_REPLICAS)
            return cur.fetchone()[0]

    client = replicated.test_client()
    before = reads(client)
    with replicated.test_request_context():
        assert state.database().read(query) is False  # answered where not in recovery
    after = reads(client)
    assert after["primary"] == before["primary"] + 1
    assert states(replicated) == ["ok", "ok"]  # a conflict is not an outage
    assert get_seed(client) == LINUX_EXAMPLE


def percent_of_job_2(client: FlaskClient) -> str:
    response = client.get(f"{JOB_URL}2", headers=bearer())
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["job"]["progressInfo"]["percent"])


def percent_of_job_2_on_its_wall(client: FlaskClient) -> str:
    response = client.get("/api/backups/monitoring/system/windows-server-01", headers=bearer())
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["job"][0]["progressInfo"]["percent"])


@pytest.mark.parametrize("percent_of", [percent_of_job_2, percent_of_job_2_on_its_wall])
def test_with_the_cache_a_write_shows_within_its_max_age_plus_the_replica_lag_bound(
    servers: Servers,
    make_app: Callable[..., Flask],
    percent_of: Callable[[FlaskClient], str],
) -> None:
    """Replicas that stop replaying keep their old rows; the router leaves them once they are
    ZDM_REPLICA_MAX_LAG_S behind (found within a check), and the cache's answer is at most its
    max age older than its read: together, the bound docs/api.md gives dashboards."""
    app = make_app(
        DATABASE_URL=reader(servers.primary),
        DATABASE_REPLICA_URLS=" ".join(reader(r) for r in servers.replicas),
        ZDM_REPLICA_MAX_LAG_S=str(MAX_LAG_S),
        ZDM_CACHE_MAX_AGE_MS=str(int(CACHE_MAX_AGE_S * 1000)),
    )
    client = app.test_client()
    assert percent_of(client) == "60%"  # read on a replica, kept
    for number in (1, 2):
        servers.on_replica(number, "SELECT pg_wal_replay_pause()")
    servers.write("UPDATE backup_info SET percent = 64 WHERE backup_id = 2")
    written = time.monotonic()
    try:
        assert wait_until(lambda: percent_of(client) == "64%", 10, 0.05)
        delay = time.monotonic() - written
        assert delay <= CACHE_MAX_AGE_S + MAX_LAG_S + CHECK_INTERVAL_S + 1.0, delay
        assert reads(client)["primary"] > 0  # the replicas were left: the primary answered
    finally:
        for number in (1, 2):
            servers.on_replica(number, "SELECT pg_wal_replay_resume()")
        servers.write("UPDATE backup_info SET percent = 60 WHERE backup_id = 2")
