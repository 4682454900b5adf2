"""Polling dashboards: ETag and 304, the log cursor, sort, detail, poll pace and CORS."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import (
    BULK_PROGRESS,
    JOB_URL,
    LINUX_EXAMPLE,
    PROGRESS_KEYS,
    WINDOWS_EXAMPLE,
    GetJob,
    MakeApp,
    add_job,
    assert_error,
    assert_invalid,
    assert_success,
    bearer,
    fetch,
    lines,
    pagination,
)
from support.jobs import START, at, bulk, snapshot
from support.pgwire import CountingProxy
from werkzeug.test import TestResponse

from zdm_monitor.api import payloads as serializers
from zdm_monitor.api.polling import is_stalled, log_cursor, poll_interval
from zdm_monitor.data.repository import JobSnapshot

WEAK_TAG = re.compile(r'W/"[0-9]+\.[0-9a-f]{24}"')
# What a 304 repeats from its 200 (X-Request-ID is the request's own).
REPEATED_HEADERS = ("ETag", "Cache-Control", "X-Pagination", "X-Log-Cursor", "X-Poll-Interval")
BULK_PAGES = {"total": 250, "total_pages": 13, "first_page": 1, "last_page": 13}
ORIGIN = "https://ops.example"
EXPOSED = {"ETag", "X-Pagination", "X-Request-ID", "X-Log-Cursor", "X-Log-Gap", "X-Poll-Interval"}
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization, if-none-match",
}
SMB_PATH = "\\\\backup-server\\backups"
NFS_REPOSITORY = {"type": "nfs", "path": "/backup/linux-server-01"}
BULK_START = datetime(2025, 1, 15, 1, 0, 0)


def if_none_match(tag: str) -> dict[str, str]:
    return {"If-None-Match": tag}


def cursor(response: TestResponse) -> int:
    return int(response.headers["X-Log-Cursor"])


def log_of(response: TestResponse) -> list[str]:
    log: list[str] = assert_success(response)["job"]["log"]
    return log


def execute(db: connection, statement: str, *params: Any) -> None:
    with db.cursor() as cur:
        cur.execute(statement, params)


def append_lines(db: connection, job_id: int, first: int, last: int) -> None:
    """Add lines first..last ('line N') to the job, as the agent does."""
    execute(
        db,
        "INSERT INTO backup_log (backup_id, line, message)"
        " SELECT %s, n, 'line ' || n FROM generate_series(%s, %s) AS n",
        job_id,
        first,
        last,
    )


def prune_bulk_log(db: connection, through: int) -> None:
    execute(db, "DELETE FROM backup_log WHERE backup_id = 4 AND line <= %s", through)


def set_bulk_status(db: connection, status: str) -> None:
    execute(db, "UPDATE backup_info SET status = %s WHERE backup_id = 4", status)


def bulk_entry(line: int) -> dict[str, Any]:
    """The detail=true log entry of bulk-data's line N (written 10 s apart from 01:00:00)."""
    moment = BULK_START + timedelta(seconds=10 * line)
    return {"line": line, "time": f"{moment:%Y-%m-%d %H:%M:%S}", "message": f"line {line}"}


def with_detail(
    example: dict[str, Any],
    *,
    server: tuple[int, str],
    job: tuple[int, str],
    report: tuple[str, bool],
    repository: dict[str, str],
    entries: list[tuple[int, str, str]],
) -> dict[str, Any]:
    """The example body with detail=true's fields: (id, os), (id, mode), (lastReport, stalled)."""
    data = copy.deepcopy(example)
    data["system"].update(id=server[0], os=server[1])
    data["job"]["info"].update(id=job[0], mode=job[1])
    data["job"]["progressInfo"].update(lastReport=report[0], stalled=report[1])
    data["job"].update(
        repository=repository,
        logEntries=[{"line": n, "time": time, "message": text} for n, time, text in entries],
    )
    return data


# --- ETag ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["1", "2", "3", "5", "bulk-data?page=2", "4?detail=true", "4?after=0&sort=desc"]
)
def test_every_200_has_a_weak_etag_and_no_cache(get_job: GetJob, path: str) -> None:
    identifier, _, query = path.partition("?")
    response = get_job(identifier, query)
    assert response.status_code == 200
    assert WEAK_TAG.fullmatch(response.headers["ETag"]), response.headers["ETag"]
    assert response.headers["Cache-Control"] == "private, no-cache"


def test_etag_is_the_same_across_polls_and_app_instances(
    get_job: GetJob, make_app: MakeApp
) -> None:
    tag = get_job("4", "detail=true").headers["ETag"]
    assert get_job("4", "detail=true").headers["ETag"] == tag
    assert fetch(make_app().test_client(), "4", "detail=true").headers["ETag"] == tag


