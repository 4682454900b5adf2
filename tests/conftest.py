"""Fixtures: a real PostgreSQL (embedded unless DATABASE_URL is set), the app, tokens."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg2.extensions import connection, make_dsn
from support.api import SECRET, fetch
from support.database import (
    PGBOUNCER_POOL_SIZE,
    READER,
    THROUGH_PGBOUNCER,
    prepare_database,
    reset_demo,
)
from support.pgwire import CountingProxy
from support.processes import free_port

from zdm_devstack.pgbouncer import PgBouncer
from zdm_devstack.postgres import EmbeddedPostgres, remove_folders_under
from zdm_monitor import create_app, state


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
    """Build apps (as the SELECT-only role) from environment overrides, started as a gunicorn
    worker starts them (state.start; without gunicorn's threads, the slots are the pool's size),
    unless started=False: such an app refuses to read; pools closed after."""
    apps: list[Flask] = []

    def build(
        factory: Callable[..., Flask] = create_app, *, started: bool = True, **env: str | None
    ) -> Flask:
        # The snapshot cache is off unless a test turns it on (tests/data/test_cache.py): the other
        # tests write and read at once, which the cache would answer for its max age.
        settings = {
            "DATABASE_URL": reader_url,
            "ZDM_JWT_SECRET": SECRET,
            "ZDM_CACHE_MAX_AGE_MS": "0",
            **env,
        }
        app = factory({k: v for k, v in settings.items() if v is not None})
        app.config["TESTING"] = True
        apps.append(app)
        if started:
            state.start(app)
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


@pytest.fixture
def get_job(client: FlaskClient) -> Callable[..., Any]:
    """GET the monitoring endpoint with a valid token."""

    def call(identifier: str, query: str = "", **headers: str) -> Any:
        return fetch(client, identifier, query, headers)

    return call


@pytest.fixture
def proxy(database_url: str) -> Iterator[CountingProxy]:
    """A proxy in front of the test database, for the service's role, that records every query
    sent through it."""
    counting = CountingProxy(make_dsn(database_url, user=READER, password=READER))
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
