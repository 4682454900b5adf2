"""Pure serializers: times, elapsed, the Linux/Windows payload and the pagination header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from support.api import (
    LINUX_EXAMPLE,
    PROGRESS_KEYS,
    SCHEDULED_PROGRESS,
    TIMESTAMP,
    WINDOWS_EXAMPLE,
)
from support.jobs import START, at, snapshot

from zdm_monitor.api.payloads import format_elapsed, format_time, monitoring_payload, pagination
from zdm_monitor.data.repository import JobSnapshot
from zdm_monitor.data.timestamps import cast

UTC_ZONE = ZoneInfo("UTC")
SEOUL = ZoneInfo("Asia/Seoul")


# --- format_time --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "2025-01-15 02:00:00"),
        ("Asia/Seoul", "2025-01-15 11:00:00"),
        ("America/New_York", "2025-01-14 21:00:00"),
        ("Asia/Kolkata", "2025-01-15 07:30:00"),
        ("Pacific/Kiritimati", "2025-01-15 16:00:00"),
    ],
)
def test_format_time_zones(zone: str, expected: str) -> None:
    assert format_time(START, ZoneInfo(zone)) == expected


def test_format_time_none_is_dash() -> None:
    assert format_time(None, SEOUL) == "-"


def test_format_time_from_another_offset() -> None:
    """The instant counts, not the offset it was read with."""
    moment = datetime(2025, 1, 15, 11, 0, 0, tzinfo=timezone(timedelta(hours=9)))
    assert format_time(moment, UTC_ZONE) == "2025-01-15 02:00:00"


def test_format_time_drops_microseconds() -> None:
    result = format_time(START.replace(microsecond=999_999), UTC_ZONE)
    assert result == "2025-01-15 02:00:00"
    assert TIMESTAMP.fullmatch(result)


def test_format_time_daylight_saving() -> None:
    summer = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    winter = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    assert format_time(summer, berlin) == "2025-07-01 14:00:00"
    assert format_time(winter, berlin) == "2025-01-01 13:00:00"


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("0044-03-15 00:00:00+00", "UTC", "0044-03-15 00:00:00"),
        ("0044-03-15 00:00:00+00 BC", "UTC", "0044-03-15 00:00:00 BC"),
        # Before 1908 Seoul kept local mean time, +08:27:52, as PostgreSQL and tzdata say.
        ("0044-03-15 00:00:00+00 BC", "Asia/Seoul", "0044-03-15 08:27:52 BC"),
        ("20000-01-01 00:00:00+00", "Asia/Seoul", "20000-01-01 09:00:00"),
        # Years datetime holds, wall times in the zone that it does not.
        ("0001-01-01 00:00:00+00", "America/New_York", "0001-12-31 19:03:58 BC"),
        ("9999-12-31 23:00:00+00", "Asia/Seoul", "10000-01-01 08:00:00"),
        ("infinity", "Asia/Seoul", "infinity"),
        ("-infinity", "UTC", "-infinity"),
    ],
)
def test_format_time_outside_years_1_to_9999(text: str, zone: str, expected: str) -> None:
    assert format_time(cast(text, None), ZoneInfo(zone)) == expected


# --- format_elapsed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "last_report", "expected"),
    [
        (START, at(minutes=30), None, "00:30:00"),
        (START, at(minutes=30), at(minutes=20), "00:30:00"),
        (START, None, at(minutes=20), "00:20:00"),
        (START, None, None, "00:00:00"),
        (None, None, None, "-"),
        (None, at(minutes=30), at(minutes=20), "-"),
        (START, at(hours=27, minutes=3, seconds=15), None, "27:03:15"),
        (START, None, at(hours=100, seconds=1), "100:00:01"),
        (START, at(seconds=59, microseconds=999_999), None, "00:00:59"),
        (START, at(minutes=-5), None, "00:00:00"),
        (START, None, at(minutes=-5), "00:00:00"),
        (START, at(hours=24), None, "24:00:00"),
    ],
    ids=[
        "finished",
        "finished ignores last report",
        "running with report",
        "running before first report",
        "not started",
        "not started with other times",
        "more than 24 hours",
        "more than 99 hours",
        "fractions truncated",
        "end before start clamps",
        "report before start clamps",
        "exactly a day",
    ],
)
def test_format_elapsed(
    start: datetime | None, end: datetime | None, last_report: datetime | None, expected: str
) -> None:
    assert format_elapsed(start, end, last_report) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("0001-12-31 23:00:00+00 BC", "0001-01-01 01:00:00+00", "02:00:00"),
        ("20000-01-01 00:00:00+00", "20000-01-02 00:00:01+00", "24:00:01"),
        (
            "2025-01-15 02:00:00+00",
            "10000-01-01 00:00:00+00",
            "69907054:00:00",
        ),  # 2,912,794 days less 2 hours
        ("2025-01-15 02:00:00+00", "infinity", "-"),
        ("-infinity", "2025-01-15 02:00:00+00", "-"),
        ("infinity", "infinity", "-"),
        ("20000-01-01 00:00:00+00", "2025-01-15 02:00:00+00", "00:00:00"),
    ],
)
def test_format_elapsed_outside_years_1_to_9999(start: str, end: str, expected: str) -> None:
    assert format_elapsed(cast(start, None), cast(end, None), None) == expected


# --- monitoring_payload -------------------------------------------------------------------------


def test_linux_payload_matches_the_contract_example() -> None:
    assert monitoring_payload(snapshot(), UTC_ZONE) == LINUX_EXAMPLE


def test_windows_payload_has_drive_only() -> None:
    job = snapshot(
        name="daily-backup-win",
        server_name="windows-server-01",
        os="windows",
        partition=None,
        drive="C:",
        status="processing",
        percent=60,
        message="Processing files...",
        ended_at=None,
        last_report_at=at(minutes=20),
        log_lines=["Starting backup...", "Processing files..."],
    )
    payload = monitoring_payload(job, UTC_ZONE)
    assert payload["job"]["info"] == {"name": "daily-backup-win", "drive": "C:"}
    assert payload == WINDOWS_EXAMPLE


@pytest.mark.parametrize(
    ("os", "partition", "drive", "key"),
    [
        ("linux", "/var/log", "C:", "partition"),
        ("windows", "/var/log", "D:", "drive"),
        ("linux", "/", None, "partition"),
        ("windows", None, "E:", "drive"),
    ],
)
def test_never_both_partition_and_drive(
    os: str, partition: str | None, drive: str | None, key: str
) -> None:
    info = monitoring_payload(snapshot(os=os, partition=partition, drive=drive), UTC_ZONE)["job"][
        "info"
    ]
    assert set(info) == {"name", key}
    assert info[key] == (partition if key == "partition" else drive)


@pytest.mark.parametrize("message", [None, ""])
def test_no_message_is_dash(message: str | None) -> None:
    progress = monitoring_payload(snapshot(message=message), UTC_ZONE)["job"]["progressInfo"]
    assert progress["message"] == "-"


def test_not_started_job() -> None:
    job = snapshot(
        status="scheduled",
        percent=0,
        message=None,
        started_at=None,
        ended_at=None,
        last_report_at=None,
        log_total=0,
        log_lines=[],
    )
    progress = monitoring_payload(job, UTC_ZONE)["job"]
    assert progress["progressInfo"] == SCHEDULED_PROGRESS
    assert progress["log"] == []


def test_payload_times_follow_the_zone() -> None:
    progress = monitoring_payload(snapshot(), SEOUL)["job"]["progressInfo"]
    assert progress["start"] == "2025-01-15 11:00:00"
    assert progress["end"] == "2025-01-15 11:30:00"
    assert progress["elapsed"] == "00:30:00"


def test_payload_key_order() -> None:
    payload = monitoring_payload(snapshot(), UTC_ZONE)
    assert list(payload) == ["system", "job"]
    assert list(payload["job"]) == ["info", "progressInfo", "log"]
    assert list(payload["job"]["progressInfo"]) == PROGRESS_KEYS


def test_log_lines_passed_through_in_order() -> None:
    lines = [f"line {n}" for n in range(231, 251)]
    assert monitoring_payload(snapshot(log_lines=lines), UTC_ZONE)["job"]["log"] == lines


# --- pagination ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "limit", "total", "expected"),
    [
        (1, 20, 0, {"total": 0, "total_pages": 0}),
        (3, 20, 0, {"total": 0, "total_pages": 0}),
        (
            1,
            20,
            3,
            {"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1},
        ),
        (
            1,
            20,
            20,
            {"total": 20, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1},
        ),
        (
            1,
            20,
            250,
            {
                "total": 250,
                "total_pages": 13,
                "first_page": 1,
                "last_page": 13,
                "page": 1,
                "next_page": 2,
            },
        ),
        (
            5,
            20,
            250,
            {
                "total": 250,
                "total_pages": 13,
                "first_page": 1,
                "last_page": 13,
                "page": 5,
                "previous_page": 4,
                "next_page": 6,
            },
        ),
        (
            13,
            20,
            250,
            {
                "total": 250,
                "total_pages": 13,
                "first_page": 1,
                "last_page": 13,
                "page": 13,
                "previous_page": 12,
            },
        ),
        (
            14,
            20,
            250,
            {"total": 250, "total_pages": 13, "first_page": 1, "last_page": 13},
        ),
        (
            2,
            1,
            2,
            {
                "total": 2,
                "total_pages": 2,
                "first_page": 1,
                "last_page": 2,
                "page": 2,
                "previous_page": 1,
            },
        ),
        (
            1,
            1000,
            1001,
            {
                "total": 1001,
                "total_pages": 2,
                "first_page": 1,
                "last_page": 2,
                "page": 1,
                "next_page": 2,
            },
        ),
    ],
    ids=[
        "empty log",
        "empty log past the end",
        "one page",
        "one full page",
        "first of many",
        "middle page",
        "last page",
        "past the end",
        "limit 1 last page",
        "one line over",
    ],
)
def test_pagination(page: int, limit: int, total: int, expected: dict[str, int]) -> None:
    assert pagination(page, limit, total) == expected


# --- monitoring_payload with sort and detail ----------------------------------------------------


LINUX_TIMES = [START, at(seconds=5), at(minutes=30)]
LINUX_DETAIL_ADDITIONS = {
    "system": {"id": 1, "os": "linux"},
    "info": {"id": 1, "mode": "full"},
    "progress": {"lastReport": "2025-01-15 02:30:00", "stalled": False},
}


def entries(*rows: tuple[int, str, str]) -> list[dict[str, Any]]:
    return [{"line": n, "time": time, "message": message} for n, time, message in rows]


def test_descending_reverses_the_log_only() -> None:
    payload = monitoring_payload(snapshot(), UTC_ZONE, descending=True)
    assert payload["job"]["log"] == LINUX_EXAMPLE["job"]["log"][::-1]
    assert {**payload, "job": {**payload["job"], "log": LINUX_EXAMPLE["job"]["log"]}} == (
        LINUX_EXAMPLE
    )


WINDOWS_JOB = snapshot(
    server_name="windows-server-01",
    server_id=2,
    os="windows",
    partition=None,
    drive="C:",
    mode="increment",
    status="processing",
    ended_at=None,
    last_report_at=None,
    repository_type="smb",
    repository_path="\\\\backup-server\\backups",
    log_lines=["Starting backup..."],
    log_times=[START],
    first_line=7,
    job_id=2,
)
LINUX_ENTRIES = entries(
    (1, "2025-01-15 02:00:00", "Starting backup..."),
    (2, "2025-01-15 02:00:05", "Processing files..."),
    (3, "2025-01-15 02:30:00", "Backup completed"),
)

LINUX_DETAIL = {
    "system": {"id": 1, "os": "linux"},
    "info": {"id": 1, "mode": "full"},
    "progress": {"lastReport": "2025-01-15 02:30:00", "stalled": False},
    "repository": {"type": "nfs", "path": "/backup/linux-server-01"},
    "logEntries": LINUX_ENTRIES,
}


def detail_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """What detail=true adds, gathered from where it stands in the payload."""
    job = payload["job"]
    progress = job["progressInfo"]
    return {
        "system": {k: payload["system"][k] for k in ("id", "os")},
        "info": {k: job["info"][k] for k in ("id", "mode")},
        "progress": {k: progress[k] for k in ("lastReport", "stalled")},
        "repository": job["repository"],
        "logEntries": job["logEntries"],
    }


@pytest.mark.parametrize(
    ("job", "zone", "descending", "stalled", "expected"),
    [
        (snapshot(log_times=LINUX_TIMES), UTC_ZONE, False, False, LINUX_DETAIL),
        (
            snapshot(log_times=LINUX_TIMES),
            UTC_ZONE,
            True,
            True,
            {
                **LINUX_DETAIL,
                "progress": {"lastReport": "2025-01-15 02:30:00", "stalled": True},
                "logEntries": LINUX_ENTRIES[::-1],
            },
        ),
        (
            WINDOWS_JOB,
            SEOUL,
            False,
            True,
            {
                "system": {"id": 2, "os": "windows"},
                "info": {"id": 2, "mode": "increment"},
                "progress": {"lastReport": "-", "stalled": True},
                "repository": {"type": "smb", "path": "\\\\backup-server\\backups"},
                "logEntries": entries((7, "2025-01-15 11:00:00", "Starting backup...")),
            },
        ),
    ],
    ids=["linux", "linux descending", "windows in Seoul"],
)
def test_detail(
    job: JobSnapshot, zone: ZoneInfo, descending: bool, stalled: bool, expected: dict[str, Any]
) -> None:
    payload = monitoring_payload(job, zone, descending=descending, stalled=stalled)
    assert detail_fields(payload) == expected
    assert [e["message"] for e in payload["job"]["logEntries"]] == payload["job"]["log"]
    plain = monitoring_payload(job, zone, descending=descending)
    # Added after the contract's keys, which keep their values and order.
    assert list(payload["job"]) == [*plain["job"], "repository", "logEntries"]
    assert list(payload["system"]) == [*plain["system"], "id", "os"]
    assert list(payload["job"]["info"]) == [*plain["job"]["info"], "id", "mode"]
    assert list(payload["job"]["progressInfo"]) == [*PROGRESS_KEYS, "lastReport", "stalled"]
    for part in ("system", "info", "progressInfo"):
        whole = payload if part == "system" else payload["job"]
        base = plain if part == "system" else plain["job"]
        assert {k: whole[part][k] for k in base[part]} == base[part]


def test_detail_without_repository() -> None:
    job = snapshot(repository_type=None, repository_path=None, log_times=LINUX_TIMES)
    assert monitoring_payload(job, UTC_ZONE, stalled=False)["job"]["repository"] is None


def test_detail_of_an_empty_log() -> None:
    job = snapshot(log_lines=[], log_times=None, first_line=None, log_first=None, log_last=None)
    payload = monitoring_payload(job, UTC_ZONE, stalled=False)
    assert payload["job"]["log"] == payload["job"]["logEntries"] == []


def test_no_detail_without_stalled() -> None:
    job = snapshot(log_times=LINUX_TIMES)
    assert monitoring_payload(job, UTC_ZONE, descending=False) == LINUX_EXAMPLE
