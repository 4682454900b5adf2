"""Every timestamp PostgreSQL's timestamptz can hold, in each column the service reads, answers.

The expected texts come from PostgreSQL itself (to_char and interval arithmetic in the zone),
not from the service's code: Python's datetime holds years 1-9999 only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg2.extensions import connection
from support.api import JOB_URL, LINUX_EXAMPLE, add_job, assert_success, bearer

from zdm_monitor.data import timestamps
from zdm_monitor.data.timestamps import INFINITY, MINUS_INFINITY, Beyond

SERVER_URL = "/api/backups/monitoring/system/"
STALL_SECONDS = 300
# The range's ends, either side of Python's years, the infinities, and years Python holds but
# whose wall time in a zone may leave them.
EARLIEST, LATEST = "4714-11-24 00:00:00+00 BC", "294276-12-31 23:59:59.999999+00"
ODD = [
    EARLIEST,
    "4713-01-01 00:00:00+00 BC",
    "0044-03-15 00:00:00+00 BC",
    "0001-12-31 23:59:59.5+00 BC",
    "0001-01-01 00:00:00+00",
    "0044-03-15 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "10000-01-01 00:00:00+00",
    "20000-01-01 00:00:00+00",
    LATEST,
    "infinity",
    "-infinity",
]
# PostgreSQL cannot show the range's ends in a zone on the far side of UTC: the wall time would
# leave its range.
ZONED = [value for value in ODD if value not in (EARLIEST, LATEST)]
START = "2025-01-15 02:00:00+00"
LOGGED = "2025-01-15 02:10:00+00"
REPORT = "2025-01-15 02:20:00+00"
# Where the odd value goes (a time of add_job's, or None: the log's line 2), the job's status,
# and its other times, as the demo's jobs have them.
PLACES: dict[str, tuple[str | None, str, dict[str, str]]] = {
    "started_at": ("started", "processing", {"last_report": REPORT}),
    "started_at, no report": ("started", "processing", {}),
    "last_report_at": ("last_report", "processing", {"started": START}),
    "ended_at": ("ended", "complete", {"started": START, "last_report": REPORT}),
    "logged_at": (None, "processing", {"started": START, "last_report": REPORT}),
}


def add_odd_job(db: connection, place: str, value: str) -> dict[str, Any]:
    """Job 60 on linux-server-01 with the value in its place; returns its status and times."""
    key, status, others = PLACES[place]
    times: dict[str, str | None] = {"started": None, "ended": None, "last_report": None}
    times.update(others)
    if key is not None:
        times[key] = value
    add_job(db, 60, "odd-times", status=status, percent=50, log={1: "a", 2: "b", 3: "c"}, **times)
    with db.cursor() as cur:
        cur.execute("UPDATE backup_log SET logged_at = %s WHERE backup_id = 60", (LOGGED,))
        if key is None:
            cur.execute(
                "UPDATE backup_log SET logged_at = %s WHERE backup_id = 60 AND line = 2", (value,)
            )
    return {"status": status, **times}


def shown(db: connection, value: str | None, zone: str) -> str:
    """What PostgreSQL says the instant's wall time in the zone is."""
    if value is None:
        return "-"
    with db.cursor() as cur:
        cur.execute(
            "SELECT CASE WHEN NOT isfinite(t) THEN t::text"
            " ELSE to_char(t AT TIME ZONE %(zone)s, 'YYYY-MM-DD HH24:MI:SS')"
            "  || CASE WHEN extract(year FROM t AT TIME ZONE %(zone)s) < 0 THEN ' BC' ELSE '' END"
            " END FROM CAST(%(value)s AS timestamptz) AS t",
            {"value": value, "zone": zone},
        )
        return str(cur.fetchone()[0])  # type: ignore[index]


# Seconds from s to u as PostgreSQL counts them, exact over its whole range: whole days between
# the UTC dates, then the times of day (its epoch of a far date loses the microseconds).
SECONDS_BETWEEN = (
    "((u AT TIME ZONE 'UTC')::date - (s AT TIME ZONE 'UTC')::date)::bigint * 86400"
    " + extract(epoch FROM (u AT TIME ZONE 'UTC')::time)"
    " - extract(epoch FROM (s AT TIME ZONE 'UTC')::time)"
)


