"""One database round trip per request, counted on the wire between the app and PostgreSQL."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from support.api import JOB_URL, bearer, fetch
from support.pgwire import CountingProxy

from zdm_monitor import state


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("1", 200),
        ("daily-backup", 200),
        ("daily-backup-win?page=2&limit=1", 200),
        ("bulk-data?page=9&limit=25", 200),
        ("bulk-data?after=100&limit=50", 200),
        ("bulk-data?after=0&sort=desc", 200),
        ("2?detail=true", 200),
        ("bulk-data?after=240&detail=true", 200),
        ("1?mode=smart&status=run", 404),  # exists, filters exclude it
        ("no-such-job", 404),
        ("99999", 404),
        ("6", 400),  # definition only
        ("7?mode=full", 400),  # runtime only, whatever the filters
    ],
)
def test_each_answer_costs_one_statement(
    wired: FlaskClient, proxy: CountingProxy, path: str, status: int
) -> None:
    response = wired.get(JOB_URL + path, headers=bearer())
    assert response.status_code == status, response.get_json()
    queries = proxy.take()
    assert len(queries) == 1, queries
    assert "zdm_monitor_job_snapshot" in queries[0]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("1", {}, 401),
        ("1", {"Authorization": "Bearer not-a-token"}, 401),
        ("1?mode=bogus", bearer(), 400),
        ("x" * 300, bearer(), 400),
        # Longer than any bigint: no job can have that ID, decided before the database.
        ("9223372036854775808", bearer(), 404),
        ("9" * 40, bearer(), 404),
    ],
)
def test_rejected_requests_never_reach_the_database(
    wired: FlaskClient, proxy: CountingProxy, path: str, headers: dict[str, str], status: int
) -> None:
    assert wired.get(JOB_URL + path, headers=headers).status_code == status
    assert proxy.take() == []


def test_connection_is_reused_across_requests(wired: FlaskClient, proxy: CountingProxy) -> None:
    for _ in range(5):
        assert wired.get(JOB_URL + "1", headers=bearer()).status_code == 200
    assert len(proxy.take()) == 5
    assert state.of(wired.application).database.primary._in_use == 0


def test_a_304_costs_one_statement(wired: FlaskClient, proxy: CountingProxy) -> None:
    tag = fetch(wired, "bulk-data", "after=240&detail=true").headers["ETag"]
    proxy.take()
    response = fetch(wired, "bulk-data", "after=240&detail=true", {"If-None-Match": tag})
    assert response.status_code == 304
    queries = proxy.take()
    assert len(queries) == 1, queries
    assert "zdm_monitor_job_snapshot" in queries[0]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("linux-server-01", 200),
        ("1?detail=true&logLimit=100", 200),
        ("2?page=2&limit=1", 200),
        ("1?status=error", 404),
        ("1?partition=/home", 400),
        ("nobody", 404),
    ],
)
def test_each_server_view_answer_costs_one_statement(
    wired: FlaskClient, proxy: CountingProxy, path: str, status: int
) -> None:
    response = wired.get("/api/backups/monitoring/system/" + path, headers=bearer())
    assert response.status_code == status, response.get_json()
    queries = proxy.take()
    assert len(queries) == 1, queries
    assert "zdm_monitor_server_snapshot" in queries[0]
