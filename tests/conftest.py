"""Fixtures: a real PostgreSQL (embedded unless DATABASE_URL is set), the app, tokens."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import jwt
import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pgwire import CountingProxy
from processes import free_port
from psycopg2.extensions import connection, make_dsn
from werkzeug.test import TestResponse

from zdm_devstack.demo import load_demo
from zdm_devstack.pgbouncer import PgBouncer
from zdm_devstack.postgres import EmbeddedPostgres, remove_folders_under
from zdm_devstack.stack import create_reader
from zdm_monitor import create_app, state
from zdm_monitor.db import apply_schema

SECRET = "test-secret-that-is-long-enough-for-hs256"
JOB_URL = "/api/backups/monitoring/job/"
TABLES = "server, repository, backup, backup_info, backup_log"
# The least-privilege role of the README's "Database role": the app connects as it in the tests.
READER = "zdm_monitor_reader"
# make e2e: the app's connections go through PgBouncer (see reader_url).
THROUGH_PGBOUNCER = os.environ.get("ZDM_TEST_PGBOUNCER") == "1"
PGBOUNCER_POOL_SIZE = 2
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

# The contract's two example bodies, as the demo data serves them (jobs 1 and 2).
LINUX_EXAMPLE: dict[str, Any] = {
    "system": {"name": "linux-server-01"},
    "job": {
        "info": {"name": "daily-backup", "partition": "/"},
        "progressInfo": {
            "status": "complete",
            "percent": "100%",
            "message": "Backup completed successfully",
            "start": "2025-01-15 02:00:00",
            "elapsed": "00:30:00",
            "end": "2025-01-15 02:30:00",
        },
        "log": ["Starting backup...", "Processing files...", "Backup completed"],
    },
}
WINDOWS_EXAMPLE: dict[str, Any] = {
    "system": {"name": "windows-server-01"},
    "job": {
        "info": {"name": "daily-backup-win", "drive": "C:"},
        "progressInfo": {
            "status": "processing",
            "percent": "60%",
            "message": "Processing files...",
            "start": "2025-01-15 02:00:00",
            "elapsed": "00:20:00",
            "end": "-",
        },
        "log": ["Starting backup...", "Processing files..."],
    },
}

# The keys of progressInfo and the monitoring endpoint's query parameters, in the contract's order.
PROGRESS_KEYS = ["status", "percent", "message", "start", "elapsed", "end"]
QUERY_PARAMETERS = [
    "mode",
    "partition",
    "drive",
    "server",
    "repositoryType",
    "repositoryPath",
    "status",
    "jobName",
    "page",
    "limit",
    "after",
    "sort",
    "detail",
]


def success_body(data: dict[str, Any]) -> dict[str, Any]:
    """The success envelope around data, without its requestID and timestamp."""
    return {"success": True, "data": data, "message": "Backup monitoring info"}


@pytest.fixture(scope="session", autouse=True)
def relocated_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Remove what the run's PostgreSQL and PgBouncer folders left in SERVICE_HOME (as root)."""
    yield
    remove_folders_under(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL with the schema applied; DATABASE_URL must name a scratch database."""
    url = os.environ.get("DATABASE_URL")
    server = None
    if not url:
        server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "data")
        url = server.start()
    prepare_database(url)
    yield url
    if server is not None:
        server.stop()


def prepare_database(url: str) -> None:
    """The schema, the demo data exactly as shipped, and the service's SELECT-only role."""
    with closing(psycopg2.connect(url)) as conn:
        apply_schema(conn)
        reset_demo(conn)
    create_reader(url, READER, READER)


def reset_demo(conn: connection) -> None:
    """Put the demo data back exactly as shipped."""
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY")
    load_demo(conn)


@pytest.fixture
def db(database_url: str) -> Iterator[connection]:
    """A writable connection for tests that add rows; the demo data is restored afterwards."""
    with closing(psycopg2.connect(database_url)) as conn:
        conn.autocommit = True
        yield conn
        reset_demo(conn)


@pytest.fixture(scope="session")
def reader_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same database as the SELECT-only role the service runs as.

    With ZDM_TEST_PGBOUNCER=1 (make e2e) the app's connections go through a PgBouncer in
    transaction pooling mode with two server connections, which its clients take in turn: a
    test then fails if the service relied on anything kept in a server session.
    """
    if not THROUGH_PGBOUNCER:
        yield make_dsn(database_url, user=READER, password=READER)
        return
    logs = tmp_path_factory.mktemp("pgbouncer-log")
    bouncer = PgBouncer(
        tmp_path_factory.mktemp("pgbouncer"),
        free_port(),
        {"zdm": database_url},
        {READER: READER},
        pool_size=PGBOUNCER_POOL_SIZE,
    )
    with (logs / "pgbouncer.log").open("wb") as log:
        bouncer.start(log)
    try:
        yield bouncer.url("zdm", READER, READER)
    finally:
        bouncer.stop()


@pytest.fixture
def make_app(reader_url: str) -> Iterator[Callable[..., Flask]]:
    """Build apps (as the SELECT-only role) from environment overrides; pools closed after."""
    apps: list[Flask] = []

    def build(factory: Callable[..., Flask] = create_app, **env: str | None) -> Flask:
        settings = {"DATABASE_URL": reader_url, "ZDM_JWT_SECRET": SECRET, **env}
        app = factory({k: v for k, v in settings.items() if v is not None})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        state.close(app)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def make_token(key: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """Sign a token valid for an hour unless the claims say otherwise."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": "tester", "iat": now, "exp": now + 3600, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm)


def bearer(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or make_token()}"}


def fetch(
    client: FlaskClient, identifier: str, query: str = "", headers: dict[str, str] | None = None
) -> TestResponse:
    """GET the monitoring endpoint with a valid token and any other headers."""
    url = f"{JOB_URL}{identifier}" + (f"?{query}" if query else "")
    return client.get(url, headers={**bearer(), **(headers or {})})


@pytest.fixture
def get_job(client: FlaskClient) -> Callable[..., Any]:
    """GET the monitoring endpoint with a valid token."""

    def call(identifier: str, query: str = "", **headers: str) -> Any:
        return fetch(client, identifier, query, headers)

    return call


@pytest.fixture
def proxy(database_url: str) -> Iterator[CountingProxy]:
    """A proxy in front of the test database that records every query sent through it."""
    counting = CountingProxy(database_url)
    yield counting
    counting.close()


@pytest.fixture
def wired(make_app: Callable[..., Flask], proxy: CountingProxy) -> FlaskClient:
    """A client of an app that reaches the database through the counting proxy."""
    client = make_app(DATABASE_URL=proxy.url).test_client()
    # Open the pooled connection first: connecting is not part of a request's cost.
    assert client.get("/readyz").status_code == 200
    proxy.take()
    return client
