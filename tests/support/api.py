"""The API as the tests call it: token, URLs, the contract's examples, envelope checks."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import jwt
from flask import Flask
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from werkzeug.test import TestResponse

from zdm_monitor.api.errors import error_codes

SECRET = "test-secret-that-is-long-enough-for-hs256"
JOB_URL = "/api/backups/monitoring/job/"
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


# The demo's scheduled job (3), not started yet: every time is its placeholder.
SCHEDULED_PROGRESS = {
    "status": "scheduled",
    "percent": "0%",
    "message": "-",
    "start": "-",
    "elapsed": "-",
    "end": "-",
}
SCHEDULED_EXAMPLE: dict[str, Any] = {
    "system": {"name": "linux-server-01"},
    "job": {
        "info": {"name": "weekly-smart", "partition": "/var/log"},
        "progressInfo": SCHEDULED_PROGRESS,
        "log": [],
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


GetJob = Callable[..., Any]


MakeApp = Callable[..., Flask]


BULK_PROGRESS = {
    "status": "processing",
    "percent": "45%",
    "message": "Copying /data",
    "start": "2025-01-15 01:00:00",
    "elapsed": "00:41:40",
    "end": "-",
}


SUCCESS_KEYS = ["success", "requestID", "data", "message", "timestamp"]


ERROR_KEYS = ["requestID", "success", "error", "timestamp", "code"]


def assert_success(response: Any, message: str = "Backup monitoring info") -> dict[str, Any]:
    """The success envelope's data, once every other key of the envelope is checked."""
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == SUCCESS_KEYS
    assert body["success"] is True
    assert body["message"] == message
    assert body["requestID"] == response.headers["X-Request-ID"]
    assert TIMESTAMP.fullmatch(body["timestamp"])
    return body["data"]  # type: ignore[no-any-return]


def assert_error(response: Any, status: int, code: str, error: str | None = None) -> Any:
    """The error envelope, in the contract's key order; returns the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body)[:5] == ERROR_KEYS
    assert set(body) <= {*ERROR_KEYS, "details"}
    assert body["success"] is False
    assert body["code"] == code
    assert error_codes()[code][0] == status, "as the OpenAPI document lists it"
    assert body["requestID"] == response.headers["X-Request-ID"]
    assert TIMESTAMP.fullmatch(body["timestamp"])
    if error is not None:
        assert body["error"] == error
    text = response.get_data(as_text=True)
    assert "<html" not in text.lower() and "Traceback" not in text
    return body


def assert_invalid(response: Any, *params: str) -> Any:
    """A 400 REQUEST-ERROR-01 whose error and details name each parameter."""
    body = assert_error(response, 400, "REQUEST-ERROR-01")
    for param in params:
        assert param in body["error"]
        assert param in body["details"]
        assert body["details"][param] and all(isinstance(w, str) for w in body["details"][param])
    return body


def pagination(response: Any) -> dict[str, int]:
    return json.loads(response.headers["X-Pagination"])  # type: ignore[no-any-return]


def lines(numbers: Iterable[int]) -> list[str]:
    return [f"line {n}" for n in numbers]


def add_job(
    db: connection,
    job_id: int,
    name: str,
    *,
    server_id: int = 1,
    mode: str = "full",
    partition: str | None = "/srv",
    drive: str | None = None,
    repository_id: int | None = 1,
    status: str | None = "processing",
    percent: int = 0,
    message: str | None = None,
    started: str | None = None,
    ended: str | None = None,
    last_report: str | None = None,
    log: dict[int, str] | None = None,
) -> None:
    """Insert a job's definition, runtime (unless status is None) and log lines."""
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO backup (id, name, server_id, mode, partition, drive, repository_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (job_id, name, server_id, mode, partition, drive, repository_id),
        )
        if status is not None:
            cur.execute(
                "INSERT INTO backup_info (backup_id, status, percent, message, started_at,"
                " ended_at, last_report_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (job_id, status, percent, message, started, ended, last_report),
            )
        for line, text in (log or {}).items():
            cur.execute(
                "INSERT INTO backup_log (backup_id, line, logged_at, message)"
                " VALUES (%s, %s, now(), %s)",
                (job_id, line, text),
            )


def sample(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
