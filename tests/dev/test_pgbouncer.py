"""The private PgBouncer: the sample's pooling, loopback only, and what transaction mode means."""

from __future__ import annotations

import configparser
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
from flask import Flask
from psycopg2.extensions import connection
from support.api import bearer
from support.database import READER
from support.processes import free_port

from zdm_devstack.pgbouncer import SAMPLE, PgBouncer


@pytest.fixture(scope="module")
def bouncer(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """One server connection for all clients: what one client leaves, the next one finds."""
    running = PgBouncer(
        tmp_path_factory.mktemp("pgbouncer"),
        free_port(),
        {"zdm": database_url},
        {READER: READER},
        pool_size=1,
    )
    running.start()
    yield running
    running.stop()


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    parser.read_string(text)
    return parser


def test_config_keeps_the_sample_s_pooling_and_replaces_the_rest(tmp_path: Path) -> None:
    sample = parse(SAMPLE.read_text())
    assert sample["pgbouncer"]["pool_mode"] == "transaction"
    url = "postgresql://postgres:secret@/postgres?host=%2Frun%2Fpg&port=5433"
    config = parse(PgBouncer(tmp_path, 7777, {"zdm": url}, {}).config())
    assert dict(config["databases"]) == {"zdm": "host=/run/pg port=5433 dbname=postgres"}
    settings = config["pgbouncer"]
    assert (settings["listen_addr"], settings["listen_port"]) == ("127.0.0.1", "7777")
    assert settings["auth_type"] == "trust"
    assert settings["auth_file"] == str(tmp_path.resolve() / "userlist.txt")
    for key in ("pool_mode", "query_wait_timeout", "server_login_retry", "default_pool_size"):
        assert settings[key] == sample["pgbouncer"][key], key


def connect(bouncer: PgBouncer) -> connection:
    conn = psycopg2.connect(bouncer.url("zdm", READER, READER))
    conn.autocommit = True
    return conn


def show(conn: connection, setting: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW {setting}")
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def test_a_session_setting_leaks_to_the_next_client(bouncer: PgBouncer) -> None:
    """Transaction pooling shares server sessions: why the service never sets anything on one."""
    with closing(connect(bouncer)) as first, closing(connect(bouncer)) as second:
        with first.cursor() as cur:
            cur.execute("SET statement_timeout = 4321")
        try:
            assert show(second, "statement_timeout") == "4321ms"
        finally:
            with first.cursor() as cur:
                cur.execute("RESET statement_timeout")


def test_the_service_leaves_nothing_in_the_shared_session(
    bouncer: PgBouncer, make_app: Callable[..., Flask]
) -> None:
    app = make_app(
        DATABASE_URL=bouncer.url("zdm", READER, READER), ZDM_DB_STATEMENT_TIMEOUT_MS="777"
    )
    client = app.test_client()
    for path in ("/api/backups/monitoring/job/1", "/readyz"):
        assert client.get(path, headers=bearer()).status_code == 200
    with closing(connect(bouncer)) as other:
        assert show(other, "statement_timeout") == "0"
        assert show(other, "transaction_read_only") == "off"
        with other.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cur.fetchone() == (0,)
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert cur.fetchone() == (0,)
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (READER,)