CHANGES = {
    "percent": "UPDATE backup_info SET percent = 46 WHERE backup_id = 4",
    "status": "UPDATE backup_info SET status = 'canceling' WHERE backup_id = 4",
    "message": "UPDATE backup_info SET message = 'Copying /data/b' WHERE backup_id = 4",
    "last report": "UPDATE backup_info SET last_report_at = last_report_at + interval '1 s'"
    " WHERE backup_id = 4",
    "end": "UPDATE backup_info SET ended_at = now() WHERE backup_id = 4",
    "line added": "INSERT INTO backup_log (backup_id, line, message) VALUES (4, 251, 'line 251')",
    "line pruned": "DELETE FROM backup_log WHERE backup_id = 4 AND line = 1",
    "partition": "UPDATE backup SET partition = '/data2' WHERE id = 4",
    "mode": "UPDATE backup SET mode = 'smart' WHERE id = 4",
    "repository": "UPDATE backup SET repository_id = 2 WHERE id = 4",
    "server name": "UPDATE server SET name = 'linux-server-99' WHERE id = 1",
}


@pytest.mark.parametrize(
    ("query", "change"),
    [("detail=true", change) for change in CHANGES]
    + [("after=250", change) for change in ("percent", "line added", "line pruned")],
)
def test_a_change_makes_the_held_tag_stale(
    get_job: GetJob, db: connection, query: str, change: str
) -> None:
    held = get_job("4", query).headers["ETag"]
    execute(db, CHANGES[change])
    response = get_job("4", query, **if_none_match(held))
    assert response.status_code == 200
    assert response.headers["ETag"] != held


QUERIES = [
    "",
    "page=2",
    "limit=10",
    "detail=true",
    "sort=desc",
    "after=0",
    "after=5",
    "after=5&limit=10",
    "mode=full",
    "partition=/data",
    "server=1",
    "status=processing",
]


def test_etag_differs_between_queries(get_job: GetJob) -> None:
    tags = [get_job("4", query).headers["ETag"] for query in QUERIES]
    assert len(set(tags)) == len(QUERIES)


def test_etag_differs_between_zones(make_app: MakeApp) -> None:
    zones = ("UTC", "Asia/Seoul", "America/New_York")
    tags = {fetch(make_app(ZDM_TIMEZONE=zone).test_client(), "4").headers["ETag"] for zone in zones}
    assert len(tags) == len(zones)


# --- 304 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    ["{tag}", "{strong}", '"other", {tag}', '{strong}, W/"other"', "*"],
    ids=["weak", "strong form", "one of several", "strong among several", "star"],
)
def test_current_tag_gives_304_without_body(get_job: GetJob, form: str) -> None:
    first = get_job("4", "after=240&limit=5")
    tag = first.headers["ETag"]
    header = form.format(tag=tag, strong=tag.removeprefix("W/"))
    response = get_job("4", "after=240&limit=5", **if_none_match(header))
    assert response.status_code == 304
    assert response.data == b""
    assert "Content-Type" not in response.headers
    for name in REPEATED_HEADERS:
        assert response.headers[name] == first.headers[name], name
    assert response.headers["X-Poll-Interval"] == "5"
    assert response.headers["X-Log-Cursor"] == "245"
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("header", ['""', 'W/""', "W/", "not-a-validator", '"1.abc", ""', "12345"])
@pytest.mark.parametrize("path", ["4", "/system/1"])
def test_a_validator_of_no_content_or_another_service_gives_200(
    client: FlaskClient, header: str, path: str
) -> None:
    url = f"/api/backups/monitoring{path}" if path.startswith("/") else f"{JOB_URL}{path}"
    response = client.get(url, headers={**bearer(), "If-None-Match": header})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["success"] is True


def test_stale_tag_gives_200(get_job: GetJob) -> None:
    tag = get_job("4", "page=2").headers["ETag"]
    response = get_job("4", "page=3", **if_none_match(tag))
    assert response.status_code == 200
    assert log_of(response) == lines(range(191, 211))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_304_needs_the_token_first(
    client: FlaskClient, get_job: GetJob, headers: dict[str, str]
) -> None:
    tag = get_job("4").headers["ETag"]
    for held in (tag, "*"):
        response = client.get(JOB_URL + "4", headers={**headers, **if_none_match(held)})
        assert_error(response, 401, "AUTH-ERROR-01")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("999", 404, "JOB-ERROR-01"),
        ("1?mode=smart", 404, "JOB-ERROR-01"),
        ("6", 400, "JOB-ERROR-20"),
        ("7", 400, "JOB-ERROR-20"),
        ("4?sort=up", 400, "REQUEST-ERROR-01"),
        ("4?after=251&page=2", 400, "REQUEST-ERROR-01"),
    ],
)
def test_errors_are_never_304(get_job: GetJob, path: str, status: int, code: str) -> None:
    identifier, _, query = path.partition("?")
    response = get_job(identifier, query, **if_none_match("*"))
    assert_error(response, status, code)
    assert "ETag" not in response.headers


