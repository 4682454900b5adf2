"""API tests of the monitoring endpoint through the real app and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from psycopg2.extensions import connection
from support.api import (
    BULK_PROGRESS,
    ERROR_KEYS,
    JOB_URL,
    LINUX_EXAMPLE,
    PROGRESS_KEYS,
    SCHEDULED_EXAMPLE,
    SCHEDULED_PROGRESS,
    SUCCESS_KEYS,
    TIMESTAMP,
    WINDOWS_EXAMPLE,
    GetJob,
    MakeApp,
    add_job,
    assert_error,
    assert_invalid,
    assert_success,
    bearer,
    lines,
    pagination,
)

KOREAN_NAME = "일일-백업"
KOREAN_EXAMPLE = {
    "system": {"name": "windows-server-01"},
    "job": {
        "info": {"name": KOREAN_NAME, "drive": "D:"},
        "progressInfo": {
            "status": "error",
            "percent": "10%",
            "message": "Network error",
            "start": "2025-01-15 03:00:00",
            "elapsed": "00:05:12",
            "end": "2025-01-15 03:05:12",
        },
        "log": [
            "Starting backup...",
            "Connecting to \\\\backup-server\\backups",
            "Network error",
        ],
    },
}
EXAMPLES: dict[str, dict[str, Any]] = {
    "1": LINUX_EXAMPLE,
    "daily-backup": LINUX_EXAMPLE,
    "2": WINDOWS_EXAMPLE,
    "daily-backup-win": WINDOWS_EXAMPLE,
    "3": SCHEDULED_EXAMPLE,
    "weekly-smart": SCHEDULED_EXAMPLE,
    "5": KOREAN_EXAMPLE,
    quote(KOREAN_NAME): KOREAN_EXAMPLE,
}

GENERATED_ID = re.compile(r"req-[0-9a-f]+")
SMB_PATH = quote("\\\\backup-server\\backups", safe="")
NFS_PATH = quote("/backup/linux-server-01", safe="")

INCOMPLETE_NO_DEFINITION = "작업 데이터가 불완전합니다. backup 정보가 누락되었습니다."
INCOMPLETE_NO_RUNTIME = "작업 데이터가 불완전합니다. backupInfo 정보가 누락되었습니다."


def subject(identifier: str) -> str:
    by_id = identifier.isascii() and identifier.isdigit()
    return f"ID가 '{identifier}'인" if by_id else f"Name이 '{identifier}'인"


def not_found(identifier: str) -> str:
    return f"{subject(identifier)} 조건에 맞는 Backup 작업을 찾을 수 없습니다."


def mismatch(identifier: str) -> str:
    return (
        f"{subject(identifier)} Backup 작업은 존재하지만, "
        "지정된 필터 조건과 일치하는 결과가 없습니다."
    )


def assert_recent(stamp: str, zone: str = "UTC") -> None:
    """The timestamp has the contract's format and is 'now' in the given zone."""
    assert TIMESTAMP.fullmatch(stamp), stamp
    now = datetime.now(ZoneInfo(zone)).replace(tzinfo=None)
    assert abs(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") - now) < timedelta(seconds=10)


# --- The seed's examples and the demo jobs ------------------------------------------------


def test_seed_example_by_id(get_job: GetJob) -> None:
    assert assert_success(get_job("1")) == LINUX_EXAMPLE


def test_seed_example_by_name(get_job: GetJob) -> None:
    assert assert_success(get_job("daily-backup")) == LINUX_EXAMPLE


def test_windows_example(get_job: GetJob) -> None:
    assert assert_success(get_job("daily-backup-win")) == WINDOWS_EXAMPLE


def test_pagination_header_on_seed_example(get_job: GetJob) -> None:
    meta = json.loads(get_job("1").headers["X-Pagination"])
    assert meta == {"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1}


@pytest.mark.parametrize("identifier", sorted(EXAMPLES))
def test_demo_jobs_by_id_and_name(get_job: GetJob, identifier: str) -> None:
    assert assert_success(get_job(identifier)) == EXAMPLES[identifier]


def test_bulk_job_default_page(get_job: GetJob) -> None:
    data = assert_success(get_job("bulk-data"))
    assert data == {
        "system": {"name": "linux-server-01"},
        "job": {
            "info": {"name": "bulk-data", "partition": "/data"},
            "progressInfo": BULK_PROGRESS,
            "log": lines(range(231, 251)),
        },
    }


def test_leading_zeros_are_still_an_id(get_job: GetJob) -> None:
    assert assert_success(get_job("0001")) == LINUX_EXAMPLE


# --- Filters that hold --------------------------------------------------------------------

MATCHING = [
    ("1", "mode=full"),
    ("1", "mode=FULL"),
    ("1", "mode=Full"),
    ("1", "partition=/"),
    ("1", "partition=%2F"),
    ("1", "server=linux-server-01"),
    ("1", "server=1"),
    ("1", "repositoryType=nfs"),
    ("1", "repositoryType=NFS"),
    ("1", f"repositoryPath={NFS_PATH}"),
    ("1", "status=complete"),
    ("1", "status=Complete"),
    ("1", "jobName=daily-backup"),
    (
        "1",
        "mode=full&partition=/&server=linux-server-01&repositoryType=nfs"
        f"&repositoryPath={NFS_PATH}&status=complete&jobName=daily-backup",
    ),
    ("daily-backup", "mode=full&server=1&status=COMPLETE"),
    ("1", "mode="),
    ("1", "mode=&partition=&drive=&server=&repositoryType=&repositoryPath=&status=&jobName="),
    ("1", "page=&limit="),
    ("1", "_=1736899200000"),
    ("1", "_=123&foo=bar&mode=full"),
    ("1", "mode=full&mode="),
    ("1", "_=1&_=2"),
    ("2", "mode=increment"),
    ("2", "drive=C"),
    ("2", "drive=c"),
    ("2", "drive=C:"),
    ("2", "drive=c:"),
    ("2", "server=windows-server-01"),
    ("2", "server=2"),
    ("2", "repositoryType=smb"),
    ("2", "repositoryType=SMB"),
    ("2", "repositoryType=cifs"),
    ("2", "repositoryType=CIFS"),
    ("2", f"repositoryPath={SMB_PATH}"),
    ("2", "status=processing"),
    ("2", "status=PROCESSING"),
    ("2", "status=run"),
    ("2", "status=RUN"),
    ("2", "status=running"),
    ("2", "status=Running"),
    ("2", "jobName=daily-backup-win"),
    ("daily-backup-win", "drive=c:&status=run&repositoryType=cifs&mode=INCREMENT"),
    ("3", "partition=/var/log"),
    ("3", "partition=/var/log/"),
    ("3", "partition=%2Fvar%2Flog%2F"),
    ("3", "mode=smart&status=scheduled&repositoryType=cifs"),
    ("weekly-smart", "partition=/var/log/&server=1"),
    ("5", "drive=d"),
    ("5", "drive=D:&status=ERROR&repositoryType=smb"),
    (quote(KOREAN_NAME), f"jobName={quote(KOREAN_NAME)}&drive=d"),
]


@pytest.mark.parametrize(("identifier", "query"), MATCHING)
def test_filter_that_holds_returns_the_job(get_job: GetJob, identifier: str, query: str) -> None:
    assert assert_success(get_job(identifier, query)) == EXAMPLES[identifier]


def test_filter_on_bulk_job_with_trailing_slash(get_job: GetJob) -> None:
    data = assert_success(get_job("4", "partition=/data/&status=run&limit=2"))
    assert data["job"]["info"] == {"name": "bulk-data", "partition": "/data"}
    assert data["job"]["log"] == ["line 249", "line 250"]


# --- Filters that exclude -----------------------------------------------------------------

EXCLUDING = [
    ("1", "mode=increment"),
    ("1", "mode=smart"),
    ("1", "partition=/var/log"),
    ("1", "partition=/home"),
    ("1", "drive=C"),
    ("1", "drive=c:"),
    ("1", "server=windows-server-01"),
    ("1", "server=LINUX-SERVER-01"),
    ("1", "server=2"),
    ("1", "server=999"),
    ("1", "server=no-such-server"),
    ("1", "server=" + "9" * 40),
    ("1", "server=9223372036854775808"),
    ("1", "repositoryType=smb"),
    ("1", "repositoryType=cifs"),
    ("1", f"repositoryPath={SMB_PATH}"),
    ("1", "repositoryPath=%2Fbackup%2Flinux-server-01%2F"),
    ("1", "repositoryPath=%2Fbackup"),
    ("1", "status=processing"),
    ("1", "status=run"),
    ("1", "status=error"),
    ("1", "jobName=daily-backup-win"),
    ("1", "jobName=DAILY-BACKUP"),
    ("1", "jobName=daily"),
    ("1", "mode=full&status=run"),
    ("2", "partition=/"),
    ("2", "drive=D"),
    ("2", "status=complete"),
    ("2", "server=1"),
    ("2", "repositoryType=nfs"),
    ("3", "partition=/var"),
    ("3", "partition=/var/log/syslog"),
    ("3", "partition=/VAR/LOG"),
    ("3", "mode=full"),
    ("4", "partition=/"),
    ("5", "drive=C"),
    ("5", "jobName=daily-backup-win"),
]


MISMATCHED_FILTER = "이 작업과 일치하지 않습니다."


def failed_filters(query: str) -> dict[str, list[str]]:
    """The details of a mismatch: each filter of the query the job fails, with why."""
    names = [pair.split("=", 1)[0] for pair in query.split("&")]
    if query == "mode=full&status=run":  # job 1 is full: only its status fails
        names = ["status"]
    return {name: [MISMATCHED_FILTER] for name in names}


@pytest.mark.parametrize(("identifier", "query"), EXCLUDING)
def test_filter_that_excludes_by_id(get_job: GetJob, identifier: str, query: str) -> None:
    body = assert_error(get_job(identifier, query), 404, "JOB-ERROR-01", mismatch(identifier))
    assert body["details"] == failed_filters(query)


def test_a_mismatch_names_every_filter_the_job_fails_and_none_it_holds(get_job: GetJob) -> None:
    """Job 1 is daily-backup on linux-server-01, partition /, nfs, full, complete."""
    query = "partition=/&drive=C:&server=1&status=error&repositoryType=smb&jobName=x&mode=full"
    body = assert_error(get_job("1", query), 404, "JOB-ERROR-01", mismatch("1"))
    assert body["details"] == {
        name: [MISMATCHED_FILTER] for name in ("drive", "repositoryType", "status", "jobName")
    }
    english = get_job("daily-backup", query, **{"Accept-Language": "en"})
    body = assert_error(english, 404, "JOB-ERROR-01")
    assert body["error"] == (
        "The backup job named 'daily-backup' exists, but does not match the given filters."
    )
    assert body["details"] == {
        name: ["Does not match this job."]
        for name in ("drive", "repositoryType", "status", "jobName")
    }


NAMES = {"1": "daily-backup", "2": "daily-backup-win", "3": "weekly-smart", "4": "bulk-data"}


@pytest.mark.parametrize(
    ("identifier", "query"), [(i, q) for i, q in EXCLUDING if i in NAMES], ids=str
)
def test_filter_that_excludes_by_name(get_job: GetJob, identifier: str, query: str) -> None:
    name = NAMES[identifier]
    body = assert_error(get_job(name, query), 404, "JOB-ERROR-01", mismatch(name))
    assert body["details"] == failed_filters(query)


def test_filter_excludes_korean_name(get_job: GetJob) -> None:
    assert_error(get_job(quote(KOREAN_NAME), "drive=C"), 404, "JOB-ERROR-01", mismatch(KOREAN_NAME))


def test_no_such_job_with_filters_is_not_found_not_mismatch(get_job: GetJob) -> None:
    assert_error(get_job("999", "mode=full"), 404, "JOB-ERROR-01", not_found("999"))
    assert_error(get_job("nope", "mode=full"), 404, "JOB-ERROR-01", not_found("nope"))


# --- Repeated and invalid parameters ------------------------------------------------------

REPEATED = [
    ("mode", "mode=full&mode=full"),
    ("mode", "mode=full&mode=smart"),
    ("partition", "partition=/&partition=/"),
    ("drive", "drive=C&drive=c"),
    ("server", "server=1&server=linux-server-01"),
    ("repositoryType", "repositoryType=nfs&repositoryType=nfs"),
    ("repositoryPath", f"repositoryPath={NFS_PATH}&repositoryPath={NFS_PATH}"),
    ("status", "status=complete&status=complete"),
    ("jobName", "jobName=daily-backup&jobName=daily-backup"),
    ("page", "page=1&page=2"),
    ("limit", "limit=10&limit=10"),
]


def test_every_repeated_parameter_is_named(get_job: GetJob) -> None:
    body = assert_invalid(get_job("1", "mode=full&mode=full&page=1&page=1"), "mode", "page")
    assert set(body["details"]) == {"mode", "page"}


INVALID = [
    ("mode", "mode=fast"),
    ("mode", "mode=full%20backup"),
    ("mode", "mode=%00"),
    ("partition", "partition=var/log"),
    ("partition", "partition=C:"),
    ("partition", "partition=/a%00b"),
    ("partition", "partition=/%FF"),
    ("drive", "drive=CD"),
    ("drive", "drive=1"),
    ("drive", "drive=:"),
    ("drive", "drive=C::"),
    ("drive", "drive=%ED%95%9C"),
    ("drive", "drive=/"),
    ("server", "server=a%00b"),
    ("server", "server=%FF"),
    ("repositoryType", "repositoryType=ftp"),
    ("repositoryType", "repositoryType=s3"),
    ("repositoryPath", "repositoryPath=%2Fbackup%00"),
    ("repositoryPath", "repositoryPath=%FF"),
    ("status", "status=done"),
    ("status", "status=runs"),
    ("status", "status=completed"),
    ("jobName", "jobName=a%00b"),
    ("jobName", "jobName=%FF%FE"),
    ("page", "page=0"),
    ("page", "page=-1"),
    ("page", "page=100001"),
    ("page", "page=1.5"),
    ("page", "page=abc"),
    ("page", "page=1e3"),
    ("page", "page=0x10"),
    ("page", "page=" + "9" * 40),
    ("page", "page=" + "1" * 5000),
    ("limit", "limit=0"),
    ("limit", "limit=-1"),
    ("limit", "limit=1001"),
    ("limit", "limit=1.5"),
    ("limit", "limit=ten"),
    ("limit", "limit=" + "9" * 40),
    ("limit", "limit=" + "1" * 5000),
]


@pytest.mark.parametrize(("param", "query"), REPEATED + INVALID, ids=lambda v: str(v)[:40])
def test_repeated_or_invalid_parameter_is_400_naming_it(
    get_job: GetJob, param: str, query: str
) -> None:
    body = assert_invalid(get_job("1", query), param)
    assert list(body["details"]) == [param]


def test_invalid_values_are_all_reported(get_job: GetJob) -> None:
    body = assert_invalid(
        get_job("1", "mode=x&status=y&limit=0&page=z"), "mode", "status", "limit", "page"
    )
    assert set(body["details"]) == {"mode", "status", "limit", "page"}


def test_invalid_parameter_on_unknown_job_is_still_400(get_job: GetJob) -> None:
    assert_invalid(get_job("999", "limit=0"), "limit")


# --- Paging the log -----------------------------------------------------------------------


def bulk_page(get_job: GetJob, query: str) -> tuple[list[str], dict[str, int]]:
    response = get_job("4", query)
    data = assert_success(response)
    assert data["job"]["info"] == {"name": "bulk-data", "partition": "/data"}
    assert data["job"]["progressInfo"] == BULK_PROGRESS
    return data["job"]["log"], pagination(response)


def page_meta(total_pages: int, page: int | None = None) -> dict[str, int]:
    """The X-Pagination header of the bulk job's 250 lines: previous and next where they exist."""
    meta = {"total": 250, "total_pages": total_pages, "first_page": 1, "last_page": total_pages}
    if page is not None:
        meta["page"] = page
        if page > 1:
            meta["previous_page"] = page - 1
        if page < total_pages:
            meta["next_page"] = page + 1
    return meta


@pytest.mark.parametrize(
    ("query", "log", "meta"),
    [
        ("", lines(range(231, 251)), page_meta(13, 1)),
        ("page=1&limit=10", lines(range(241, 251)), page_meta(25, 1)),
        ("page=2&limit=10", lines(range(231, 241)), page_meta(25, 2)),
        ("page=3&limit=100", lines(range(1, 51)), page_meta(3, 3)),
        ("page=2&limit=249", ["line 1"], page_meta(2, 2)),
        ("page=4&limit=100", [], page_meta(3)),
        ("page=100000", [], page_meta(13)),
        ("limit=1000", lines(range(1, 251)), page_meta(1, 1)),
        ("limit=250&page=1", lines(range(1, 251)), page_meta(1, 1)),
        ("limit=1&page=250", ["line 1"], page_meta(250, 250)),
    ],
    ids=[
        "default page and limit",
        "page 1 is the newest lines oldest first",
        "page 2 is the lines before",
        "partial last page",
        "one line last page",
        "page past the end is empty",
        "maximum page is accepted",
        "maximum limit returns the whole log",
        "limit equal to total",
        "limit one",
    ],
)
def test_log_page(get_job: GetJob, query: str, log: list[str], meta: dict[str, int]) -> None:
    assert bulk_page(get_job, query) == (log, meta)


def test_leading_zeros_in_page_and_limit(get_job: GetJob) -> None:
    log, meta = bulk_page(get_job, "page=002&limit=010")
    assert log == lines(range(231, 241))
    assert meta["page"] == 2


def test_every_line_appears_once_across_pages(get_job: GetJob) -> None:
    seen: list[str] = []
    for page in range(7, 0, -1):
        log, _ = bulk_page(get_job, f"page={page}&limit=40")
        seen.extend(log)
    assert seen == lines(range(1, 251))


def test_empty_log(get_job: GetJob) -> None:
    response = get_job("3")
    assert assert_success(response)["job"]["log"] == []
    assert pagination(response) == {"total": 0, "total_pages": 0}


def test_empty_log_past_page_one(get_job: GetJob) -> None:
    response = get_job("weekly-smart", "page=2&limit=5")
    assert assert_success(response) == SCHEDULED_EXAMPLE
    assert pagination(response) == {"total": 0, "total_pages": 0}


def test_pruned_log_pages_from_its_newest_line(get_job: GetJob, db: connection) -> None:
    add_job(db, 100, "pruned", log={n: f"row {n}" for n in range(5, 15)})
    response = get_job("100", "limit=4")
    assert assert_success(response)["job"]["log"] == ["row 11", "row 12", "row 13", "row 14"]
    assert pagination(response) == {
        "total": 10,
        "total_pages": 3,
        "first_page": 1,
        "last_page": 3,
        "page": 1,
        "next_page": 2,
    }
    response = get_job("pruned", "limit=4&page=3")
    assert assert_success(response)["job"]["log"] == ["row 5", "row 6"]
    assert pagination(response)["page"] == 3


def test_log_of_one_job_does_not_leak_into_another(get_job: GetJob, db: connection) -> None:
    add_job(db, 100, "own-log", log={1: "mine"})
    assert assert_success(get_job("own-log", "limit=1000"))["job"]["log"] == ["mine"]


# --- Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["999", "0", "100"])
def test_not_found_by_id(get_job: GetJob, identifier: str) -> None:
    assert_error(get_job(identifier), 404, "JOB-ERROR-01", not_found(identifier))


@pytest.mark.parametrize("identifier", ["no-such-job", "Daily-Backup", "daily-backup ", "-1", "1a"])
def test_not_found_by_name(get_job: GetJob, identifier: str) -> None:
    response = get_job(quote(identifier))
    assert_error(response, 404, "JOB-ERROR-01", not_found(identifier))


def test_arabic_indic_digits_are_a_name(get_job: GetJob) -> None:
    identifier = "\u0661"  # ARABIC-INDIC DIGIT ONE: a digit, but not ASCII
    assert_error(get_job(quote(identifier)), 404, "JOB-ERROR-01", not_found(identifier))
    assert not_found(identifier).startswith("Name이")


@pytest.mark.parametrize(
    "identifier",
    [
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999999999",
        "9" * 300,
    ],
    ids=lambda v: v[:24],
)
def test_id_too_large_is_not_found(get_job: GetJob, identifier: str) -> None:
    assert_error(get_job(identifier), 404, "JOB-ERROR-01", not_found(identifier))


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("7", INCOMPLETE_NO_DEFINITION),
        ("6", INCOMPLETE_NO_RUNTIME),
        ("orphan-definition", INCOMPLETE_NO_RUNTIME),
    ],
    ids=["runtime only", "definition only by id", "definition only by name"],
)
def test_incomplete_job(get_job: GetJob, identifier: str, message: str) -> None:
    assert_error(get_job(identifier), 400, "JOB-ERROR-20", message)


