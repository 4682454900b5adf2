"""The server view: every job of one server in one answer, as API.md's last section says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import (
    JOB_URL,
    LINUX_EXAMPLE,
    SCHEDULED_EXAMPLE,
    add_job,
    assert_error,
    assert_invalid,
    assert_success,
    bearer,
)

SERVER_URL = "/api/backups/monitoring/system/"

LINUX_SUMMARY = {
    "total": 3,
    "completed": 1,
    "inProgress": 1,
    "failed": 0,
    "pending": 1,
    "overallProgress": "48%",  # (100 + 0 + 45) / 3
    "incomplete": 1,  # orphan-definition: no backupInfo
}
WINDOWS_SUMMARY = {
    "total": 2,
    "completed": 0,
    "inProgress": 1,
    "failed": 1,
    "pending": 0,
    "overallProgress": "35%",  # (60 + 10) / 2
    "incomplete": 0,
}
LINUX_JOBS = [
    LINUX_EXAMPLE["job"],
    SCHEDULED_EXAMPLE["job"],
    {
        "info": {"name": "bulk-data", "partition": "/data"},
        "progressInfo": {
            "status": "processing",
            "percent": "45%",
            "message": "Copying /data",
            "start": "2025-01-15 01:00:00",
            "elapsed": "00:41:40",
            "end": "-",
        },
        "log": [f"line {n}" for n in range(241, 251)],  # the newest 10, oldest first
    },
]


def get(client: FlaskClient, identifier: str, query: str = "", **headers: str) -> Any:
    url = f"{SERVER_URL}{identifier}" + (f"?{query}" if query else "")
    return client.get(url, headers={**bearer(), **headers})


def data_of(response: Any) -> dict[str, Any]:
    return assert_success(response, "Server backup monitoring info")


@pytest.mark.parametrize("identifier", ["linux-server-01", "1", "001"])
def test_linux_server_shows_its_three_complete_jobs_and_counts_the_incomplete_one(
    client: FlaskClient, identifier: str
) -> None:
    response = get(client, identifier)
    assert data_of(response) == {
        "system": {"name": "linux-server-01"},
        "summary": LINUX_SUMMARY,
        "job": LINUX_JOBS,
    }
    assert list(data_of(response)) == ["system", "summary", "job"]  # no pagination asked
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 3,
        "total_pages": 1,
        "first_page": 1,
        "last_page": 1,
        "page": 1,
    }
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["X-Poll-Interval"] == "5"  # the shortest: bulk-data processing


@pytest.mark.parametrize("identifier", ["windows-server-01", "2"])
def test_windows_server(client: FlaskClient, identifier: str) -> None:
    data = data_of(get(client, identifier, "detail=true"))
    assert data["system"] == {"name": "windows-server-01", "id": 2, "os": "windows"}
    assert data["summary"] == WINDOWS_SUMMARY
    assert [job["info"]["drive"] for job in data["job"]] == ["C:", "D:"]
    assert [job["progressInfo"]["status"] for job in data["job"]] == ["processing", "error"]


@pytest.mark.parametrize("query", ["", "detail=true", "logLimit=2", "logLimit=0&detail=true"])
def test_each_job_is_shaped_by_the_job_endpoint(client: FlaskClient, query: str) -> None:
    """One payload shape in one place: each element is the job endpoint's `job`."""
    data = data_of(get(client, "1", query))
    log_limit = dict(p.split("=") for p in query.split("&") if p).get("logLimit", "10")
    detail = "detail=true" in query
    for job in data["job"]:
        name = job["info"]["name"]
        if log_limit == "0":
            assert job["log"] == [] and job.get("logEntries", []) == []
            continue
        one = client.get(
            f"{JOB_URL}{name}?limit={log_limit}" + ("&detail=true" if detail else ""),
            headers=bearer(),
        )
        assert job == one.get_json()["data"]["job"], name


def test_pages_of_jobs_in_id_order(client: FlaskClient) -> None:
    first = data_of(get(client, "1", "limit=1"))
    assert first["job"] == LINUX_JOBS[:1]
    assert first["summary"] == LINUX_SUMMARY  # over every job, not the page
    assert first["pagination"] == {
        "currentPage": 1,
        "totalPages": 3,
        "totalItems": 3,
        "itemsPerPage": 1,
        "hasNextPage": True,
        "hasPreviousPage": False,
    }
    second = get(client, "1", "page=2&limit=1")
    assert data_of(second)["job"] == LINUX_JOBS[1:2]
    assert json.loads(second.headers["X-Pagination"]) == {
        "total": 3,
        "total_pages": 3,
        "first_page": 1,
        "last_page": 3,
        "page": 2,
        "previous_page": 1,
        "next_page": 3,
    }
    assert second.headers["X-Poll-Interval"] == "60"  # weekly-smart is scheduled
    last = data_of(get(client, "1", "page=3&limit=1"))
    assert last["pagination"]["hasNextPage"] is False
    assert last["pagination"]["hasPreviousPage"] is True
    past = get(client, "1", "page=4&limit=1")
    assert data_of(past)["job"] == [] and "X-Poll-Interval" not in past.headers
    assert data_of(get(client, "1", "page=1"))["pagination"]["itemsPerPage"] == 20


def test_a_page_of_finished_jobs_sends_no_poll_interval(client: FlaskClient) -> None:
    assert "X-Poll-Interval" not in get(client, "1", "status=complete").headers