def test_304_path_builds_no_body(get_job: GetJob, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    build = serializers.monitoring_payload

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        built.append(args[0].job_id)
        return build(*args, **kwargs)

    monkeypatch.setattr(serializers, "monitoring_payload", counting)
    tag = get_job("4", "detail=true").headers["ETag"]
    assert built == [4]
    assert get_job("4", "detail=true", **if_none_match(tag)).status_code == 304
    assert built == [4]


# --- Log cursor ---------------------------------------------------------------------------


def test_after_zero_starts_at_line_one(get_job: GetJob) -> None:
    response = get_job("bulk-data", "after=0&limit=20")
    assert log_of(response) == lines(range(1, 21))
    assert cursor(response) == 20
    assert "X-Log-Gap" not in response.headers
    # The pages that page counts with a cursor: here every line is after it.
    assert pagination(response) == {**BULK_PAGES, "page": 1, "next_page": 2}


@pytest.mark.parametrize("limit", [37, 250, 1000])
def test_walking_the_log_by_cursor_collects_every_line_once(get_job: GetJob, limit: int) -> None:
    seen: list[str] = []
    after = 0
    while page := log_of(response := get_job("bulk-data", f"after={after}&limit={limit}")):
        seen += page
        after = cursor(response)
    assert seen == lines(range(1, 251))
    assert cursor(response) == 250


def test_cursor_survives_lines_arriving_between_polls(get_job: GetJob, db: connection) -> None:
    seen: list[str] = []
    after, last = 240, 250
    for poll in range(30):
        response = get_job("4", f"after={after}&limit=5")
        seen += log_of(response)
        after = cursor(response)
        if poll < 10:
            append_lines(db, 4, last + 1, last + 3)
            last += 3
    assert log_of(response) == []
    assert seen == lines(range(241, last + 1))
    assert after == last == 280


def test_cursor_at_the_end_returns_nothing_and_keeps_the_cursor(get_job: GetJob) -> None:
    response = get_job("4", "after=250")
    assert log_of(response) == []
    assert cursor(response) == 250
    assert "X-Log-Gap" not in response.headers
    assert pagination(response) == {"total": 0, "total_pages": 0}


@pytest.mark.parametrize("after", [251, 1000, 2147483647])
def test_cursor_past_the_end_is_a_400_naming_the_newest_line(get_job: GetJob, after: int) -> None:
    body = assert_error(get_job("4", f"after={after}"), 400, "REQUEST-ERROR-01")
    assert body["details"] == {"after": ["마지막 로그 줄 번호(250)보다 클 수 없습니다."]}


@pytest.mark.parametrize(
    ("after", "first", "gap"),
    [(0, 101, True), (50, 101, True), (99, 101, True), (100, 101, False), (150, 151, False)],
)
def test_cursor_after_pruning(
    get_job: GetJob, db: connection, after: int, first: int, gap: bool
) -> None:
    prune_bulk_log(db, 100)
    response = get_job("4", f"after={after}&limit=10")
    assert log_of(response) == lines(range(first, first + 10))
    assert cursor(response) == first + 9
    assert response.headers.get("X-Log-Gap") == ("true" if gap else None)


def test_a_304_after_a_gap_carries_no_gap(get_job: GetJob, db: connection) -> None:
    """X-Log-Gap belongs to the 200 that delivered the lines after the gap."""
    prune_bulk_log(db, 100)
    first = get_job("4", "after=10&limit=10")
    assert first.headers["X-Log-Gap"] == "true"
    again = get_job("4", "after=10&limit=10", **if_none_match(first.headers["ETag"]))
    assert again.status_code == 304
    assert "X-Log-Gap" not in again.headers
    assert again.headers["X-Log-Cursor"] == first.headers["X-Log-Cursor"]


@pytest.mark.parametrize("query", ["", "page=8", "page=99"])
def test_no_gap_without_a_cursor(get_job: GetJob, db: connection, query: str) -> None:
    prune_bulk_log(db, 100)
    assert "X-Log-Gap" not in get_job("4", query).headers


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("3", "0"),
        ("3?page=2", "0"),
        ("3?after=7", "7"),
        ("1", "3"),
        ("4", "250"),
        ("4?page=2", "230"),
        ("4?page=14", "0"),  # past the end: every 200 carries a cursor, the line before the oldest
    ],
    ids=["empty log", "empty log page 2", "empty log after", "seed", "page 1", "page 2", "past"],
)
def test_cursor_header_in_page_mode(get_job: GetJob, path: str, expected: str) -> None:
    identifier, _, query = path.partition("?")
    assert get_job(identifier, query).headers.get("X-Log-Cursor") == expected


# --- after with page: pages of limit lines after the cursor ---------------------------------