@pytest.mark.parametrize(
    ("identifier", "query", "message"),
    [
        ("7", "mode=smart", INCOMPLETE_NO_DEFINITION),
        ("7", "status=complete&server=2", INCOMPLETE_NO_DEFINITION),
        ("7", "status=run", INCOMPLETE_NO_DEFINITION),
        ("6", "mode=smart", INCOMPLETE_NO_RUNTIME),
        ("6", "status=complete", INCOMPLETE_NO_RUNTIME),
        ("orphan-definition", "drive=C&jobName=other", INCOMPLETE_NO_RUNTIME),
        ("orphan-definition", "partition=/home", INCOMPLETE_NO_RUNTIME),
    ],
)
def test_incomplete_comes_before_filter_mismatch(
    get_job: GetJob, identifier: str, query: str, message: str
) -> None:
    assert_error(get_job(identifier, query), 400, "JOB-ERROR-20", message)


def test_runtime_only_job_inserted_by_test(get_job: GetJob, db: connection) -> None:
    with db.cursor() as cur:
        cur.execute("INSERT INTO backup_info (backup_id, status, percent) VALUES (100, 'error', 5)")
    assert_error(get_job("100"), 400, "JOB-ERROR-20", INCOMPLETE_NO_DEFINITION)


@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api/backups/monitoring/job/",
        "/api/backups/monitoring/job",
        "/api/backups/monitoring/jobs/1",
        "/api/backups/monitoring/",
        "/no/such/page.html",
    ],
)
def test_unknown_route_is_json_404(client: Any, path: str) -> None:
    response = client.get(path, headers=bearer())
    body = assert_error(response, 404, "HTTP-404")
    assert body["error"]
    assert "details" not in body


