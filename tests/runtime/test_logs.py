"""Request logs and error logs: JSON, one line per request, under the request ID."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from support.api import JOB_URL, bearer, make_token

from zdm_monitor.runtime.logs import JsonFormatter


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Capture the app's log records, formatted exactly as they are written."""
    logger = logging.getLogger("zdm_monitor")
    logger.addHandler(caplog.handler)
    formatter = JsonFormatter()
    yield lambda: [json.loads(formatter.format(r)) for r in caplog.records]
    logger.removeHandler(caplog.handler)


def test_one_json_line_per_request(
    app: Flask, lines: Callable[[], list[dict[str, object]]]
) -> None:
    token = make_token(sub="ops-wall")
    response = app.test_client().get(
        f"{JOB_URL}daily-backup", headers={**bearer(token), "X-Request-ID": "rid-42"}
    )
    assert response.status_code == 200
    (entry,) = [e for e in lines() if e["logger"] == "zdm_monitor.request"]
    assert entry["request_id"] == "rid-42" == response.headers["X-Request-ID"]
    assert entry["level"] == "INFO"
    assert entry["method"] == "GET"
    assert entry["route"] == "/api/backups/monitoring/job/<path:identifier>"
    assert entry["status"] == 200
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] > 0
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["subject"] == "ops-wall"
    assert token not in json.dumps(lines())


def test_unmatched_routes_and_rejections_are_logged(
    app: Flask, lines: Callable[[], list[dict[str, object]]]
) -> None:
    client = app.test_client()
    client.get("/no/such/page")
    client.get(f"{JOB_URL}1", headers={"Authorization": "Bearer nonsense"})
    entries = [e for e in lines() if e["logger"] == "zdm_monitor.request"]
    assert [(e["route"], e["status"], e["subject"]) for e in entries] == [
        ("<unmatched>", 404, None),
        ("/api/backups/monitoring/job/<path:identifier>", 401, None),
    ]


@pytest.mark.parametrize(("proxies", "expected"), [("1", "203.0.113.9"), ("0", "127.0.0.1")])
def test_client_ip_comes_from_exactly_the_trusted_proxies(
    make_app: Callable[..., Flask],
    lines: Callable[[], list[dict[str, object]]],
    proxies: str,
    expected: str,
) -> None:
    client = make_app(ZDM_PROXY_COUNT=proxies).test_client()
    client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    (entry,) = [e for e in lines() if e["logger"] == "zdm_monitor.request"]
    assert entry["client_ip"] == expected


def test_unexpected_errors_are_logged_with_traceback_and_answered_plainly(
    app: Flask, lines: Callable[[], list[dict[str, object]]]
) -> None:
    def explode() -> str:
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/explode", view_func=explode)
    response = app.test_client().get("/explode", headers={"X-Request-ID": "rid-boom"})
    body = response.get_json()
    assert response.status_code == 500
    assert body["code"] == "INTERNAL-ERROR"
    assert body["requestID"] == "rid-boom"
    assert "secret" not in response.get_data(as_text=True)
    (error,) = [e for e in lines() if e["level"] == "ERROR"]
    assert error["request_id"] == "rid-boom"
    assert "RuntimeError: secret internal detail" in str(error["traceback"])


def test_formatter_merges_fields_outside_a_request() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.fields = {"status": 503}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello you"
    assert entry["status"] == 503
    assert "request_id" not in entry


def test_gunicorn_logs_only_what_the_app_did_not(caplog: pytest.LogCaptureFixture) -> None:
    """One line per request: gunicorn's access line is for the answers it gave itself."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from zdm_monitor.runtime.logs import LOGGED, GunicornLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    kept = logging.root.handlers[:]
    logger = GunicornLogger(cfg)
    try:  # other libraries' warnings, through the root logger, are JSON too
        assert [type(h.formatter) for h in logging.root.handlers] == [JsonFormatter]
    finally:
        logging.root.handlers = kept
    logger.access_log.addHandler(caplog.handler)
    answer = SimpleNamespace(
        headers=[("X-Request-ID", "req-own")], status="431 Request Header Fields Too Large"
    )
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "REMOTE_ADDR": "127.0.0.1"}
    logger.access(answer, None, {**environ, LOGGED: True}, timedelta(milliseconds=2))
    assert [r for r in caplog.records if r.name == "gunicorn.access"] == []
    logger.access(answer, None, environ, timedelta(milliseconds=2))
    (record,) = [r for r in caplog.records if r.name == "gunicorn.access"]
    assert record.fields["request_id"] == "req-own" and record.fields["status"] == 431