def test_after_with_page_counts_pages_after_the_cursor(get_job: GetJob) -> None:
    """The contract's example: page 2 of one line after line 1 of a 3-line log is line 3."""
    response = get_job("1", "after=1&page=2&limit=1")
    assert log_of(response) == ["Backup completed"]
    assert cursor(response) == 3
    assert pagination(response) == {
        "total": 2,
        "total_pages": 2,
        "first_page": 1,
        "last_page": 2,
        "page": 2,
        "previous_page": 1,
    }
    assert log_of(get_job("1", "after=1&page=1&limit=1")) == ["Processing files..."]


@pytest.mark.parametrize(
    ("query", "numbers", "pages"),
    [
        ("after=100&page=1&limit=37", range(101, 138), {"page": 1, "next_page": 2}),
        (
            "after=100&page=2&limit=37",
            range(138, 175),
            {"page": 2, "previous_page": 1, "next_page": 3},
        ),
        ("after=100&page=5&limit=37", range(249, 251), {"page": 5, "previous_page": 4}),
        ("after=100&page=6&limit=37", range(0), {}),
    ],
    ids=["page 1", "page 2", "last page", "past the end"],
)
def test_pages_after_a_cursor(
    get_job: GetJob, query: str, numbers: range, pages: dict[str, int]
) -> None:
    response = get_job("4", query)
    assert log_of(response) == lines(numbers)
    # Past the end: the pages before reach the newest line, which is where the client is left.
    assert cursor(response) == (numbers[-1] if numbers else 250)
    assert "X-Log-Gap" not in response.headers
    base = {"total": 150, "total_pages": 5, "first_page": 1, "last_page": 5}
    assert pagination(response) == {**base, **pages}


def test_walking_the_pages_after_a_fixed_cursor_collects_every_line_once(get_job: GetJob) -> None:
    seen: list[str] = []
    page = 1
    while True:
        response = get_job("4", f"after=40&page={page}&limit=30")
        seen += log_of(response)
        following = pagination(response).get("next_page")
        if following is None:
            break
        assert following == page + 1
        page = following
    assert seen == lines(range(41, 251))
    assert page == 7


@pytest.mark.parametrize(
    ("after", "page", "numbers", "gap"),
    [
        (50, 1, range(101, 111), True),
        (50, 2, range(111, 121), True),
        (120, 2, range(131, 141), False),
    ],
)
def test_pages_after_a_pruned_cursor_count_from_the_oldest_kept_line(
    get_job: GetJob, db: connection, after: int, page: int, numbers: range, gap: bool
) -> None:
    prune_bulk_log(db, 100)
    response = get_job("4", f"after={after}&page={page}&limit=10")
    assert log_of(response) == lines(numbers)
    assert cursor(response) == numbers[-1]
    assert response.headers.get("X-Log-Gap") == ("true" if gap else None)
    assert pagination(response)["total"] == 250 - max(after, 100)


def test_after_with_page_sorts_and_keeps_the_newest_as_cursor(get_job: GetJob) -> None:
    response = get_job("4", "after=10&page=3&limit=5&sort=desc")
    assert log_of(response) == lines(range(25, 20, -1))
    assert cursor(response) == 25


def test_each_page_after_a_cursor_has_its_own_tag_and_a_poll_past_the_end_is_a_304(
    get_job: GetJob, db: connection
) -> None:
    first = get_job("4", "after=240&page=1&limit=5")
    second = get_job("4", "after=240&page=2&limit=5")
    assert first.headers["ETag"] != second.headers["ETag"]
    assert (cursor(first), cursor(second)) == (245, 250)
    # Following the cursor with the same page: nothing after it, the same place: a 304.
    tag = second.headers["ETag"]
    again = get_job("4", "after=250&page=2&limit=5", **if_none_match(tag))
    assert again.status_code == 304
    assert cursor(again) == 250
    # New lines: that page of them.
    append_lines(db, 4, 251, 262)
    moved = get_job("4", "after=250&page=2&limit=5", **if_none_match(tag))
    assert log_of(moved) == lines(range(256, 261))
    assert cursor(moved) == 260


@pytest.mark.parametrize(("query", "first"), [("after=5&page=", 6), ("after=&page=13", 1)])
def test_after_or_page_left_empty_counts_as_not_given(
    get_job: GetJob, query: str, first: int
) -> None:
    assert log_of(get_job("4", query))[0] == f"line {first}"


@pytest.mark.parametrize("query", ["after=251&page=1", "after=251&page=3", "page=2&after=1000"])
def test_a_cursor_past_the_newest_line_is_refused_whatever_the_page(
    get_job: GetJob, query: str
) -> None:
    body = assert_invalid(get_job("4", query), "after")
    assert body["details"] == {"after": ["마지막 로그 줄 번호(250)보다 클 수 없습니다."]}