def test_unknown_route_without_token_is_json_404(client: Any) -> None:
    assert_error(client.get("/api/nope"), 404, "HTTP-404")


@pytest.mark.parametrize("path", ["/api/nope", f"{JOB_URL}1"])
def test_browser_accept_header_still_gets_json(client: Any, path: str) -> None:
    headers = {**bearer(), "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    if path == "/api/nope":
        assert_error(client.get(path, headers=headers), 404, "HTTP-404")
    else:
        assert_error(client.delete(path, headers=headers), 405, "HTTP-405")
        assert_error(client.get(f"{path}?limit=0", headers=headers), 400, "REQUEST-ERROR-01")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_wrong_method_is_json_405_with_allow(client: Any, method: str) -> None:
    response = client.open(f"{JOB_URL}1", method=method, headers=bearer())
    body = assert_error(response, 405, "HTTP-405")
    assert body["error"]
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "GET" in allowed
    assert method not in allowed


# --- Identifiers --------------------------------------------------------------------------


def test_korean_name_percent_encoded(get_job: GetJob) -> None:
    response = get_job(quote(KOREAN_NAME))
    assert assert_success(response) == KOREAN_EXAMPLE
    assert pagination(response) == {
        "total": 3,
        "total_pages": 1,
        "first_page": 1,
        "last_page": 1,
        "page": 1,
    }


def test_korean_not_found_message_is_decoded(get_job: GetJob) -> None:
    assert_error(get_job(quote("없는-작업")), 404, "JOB-ERROR-01", not_found("없는-작업"))


def test_korean_text_is_utf8_not_escaped(get_job: GetJob) -> None:
    raw = get_job(quote(KOREAN_NAME)).get_data()
    assert KOREAN_NAME.encode() in raw


def test_name_of_255_korean_characters_is_not_too_long(get_job: GetJob) -> None:
    name = "가" * 255
    assert_error(get_job(quote(name)), 404, "JOB-ERROR-01", not_found(name))


@pytest.mark.parametrize("length", [256, 1000])
def test_name_longer_than_255_is_400(get_job: GetJob, length: int) -> None:
    assert_invalid(get_job("n" * length), "identifier")


def test_korean_name_of_256_characters_is_400(get_job: GetJob) -> None:
    assert_invalid(get_job(quote("가" * 256)), "identifier")


@pytest.mark.parametrize("identifier", ["abc%00def", "%00", "1%002", "%FF", "abc%FFdef", "%C3"])
def test_nul_or_invalid_utf8_in_identifier_is_400(get_job: GetJob, identifier: str) -> None:
    assert_invalid(get_job(identifier), "identifier")


@pytest.mark.parametrize(
    "name", ["' OR 1=1 --", "%", "_", "daily%", "daily_backup", "'; DROP TABLE backup; --"]
)
def test_sql_like_names_are_just_names(get_job: GetJob, name: str) -> None:
    assert_error(get_job(quote(name, safe="")), 404, "JOB-ERROR-01", not_found(name))
    assert assert_success(get_job("1")) == LINUX_EXAMPLE


@pytest.mark.parametrize("value", ["' OR 1=1 --", "%", "_", "daily%"])
def test_sql_like_filter_values_do_not_match(get_job: GetJob, value: str) -> None:
    query = f"jobName={quote(value, safe='')}"
    assert_error(get_job("1", query), 404, "JOB-ERROR-01", mismatch("1"))


@pytest.mark.parametrize(
    ("name", "path"),
    [("n" * 255, "n" * 255), ("nightly/db", "nightly%2Fdb")],
    ids=["255 characters", "encoded slash"],
)
def test_name_not_found_until_inserted(
    get_job: GetJob, db: connection, name: str, path: str
) -> None:
    assert_error(get_job(path), 404, "JOB-ERROR-01", not_found(name))
    add_job(db, 100, name, status="complete", percent=100)
    data = assert_success(get_job(path))
    assert data["job"]["info"] == {"name": name, "partition": "/srv"}


def test_name_with_spaces_and_symbols(get_job: GetJob, db: connection) -> None:
    name = "db backup (prod) #1 & more?"
    add_job(db, 100, name, status="complete", percent=100)
    data = assert_success(get_job(quote(name, safe=""), f"jobName={quote(name, safe='')}"))
    assert data["job"]["info"]["name"] == name


# --- Field formats ------------------------------------------------------------------------


def test_timezone_shifts_times(make_app: MakeApp) -> None:
    client = make_app(ZDM_TIMEZONE="Asia/Seoul").test_client()
    response = client.get(f"{JOB_URL}1", headers=bearer())
    data = assert_success(response)
    assert data["job"]["progressInfo"] == {
        **LINUX_EXAMPLE["job"]["progressInfo"],  # type: ignore[index]
        "start": "2025-01-15 11:00:00",
        "end": "2025-01-15 11:30:00",
    }
    assert_recent(response.get_json()["timestamp"], "Asia/Seoul")


def test_timezone_can_change_the_date(make_app: MakeApp) -> None:
    client = make_app(ZDM_TIMEZONE="America/New_York").test_client()
    response = client.get(f"{JOB_URL}2", headers=bearer())
    progress = assert_success(response)["job"]["progressInfo"]
    assert progress["start"] == "2025-01-14 21:00:00"
    assert progress["elapsed"] == "00:20:00"
    assert progress["end"] == "-"
    assert_recent(response.get_json()["timestamp"], "America/New_York")


def test_timezone_applies_to_error_timestamp(make_app: MakeApp) -> None:
    client = make_app(ZDM_TIMEZONE="Asia/Seoul").test_client()
    response = client.get(f"{JOB_URL}999", headers=bearer())
    body = assert_error(response, 404, "JOB-ERROR-01", not_found("999"))
    assert_recent(body["timestamp"], "Asia/Seoul")


def test_default_timezone_is_utc(get_job: GetJob) -> None:
    response = get_job("1")
    assert assert_success(response)["job"]["progressInfo"]["start"] == "2025-01-15 02:00:00"
    assert_recent(response.get_json()["timestamp"], "UTC")


def test_error_timestamp_is_now(get_job: GetJob) -> None:
    assert_recent(assert_error(get_job("999"), 404, "JOB-ERROR-01")["timestamp"])


def test_running_job_elapsed_is_last_report_minus_start(get_job: GetJob) -> None:
    assert assert_success(get_job("2"))["job"]["progressInfo"]["elapsed"] == "00:20:00"
    assert assert_success(get_job("4"))["job"]["progressInfo"]["elapsed"] == "00:41:40"


@pytest.mark.parametrize(
    ("identifier", "job", "progress"),
    [
        (
            "just-started",
            {"name": "just-started", "status": "preparing", "started": "2025-01-15 05:00:00+00"},
            {
                "status": "preparing",
                "percent": "0%",
                "message": "-",
                "start": "2025-01-15 05:00:00",
                "elapsed": "00:00:00",
                "end": "-",
            },
        ),
        (
            "100",
            {
                "name": "long-running",
                "percent": 99,
                "message": "Still copying",
                "started": "2025-01-14 00:00:00+00",
                "last_report": "2025-01-15 03:03:15+00",
            },
            {
                "status": "processing",
                "percent": "99%",
                "message": "Still copying",
                "start": "2025-01-14 00:00:00",
                "elapsed": "27:03:15",
                "end": "-",
            },
        ),
        (
            "long-finished",
            {
                "name": "long-finished",
                "status": "complete",
                "percent": 100,
                "message": "Done",
                "started": "2025-01-14 00:00:00+00",
                "ended": "2025-01-15 03:03:15+00",
                "last_report": "2025-01-15 03:00:00+00",
            },
            {
                "status": "complete",
                "percent": "100%",
                "message": "Done",
                "start": "2025-01-14 00:00:00",
                "elapsed": "27:03:15",
                "end": "2025-01-15 03:03:15",
            },
        ),
        (
            "canceled-job",
            {
                "name": "canceled-job",
                "status": "canceled",
                "percent": 37,
                "message": "Canceled by user",
                "started": "2025-01-15 02:00:00+00",
                "ended": "2025-01-15 02:10:05+00",
                "last_report": "2025-01-15 02:59:59+00",
            },
            {
                "status": "canceled",
                "percent": "37%",
                "message": "Canceled by user",
                "start": "2025-01-15 02:00:00",
                "elapsed": "00:10:05",
                "end": "2025-01-15 02:10:05",
            },
        ),
    ],
    ids=[
        "running job before first report",
        "elapsed hours pass 24 while running",
        "elapsed hours pass 24 when finished",
        "finished job elapsed ignores a later report",
    ],
)
def test_progress_of_an_inserted_job(
    get_job: GetJob, db: connection, identifier: str, job: dict[str, Any], progress: dict[str, str]
) -> None:
    add_job(db, 100, **job)
    assert assert_success(get_job(identifier))["job"]["progressInfo"] == progress


def test_scheduled_job_has_dashes(get_job: GetJob) -> None:
    assert assert_success(get_job("3"))["job"]["progressInfo"] == SCHEDULED_PROGRESS


@pytest.mark.parametrize(
    "status",
    ["preparing", "processing", "complete", "scheduled", "registered", "canceling", "canceled"],
)
def test_each_status_is_reported_and_filterable(
    get_job: GetJob, db: connection, status: str
) -> None:
    add_job(db, 100, f"job-{status}", status=status, percent=50)
    response = get_job("100", f"status={status.upper()}")
    assert assert_success(response)["job"]["progressInfo"]["status"] == status


def test_windows_job_inserted_has_drive_only(get_job: GetJob, db: connection) -> None:
    add_job(db, 100, "win-e", server_id=2, partition=None, drive="E:", repository_id=2)
    data = assert_success(get_job("win-e", "drive=e&server=windows-server-01"))
    assert data["system"] == {"name": "windows-server-01"}
    assert data["job"]["info"] == {"name": "win-e", "drive": "E:"}


def test_success_envelope_key_order_and_timestamp(get_job: GetJob) -> None:
    response = get_job("1")
    body = response.get_json()
    assert list(body) == SUCCESS_KEYS
    assert list(body["data"]) == ["system", "job"]
    assert list(body["data"]["job"]) == ["info", "progressInfo", "log"]
    assert list(body["data"]["job"]["info"]) == ["name", "partition"]
    assert list(body["data"]["job"]["progressInfo"]) == PROGRESS_KEYS
    assert_recent(body["timestamp"])


def test_error_envelope_key_order(get_job: GetJob) -> None:
    body = get_job("999").get_json()
    assert list(body) == ERROR_KEYS
    body = get_job("1", "mode=x").get_json()
    assert list(body) == [*ERROR_KEYS, "details"]


# --- Request IDs --------------------------------------------------------------------------

VALID_IDS = [
    "abc-123",
    "0123456789abcdef0123456789abcdef",
    "trace.id:1_a-b",
    "A",
    "x" * 128,
]
INVALID_IDS = [
    "x" * 129,
    "has space",
    "a/b",
    "<script>",
    "id;drop",
    "한글",
    "",
]


@pytest.mark.parametrize("rid", VALID_IDS, ids=lambda v: v[:20])
def test_valid_request_id_is_echoed(get_job: GetJob, rid: str) -> None:
    response = get_job("1", **{"X-Request-ID": rid})
    assert assert_success(response) == LINUX_EXAMPLE
    assert response.get_json()["requestID"] == rid
    assert response.headers["X-Request-ID"] == rid


@pytest.mark.parametrize("rid", INVALID_IDS, ids=lambda v: v[:20] or "empty")
def test_invalid_request_id_is_replaced(client: Any, rid: str) -> None:
    headers = {**bearer(), "X-Request-ID": rid.encode().decode("latin-1")}
    response = client.get(f"{JOB_URL}1", headers=headers)
    assert assert_success(response) == LINUX_EXAMPLE
    generated = response.get_json()["requestID"]
    assert GENERATED_ID.fullmatch(generated), generated
    assert response.headers["X-Request-ID"] == generated


def test_request_id_generated_when_absent_and_unique(get_job: GetJob) -> None:
    first = get_job("1").get_json()["requestID"]
    second = get_job("1").get_json()["requestID"]
    assert GENERATED_ID.fullmatch(first)
    assert GENERATED_ID.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    ("identifier", "query", "status", "code"),
    [
        ("999", "", 404, "JOB-ERROR-01"),
        ("1", "mode=smart", 404, "JOB-ERROR-01"),
        ("7", "", 400, "JOB-ERROR-20"),
        ("1", "limit=0", 400, "REQUEST-ERROR-01"),
        ("n" * 256, "", 400, "REQUEST-ERROR-01"),
    ],
    ids=["not-found", "mismatch", "incomplete", "bad-param", "long-name"],
)
def test_error_envelopes_carry_the_request_id(
    get_job: GetJob, identifier: str, query: str, status: int, code: str
) -> None:
    response = get_job(identifier, query, **{"X-Request-ID": "dash-42"})
    body = assert_error(response, status, code)
    assert body["requestID"] == "dash-42"
    assert response.headers["X-Request-ID"] == "dash-42"