def elapsed(db: connection, start: str | None, until: str | None) -> str:
    """HH:MM:SS from start to until as PostgreSQL counts it; '-' from or to infinity."""
    if start is None:
        return "-"
    with db.cursor() as cur:
        cur.execute(
            f"SELECT CASE WHEN isfinite(s) AND isfinite(u) THEN floor({SECONDS_BETWEEN}) END"
            " FROM CAST(%s AS timestamptz) AS s, CAST(%s AS timestamptz) AS u",
            (start, until or start),
        )
        seconds = cur.fetchone()[0]  # type: ignore[index]
    if seconds is None:
        return "-"
    hours, rest = divmod(max(0, int(seconds)), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def stalled(db: connection, times: dict[str, Any]) -> bool:
    last = times["last_report"] or times["started"]
    if times["status"] != "processing" or last is None:
        return False
    with db.cursor() as cur:
        cur.execute(
            "SELECT CAST(%s AS timestamptz) < now() - make_interval(secs => %s)",
            (last, STALL_SECONDS),
        )
        return bool(cur.fetchone()[0])  # type: ignore[index]


@pytest.fixture
def make_client(make_app: Callable[..., Flask]) -> Callable[[str], FlaskClient]:
    def build(zone: str) -> FlaskClient:
        return make_app(ZDM_TIMEZONE=zone, ZDM_STALL_SECONDS=str(STALL_SECONDS)).test_client()

    return build


def get(client: FlaskClient, url: str) -> dict[str, Any]:
    response = client.get(url, headers=bearer())
    if url.startswith(SERVER_URL):
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]  # type: ignore[no-any-return]
    return assert_success(response)


@pytest.mark.parametrize("value", ODD)
@pytest.mark.parametrize("place", list(PLACES))
def test_each_timestamp_shows_for_its_job_and_its_server(
    db: connection, make_client: Callable[[str], FlaskClient], place: str, value: str
) -> None:
    times = add_odd_job(db, place, value)
    client = make_client("UTC")
    progress = {
        "status": times["status"],
        "percent": "50%",
        "message": "-",
        "start": shown(db, times["started"], "UTC"),
        "elapsed": elapsed(db, times["started"], times["ended"] or times["last_report"]),
        "end": shown(db, times["ended"], "UTC"),
    }
    detail = {
        "lastReport": shown(db, times["last_report"], "UTC"),
        "stalled": stalled(db, times),
    }
    line_times = [shown(db, LOGGED, "UTC")] * 3
    if place == "logged_at":
        line_times[1] = shown(db, value, "UTC")

    plain = get(client, f"{JOB_URL}60")
    assert plain["job"]["progressInfo"] == progress
    assert plain["job"]["log"] == ["a", "b", "c"]
    full = get(client, f"{JOB_URL}60?detail=true")
    assert full["job"]["progressInfo"] == {**progress, **detail}
    assert [entry["time"] for entry in full["job"]["logEntries"]] == line_times

    # The wall shows the job as the job endpoint does, and its neighbours as ever.
    wall = get(client, f"{SERVER_URL}1")
    assert wall["job"][0] == LINUX_EXAMPLE["job"]
    assert wall["job"][-1] == plain["job"]
    wall = get(client, f"{SERVER_URL}1?detail=true")
    assert wall["job"][-1]["progressInfo"] == full["job"]["progressInfo"]
    assert wall["job"][-1]["logEntries"] == full["job"]["logEntries"]


@pytest.mark.parametrize("value", ZONED)
@pytest.mark.parametrize("zone", ["Asia/Seoul", "America/New_York", "Pacific/Kiritimati"])
def test_odd_timestamps_show_in_the_zone(
    db: connection, make_client: Callable[[str], FlaskClient], zone: str, value: str
) -> None:
    add_odd_job(db, "ended_at", value)
    progress = get(make_client(zone), f"{JOB_URL}60")["job"]["progressInfo"]
    assert progress["end"] == shown(db, value, zone)
    assert progress["start"] == shown(db, START, zone)