def test_the_largest_cursor_with_the_last_page_is_answered(get_job: GetJob, db: connection) -> None:
    """The cursor plus the skipped pages pass the SQL integer's range: counted in bigint."""
    add_job(db, 100, "long-log", log={2147483647: "the last line there can be"})
    response = get_job("long-log", "after=2147483647&page=100000&limit=1000")
    assert log_of(response) == []
    assert cursor(response) == 2147483647


@pytest.mark.parametrize("value", ["-1", "2147483648", "abc", "1.5", "9" * 20])
def test_after_out_of_range_is_refused(get_job: GetJob, value: str) -> None:
    body = assert_invalid(get_job("4", f"after={value}"), "after")
    assert body["details"]["after"] == ["0부터 2147483647까지의 정수여야 합니다."]


# --- sort ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "numbers", "newest"),
    [
        ("sort=desc", range(250, 230, -1), 250),
        ("sort=DESC", range(250, 230, -1), 250),
        ("sort=desc&page=2", range(230, 210, -1), 230),
        ("after=10&limit=5&sort=desc", range(15, 10, -1), 15),
        ("after=10&limit=5&sort=Asc", range(11, 16), 15),
        ("sort=asc", range(231, 251), 250),
    ],
)
def test_sort_orders_the_lines_and_the_cursor_stays_the_newest(
    get_job: GetJob, query: str, numbers: range, newest: int
) -> None:
    response = get_job("4", query)
    assert log_of(response) == lines(numbers)
    assert cursor(response) == newest


def test_sort_asc_is_the_default(get_job: GetJob) -> None:
    assert assert_success(get_job("2", "sort=asc")) == WINDOWS_EXAMPLE


def test_unknown_sort_is_refused(get_job: GetJob) -> None:
    body = assert_invalid(get_job("4", "sort=up"), "sort")
    assert body["details"]["sort"] == ["asc, desc 중 하나여야 합니다."]


# --- detail=true --------------------------------------------------------------------------


STARTING = (1, "2025-01-15 02:00:00", "Starting backup...")
PROCESSING = (2, "2025-01-15 02:00:05", "Processing files...")
LINUX_DETAIL = with_detail(
    LINUX_EXAMPLE,
    server=(1, "linux"),
    job=(1, "full"),
    report=("2025-01-15 02:30:00", False),
    repository=NFS_REPOSITORY,
    entries=[STARTING, PROCESSING, (3, "2025-01-15 02:30:00", "Backup completed")],
)
# Processing, last report in 2025: long past ZDM_STALL_SECONDS.
WINDOWS_DETAIL = with_detail(
    WINDOWS_EXAMPLE,
    server=(2, "windows"),
    job=(2, "increment"),
    report=("2025-01-15 02:20:00", True),
    repository={"type": "smb", "path": SMB_PATH},
    entries=[STARTING, PROCESSING],
)
BULK_DETAIL = {
    "system": {"name": "linux-server-01", "id": 1, "os": "linux"},
    "job": {
        "info": {"name": "bulk-data", "partition": "/data", "id": 4, "mode": "full"},
        "progressInfo": {**BULK_PROGRESS, "lastReport": "2025-01-15 01:41:40", "stalled": True},
        "log": lines(range(231, 251)),
        "repository": NFS_REPOSITORY,
        "logEntries": [bulk_entry(n) for n in range(231, 251)],
    },
}


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [("1", LINUX_DETAIL), ("daily-backup-win", WINDOWS_DETAIL), ("4", BULK_DETAIL)],
)
def test_detail_adds_its_fields_after_the_contract_s(
    get_job: GetJob, identifier: str, expected: dict[str, Any]
) -> None:
    data = assert_success(get_job(identifier, "detail=true"))
    assert data == expected
    assert list(data["system"]) == ["name", "id", "os"]
    assert list(data["job"]) == ["info", "progressInfo", "log", "repository", "logEntries"]
    assert list(data["job"]["info"])[-2:] == ["id", "mode"]
    assert list(data["job"]["progressInfo"]) == [*PROGRESS_KEYS, "lastReport", "stalled"]


@pytest.mark.parametrize(
    ("path", "example"),
    [
        ("1?detail=false", LINUX_EXAMPLE),
        ("1?detail=0", LINUX_EXAMPLE),
        ("2?detail=FALSE", WINDOWS_EXAMPLE),
        ("2?detail=", WINDOWS_EXAMPLE),
    ],
)
def test_without_detail_the_body_is_the_contract_s(
    get_job: GetJob, path: str, example: dict[str, Any]
) -> None:
    identifier, _, query = path.partition("?")
    assert assert_success(get_job(identifier, query)) == example


def test_detail_times_follow_the_zone(make_app: MakeApp) -> None:
    response = fetch(make_app(ZDM_TIMEZONE="Asia/Seoul").test_client(), "2", "detail=true")
    job = assert_success(response)["job"]
    assert job["progressInfo"]["lastReport"] == "2025-01-15 11:20:00"
    assert [e["time"] for e in job["logEntries"]] == ["2025-01-15 11:00:00", "2025-01-15 11:00:05"]


