"""Prometheus metrics from the app (single process here; the nginx e2e test sums workers)."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from support.api import JOB_URL, bearer, sample

from zdm_monitor import state

ROUTE = "/api/backups/monitoring/job/<path:identifier>"


def test_requests_are_counted_by_route_template_and_status(client: FlaskClient) -> None:
    before_ok = sample(client, "zdm_http_requests_total", route=ROUTE, status="200")
    before_missing = sample(client, "zdm_http_requests_total", route=ROUTE, status="404")
    for identifier in ("1", "daily-backup", "daily-backup-win"):
        assert client.get(JOB_URL + identifier, headers=bearer()).status_code == 200
    assert client.get(JOB_URL + "nope", headers=bearer()).status_code == 404
    assert sample(client, "zdm_http_requests_total", route=ROUTE, status="200") == before_ok + 3
    assert (
        sample(client, "zdm_http_requests_total", route=ROUTE, status="404") == before_missing + 1
    )


def test_latency_histogram_and_pool_gauges(client: FlaskClient) -> None:
    before = sample(client, "zdm_http_request_duration_seconds_count", route=ROUTE, status="200")
    client.get(JOB_URL + "1", headers=bearer())
    after = sample(client, "zdm_http_request_duration_seconds_count", route=ROUTE, status="200")
    assert after == before + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'zdm_http_request_duration_seconds_bucket\{le="0.005"', text)
    # Between requests the connection is back in the pool: one idle, none in use.
    assert sample(client, "zdm_db_pool_connections", state="in_use") == 0
    assert sample(client, "zdm_db_pool_connections", state="idle") >= 1


def test_metrics_are_text_format(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert "# TYPE zdm_http_requests_total counter" in response.get_data(as_text=True)


def test_readyz_turns_503_while_draining(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    state.start_draining(app)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["code"] == "SERVICE-UNAVAILABLE"
    assert response.headers["Retry-After"] == "5"


def test_unknown_methods_share_one_label(client: FlaskClient) -> None:
    """A client may send any method token; the metrics must not grow a series for each."""
    before = sample(client, "zdm_http_requests_total", method="OTHER", status="405")
    for method in ("FOO", "BAR1", "X-PROBE"):
        response = client.open(JOB_URL + "1", method=method, headers=bearer())
        assert response.status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(client, "zdm_http_requests_total", method="OTHER", status="405") == before + 3
    assert not re.search(r'method="(FOO|BAR1|X-PROBE)"', text)