def test_different_odd_values_are_different_answers(
    db: connection, make_client: Callable[[str], FlaskClient]
) -> None:
    add_odd_job(db, "ended_at", "20000-01-01 00:00:00+00")
    client = make_client("UTC")
    first = client.get(f"{JOB_URL}60", headers=bearer())
    with db.cursor() as cur:
        cur.execute("UPDATE backup_info SET ended_at = '20001-01-01' WHERE backup_id = 60")
    second = client.get(
        f"{JOB_URL}60", headers={**bearer(), "If-None-Match": first.headers["ETag"]}
    )
    assert second.status_code == 200
    assert second.get_json()["data"]["job"]["progressInfo"]["end"] == "20001-01-01 00:00:00"


# --- The typecaster ------------------------------------------------------------------------------


@pytest.fixture
def cursor(database_url: str) -> Any:
    with psycopg2.connect(database_url) as conn:
        timestamps.register(conn)
        with conn.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
    conn.close()


def read(cursor: Any, text: str) -> Any:
    cursor.execute("SELECT CAST(%s AS timestamptz), ARRAY[CAST(%s AS timestamptz)]", (text, text))
    value, array = cursor.fetchone()
    assert array == [value]
    return value


def test_ordinary_values_read_as_psycopg2_reads_them(cursor: Any) -> None:
    value = read(cursor, "2025-01-15 02:00:00.25+09")
    assert type(value) is datetime
    assert value == datetime(2025, 1, 14, 17, 0, 0, 250_000, tzinfo=UTC)


def test_infinities(cursor: Any) -> None:
    assert read(cursor, "infinity") is INFINITY
    assert read(cursor, "-infinity") is MINUS_INFINITY
    assert INFINITY > datetime.now(UTC) > MINUS_INFINITY


def test_a_far_value_keeps_its_instant_and_sorts_at_the_edge(cursor: Any) -> None:
    late = read(cursor, "20000-02-29 12:00:00+00")
    assert isinstance(late, Beyond) and late.near is not None
    assert (late.near.year + 400 * late.cycles, late.near.month, late.near.day) == (20000, 2, 29)
    assert late > datetime(9999, 1, 1, tzinfo=UTC)
    early = read(cursor, "0044-03-15 00:00:00+00 BC")
    assert isinstance(early, Beyond) and early.near is not None
    assert early.near.year + 400 * early.cycles == -43  # 44 BC
    assert early < datetime(1, 1, 2, tzinfo=UTC)
    assert early != read(cursor, "0045-03-15 00:00:00+00 BC")
    assert repr(early) != repr(read(cursor, "0045-03-15 00:00:00+00 BC"))


def test_far_offsets_with_seconds(cursor: Any) -> None:
    # Before 1908 Asia/Seoul is local mean time, +08:27:52.
    cursor.execute("SET TimeZone = 'Asia/Seoul'")
    value = read(cursor, "0044-03-15 00:00:00+00 BC")
    assert isinstance(value, Beyond) and value.near is not None
    offset = timedelta(hours=8, minutes=27, seconds=52)
    assert value.near.tzinfo == timezone(offset)
    later = read(cursor, "0044-03-15 00:00:01+00 BC")
    assert timestamps.duration(value, later) == timedelta(seconds=1)


def test_durations_count_across_any_range(cursor: Any) -> None:
    first = read(cursor, EARLIEST)
    last = read(cursor, LATEST)
    cursor.execute(
        f"SELECT {SECONDS_BETWEEN} FROM CAST(%s AS timestamptz) AS s, CAST(%s AS timestamptz) AS u",
        (EARLIEST, LATEST),
    )
    microseconds = int(cursor.fetchone()[0] * 1_000_000)
    assert timestamps.duration(first, last) == timedelta(microseconds=microseconds)
    assert timestamps.duration(first, INFINITY) is None


def test_unreadable_text_is_a_data_error() -> None:
    with pytest.raises(psycopg2.DataError):
        timestamps.far("15/03/0044 BC")