@pytest.mark.parametrize(
    ("query", "numbers"),
    [
        ("detail=true", range(231, 251)),
        ("detail=true&sort=desc", range(250, 230, -1)),
        ("detail=1&after=100&limit=7", range(101, 108)),
        ("detail=TRUE&after=100&limit=7&sort=desc", range(107, 100, -1)),
        ("detail=true&page=3&limit=30", range(161, 191)),
        ("detail=true&after=250", range(0)),
    ],
)
def test_log_entries_are_the_lines_of_log(get_job: GetJob, query: str, numbers: range) -> None:
    job = assert_success(get_job("4", query))["job"]
    assert job["logEntries"] == [bulk_entry(n) for n in numbers]
    assert [entry["message"] for entry in job["logEntries"]] == job["log"]


def test_detail_of_a_job_not_started(get_job: GetJob) -> None:
    job = assert_success(get_job("weekly-smart", "detail=true"))["job"]
    assert job["progressInfo"]["lastReport"] == "-"
    assert job["progressInfo"]["stalled"] is False
    assert job["log"] == job["logEntries"] == []


def test_detail_of_a_job_without_repository(get_job: GetJob, db: connection) -> None:
    add_job(db, 100, "no-repo", repository_id=None, log={1: "only"})
    job = assert_success(get_job("no-repo", "detail=true"))["job"]
    assert job["repository"] is None
    assert [entry["line"] for entry in job["logEntries"]] == [1]


AGE_RUNTIME = """
UPDATE backup_info
SET status = %s,
    started_at = now() - make_interval(secs => %s),
    last_report_at = now() - make_interval(secs => %s)
WHERE backup_id = 4
"""


@pytest.mark.parametrize(
    ("status", "started", "reported", "stall", "stalled"),
    [
        ("processing", 1000, 200, None, False),
        ("processing", 1000, 400, None, True),
        ("preparing", 1000, 400, None, True),
        ("processing", 1000, None, None, True),
        ("processing", 100, None, None, False),
        ("processing", None, None, None, False),
        ("processing", 1000, 30, "60", False),
        ("processing", 1000, 90, "60", True),
        ("canceling", 1000, 1000, None, False),
        ("scheduled", 1000, 1000, None, False),
        ("registered", 1000, 1000, None, False),
        ("complete", 1000, 1000, None, False),
        ("canceled", 1000, 1000, None, False),
        ("error", 1000, 1000, None, False),
    ],
    ids=[
        "reported within 300 s",
        "silent for over 300 s",
        "preparing and silent",
        "never reported, started long ago",
        "never reported, just started",
        "no times at all",
        "within a configured 60 s",
        "past a configured 60 s",
        "canceling is not watched",
        "scheduled",
        "registered",
        "complete",
        "canceled",
        "error",
    ],
)
def test_stalled(
    make_app: MakeApp,
    db: connection,
    status: str,
    started: int | None,
    reported: int | None,
    stall: str | None,
    stalled: bool,
) -> None:
    execute(db, AGE_RUNTIME, status, started, reported)
    response = fetch(make_app(ZDM_STALL_SECONDS=stall).test_client(), "4", "detail=true")
    assert assert_success(response)["job"]["progressInfo"]["stalled"] is stalled


# --- X-Poll-Interval ----------------------------------------------------------------------


# status -> X-Poll-Interval with the defaults, and with active 2 s and waiting 45 s
PACE: dict[str, tuple[str | None, str | None]] = {
    "preparing": ("5", "2"),
    "processing": ("5", "2"),
    "canceling": ("5", "2"),
    "scheduled": ("60", "45"),
    "registered": ("60", "45"),
    "complete": (None, None),
    "canceled": (None, None),
    "error": (None, None),
}
CONFIGURED_PACE = {"ZDM_POLL_ACTIVE_SECONDS": "2", "ZDM_POLL_WAITING_SECONDS": "45"}


@pytest.mark.parametrize("status", PACE)
@pytest.mark.parametrize("configured", [0, 1], ids=["defaults", "configured"])
def test_poll_interval_follows_the_status(
    make_app: MakeApp, db: connection, status: str, configured: int
) -> None:
    set_bulk_status(db, status)
    response = fetch(make_app(**(CONFIGURED_PACE if configured else {})).test_client(), "4")
    assert response.status_code == 200
    assert response.headers.get("X-Poll-Interval") == PACE[status][configured]


# --- CORS ---------------------------------------------------------------------------------


@pytest.fixture
def cors_client(make_app: MakeApp) -> FlaskClient:
    return make_app(ZDM_CORS_ORIGINS=ORIGIN).test_client()


def cors_headers(response: TestResponse) -> set[str]:
    names = {name for name, _ in response.headers.items()}
    return {name for name in names if name.lower().startswith("access-control")}