def test_http_errors_carry_the_request_id(client: Any) -> None:
    headers = {**bearer(), "X-Request-ID": "route-7"}
    response = client.get("/api/nope", headers=headers)
    assert assert_error(response, 404, "HTTP-404")["requestID"] == "route-7"
    response = client.post(f"{JOB_URL}1", headers=headers)
    assert assert_error(response, 405, "HTTP-405")["requestID"] == "route-7"
    assert response.headers["X-Request-ID"] == "route-7"


def test_invalid_request_id_on_error_is_replaced(get_job: GetJob) -> None:
    response = get_job("999", **{"X-Request-ID": "bad id!"})
    body = assert_error(response, 404, "JOB-ERROR-01", not_found("999"))
    assert GENERATED_ID.fullmatch(body["requestID"])


def test_job_without_repository(get_job: GetJob, db: connection) -> None:
    add_job(db, 100, "no-repo", repository_id=None, status="complete", percent=100)
    data = assert_success(get_job("no-repo"))
    assert data["job"]["info"] == {"name": "no-repo", "partition": "/srv"}
    assert_error(get_job("no-repo", "repositoryType=nfs"), 404, "JOB-ERROR-01", mismatch("no-repo"))
    assert_error(get_job("100", f"repositoryPath={NFS_PATH}"), 404, "JOB-ERROR-01", mismatch("100"))


def test_log_text_is_returned_verbatim(get_job: GetJob, db: connection) -> None:
    texts = {1: "백업 시작", 2: "tab\there", 3: 'quote " and \\ backslash', 4: "  spaced  "}
    add_job(db, 100, "verbatim", log=texts)
    assert assert_success(get_job("verbatim"))["job"]["log"] == list(texts.values())
