"""API tests of the monitoring endpoint through the real app and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

LINUX_EXAMPLE = {
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
WINDOWS_EXAMPLE = {
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


def assert_success(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert list(body) == ["success", "requestID", "data", "message", "timestamp"]
    assert body["success"] is True
    assert body["message"] == "Backup monitoring info"
    assert body["requestID"] == response.headers["X-Request-ID"]
    return body["data"]  # type: ignore[no-any-return]


def test_seed_example_by_id(get_job: Any) -> None:
    assert assert_success(get_job("1")) == LINUX_EXAMPLE


def test_seed_example_by_name(get_job: Any) -> None:
    assert assert_success(get_job("daily-backup")) == LINUX_EXAMPLE


def test_windows_example(get_job: Any) -> None:
    assert assert_success(get_job("daily-backup-win")) == WINDOWS_EXAMPLE


def test_pagination_header_on_seed_example(get_job: Any) -> None:
    meta = json.loads(get_job("1").headers["X-Pagination"])
    assert meta == {"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1}