def header_list(response: TestResponse, name: str) -> set[str]:
    return {item.strip().lower() for item in response.headers[name].split(",")}


def test_no_cors_headers_by_default(client: FlaskClient) -> None:
    preflight = client.options(JOB_URL + "4", headers=PREFLIGHT)
    answer = fetch(client, "4", headers={"Origin": ORIGIN})
    for response in (preflight, answer):
        assert cors_headers(response) == set()
        assert "origin" not in {v.lower() for v in response.vary}


def test_preflight_needs_no_token(cors_client: FlaskClient) -> None:
    response = cors_client.options(JOB_URL + "4", headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.data == b""
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert {"authorization", "if-none-match"} <= header_list(
        response, "Access-Control-Allow-Headers"
    )
    assert response.headers["Access-Control-Allow-Methods"] == "GET"
    assert "Origin" in response.vary


def test_get_from_an_allowed_origin_exposes_the_polling_headers(cors_client: FlaskClient) -> None:
    response = fetch(cors_client, "4", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = header_list(response, "Access-Control-Expose-Headers")
    assert exposed == {name.lower() for name in EXPOSED}
    assert "Origin" in response.vary


def test_another_origin_is_not_allowed(cors_client: FlaskClient) -> None:
    other = {"Origin": "https://evil.example"}
    preflight = cors_client.options(JOB_URL + "4", headers={**PREFLIGHT, **other})
    answer = fetch(cors_client, "4", headers=other)
    assert answer.status_code == 200
    for response in (preflight, answer):
        assert cors_headers(response) == set()
        assert "Origin" in response.vary


def test_star_allows_any_origin(make_app: MakeApp) -> None:
    client = make_app(ZDM_CORS_ORIGINS="*").test_client()
    preflight = client.options(JOB_URL + "4", headers=PREFLIGHT)
    answer = fetch(client, "4", headers={"Origin": "https://anywhere.example"})
    assert preflight.status_code == 204
    for response in (preflight, answer):
        assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("4", {}, 401),
        ("999", bearer(), 404),
        ("4?sort=up", bearer(), 400),
        ("4", {**bearer(), "If-None-Match": "*"}, 304),
    ],
)
def test_every_answer_to_an_allowed_origin_is_readable(
    cors_client: FlaskClient, path: str, headers: dict[str, str], status: int
) -> None:
    response = cors_client.get(JOB_URL + path, headers={**headers, "Origin": ORIGIN})
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in header_list(response, "Access-Control-Expose-Headers")


# --- The dashboard replay (the acceptance check) ----------------------------------


POLLS = 100
LIMIT = 50
# poll -> (lines the agent appends, percent points it adds) just before that poll
WRITES = {7: (3, 0), 20: (0, 1), 33: (5, 2), 34: (1, 0), 60: (LIMIT, 0), 61: (0, 1), 90: (2, 1)}


def test_dashboard_replay_costs_304s_and_new_lines_only(
    wired: FlaskClient, proxy: CountingProxy, db: connection
) -> None:
    first = fetch(wired, "4", f"limit={LIMIT}&detail=true")
    seen = log_of(first)
    after, tag, last = cursor(first), first.headers["ETag"], 250
    full: list[int] = []
    body_bytes = {200: 0, 304: 0}
    proxy.take()
    for poll in range(POLLS):
        added, points = WRITES.get(poll, (0, 0))
        if added:
            append_lines(db, 4, last + 1, last + added)
            last += added
        if points:
            execute(db, "UPDATE backup_info SET percent = percent + %s WHERE backup_id = 4", points)
        response = fetch(wired, "4", f"after={after}&limit={LIMIT}", if_none_match(tag))
        body_bytes[response.status_code] += len(response.data)
        if response.status_code == 200:
            full.append(poll)
            new = log_of(response)
            assert new == lines(range(after + 1, after + 1 + len(new))), poll
            seen += new
            after, tag = cursor(response), response.headers["ETag"]
        else:
            assert response.status_code == 304, poll
    assert seen == lines(range(201, last + 1))
    # The first poll asks another question than the first load (a cursor, no detail), so it
    # is answered in full once; after that only a poll that follows a write gets a body.
    assert full == [0, *WRITES], f"answered in full at polls {full}"
    assert body_bytes[304] == 0
    assert body_bytes[200] > 0
    assert len(proxy.take()) == POLLS


# --- The rules, without HTTP: cursor, pace, stall -----------------------------------------


