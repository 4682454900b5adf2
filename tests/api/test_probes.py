"""Probes, and the 503 the service answers when its database cannot be reached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support.api import JOB_URL, bearer
from support.database import prepare_database
from werkzeug.test import TestResponse

from zdm_devstack.postgres import EmbeddedPostgres

MakeApp = Callable[..., Flask]

CLOSED_PORT_URL = "postgresql://u@127.0.0.1:1/x"
ENVELOPE_KEYS = {"requestID", "success", "error", "timestamp", "code"}
INTERNALS = ("psycopg2", "OperationalError", "127.0.0.1", "Traceback", "connection refused")


@pytest.fixture
def no_db_client(make_app: MakeApp) -> FlaskClient:
    return make_app(DATABASE_URL=CLOSED_PORT_URL, ZDM_DB_CONNECT_TIMEOUT="1").test_client()


def assert_unavailable(response: TestResponse) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["code"] == "SERVICE-UNAVAILABLE"
    assert body["requestID"] == response.headers["X-Request-ID"]
    retry = response.headers.get("Retry-After", "")
    assert retry.isdigit() and int(retry) > 0, retry
    text = response.get_data(as_text=True)
    for word in INTERNALS:
        assert word.lower() not in text.lower(), word


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
def test_probe_answers(client: FlaskClient, path: str, status: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["data"] == {"status": status}


def test_healthz_without_database(no_db_client: FlaskClient) -> None:
    """The process answers even when the database does not."""
    assert no_db_client.get("/healthz").status_code == 200


def test_readyz_without_database(no_db_client: FlaskClient) -> None:
    assert_unavailable(no_db_client.get("/readyz"))


@pytest.mark.parametrize("path", ["1", "daily-backup", "2?status=run&page=1"])
def test_monitoring_without_database(no_db_client: FlaskClient, path: str) -> None:
    assert_unavailable(no_db_client.get(f"{JOB_URL}{path}", headers=bearer()))


def test_request_id_echoed_on_503(no_db_client: FlaskClient) -> None:
    response = no_db_client.get(f"{JOB_URL}1", headers={**bearer(), "X-Request-ID": "abc123def456"})
    assert_unavailable(response)
    assert response.get_json()["requestID"] == "abc123def456"
    assert response.headers["X-Request-ID"] == "abc123def456"


def test_invalid_parameters_still_400_without_database(no_db_client: FlaskClient) -> None:
    """Validation happens before the database too: a bad query is the caller's mistake."""
    response = no_db_client.get(f"{JOB_URL}1?limit=0", headers=bearer())
    assert response.status_code == 400
    assert response.get_json()["code"] == "REQUEST-ERROR-01"


def test_recovers_when_database_is_back(make_app: MakeApp, tmp_path: Path) -> None:
    """PostgreSQL really stops, then starts again: 503s meanwhile, then 200s, no restart."""
    server = EmbeddedPostgres(tmp_path / "postgres")
    try:
        url = server.start()
        prepare_database(url)
        client = make_app(DATABASE_URL=url, ZDM_DB_CONNECT_TIMEOUT="1").test_client()
        assert client.get("/readyz").status_code == 200
        assert client.get(f"{JOB_URL}1", headers=bearer()).status_code == 200
        server.stop()
        assert_unavailable(client.get("/readyz"))
        assert_unavailable(client.get(f"{JOB_URL}1", headers=bearer()))
        server.start()
        assert client.get("/readyz").status_code == 200
        response = client.get(f"{JOB_URL}1", headers=bearer())
        assert response.status_code == 200
        assert response.get_json()["data"]["job"]["info"]["name"] == "daily-backup"
    finally:
        server.stop()