@pytest.mark.parametrize(
    ("query", "names", "summary"),
    [
        ("status=RUN", ["bulk-data"], {"total": 1, "inProgress": 1, "overallProgress": "45%"}),
        (
            "mode=Full",
            ["daily-backup", "bulk-data"],
            {"total": 2, "completed": 1, "inProgress": 1, "incomplete": 1},
        ),
        ("partition=/var/log/", ["weekly-smart"], {"total": 1, "pending": 1, "incomplete": 0}),
        ("repositoryType=cifs", ["weekly-smart"], {"total": 1, "incomplete": 0}),
        ("jobName=daily-backup", ["daily-backup"], {"total": 1, "overallProgress": "100%"}),
        ("server=linux-server-01&repositoryPath=/backup/linux-server-01", None, {"total": 2}),
    ],
)
def test_the_job_filters_apply_to_each_job_and_to_the_summary(
    client: FlaskClient, query: str, names: list[str] | None, summary: dict[str, Any]
) -> None:
    data = data_of(get(client, "linux-server-01", query))
    if names is not None:
        assert [job["info"]["name"] for job in data["job"]] == names
    assert {key: data["summary"][key] for key in summary} == summary


@pytest.mark.parametrize(
    ("identifier", "query", "error"),
    [
        ("nobody", "", "서버 'nobody'에 등록된 Backup 작업을 찾을 수 없습니다."),
        ("99", "", "서버 '99'에 등록된 Backup 작업을 찾을 수 없습니다."),
        ("9" * 40, "", f"서버 '{'9' * 40}'에 등록된 Backup 작업을 찾을 수 없습니다."),
        (
            "linux-server-01",
            "partition=/nope",
            "서버 'linux-server-01'에 파티션 '/nope'에 해당하는 Backup 작업을 찾을 수 없습니다.",
        ),
        ("1", "drive=c", "서버 '1'에 드라이브 'C:'에 해당하는 Backup 작업을 찾을 수 없습니다."),
        ("1", "status=error", "서버 '1'에 조건에 맞는 Backup 작업을 찾을 수 없습니다."),
        (
            "windows-server-01",
            "drive=C&mode=smart",
            "서버 'windows-server-01'에 조건에 맞는 Backup 작업을 찾을 수 없습니다.",
        ),
    ],
)
def test_the_three_404s(client: FlaskClient, identifier: str, query: str, error: str) -> None:
    assert_error(get(client, identifier, query), 404, "JOB-ERROR-01", error)


def test_a_server_without_jobs_is_a_404(client: FlaskClient, db: connection) -> None:
    with db.cursor() as cur:
        cur.execute("INSERT INTO server (id, name, os) VALUES (90, 'empty-server', 'linux')")
    assert_error(
        get(client, "empty-server"),
        404,
        "JOB-ERROR-01",
        "서버 'empty-server'에 등록된 Backup 작업을 찾을 수 없습니다.",
    )


def test_an_incomplete_job_under_a_partition_filter_is_a_400(client: FlaskClient) -> None:
    assert_error(
        get(client, "linux-server-01", "partition=/home/"),
        400,
        "JOB-ERROR-20",
        "작업 데이터가 불완전합니다. 파티션 '/home' 에 대한 backup 또는 backupInfo 작업 정보를 "
        "찾을 수 없습니다.",
    )


def test_an_incomplete_job_under_a_drive_filter_is_a_400(
    client: FlaskClient, db: connection
) -> None:
    add_job(db, 50, "half-written", server_id=2, partition=None, drive="E:", status=None)
    assert_error(
        get(client, "windows-server-01", "drive=e"),
        400,
        "JOB-ERROR-20",
        "작업 데이터가 불완전합니다. 드라이브 'E:' 에 대한 backup 또는 backupInfo 작업 정보를 "
        "찾을 수 없습니다.",
    )
    # Without the filter the half-written job is only counted.
    data = data_of(get(client, "windows-server-01"))
    assert data["summary"]["incomplete"] == 1 and data["summary"]["total"] == 2


def test_jobs_added_to_a_server_show_in_its_view(client: FlaskClient, db: connection) -> None:
    add_job(
        db,
        60,
        "added-late",
        server_id=2,
        partition=None,
        drive="F:",
        percent=90,
        log={1: "one", 2: "two", 3: "three"},
    )
    data = data_of(get(client, "2", "logLimit=2"))
    assert [job["info"]["name"] for job in data["job"]][-1] == "added-late"
    assert data["job"][-1]["log"] == ["two", "three"]
    assert data["summary"]["overallProgress"] == "53%"  # (60 + 10 + 90) / 3 = 53.3


def test_an_unchanged_answer_is_a_304_and_a_change_is_not(
    client: FlaskClient, db: connection
) -> None:
    first = get(client, "1")
    tag = first.headers["ETag"]
    again = get(client, "1", **{"If-None-Match": tag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == tag
    assert again.headers["X-Poll-Interval"] == "5"
    other_query = get(client, "1", "logLimit=3", **{"If-None-Match": tag})
    assert other_query.status_code == 200
    with db.cursor() as cur:
        cur.execute("UPDATE backup_info SET percent = 46 WHERE backup_id = 4")
    changed = get(client, "1", **{"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert data_of(changed)["summary"]["overallProgress"] == "49%"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("page=0", "page"),
        ("logLimit=101", "logLimit"),
        ("logLimit=-1", "logLimit"),
        ("status=sleeping", "status"),
        ("partition=data", "partition"),
        ("detail=maybe", "detail"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_bad_parameters_are_the_job_endpoint_s_400(
    client: FlaskClient, query: str, param: str
) -> None:
    assert_invalid(get(client, "1", query), param)


def test_a_token_is_required(client: FlaskClient) -> None:
    assert_error(client.get(SERVER_URL + "1"), 401, "AUTH-ERROR-01")