@pytest.mark.parametrize(
    ("job", "after", "expected"),
    [
        (bulk(range(231, 251)), None, (250, False)),
        (bulk(range(211, 231)), None, (230, False)),
        (bulk(range(0)), None, (0, False)),  # the line before the oldest: none
        (bulk(range(0), 51, 300), None, (50, False)),  # the oldest were pruned
        (bulk(range(0), None, None), None, (0, False)),
        (bulk(range(1, 21)), 0, (20, False)),
        (bulk(range(241, 251)), 240, (250, False)),
        (bulk(range(0)), 250, (250, False)),
        (bulk(range(0), None, None), 7, (7, False)),
        (bulk(range(101, 111), 101), 100, (110, False)),
        (bulk(range(101, 111), 101), 99, (110, True)),
        (bulk(range(101, 111), 101), 0, (110, True)),
        (bulk(range(111, 121), 101), 50, (120, True)),  # page 2 after a pruned cursor
        (bulk(range(131, 141), 101), 120, (140, False)),  # page 2 after 120
        (bulk(range(0)), 100, (250, False)),  # a page past the end after 100
        (bulk(range(0), 101), 50, (250, True)),  # the same after a pruned cursor
        (bulk(range(0), 1, 240), 245, (245, False)),  # a replica behind the cursor
    ],
    ids=[
        "page 1",
        "page 2",
        "page past the end",
        "page past the end of a pruned log",
        "empty log",
        "after 0",
        "after, the rest",
        "after, nothing new",
        "after, empty log",
        "after, next line kept",
        "after, one line pruned unseen",
        "after 0, start pruned",
        "after, page 2, pruned",
        "after, page 2",
        "after, page past the end",
        "after, page past the end, pruned",
        "after, a replica behind",
    ],
)
def test_log_cursor(job: JobSnapshot, after: int | None, expected: tuple[int | None, bool]) -> None:
    assert log_cursor(job, after) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("preparing", 5),
        ("processing", 5),
        ("canceling", 5),
        ("scheduled", 60),
        ("registered", 60),
        ("complete", None),
        ("canceled", None),
        ("error", None),
    ],
)
def test_poll_interval(status: str, expected: int | None) -> None:
    assert poll_interval(status, 5, 60) == expected
    custom = None if expected is None else (1 if expected == 5 else 2)
    assert poll_interval(status, 1, 2) == custom


NOW = at(hours=1)


@pytest.mark.parametrize(
    ("status", "started", "reported", "expected"),
    [
        ("processing", START, NOW - timedelta(seconds=300), False),
        ("processing", START, NOW - timedelta(seconds=300, microseconds=1), True),
        ("processing", START, NOW - timedelta(seconds=301), True),
        ("preparing", START, NOW - timedelta(seconds=301), True),
        ("processing", START, NOW, False),  # a recent report wins over an old start
        ("processing", NOW - timedelta(seconds=300), None, False),
        ("processing", NOW - timedelta(seconds=301), None, True),
        ("processing", None, None, False),
        ("canceling", START, START, False),
        ("scheduled", START, START, False),
        ("registered", START, START, False),
        ("complete", START, START, False),
        ("canceled", START, START, False),
        ("error", START, START, False),
    ],
    ids=[
        "exactly the limit",
        "just past the limit",
        "a second past",
        "preparing",
        "just reported",
        "no report, started exactly at the limit",
        "no report, started before the limit",
        "no times",
        "canceling",
        "scheduled",
        "registered",
        "complete",
        "canceled",
        "error",
    ],
)
def test_is_stalled(
    status: str, started: datetime | None, reported: datetime | None, expected: bool
) -> None:
    job = snapshot(status=status, started_at=started, last_report_at=reported, ended_at=None)
    assert is_stalled(job, NOW, 300) is expected


def test_a_cursor_past_the_newest_line_is_a_400_naming_it(client: FlaskClient) -> None:
    response = client.get(f"{JOB_URL}bulk-data?after=251", headers=bearer())
    body = assert_error(response, 400, "REQUEST-ERROR-01")
    assert body["details"] == {"after": ["마지막 로그 줄 번호(250)보다 클 수 없습니다."]}
    at_the_end = client.get(f"{JOB_URL}bulk-data?after=250", headers=bearer())
    assert at_the_end.status_code == 200
    assert at_the_end.headers["X-Log-Cursor"] == "250"


def test_a_cursor_on_an_empty_log_is_answered_as_before(client: FlaskClient) -> None:
    response = client.get(f"{JOB_URL}weekly-smart?after=99", headers=bearer())
    assert response.status_code == 200
    assert response.get_json()["data"]["job"]["log"] == []
    assert response.headers["X-Log-Cursor"] == "99"


@pytest.mark.parametrize("query", ["page=99&limit=100", "page=4&limit=100", "page=2"])
def test_every_200_carries_a_cursor_a_page_past_the_end_too(
    client: FlaskClient, query: str
) -> None:
    response = client.get(f"{JOB_URL}bulk-data?{query}", headers=bearer())
    assert response.status_code == 200
    lines = response.get_json()["data"]["job"]["log"]
    expected = int(lines[-1].split()[-1]) if lines else 0
    assert response.headers["X-Log-Cursor"] == str(expected)
